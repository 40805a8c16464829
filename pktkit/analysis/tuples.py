"""Connection 5-tuples as netfilter keys them: ``(proto, src, sport, dst, dport)``.

An ICMP/ICMPv6 echo carries its identifier as both ports, as conntrack keys it.
"""

from __future__ import annotations

Tuple5 = tuple[int, str, int, str, int]  # proto, src, sport, dst, dport


Pair = tuple[Tuple5, Tuple5]  # (pre-NAT, post-NAT) tuple of one packet


ICMP_PROTOS = (1, 58)


TUPLE_DTYPES = {"proto": "UInt8", "src": "string", "sport": "UInt16", "dst": "string",
                 "dport": "UInt16"}


def reverse(t: Tuple5) -> Tuple5:
    """The tuple of the other direction."""
    return (t[0], t[3], t[4], t[1], t[2])


def nat_kind(orig: Tuple5, xlat: Tuple5) -> str | None:
    """``snat``, ``dnat``, ``snat+dnat``, or None when nothing changed."""
    snat = orig[1:3] != xlat[1:3]
    # ICMP's "dport" is the identifier again: only a new address makes it DNAT.
    dst = slice(3, 4) if orig[0] in ICMP_PROTOS else slice(3, 5)
    dnat = orig[dst] != xlat[dst]
    return "snat+dnat" if snat and dnat else "snat" if snat else "dnat" if dnat else None
