"""The packet table's columns, declared once: name, dtype and meaning, in table order.

Everything else derives from :data:`PACKET_COLUMNS`: the pandas dtypes (``table.SCHEMA``), the
fast path's unboxed numpy types (:data:`INT_COLUMNS`), the Arrow schema of ``packets -o
x.parquet`` (:mod:`~pktkit.capture.arrow`), the column order of both engines. This module
imports neither pandas nor Arrow: the Parquet path must not pay for pandas' import.

Flows: ``flow_id``'s key is (encap, vni, proto, {(src, sport), (dst, dport)}) with the two
endpoints sorted, so both directions of a connection share an id, while the same 5-tuple on
another VNI or another tunnel chain is another flow. The key has neither the capture nor the
interface: the same connection seen at two capture points gets one id (group by ``["capture",
"flow_id"]`` to split them). Non-first IP fragments carry no ports and so form their own (src,
dst, proto) flow; ICMP flows have no ports.

Non-first fragments of a tunnelled packet hold no tunnel header: their row shows the outer IP
packet (encap "none", e.g. proto 47), as tshark does without reassembly; the first piece's
``outer_ip_id`` equals their ``ip_id`` (the analysis ties them by it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pktkit.capture.checksums import COLUMN_VALUES as CHECKSUM_VALUES
from pktkit.capture.formats import DIRECTIONS
from pktkit.capture.reasons import ERROR_REASONS

Kind = Literal["int", "bool", "string", "category"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the packet table."""

    name: str
    kind: Kind
    doc: str
    numpy: type[np.integer] | None = None  # int columns: the unboxed values' type
    categories: tuple[str, ...] | None = None  # category columns: the fixed vocabulary
    open_vocabulary: bool = False  # more categories may follow the fixed ones (error)

    @property
    def pandas_dtype(self) -> str:
        """The pandas dtype's name (category columns: see ``table.SCHEMA``)."""
        if self.kind == "int":
            name = np.dtype(self.numpy).name  # uint32 → UInt32, int64 → Int64
            return ("UI" + name[2:]) if name.startswith("ui") else name.capitalize()
        return {"bool": "boolean", "string": "string", "category": "category"}[self.kind]


def _int(name: str, numpy: type[np.integer], doc: str) -> Column:
    return Column(name, "int", doc, numpy)


