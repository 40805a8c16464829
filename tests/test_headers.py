"""pktkit.capture.headers: the declared layouts give the offsets the RFCs give (written out by
hand here), and dpkt's own declarations agree, so both decoders read the right bytes."""

from __future__ import annotations

import dpkt
import pytest

import pktkit.dpkt
from pktkit.capture import headers

# (layout, field, offset, header size) from the specifications
RFC_OFFSETS = [
    (headers.ETHERNET, "type", 12, 14),  # IEEE 802.3: dst 6, src 6, type
    (headers.VLAN, "type", 2, 4),  # 802.1Q: TCI, then the ethertype
    (headers.SLL, "ethtype", 14, 16),  # LINKTYPE_LINUX_SLL: protocol after the 8-byte address
    (headers.SLL2, "intindex", 4, 20),  # LINKTYPE_LINUX_SLL2: protocol, reserved, ifindex
    (headers.SLL2, "hrd", 8, 20),
    (headers.SLL2, "type", 10, 20),  # packet type
    (headers.IPV4, "len", 2, 20),  # RFC 791
    (headers.IPV4, "id", 4, 20),
    (headers.IPV4, "ttl", 8, 20),
    (headers.IPV4, "p", 9, 20),
    (headers.IPV4, "src", 12, 20),
    (headers.IPV4, "dst", 16, 20),
    (headers.IPV6, "plen", 4, 40),  # RFC 8200
    (headers.IPV6, "nxt", 6, 40),
    (headers.IPV6, "hlim", 7, 40),
    (headers.IPV6, "src", 8, 40),
    (headers.IPV6, "dst", 24, 40),
    (headers.IPV6_FRAGMENT, "id", 4, 8),  # RFC 8200 4.5
    (headers.TCP, "seq", 4, 20),  # RFC 9293
    (headers.TCP, "ack", 8, 20),
    (headers.TCP, "_off_flags", 12, 20),
    (headers.UDP, "ulen", 4, 8),  # RFC 768
    (headers.ICMP, "type", 0, 4),  # RFC 792: type, code, checksum; echo id/seq follow
    (headers.VXLAN, "_vni_reserved2", 4, 8),  # RFC 7348
    (headers.VXLAN_GPE, "next_proto", 3, 8),
    (headers.GENEVE, "proto", 2, 8),  # RFC 8926
    (headers.GENEVE, "_vni_rsvd2", 4, 8),
    (headers.GRE, "p", 2, 4),  # RFC 2784
    (headers.CISCO_METADATA, "type", 6, 8),  # Ethernet form: the ethertype last
    (headers.CISCO_METADATA_GRE, "type", 0, 8),  # GRE form: the ethertype first
    (headers.CISCO_METADATA_GRE, "sgt", 6, 8),
    (headers.ERSPAN_II, "_cos_en_t_session", 2, 8),
    (headers.ERSPAN_III, "_p_ft_hwid_d_gra_o", 10, 12),
    (headers.NSH, "next_proto", 3, 8),  # RFC 8300: base header, then SPI/SI
    (headers.NSH, "_spi_si", 4, 8),
    (headers.WCCP, "pri_bucket", 3, 4),  # WCCPv2 redirect header
]


@pytest.mark.parametrize("layout, field, offset, size", RFC_OFFSETS,
                         ids=lambda v: getattr(v, "name", str(v)))
def test_offsets_are_the_specifications(layout: headers.Layout, field: str, offset: int,
                                        size: int) -> None:
    assert (layout.offset[field], layout.size) == (offset, size)


def test_standard_layouts_are_dpkts_own() -> None:
    for layout, cls in [(headers.IPV4, dpkt.ip.IP), (headers.IPV6, dpkt.ip6.IP6),
                        (headers.TCP, dpkt.tcp.TCP), (headers.UDP, dpkt.udp.UDP),
                        (headers.SLL2, dpkt.sll2.SLL2),
                        # the tunnel layouts are pktkit.dpkt's classes, declared once there
                        (headers.VXLAN, pktkit.dpkt.VXLAN), (headers.GENEVE, pktkit.dpkt.Geneve),
                        (headers.VXLAN_GPE, pktkit.dpkt.VXLANGPE), (headers.NSH, pktkit.dpkt.NSH),
                        (headers.ERSPAN_III, pktkit.dpkt.ERSPAN3)]:
        assert layout.size == cls.__hdr_len__
        assert list(layout.offset) == [name for name, _, _ in cls.__hdr__]
