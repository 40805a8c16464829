"""Header layouts, declared once: both decoders read their field offsets from here.

The reference decoder (:mod:`~pktkit.capture.decode`) and the numpy fast path
(:mod:`~pktkit.capture.vectorized`) must agree byte for byte, so neither writes an offset by
hand: ``IPV4.offset["ttl"]`` is 8 because the layout says so. The standard headers are dpkt's
own declarations (its ``__hdr__`` tuples: field name, struct code, default), so pktkit and a
user's dpkt script name fields alike; the tunnel headers dpkt lacks are declared here the same
way. Constants that are not layouts (ethertypes, IP protocol numbers, tunnel ports) live here
too, for the same reason. (``tests/oracle.py`` and :mod:`pktkit.craft.kernel` keep their own
offsets on purpose: they are the independent cross-check.)
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

import dpkt

HeaderDeclaration = tuple[tuple[str, str, object], ...]  # dpkt's __hdr__: (name, code, default)


@dataclass(frozen=True)
class Layout:
    """A fixed-size header: each field's byte offset and the header's size."""

    name: str
    offset: Mapping[str, int]
    size: int

    @classmethod
    def declare(cls, name: str, fields: HeaderDeclaration) -> Layout:
        offsets: dict[str, int] = {}
        at = 0
        for field, code, _default in fields:
            offsets[field] = at
            at += struct.calcsize(">" + code)
        return cls(name, offsets, at)

    @classmethod
    def of(cls, header: type[dpkt.Packet]) -> Layout:
        """The layout a dpkt class declares."""
        return cls.declare(header.__name__.lower(), header.__hdr__)


# -- dpkt's declarations ----------------------------------------------------------------------

ETHERNET = Layout.of(dpkt.ethernet.Ethernet)  # dst src type
VLAN = Layout.of(dpkt.ethernet.VLANtag8021Q)  # pri_cfi_vid type
SLL = Layout.of(dpkt.sll.SLL)  # type(pkttype) hrd(hatype) hlen hdr ethtype
SLL2 = Layout.of(dpkt.sll2.SLL2)  # ethtype mbz intindex hrd type(pkttype) hlen hdr
ARP = Layout.of(dpkt.arp.ARP)  # hrd pro hln pln op ...
IPV4 = Layout.of(dpkt.ip.IP)  # _v_hl tos len id _flags_offset ttl p sum src dst
IPV6 = Layout.of(dpkt.ip6.IP6)  # _v_fc_flow plen nxt hlim src dst
IPV6_FRAGMENT = Layout.of(dpkt.ip6.IP6FragmentHeader)  # nxt _resv _frag_off_resv_m id
TCP = Layout.of(dpkt.tcp.TCP)  # sport dport seq ack _off_flags win sum urp
UDP = Layout.of(dpkt.udp.UDP)  # sport dport ulen sum
ICMP = Layout.of(dpkt.icmp.ICMP)  # type code sum
ICMP_ECHO = Layout.of(dpkt.icmp.ICMP.Echo)  # id seq, after the ICMP header
GRE = Layout.of(dpkt.gre.GRE)  # flags p

# -- tunnel headers dpkt lacks, declared the dpkt way -----------------------------------------

# RFC 7348: flags (I = 0x08), 24 reserved bits, VNI (24) and 8 reserved bits
VXLAN = Layout.declare("vxlan", (("flags", "B", 0x08), ("reserved", "3s", b""),
                                 ("vni_reserved", "I", 0)))
# VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe): flags (R R Ver(2) I P B O), reserved, next protocol
VXLAN_GPE = Layout.declare("vxlan-gpe", (("flags", "B", 0x0C), ("reserved", "H", 0),
                                         ("next_protocol", "B", 3), ("vni_reserved", "I", 0)))
# RFC 8926: Ver(2) OptLen(6), O C Rsvd(6), protocol type, VNI (24) + 8 reserved; options
GENEVE = Layout.declare("geneve", (("ver_optlen", "B", 0), ("flags", "B", 0),
                                   ("protocol", "H", 0x6558), ("vni_reserved", "I", 0)))
# Cisco MetaData (0x8909): version, length, options, SGT, then the ethertype
CISCO_METADATA = Layout.declare("cmd", (("version", "B", 1), ("length", "B", 1),
                                        ("options", "H", 1), ("sgt", "H", 0),
                                        ("type", "H", 0x0800)))
# ERSPAN type II (version 1) and III (version 2), after GRE
ERSPAN_II = Layout.declare("erspan2", (("ver_vlan", "H", 0x1000), ("cos_en_t_session", "H", 0),
                                       ("reserved_index", "I", 0)))
ERSPAN_III = Layout.declare("erspan3", (("ver_vlan", "H", 0x2000),
                                        ("cos_bso_t_session", "H", 0), ("timestamp", "I", 0),
                                        ("sgt", "H", 0), ("p_ft_hwid_d_gra_o", "H", 0)))

# -- numbers --------------------------------------------------------------------------------

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_TEB = 0x6558  # transparent Ethernet bridging: the payload is an Ethernet frame
ETH_CMD = 0x8909  # Cisco MetaData (SGT tag)
ETH_ERSPAN_2 = 0x88BE  # ERSPAN type I/II (type I has no ERSPAN header, and no GRE sequence)
ETH_ERSPAN_3 = 0x22EB
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})  # 802.1Q, 802.1ad, old QinQ
MAX_ETHER_LENGTH = 1500  # an ethertype field up to this is an 802.3 length (LLC follows)
MIN_MTU, MAX_MTU = 68, 65535  # an IPv4 link's smallest MTU (RFC 791), the largest IP packet

IPPROTO_ICMP, IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP = 1, 4, 6, 17
IPPROTO_IPV6, IPPROTO_GRE, IPPROTO_ICMPV6 = 41, 47, 58
IPPROTO_FRAGMENT, IPPROTO_AH = 44, 51
# IPv6 extension headers skipped by their length field: hop-by-hop, routing, destination
# options, mobility, HIP, shim6 ((len + 1) * 8 bytes) and AH ((len + 2) * 4 bytes).
IPV6_EXTENSIONS = frozenset({0, 43, 60, 135, 139, 140, IPPROTO_AH})
IPV6_FAMILIES = frozenset({10, 24, 28, 30})  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
ICMP_ECHO_TYPES = frozenset({(1, 0), (1, 8), (58, 128), (58, 129)})  # (proto, type)

VXLAN_PORTS = (4789, 8472)  # IANA port, and the Linux kernel's (Flannel's) historical port
VXLAN_GPE_PORT = 4790
GENEVE_PORT = 6081