PACKET_COLUMNS: tuple[Column, ...] = (
    Column("capture", "string", "file name of the capture (no folder)"),
    _int("frame", np.uint32, "1-based frame number in its file (tshark's frame.number)"),
    _int("ts_ns", np.int64, "capture time, ns since the epoch (NA: pcapng simple packet)"),
    Column("interface", "string",
           "``ifnames[ifindex]`` for an SLL2 frame whose ifindex is mapped, else the pcapng "
           "``if_name``, else the SLL2 ifindex as text, else NA"),
    _int("interface_id", np.uint32, "pcapng interface number (across sections; NA in pcap)"),
    _int("ifindex", np.uint32, "interface index from the Linux cooked v2 (SLL2) header"),
    Column("direction", "category",
           "in / out / other: SLL/SLL2 packet type (0-2 in, 4 out, 3 otherhost), else pcapng "
           "epb_flags; NA when unknown", categories=DIRECTIONS),
    _int("linktype", np.uint16, "LINKTYPE_* of the frame"),
    _int("wire_len", np.uint32, "original frame length"),
    _int("cap_len", np.uint32, "captured length (< wire_len: cut by the snaplen)"),
    Column("encap", "category",
           'tunnels decoded, outermost first, joined by "/": vxlan, vxlan-gpe, geneve, nvgre '
           "(GRE key + 0x6558), gre (also GRE-in-UDP), pptp (GRE version 1), erspan, ipip "
           "(4in4, 6in4, 4in6, 6in6), mpls (over Ethernet, GRE, UDP), nsh, teredo; \"none\" "
           "without tunnel (an open vocabulary: its categories are the values seen)"),
    _int("vni", np.uint32, "of the innermost tunnel that has one: VXLAN/VXLAN-GPE/Geneve VNI, "
                           "NVGRE VSID (key >> 8), or the key of plain GRE/ERSPAN (not PPTP's "
                           "key field: payload length + call id)"),
    Column("outer_src", "string", "outermost IP header's source address; NA unless tunnelled"),
    Column("outer_dst", "string", "outermost IP header's destination; NA unless tunnelled"),
    _int("outer_sport", np.uint16, "that header's UDP source port (VXLAN, Geneve and the "
                                   "other UDP tunnels); NA for GRE/IP-in-IP and when not "
                                   "tunnelled"),
    _int("outer_dport", np.uint16, "that header's UDP destination port, likewise"),
    _int("outer_ip_id", np.uint32,
         "outermost IP header's IPv4 identification (IPv6: its Fragment header's "
         "identification, else NA); NA unless tunnelled. A fragmented tunnel packet's "
         "non-first pieces carry no tunnel header (their row shows the outer header: its id "
         "in ip_id): this ties them to the first piece"),
    _int("ethertype", np.uint16, "ethertype of the innermost frame (2054 = ARP); NA for LLC"),
    _int("ip_version", np.uint8, "4 or 6 for the innermost IP packet"),
    Column("src", "string",
           "innermost IP packet's source address. NA when the innermost frame is not IP (ARP, "
           "STP, a tunnel carrying non-IP such as a GRE keepalive): then the outer IP header "
           "is in outer_*, not here"),
    Column("dst", "string", "innermost IP packet's destination address, likewise"),
    _int("proto", np.uint8, "innermost IP packet's upper-layer protocol number (after IPv6 "
                            "extension headers)"),
    _int("sport", np.uint16, "TCP/UDP source port of that packet; NA for other protocols "
                             "(ICMP echo identifiers are not ports), for non-first fragments, "
                             "and when the capture cut the header before it"),
    _int("dport", np.uint16, "TCP/UDP destination port, likewise"),
    _int("ttl", np.uint8, "innermost IPv4 TTL / IPv6 hop limit"),
    _int("ip_id", np.uint32, "innermost IPv4 identification / IPv6 fragment identification"),
    Column("fragment", "bool", "some IPv4/IPv6 header in the frame is a fragment"),
    _int("tcp_flags", np.uint16, "9 TCP flag bits (0x002 SYN, 0x010 ACK, ...)"),
    _int("icmp_type", np.uint8, "ICMP / ICMPv6 type of the innermost packet"),
    _int("icmp_code", np.uint8, "ICMP / ICMPv6 code of the innermost packet"),
    _int("ip_len", np.uint32, "innermost IP packet's length field (IPv4 total length, IPv6 40 "
                              "+ payload length; the captured bytes when the field is 0)"),
    _int("frag_offset", np.uint16, "innermost IP header's fragment offset in bytes (0: whole "
                                   "packet or first fragment)"),
    Column("more_fragments", "bool", "innermost IP header's MF flag"),
    _int("tcp_seq", np.uint32, "TCP sequence number"),
    _int("tcp_ack", np.uint32, "TCP acknowledgment number"),
    _int("icmp_id", np.uint16, "ICMP/ICMPv6 echo request/reply identifier"),
    _int("icmp_seq", np.uint16, "ICMP/ICMPv6 echo request/reply sequence number"),
    _int("l4_payload_len", np.uint32,
         "innermost payload bytes in the frame by the length fields (not the captured bytes): "
         "after the TCP header, the UDP header, the 8-byte ICMP header; the whole IP payload "
         "of other protocols and of a non-first fragment"),
    _int("payload_hash", np.uint32,
         "``decode.payload_digest`` of the first min(64, l4_payload_len) of those bytes "
         "(``decode.PAYLOAD_HASH_BYTES``); NA when the capture cut them off. With IP id, TCP "
         "sequence numbers and ICMP echo sequence: what survives NAT, TTL and tunnels, for "
         "matching the sightings of one packet (:mod:`pktkit.analysis.correlate`)"),
    _int("overhead_bytes", np.uint32,
         "wire bytes the encapsulation adds in front of the innermost frame: from the "
         "outermost network header to the innermost tunnel's payload, plus, when that payload "
         "is an Ethernet frame (VXLAN, Geneve 0x6558, NVGRE, ERSPAN), the outer link header as "
         "it was on the wire (Ethernet 14 + VLAN tags; in an SLL/SLL2 capture of an Ethernet "
         "device, 14). A bare IP payload (IP-in-IP, GRE 0x0800, Geneve 0x0800) does not count "
         "the outer link header. Tunnel headers count whole (Geneve options, GRE key/sequence, "
         "ERSPAN). 0 without tunnel. VXLAN/IPv4 14+20+8+8 = 50, VXLAN/IPv6 70, Geneve with one "
         "8-byte option 58, NVGRE 42, IPIP 20"),
    _int("flow_id", np.int64, "bidirectional flow number, 0-based in order of first appearance "
                              "in the table (see the module docstring); NA when src/dst are NA"),
    Column("checksum", "category",
           "the worst checksum status of the frame's IPv4 headers and TCP/UDP/ICMP/ICMPv6 "
           "checksums, inner and outer (not those of a packet an ICMP error quotes): ok, bad, "
           "offload (an outgoing frame a host captured before the NIC filled its checksum "
           "in: the field holds only the pseudo-header sum, or an IPv4 header checksum 0), "
           "unchecked (the capture cut the covered bytes, or an IP fragment); a UDP checksum "
           "0 (none computed) counts as ok; NA when the frame has none "
           "(:mod:`pktkit.capture.checksums`). A bad checksum never drops a packet",
           categories=CHECKSUM_VALUES),
    Column("error", "category",
           "NA, or why decoding stopped short (``ERROR_REASONS``); a payload pktkit does not "
           "decode is named: ``unsupported-payload (gre 0x8881)``",
           categories=ERROR_REASONS, open_vocabulary=True),
)

COLUMNS: tuple[str, ...] = tuple(c.name for c in PACKET_COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in PACKET_COLUMNS}
INT_COLUMNS: dict[str, type[np.integer]] = {
    c.name: c.numpy for c in PACKET_COLUMNS if c.numpy is not None}
BOOL_COLUMNS: tuple[str, ...] = tuple(c.name for c in PACKET_COLUMNS if c.kind == "bool")
STRING_COLUMNS: tuple[str, ...] = tuple(c.name for c in PACKET_COLUMNS if c.kind == "string")
ADDRESS_COLUMNS = ("outer_src", "outer_dst", "src", "dst")
# categorical columns: their categories, None for the open vocabulary of ``encap`` (``error``:
# its reasons, then named unsupported payloads: see reasons.error_categories)
CATEGORY_COLUMNS: dict[str, tuple[str, ...] | None] = {
    c.name: c.categories for c in PACKET_COLUMNS if c.kind == "category"}
