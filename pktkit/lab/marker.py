"""The payload marker: every byte the lab's traffic sends says which flow and message it is.

Why a repeated token rather than one header: the kernel cuts payloads anywhere (TCP segments,
IP fragments of the inner or the outer packet), and every piece must still be labelled when
the truth is built from the captures. A payload is the token repeated and cut to length, so
any piece of at least two tokens' length holds a whole one. ASCII, so that ``tcpdump -A`` and
tshark show it plainly.

Token (29 bytes): ``PKTKIT`` flow (5 digits) direction (``q`` from the originator, ``r`` from
the responder) message (4 digits) length of this message (6 digits) length of the reply the
responder must send (6 digits) ``\\n``.

stdlib only: imported by the traffic agent inside namespaces.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAGIC = b"PKTKIT"
TOKEN_LEN = 29
TOKEN_RE = re.compile(rb"PKTKIT(\d{5})([qr])(\d{4})(\d{6})(\d{6})\n")


class Token(NamedTuple):
    flow: int
    direction: str  # "q" (originator to responder) or "r"
    message: int
    length: int  # bytes of this message
    reply: int  # bytes the responder sends back


def token_bytes(token: Token) -> bytes:
    return (b"PKTKIT%05d%s%04d%06d%06d\n" % (token.flow, token.direction.encode(),
                                             token.message % 10000, token.length, token.reply))


def payload(token: Token) -> bytes:
    """``token.length`` bytes: the token repeated (at least one whole token)."""
    if token.length < TOKEN_LEN:
        raise ValueError(f"a marked payload needs at least {TOKEN_LEN} bytes")
    raw = token_bytes(token)
    return (raw * (token.length // TOKEN_LEN + 1))[: token.length]


def parse(raw: bytes) -> Token:
    match = TOKEN_RE.fullmatch(raw)
    if match is None:
        raise ValueError("not a marker token")
    return _token(match)


def find(data: bytes, start: int = 0) -> Token | None:
    """The first whole token in ``data`` at or after ``start`` (None: no marker)."""
    match = TOKEN_RE.search(data, start)
    return _token(match) if match else None


def _token(match: re.Match[bytes]) -> Token:
    return Token(int(match.group(1)), match.group(2).decode(), int(match.group(3)),
                 int(match.group(4)), int(match.group(5)))
