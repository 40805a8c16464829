"""Header layouts, declared once: both decoders read their field offsets from here.

The reference decoder (:mod:`~pktkit.capture.decode`) and the numpy fast path
(:mod:`~pktkit.capture.vectorized`) must agree byte for byte, so neither writes an offset by
hand: ``IPV4.offset["ttl"]`` is 8 because the layout says so. The standard headers are dpkt's
own declarations (its ``__hdr__`` tuples: field name, struct code, default), so pktkit and a
user's dpkt script name fields alike; the tunnel headers dpkt lacks are :mod:`pktkit.dpkt`'s
classes, declared the same way. Constants that are not layouts (ethertypes, IP protocol
numbers, tunnel ports) live here too, for the same reason. (``tests/oracle.py`` and
:mod:`pktkit.craft.kernel` keep their own offsets on purpose: they are the independent
cross-check.)
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

import dpkt

import pktkit.dpkt

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

# -- the tunnel headers dpkt lacks: pktkit.dpkt's declarations ------------------------------------

VXLAN = Layout.of(pktkit.dpkt.VXLAN)  # flags reserved1 _vni_reserved2 (RFC 7348)
VXLAN_GPE = Layout.of(pktkit.dpkt.VXLANGPE)  # _flags reserved1 next_proto _vni_reserved2
GENEVE = Layout.of(pktkit.dpkt.Geneve)  # _ver_optlen _o_c_rsvd1 proto _vni_rsvd2 (RFC 8926)
CISCO_METADATA = Layout.of(pktkit.dpkt.EthernetCMD)  # ver len opt_type sgt type (Ethernet form)
CISCO_METADATA_GRE = Layout.of(pktkit.dpkt.CMD)  # type ver len opt_type sgt (GRE form)
ERSPAN_II = Layout.of(pktkit.dpkt.ERSPAN2)  # _ver_vlan _cos_en_t_session _reserved_index
ERSPAN_III = Layout.of(pktkit.dpkt.ERSPAN3)  # ... timestamp sgt _p_ft_hwid_d_gra_o
NSH = Layout.of(pktkit.dpkt.NSH)  # _ver_o_u_ttl_len _u_mdtype next_proto _spi_si (RFC 8300)
WCCP = Layout.of(pktkit.dpkt.WCCP)  # _rsvd_d_a service_id alt_bucket pri_bucket

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

# UDP tunnel ports (by destination port; Teredo's by either), as pktkit.dpkt registers them
VXLAN_PORTS = pktkit.dpkt.VXLAN_PORTS  # IANA port, and the Linux kernel's (Flannel's) old port
VXLAN_GPE_PORT = pktkit.dpkt.VXLAN_GPE_PORT
GENEVE_PORT = pktkit.dpkt.GENEVE_PORT
GRE_IN_UDP_PORT = pktkit.dpkt.GRE_IN_UDP_PORT
MPLS_IN_UDP_PORT = pktkit.dpkt.MPLS_IN_UDP_PORT
TEREDO_PORT = pktkit.dpkt.TEREDO_PORT
