"""The vectorized decoder: the common header stacks of a whole batch of frames, per layer.

Layer by layer, on the rows still in play: link (Ethernet with up to three VLAN tags, SLL, SLL2,
raw IP) → IPv4/IPv6 → TCP/UDP/ICMP or another upper protocol, and through one VXLAN header (UDP
to a VXLAN port) → Ethernet → the same again. Every bounds and length rule of the reference
decoder (:mod:`~pktkit.capture.decode`) is applied as a mask, and both read their offsets from
the same declared layouts (:mod:`~pktkit.capture.headers`); a header at the same offset in
every row is read as a strided view, otherwise with one gather per layer. A row is *fast* only
when it decodes completely, without error, within ``HEAD`` bytes; every other row (truncated or
malformed, IPv6 fragments, GRE, Geneve, IP-in-IP, IPv6 extension headers, ARP, nested tunnels, other
link types, ...) is left to the reference decoder, which computes nothing differently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pktkit.capture import checksums
from pktkit.capture.batches import DIRECTION_CODE, HEAD, RawBatch
from pktkit.capture.decode import HASH_MULTIPLIER, PAYLOAD_HASH_BYTES, payload_digest
from pktkit.capture.formats import (
    ARPHRD_ETHER,
    ARPHRD_NETLINK,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_RAW_ALIASES,
    PKTTYPE_DIRECTION,
)
from pktkit.capture.headers import (
    ETH_IPV4,
    ETH_IPV6,
    ETHERNET,
    ICMP,
    ICMP_ECHO,
    ICMP_ECHO_TYPES,
    IPPROTO_FRAGMENT,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4,
    IPV6,
    IPV6_EXTENSIONS,
    SLL,
    SLL2,
    TCP,
    UDP,
    VLAN,
    VLAN_TPIDS,
    VXLAN,
)
from pktkit.capture.schema import ADDRESS_COLUMNS

MAX_VLAN_TAGS = 3  # more tags (never seen in practice): the reference decoder
ENCAP_VXLAN = 1  # encap codes: 0 "none", 1 "vxlan", then as fallback rows meet others
_IP_TUNNEL_PROTOS = (IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE)  # left to the reference decoder
_V6_NOT_FAST = np.array(sorted({*IPV6_EXTENSIONS, IPPROTO_FRAGMENT}), np.int64)
_IP_TUNNEL = np.zeros(256, bool)  # by protocol number
_IP_TUNNEL[list(_IP_TUNNEL_PROTOS)] = True
# UDP port kinds (bits of a table indexed by port number, see port_kinds)
PORT_VXLAN, PORT_OTHER_TUNNEL, PORT_SOURCE_TUNNEL = 1, 2, 4
_PKTTYPE_CODE = np.full(65536, -1, np.int8)  # SLL/SLL2 packet type → direction code
for _pkttype, _name in PKTTYPE_DIRECTION.items():
    _PKTTYPE_CODE[_pkttype] = DIRECTION_CODE[_name]
_ICMP_ECHO = np.zeros((256, 256), bool)  # [proto, type]: an echo request or reply
for _proto, _type in ICMP_ECHO_TYPES:
    _ICMP_ECHO[_proto, _type] = True
_EMPTY_DIGEST = payload_digest(b"")

# field offsets, from the declared layouts
_ETH_TYPE = ETHERNET.offset["type"]
_VLAN_TYPE = VLAN.offset["type"]
_IP4 = IPV4.offset
_IP6 = IPV6.offset
_TCP_SEQ, _TCP_ACK, _TCP_OFFSET = TCP.offset["seq"], TCP.offset["ack"], TCP.offset["_off_flags"]
_TCP_SUM, _UDP_SUM, _ICMP_SUM = TCP.offset["sum"], UDP.offset["sum"], ICMP.offset["sum"]
_L4_HEAD = _TCP_SUM + 2  # bytes read of every L4 header: up to the TCP checksum
_MAX_OPTIONS = 40  # IPv4 options: at most 40 bytes
_UDP_LEN = UDP.offset["ulen"]
_ICMP_ECHO_AT = ICMP.size  # the echo identifier and sequence follow the 4-byte ICMP header
_ICMP_END = ICMP.size + ICMP_ECHO.size  # the 8-byte header an echo has
_VXLAN_VNI = VXLAN.offset["_vni_reserved2"]
_VXLAN_ETHER = VXLAN.size + ETHERNET.size  # VXLAN header and the inner Ethernet header


RowSelection = slice | np.ndarray  # slice(None): every row of the batch (views, no copies)
Offset = int | np.ndarray  # an int when every row in play has the header at the same offset
ALL: slice = slice(None)


def _uniform(offsets: np.ndarray) -> Offset:
    """An int when all offsets are equal: then header blocks are views, not gathers."""
    if len(offsets) and (offsets == offsets[0]).all():
        return int(offsets[0])
    return offsets


def _be16(block: np.ndarray, at: int, per_row: np.ndarray | None = None) -> np.ndarray:
    """The big-endian 16-bit field at ``at`` of each row (or at ``per_row[i]`` of row i)."""
    if per_row is not None:
        index = np.arange(len(block))
        return (block[index, per_row].astype(np.int64) << 8) | block[index, per_row + 1]
    return block[:, at:at + 2].view(">u2")[:, 0].astype(np.int64)


def _be32(block: np.ndarray, at: int) -> np.ndarray:
    return block[:, at:at + 4].view(">u4")[:, 0].astype(np.int64)


class Frames:
    """One batch's first ``HEAD`` bytes per frame (one row each), and every decode result.

    Integer results are int64 with -1 for "not set"; addresses are (family, high 64 bits, low
    64 bits) with family 0 for "not set". The layer methods take the rows in play (``ALL`` or
    an index array), each row's header offset and its region (``end``, ``clipped``: see
    :mod:`pktkit.capture.decode`), read their header as one (rows, width) block, and hand on the
    rows that are still well-formed; a row that leaves the fast stacks anywhere is never marked
    ``fast`` and goes to the reference decoder.
    """

    def __init__(self, raw: RawBatch, ports: np.ndarray) -> None:
        n = self.n = len(raw)
        if raw.head is None:
            # One extra row so that a block read up to HEAD bytes past a row stays in bounds.
            starts = np.append(raw.start, raw.start[-1]) if n else np.zeros(1, np.int64)
            self.head, self.skip = sliding_window_view(raw.buf, HEAD)[starts], 0
        else:
            self.head, self.skip = raw.head, raw.head_skip
        self.width = self.head.shape[1]  # the row stride of flat
        self.flat = self.head.reshape(-1)
        self.ports = ports  # port_kinds(): what each UDP port number carries
        self.fast = np.zeros(n, bool)
        minus = np.full(n, -1, np.int64)
        self.ifindex, self.pktdir, self.ethertype = minus.copy(), minus.copy(), minus.copy()
        self.ip_version, self.proto, self.ttl, self.ip_id = (minus.copy() for _ in range(4))
        self.sport, self.dport, self.tcp_flags = minus.copy(), minus.copy(), minus.copy()
        self.icmp_type, self.icmp_code, self.vni = minus.copy(), minus.copy(), minus
        self.outer_sport, self.outer_dport = minus.copy(), minus.copy()
        self.outer_ip_id = minus.copy()
        self.ip_len, self.frag_offset, self.tcp_seq, self.tcp_ack = (minus.copy() for _ in range(4))
        self.icmp_id, self.icmp_seq, self.l4_payload_len = (minus.copy() for _ in range(3))
        self.payload_hash = minus.copy()  # filled by payload_hashes() from these two:
        self.payload_at = minus.copy()  # where the payload starts in the frame
        self.payload_end = minus.copy()  # where the captured region of its layer ends
        self.more_fragments = np.full(n, -1, np.int8)
        self.fragment = np.zeros(n, bool)  # some IPv4 header has MF set or an offset
        self.overhead = np.zeros(n, np.int64)
        self.encap = np.zeros(n, np.int64)
        self.link_wire = np.zeros(n, np.int64)  # link bytes on the wire - link bytes captured
        self.addr = {name: (np.zeros(n, np.int8), np.zeros(n, np.uint64), np.zeros(n, np.uint64))
                     for name in ADDRESS_COLUMNS}
        # checksums: the worst status so far per row, and the L4 regions still to be summed
        self.checksum = np.full(n, checksums.NONE, np.int8)
        self.pending_l4: list[tuple[RowSelection, np.ndarray, ...]] = []
        self.buf, self.start, self.cap_len = raw.buf, raw.start, raw.cap_len

    def check(self, rows: RowSelection, status: np.ndarray) -> None:
        """Fold checksum statuses of the rows in play into their worst."""
        self.checksum[rows] = checksums.combine(self.checksum[rows], status)

    def finish_checksums(self) -> None:
        """Sum the L4 regions noted on the way, every layer's at once (one pass over the
        batch's bytes), for the fast rows; the others get the reference decoder's checksum."""
        if not self.pending_l4:
            return
        parts = []
        for rows, *fields in self.pending_l4:
            rows = np.arange(self.n)[rows]
            fast = self.fast[rows]
            parts.append([rows[fast], *(x[fast] for x in fields)])
        rows, starts, l4_len, proto, field, pseudo, checkable = (
            np.concatenate(column) for column in zip(*parts, strict=True))
        # a row may have two regions (VXLAN: the outer UDP's, noted first, holds the inner L4's)
        first = np.ones(len(rows), bool)
        inside = None
        if len(parts) > 1:
            order = np.argsort(rows, kind="stable")
            second = order[1:][rows[order[1:]] == rows[order[:-1]]]
            outer = order[:-1][rows[order[1:]] == rows[order[:-1]]]
            first[second] = False
            inside = np.full(len(rows), -1, np.int64)
            within = ((starts[second] >= starts[outer])
                      & (starts[second] + l4_len[second] <= starts[outer] + l4_len[outer]))
            inside[outer[within]] = second[within]
        status = checksums.l4_statuses(self.buf, starts, l4_len, proto, field, pseudo, checkable,
                                       inside)
        # fold a row's statuses one at a time
        self.check(rows[first], status[first])
        if not first.all():
            self.check(rows[~first], status[~first])
        self.pending_l4 = []

    def block(self, rows: RowSelection, o: Offset, width: int) -> np.ndarray:
        """``width`` header bytes from offset ``o`` of each row in play, one row each."""
        if isinstance(o, int) and o + width <= HEAD:
            at = self.skip + o
            return self.head[rows if isinstance(rows, np.ndarray) else slice(0, self.n),
                             at:at + width]
        # o <= HEAD: at most inside the spare row
        index = np.arange(self.n)[rows] * self.width + (self.skip + o)
        return sliding_window_view(self.flat, width)[index]

    @staticmethod
    def keep(ok: np.ndarray, rows: RowSelection, *per_row: Offset) -> tuple[RowSelection, list]:
        """The rows (and their per-row values) where ``ok``; no copies when that is all."""
        if ok.all():
            return rows, list(per_row)
        rows = np.flatnonzero(ok) if isinstance(rows, slice) else rows[ok]
        return rows, [v[ok] if isinstance(v, np.ndarray) else v for v in per_row]

    def decode(self, raw: RawBatch) -> None:
        """Every row of the batch, from its link layer on (rows of several link types: one
        pass per type)."""
        end, clipped = raw.cap_len, raw.wire_len > raw.cap_len
        linktypes = np.unique(raw.linktype)
        if len(linktypes) == 1:
            self.link(ALL, int(linktypes[0]), end, clipped)
            return
        for lt in linktypes:
            rows = np.flatnonzero(raw.linktype == lt)
            self.link(rows, int(lt), end[rows], clipped[rows])

    # link layer

    def link(self, rows: RowSelection, linktype: int, end: np.ndarray, clipped: np.ndarray) -> None:
        if linktype == LINKTYPE_ETHERNET:
            size = ETHERNET.size
            rows, (end, clipped) = self.keep(end >= size, rows, end, clipped)
            self.ethertype_(rows, size, end, clipped, _be16(self.block(rows, _ETH_TYPE, 2), 0))
        elif linktype in (LINKTYPE_LINUX_SLL2, LINKTYPE_LINUX_SLL):
            sll2 = linktype == LINKTYPE_LINUX_SLL2
            layout = SLL2 if sll2 else SLL
            size, at = layout.size, layout.offset
            rows, (end, clipped) = self.keep(end >= size, rows, end, clipped)
            header = self.block(rows, 0, size)
            proto, hatype = _be16(header, at["ethtype"]), _be16(header, at["hrd"])
            if sll2:
                pkttype = header[:, at["type"]]
                self.ifindex[rows] = _be32(header, at["intindex"])
            else:
                pkttype = _be16(header, at["type"])
            self.pktdir[rows] = _PKTTYPE_CODE[pkttype]
            # the wire's link bytes minus the captured ones (see DecodedPacket.overhead_bytes)
            self.link_wire[rows] = np.where(hatype == ARPHRD_ETHER, ETHERNET.size, 0) - size
            rows, (end, clipped, proto) = self.keep(hatype != ARPHRD_NETLINK, rows, end,
                                                    clipped, proto)
            self.ethertype_(rows, size, end, clipped, proto)  # (SLL netlink: no ethertype)
        elif linktype in (LINKTYPE_RAW, *LINKTYPE_RAW_ALIASES, LINKTYPE_IPV4, LINKTYPE_IPV6):
            version = self.block(rows, 0, 1)[:, 0] >> 4
            if linktype == LINKTYPE_IPV4:
                version[:] = 4
            elif linktype == LINKTYPE_IPV6:
                version[:] = 6
            for want, parse in ((4, self.ipv4), (6, self.ipv6)):
                sub, (e, c) = self.keep((version == want) & (end >= 1), rows, end, clipped)
                parse(sub, 0, e, c, outer=True)
        # NULL/LOOP and unknown link types: the reference decoder

    def ethertype_(
        self, rows: RowSelection, o: Offset, end: np.ndarray, clipped: np.ndarray,
        etype: np.ndarray, outer: bool = True,
    ) -> None:
        """Peel VLAN tags, then IPv4 or IPv6 (anything else: the reference decoder)."""
        ok = np.ones(len(end), bool)
        for _ in range(MAX_VLAN_TAGS):
            tag = np.zeros(len(etype), bool)
            for tpid in VLAN_TPIDS:
                tag |= etype == tpid
            if not tag.any():
                break
            ok &= ~tag | (o + VLAN.size <= np.minimum(end, HEAD))
            etype = np.where(tag, _be16(self.block(rows, o + _VLAN_TYPE, 2), 0), etype)
            o = _uniform(np.where(tag, o + VLAN.size, o))
        # (more tags, Cisco MetaData, ARP, LLC, ...: the reference decoder)
        v4, v6 = etype == ETH_IPV4, etype == ETH_IPV6
        rows, (o, end, clipped, etype, v4) = self.keep(ok & (v4 | v6), rows, o, end, clipped,
                                                        etype, v4)
        self.ethertype[rows] = etype
        for want, parse in ((v4, self.ipv4), (~v4, self.ipv6)):
            if want.any():
                sub, (o_, e, c) = self.keep(want, rows, o, end, clipped)
                parse(sub, o_, e, c, outer)

    # network layer

    def ipv4(
        self, rows: RowSelection, o: Offset, end: np.ndarray, clipped: np.ndarray, outer: bool
    ) -> None:
        header = self.block(rows, o, IPV4.size)
        vihl = header[:, _IP4["_v_hl"]]
        ihl = (vihl & 0x0F).astype(np.int64) * 4
        total, frag = _be16(header, _IP4["len"]), _be16(header, _IP4["_flags_offset"])
        has_total = total != 0
        fits = o + total <= end
        ok = ((vihl >> 4 == 4) & (ihl >= IPV4.size) & (o + ihl <= np.minimum(end, HEAD))
              & (~has_total | ((total >= ihl) & (fits | clipped))))
        shrink = has_total & fits  # the IP length ends the region: drop Ethernet padding
        end = np.where(shrink, o + total, end)
        clipped = clipped & ~shrink
        ip_len = np.where(has_total, total, end - o)  # 0: TSO frame, the captured bytes
        rows, (header, o, ihl, end, clipped, ip_len, frag) = self.keep(
            ok, rows, header, o, ihl, end, clipped, ip_len, frag)
        self.ip_len[rows] = ip_len
        fragment = (frag & 0x3FFF) != 0  # MF set or an offset (the DF bit is no fragment)
        self.frag_offset[rows], self.more_fragments[rows] = (frag & 0x1FFF) * 8, frag >> 13 & 1
        self.ip_version[rows] = 4
        self.ip_id[rows] = _be16(header, _IP4["id"])
        self.ttl[rows] = header[:, _IP4["ttl"]]
        proto = header[:, _IP4["p"]].astype(np.int64)
        self.proto[rows] = proto
        for name in ("src", "dst"):
            at = _IP4[name]
            fam, hi, lo = self.addr[name]
            fam[rows], hi[rows], lo[rows] = 4, 0, header[:, at:at + 4].view(">u4")[:, 0]
        # the header checksum, from the block in hand (options, rare: one more block)
        words = checksums.block_sums(header)
        options = np.flatnonzero(ihl > IPV4.size)
        if len(options):
            sub = np.arange(self.n)[rows][options]
            at = o if isinstance(o, int) else o[options]
            extra = self.block(sub, at + IPV4.size, _MAX_OPTIONS)
            extra = extra * (np.arange(_MAX_OPTIONS) < (ihl[options] - IPV4.size)[:, None])
            words[options] = (words[options] + checksums.block_sums(extra)) % 65535
        self.check(rows, checksums.ipv4_statuses(words, _be16(header, _IP4["sum"])))
        pseudo = checksums.block_sums(header[:, _IP4["src"]:_IP4["dst"] + 4])
        if fragment.any():
            self.fragment[np.arange(self.n)[rows][fragment]] = True
            later = (frag & 0x1FFF) != 0
            if later.any():  # a non-first fragment holds no L4 (or tunnel) header
                sub, (o_, ihl_, end_, len_) = self.keep(later, rows, o, ihl, end, ip_len)
                self.fragment_payload(sub, o_ + ihl_, o_ + len_, end_)
                rows, (o, ihl, end, clipped, ip_len, proto, pseudo, fragment) = self.keep(
                    ~later, rows, o, ihl, end, clipped, ip_len, proto, pseudo, fragment)
            clipped = clipped | fragment  # a first fragment: the datagram goes on in later ones
        else:
            fragment = None
        self.l4(rows, _uniform(o + ihl), end, clipped, proto, outer, o + ip_len, pseudo,
                fragment)

    def fragment_payload(self, rows: np.ndarray, start: Offset, wire_end: np.ndarray,
                         end: np.ndarray) -> None:
        """A non-first fragment's rows: no L4 fields (an outer header's too), its payload
        from ``start`` to ``wire_end``; decoded."""
        for name in ("sport", "dport", "tcp_flags", "icmp_type", "icmp_code", "tcp_seq",
                     "tcp_ack", "icmp_id", "icmp_seq"):
            getattr(self, name)[rows] = -1
        self.l4_payload_len[rows] = np.maximum(wire_end - start, 0)
        self.payload_at[rows] = start
        self.payload_end[rows] = end
        self.fast[rows] = True

    def ipv6(
        self, rows: RowSelection, o: Offset, end: np.ndarray, clipped: np.ndarray, outer: bool
    ) -> None:
        size = IPV6.size
        header = self.block(rows, o, size)
        plen, nh = _be16(header, _IP6["plen"]), header[:, _IP6["nxt"]].astype(np.int64)
        fits = o + size + plen <= end
        ok = ((header[:, 0] >> 4 == 6) & (o + size <= np.minimum(end, HEAD))
              & (plen != 0)  # jumbogram or TSO frame: the reference decoder
              & (fits | clipped) & ~np.isin(nh, _V6_NOT_FAST))
        end = np.where(fits, o + size + plen, end)
        clipped = clipped & ~fits
        rows, (header, o, nh, end, clipped) = self.keep(ok, rows, header, o, nh, end, clipped)
        self.ip_version[rows] = 6
        self.ip_id[rows] = -1
        self.ip_len[rows] = size + _be16(header, _IP6["plen"])
        self.frag_offset[rows], self.more_fragments[rows] = 0, 0
        self.ttl[rows] = header[:, _IP6["hlim"]]
        self.proto[rows] = nh
        for name in ("src", "dst"):
            at = _IP6[name]
            fam, hi, lo = self.addr[name]
            fam[rows] = 6
            hi[rows] = header[:, at:at + 8].view(">u8")[:, 0]
            lo[rows] = header[:, at + 8:at + 16].view(">u8")[:, 0]
        pseudo = checksums.block_sums(header[:, _IP6["src"]:_IP6["dst"] + 16])
        self.l4(rows, o + size, end, clipped, nh, outer, o + self.ip_len[rows], pseudo)

    # transport layer and VXLAN

    def l4(
        self, rows: RowSelection, o: Offset, end: np.ndarray, clipped: np.ndarray,
        proto: np.ndarray, outer: bool, wire_end: np.ndarray, pseudo: np.ndarray,
        fragment: np.ndarray | None = None,
    ) -> None:
        """``wire_end``: where the IP packet ends by its length field (see decode._payload);
        ``pseudo``: the word sum of the IP addresses (for the checksums); ``fragment``: rows
        whose IP header is a (first) fragment, whose L4 checksum cannot be checked."""
        header = self.block(rows, o, _L4_HEAD)
        lim = np.minimum(end, HEAD)
        tcp, udp = proto == IPPROTO_TCP, proto == IPPROTO_UDP
        icmp = (proto == IPPROTO_ICMP) | (proto == IPPROTO_ICMPV6)
        ports = tcp | udp
        sport, dport = _be16(header, TCP.offset["sport"]), _be16(header, TCP.offset["dport"])
        offset_byte = header[:, _TCP_OFFSET]
        data_offset = (offset_byte >> 4).astype(np.int64) * 4
        udp_len = _be16(header, _UDP_LEN)
        udp_fits = o + udp_len <= end
        # an ICMP header's echo id/seq, when the frame has them, must be within HEAD
        icmp_ok = (o + ICMP.size <= lim) & ((o + _ICMP_END <= lim) | (o + _ICMP_END > end))
        ok = np.where(
            tcp, (o + TCP.size <= lim) & (data_offset >= TCP.size) & (o + data_offset <= end),
            np.where(udp, (o + UDP.size <= lim) & (udp_len >= UDP.size) & (udp_fits | clipped),
                     np.where(icmp, icmp_ok, ~_IP_TUNNEL[proto])))
        to = self.ports[dport]
        vxlan = udp & ((to & PORT_VXLAN) != 0)
        # other UDP tunnels (Geneve, VXLAN-GPE, GRE/MPLS in UDP, Teredo): the reference decoder
        ok &= ~(udp & (((to & PORT_OTHER_TUNNEL) | (self.ports[sport] & PORT_SOURCE_TUNNEL))
                       != 0))
        if not outer:
            ok &= ~vxlan  # nested tunnels: fallback
        self.sport[rows] = np.where(ports, sport, -1)
        self.dport[rows] = np.where(ports, dport, -1)
        self.tcp_flags[rows] = np.where(tcp, ((offset_byte & 1).astype(np.int64) << 8)
                                        | header[:, _TCP_OFFSET + 1], -1)
        icmp_type = header[:, ICMP.offset["type"]]
        self.icmp_type[rows] = np.where(icmp, icmp_type.astype(np.int64), -1)
        self.icmp_code[rows] = np.where(icmp, header[:, ICMP.offset["code"]].astype(np.int64), -1)
        self.tcp_seq[rows] = np.where(tcp, _be32(header, _TCP_SEQ), -1)
        self.tcp_ack[rows] = np.where(tcp, _be32(header, _TCP_ACK), -1)
        echo = icmp & _ICMP_ECHO[proto, icmp_type] & (o + _ICMP_END <= end)
        echo_at = _ICMP_ECHO_AT
        self.icmp_id[rows] = np.where(echo, _be16(header, echo_at + ICMP_ECHO.offset["id"]), -1)
        self.icmp_seq[rows] = np.where(echo, _be16(header, echo_at + ICMP_ECHO.offset["seq"]),
                                       -1)
        # the payload: after the TCP/UDP/ICMP header, else the whole IP payload
        start = o + np.where(tcp, data_offset,
                             np.where(udp, UDP.size, np.where(icmp, _ICMP_END, 0)))
        stop = np.where(udp & (o + udp_len <= wire_end), o + udp_len, wire_end)
        has = ~icmp | (o + _ICMP_END <= wire_end)
        self.l4_payload_len[rows] = np.where(has, np.maximum(stop - start, 0), -1)
        self.payload_at[rows] = np.where(has, start, -1)
        self.payload_end[rows] = end
        checked = ok & (ports | icmp)
        if checked.any():  # the L4 checksum's region, summed at the end (see checksums)
            l4_len = wire_end - o
            own = udp & (udp_len >= UDP.size) & (udp_len <= l4_len)  # UDP: its own length
            l4_len = np.where(own, udp_len, l4_len)
            field = np.where(tcp, _be16(header, _TCP_SUM),
                             np.where(udp, _be16(header, _UDP_SUM), _be16(header, _ICMP_SUM)))
            whole = np.ones(len(l4_len), bool) if fragment is None else ~fragment
            sub, (o_, l4_len, p_, field, pseudo, whole) = self.keep(
                checked, rows, o, l4_len, proto, field, pseudo, whole)
            starts = self.start[sub] + o_
            checkable = (whole & (o_ + l4_len <= self.cap_len[sub])
                         & (l4_len >= np.where(p_ == IPPROTO_TCP, _TCP_SUM,
                                               np.where(p_ == IPPROTO_UDP, _UDP_SUM, _ICMP_SUM))
                            + 2))
            self.pending_l4.append((sub, starts, l4_len, p_, field, pseudo, checkable))
        done, _ = self.keep(ok & ~vxlan, rows)
        self.fast[done] = True
        tunnel = ok & vxlan
        if tunnel.any():
            end = np.where(udp_fits, o + udp_len, end)
            clipped = clipped & ~udp_fits
            rows, (o, end, clipped) = self.keep(tunnel, rows, o, end, clipped)
            self.l4_payload_len[rows] = self.payload_at[rows] = -1  # the inner packet's follow
            payload = o + UDP.size
            self.vxlan(rows, _uniform(payload) if isinstance(payload, np.ndarray) else payload,
                       end, clipped)

    def vxlan(self, rows: RowSelection, o: Offset, end: np.ndarray, clipped: np.ndarray) -> None:
        """RFC 7348 header, then the inner Ethernet frame; the outer fields move to outer_*."""
        header = self.block(rows, o, _VXLAN_ETHER)
        ok = (o + _VXLAN_ETHER <= np.minimum(end, HEAD)) & (header[:, 0] & 0x08 != 0)
        rows, (header, o, end, clipped) = self.keep(ok, rows, header, o, end, clipped)
        self.encap[rows] = ENCAP_VXLAN
        self.vni[rows] = _be32(header, _VXLAN_VNI) >> 8
        # the payload (the inner Ethernet frame) starts after the VXLAN header
        self.overhead[rows] = o + VXLAN.size + self.link_wire[rows]
        self.outer_sport[rows], self.outer_dport[rows] = self.sport[rows], self.dport[rows]
        self.outer_ip_id[rows] = self.ip_id[rows]
        for outer_name, name in (("outer_src", "src"), ("outer_dst", "dst")):
            for target, source in zip(self.addr[outer_name], self.addr[name], strict=True):
                target[rows] = source[rows]
        self.ethertype_(rows, o + _VXLAN_ETHER, end, clipped,
                        _be16(header, VXLAN.size + _ETH_TYPE), outer=False)


def port_kinds(vxlan: Iterable[int], other: Iterable[int], source: Iterable[int]) -> np.ndarray:
    """A table by UDP port number: PORT_VXLAN (destination port decoded as VXLAN here),
    PORT_OTHER_TUNNEL (another tunnel's destination port), PORT_SOURCE_TUNNEL (a tunnel
    recognised by either port, such as Teredo), as bits; one gather per layer, not a search."""
    table = np.zeros(65536, np.uint8)
    for ports, bit in ((vxlan, PORT_VXLAN), (other, PORT_OTHER_TUNNEL),
                       (source, PORT_SOURCE_TUNNEL)):
        table[list(ports)] |= bit
    return table


def payload_hashes(raw: RawBatch, f: Frames) -> None:
    """``payload_hash`` of the fast rows: :func:`pktkit.capture.decode.payload_digest` of the first
    PAYLOAD_HASH_BYTES of the payload, one 64-bit word step at a time over all rows. The window
    may reach past HEAD, so it is gathered from the frames themselves."""
    length = np.minimum(f.l4_payload_len, PAYLOAD_HASH_BYTES)
    rows = np.flatnonzero(f.fast & (f.payload_at >= 0) & (f.payload_at + length <= f.payload_end))
    if not len(rows):
        return
    length, at = length[rows], raw.start[rows] + f.payload_at[rows]
    near_end = at + PAYLOAD_HASH_BYTES > len(raw.buf)  # no full window to view: one by one
    for row, a, k in zip(rows[near_end].tolist(), at[near_end].tolist(),
                         length[near_end].tolist(), strict=True):
        f.payload_hash[row] = payload_digest(raw.buf[a:a + k].tobytes())
    keep = ~near_end & (length > 0)
    f.payload_hash[rows[length == 0]] = _EMPTY_DIGEST  # (pure ACKs: no bytes to gather)
    rows, length, at = rows[keep], length[keep], at[keep]
    window = sliding_window_view(raw.buf, PAYLOAD_HASH_BYTES)[at]
    short = length < PAYLOAD_HASH_BYTES
    if short.any():  # zero the bytes past a short payload
        window[short] *= (np.arange(PAYLOAD_HASH_BYTES) < length[short, None])
    words = window.view("<u8")
    h = length.astype(np.uint64)
    for j in range(PAYLOAD_HASH_BYTES // 8):
        h = (h ^ words[:, j]) * np.uint64(HASH_MULTIPLIER)
        h ^= h >> np.uint64(29)
    f.payload_hash[rows] = (h >> np.uint64(32)).astype(np.int64)

