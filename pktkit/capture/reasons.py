"""Why a frame's decoding stopped short: every value the packet table's ``error`` column takes.

A malformed packet is a row with a reason, never an exception: both decoders report through
these names (the reference decoder maps dpkt's ``NeedData``/``UnpackError`` to them). A payload
pktkit cannot decode is named: ``unsupported-payload (gre 0x8881)``, so the vocabulary is
:data:`ERROR_REASONS` plus such names (:func:`error_categories`).
"""

from __future__ import annotations

from collections.abc import Iterable

TRUNCATED = "truncated"  # the captured bytes end inside a header (snaplen, or an IP fragment)
BAD_LINK = "bad-link-header"  # link header or VLAN tag cut short, raw IP of no IP version
BAD_IP = "bad-ip-header"  # version, IHL or length field inconsistent
BAD_L4 = "bad-l4-header"  # TCP data offset < 5, UDP length < 8 or past the IP payload
BAD_ARP = "bad-arp-header"
BAD_TUNNEL = "bad-tunnel-header"  # VXLAN without I flag, Geneve/GRE/ERSPAN version, lengths
UNKNOWN_LINKTYPE = "unknown-linktype"
TOO_DEEP = "too-deep"  # more than max_depth nested tunnels
UNSUPPORTED_PAYLOAD = "unsupported-payload"  # a tunnel's payload pktkit cannot decode
INTERNAL_ERROR = "internal-error"  # a decoder bug caught at the boundary; should never appear
ERROR_REASONS = (
    TRUNCATED, BAD_LINK, BAD_IP, BAD_L4, BAD_ARP, BAD_TUNNEL, UNKNOWN_LINKTYPE, TOO_DEEP,
    UNSUPPORTED_PAYLOAD, INTERNAL_ERROR,
)


def unsupported_payload(protocol: str) -> str:
    """The error of a payload that stops the decoding: ``unsupported-payload (gre 0x8881)``."""
    return f"{UNSUPPORTED_PAYLOAD} ({protocol})"


def error_categories(values: Iterable[object]) -> list[str]:
    """The ``error`` column's categories for these values: every reason of ERROR_REASONS, then
    the named unsupported payloads among ``values``, sorted (both engines alike)."""
    extra = {v for v in values if isinstance(v, str)}
    return [*ERROR_REASONS, *sorted(extra - set(ERROR_REASONS))]
