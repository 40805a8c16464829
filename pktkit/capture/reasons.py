"""Why a frame's decoding stopped short: every value the packet table's ``error`` column takes.

A malformed packet is a row with a reason, never an exception: both decoders report through
these names.
"""

from __future__ import annotations

TRUNCATED = "truncated"  # the captured bytes end inside a header (snaplen, or an IP fragment)
BAD_LINK = "bad-link-header"  # link header or VLAN tag cut short, raw IP of no IP version
BAD_IP = "bad-ip-header"  # version, IHL or length field inconsistent
BAD_L4 = "bad-l4-header"  # TCP data offset < 5, UDP length < 8 or past the IP payload
BAD_ARP = "bad-arp-header"
BAD_TUNNEL = "bad-tunnel-header"  # VXLAN without I flag, Geneve/GRE/ERSPAN version, lengths
UNKNOWN_LINKTYPE = "unknown-linktype"
TOO_DEEP = "too-deep"  # more than max_depth nested tunnels
INTERNAL_ERROR = "internal-error"  # a decoder bug caught at the boundary; should never appear
ERROR_REASONS = (
    TRUNCATED, BAD_LINK, BAD_IP, BAD_L4, BAD_ARP, BAD_TUNNEL, UNKNOWN_LINKTYPE, TOO_DEEP,
    INTERNAL_ERROR,
)
