"""Checksums: IPv4 header, TCP, UDP (IPv4 and IPv6), ICMP and ICMPv6 verified, for a whole batch
of frames at once (numpy, the fast path) or for one header (the reference decoder).

Statuses, per checked header (``STATUS_NAMES``):

==========  ==================================================================================
ok          the checksum verifies
bad         it does not (and is not ``offload``)
offload     IPv4 header checksum 0: what Windows (NDIS IP checksum offload) leaves in an
            outgoing frame for the NIC; Linux always fills it in software.
            TCP/UDP/ICMPv6 field = the folded, *uncomplemented* pseudo-header sum: what Linux
            leaves in an outgoing CHECKSUM_PARTIAL packet for the NIC to finish (so a host
            capture sees it before the NIC does; loopback frames carry it both ways), and what
            GRO leaves in a received super-frame (``tcp4_gro_complete``). Such a frame is not
            corrupt. Told apart by value alone, not by direction (a random bad checksum matches
            with probability 1/65535). The pseudo-header sum includes the L4 length, as
            ``__tcp_v4_send_check`` writes it; the length-0 form some TSO drivers write later
            (after the capture point) never occurs in the corpus and is not accepted
unchecked   cannot be checked: the capture cut the covered bytes (snaplen), or the packet is an
            IP fragment (L4 checksums cover the whole datagram)
zero        UDP checksum 0: the sender computed none (RFC 768; VXLAN/Geneve on Linux by
            default). Over IPv6, RFC 8200 forbids it but RFC 6935/6936 allow it for tunnels;
            tshark calls it "not present" (IPv4) and "illegal" (IPv6)
==========  ==================================================================================

-1 (``NONE``): nothing to check (IPv6 has no header checksum; other upper protocols).

The per-packet ``checksum`` column is the worst of a frame's statuses, inner and outer headers
alike (:func:`combine`): bad > offload > unchecked > ok, ``zero`` counting as ok (nothing was
promised); NA when the frame has no header with a checksum.

Arithmetic. The Internet checksum is a one's complement sum of 16-bit words, i.e. the sum
modulo 65535 (65536 ≡ 1): a region verifies when its words, pseudo-header included, sum to
0 mod 65535. So the sum of a region is ``int.from_bytes(region, "big") % 65535`` (scalar), and
for a batch (:func:`region_sums`) a sum of the buffer's 32-bit words (2**32 ≡ 1 too, so a
word counts as its two halves), per region; a region that starts at an odd offset has its bytes
in the other halves of the words, which in this arithmetic is a multiplication by 256 (a byte
swap). Headers the fast path has already gathered (IP headers, addresses) are summed from
those blocks (:func:`block_sums`).
"""

from __future__ import annotations

import sys
import threading

import numpy as np

OK, BAD, OFFLOAD, UNCHECKED, ZERO = 0, 1, 2, 3, 4
NONE = -1
STATUS_NAMES = ("ok", "bad", "offload", "unchecked", "zero")
COLUMN_VALUES = ("ok", "bad", "offload", "unchecked")  # the table column's categories
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
CHECKSUM_FIELD = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMP: 2, IPPROTO_ICMPV6: 2}
CHUNK_BYTES = 1 << 22  # region sums widen this much of a buffer at a time (8 MB of uint64)
_M = 65535
_LITTLE_ENDIAN = sys.byteorder == "little"

# combine(): worst first; zero counts as ok
_RANK = np.array([0, 3, 2, 1, 0], np.int8)  # by status code: ok, bad, offload, unchecked, zero
_BY_RANK = np.array([OK, UNCHECKED, OFFLOAD, BAD], np.int8)


# -- vectorized ---------------------------------------------------------------------------------


_scratch = threading.local()  # a uint64 array reused batch after batch (no fresh pages)


def _widened(words: np.ndarray) -> np.ndarray:
    """``words.astype(uint64)`` into a buffer kept for the next batch: allocating a fresh
    array of a batch's size costs a page fault per 4 KiB, more than the conversion. (uint64,
    not float64: the same exact sums, and ``np.add.reduceat`` over integers costs ~40 % less
    than over floats.)"""
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or len(buffer) < len(words):
        buffer = _scratch.buffer = np.empty(max(len(words), CHUNK_BYTES // 4 + 1024), np.uint64)
    out = buffer[:len(words)]
    np.copyto(out, words, casting="unsafe")
    return out


def nested_region_sums(buf: np.ndarray, at: np.ndarray, length: np.ndarray,
                       inside: np.ndarray) -> np.ndarray:
    """:func:`region_sums`, where ``inside[i]`` names another region lying within region i
    (-1: none; a named region holds none itself): region i is then summed as its bytes before
    and after that one, plus that one's sum, so the shared bytes are read once (VXLAN: the
    outer UDP checksum covers the inner packet, whose own L4 checksum is summed anyway). A
    piece at an odd offset in region i counts byte-swapped (× 256)."""
    nest = np.flatnonzero(inside >= 0)
    if not len(nest):
        return region_sums(buf, at, length)
    inner = inside[nest]
    outer_at, outer_end = at[nest], at[nest] + length[nest]
    after = at[inner] + length[inner]
    plain = np.ones(len(at), bool)
    plain[nest] = False
    sums = region_sums(buf, np.concatenate([at[plain], outer_at, after]),
                       np.concatenate([length[plain], at[inner] - outer_at, outer_end - after]))
    out = np.zeros(len(at), np.int64)
    k, m = int(plain.sum()), len(nest)
    out[plain] = sums[:k]
    before, rest = sums[k:k + m], sums[k + m:]
    middle = out[inner]
    out[nest] = (before + _at_odd(middle, at[inner] - outer_at)
                 + _at_odd(rest, after - outer_at)) % _M
    return out


def _at_odd(sums: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Sums of pieces that start ``offset`` bytes into their region: byte-swapped when odd."""
    return np.where(offset & 1, (sums << 8) % _M, sums)


def region_sums(buf: np.ndarray, at: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Σ of the big-endian 16-bit words of ``buf[at:at + length]`` (an odd last byte padded
    with zero), mod 65535, per row; words aligned to each row's own start.

    One pass over the bytes the regions cover, CHUNK_BYTES at a time (bounded memory), read as
    32-bit words (each ≡ the sum of its two 16-bit halves mod 65535) widened to uint64 (exact:
    a chunk's sum stays far below 2**64), then ``np.add.reduceat`` over the words wholly
    inside each region; a region's first and last word are masked to its bytes. The words are
    read in the host's order, so the sum is that of the little-endian 16-bit words aligned to
    the buffer (on a little-endian host), which is the big-endian sum of a region starting at
    an odd offset, and 256 × it (a byte swap, mod 65535) of one starting at an even offset."""
    at = np.asarray(at, np.int64)
    length = np.asarray(length, np.int64)
    out = np.zeros(len(at), np.int64)
    rows = np.flatnonzero(length > 0)
    if not len(rows):
        return out
    rows = rows[np.argsort(at[rows], kind="stable")]
    a, b = at[rows], at[rows] + length[rows]
    first = 0
    while first < len(rows):  # the regions starting within one chunk of the first one
        last = max(int(np.searchsorted(a, (int(a[first]) & ~3) + CHUNK_BYTES)), first + 1)
        out[rows[first:last]] = _chunk_sums(buf, a[first:last], b[first:last])
        first = last
    return out


def _chunk_sums(buf: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`region_sums` of regions [a, b) within one span of the buffer."""
    lo = int(a.min()) & ~3
    hi = (int(b.max()) + 3) & ~3
    if hi > len(buf):  # (the buffer ends inside the last word: pad a copy of the span)
        span = np.zeros(hi - lo, np.uint8)
        span[:len(buf) - lo] = buf[lo:]
    else:
        span = buf[lo:hi]
    words = span.view(np.uint32)
    first, last = (a - lo) >> 2, (b - 1 - lo) >> 2  # the words holding the first/last byte
    index = np.empty(2 * len(a), np.int64)  # whole words strictly between them
    index[0::2] = np.minimum(first + 1, len(words) - 1)
    index[1::2] = np.minimum(last, len(words) - 1)
    middle = np.add.reduceat(_widened(words), index)[0::2].astype(np.int64)
    middle[last <= first + 1] = 0
    # the first and last words, masked to the region's bytes (one word: both masks)
    head_mask = (0xFFFFFFFF << ((a - lo) & 3) * 8) & 0xFFFFFFFF
    tail_mask = (1 << (((b - 1 - lo) & 3) + 1) * 8) - 1
    one = last == first
    first_word = words[first].astype(np.int64) & np.where(one, head_mask & tail_mask, head_mask)
    last_word = np.where(one, 0, words[last].astype(np.int64) & tail_mask)
    total = (middle + first_word + last_word) % _M
    if _LITTLE_ENDIAN:  # (see above: the byte swap of a region at an even offset)
        return np.where(a & 1, total, (total << 8) % _M)
    return np.where(a & 1, (total << 8) % _M, total)


def block_sums(block: np.ndarray) -> np.ndarray:
    """Σ of the big-endian 16-bit words of each row of a (rows, even width) uint8 block (IP
    headers, addresses: already gathered), mod 65535. (Column by column: a sum along rows of
    ten words costs more per row than ten whole-column adds.)"""
    words = np.ascontiguousarray(block).view(">u2")
    total = words[:, 0].astype(np.int64)
    for k in range(1, words.shape[1]):
        total += words[:, k]
    return total % _M


def ipv4_statuses(total: np.ndarray, field: np.ndarray) -> np.ndarray:
    """IPv4 header statuses from each header's word sum (``block_sums`` of the whole header)
    and its checksum field."""
    return np.where(total == 0, OK, np.where(field == 0, OFFLOAD, BAD)).astype(np.int8)


def l4_statuses(
    buf: np.ndarray, at: np.ndarray, l4_len: np.ndarray, proto: np.ndarray, field: np.ndarray,
    pseudo: np.ndarray, checkable: np.ndarray, inside: np.ndarray | None = None,
) -> np.ndarray:
    """TCP/UDP/ICMP/ICMPv6 statuses of the ``l4_len`` bytes at ``at`` in ``buf`` (``field``:
    their checksum field, ``pseudo``: the word sum of the IP addresses; ``checkable``: the
    bytes were captured and the packet is no fragment), as :func:`l4_status` gives them.
    ``inside``: see :func:`nested_region_sums` (a region whose L4 region lies within)."""
    status = np.full(len(at), UNCHECKED, np.int8)
    zero = checkable & (proto == IPPROTO_UDP) & (field == 0)
    status[zero] = ZERO
    summed = checkable & ~zero
    rows = np.flatnonzero(summed)
    if not len(rows):
        return status
    if inside is None:
        data = region_sums(buf, at[rows], l4_len[rows])
    else:  # (nested regions that are summed too, renumbered among the summed rows)
        renumber = np.cumsum(summed) - 1
        nested = inside[rows]
        nested = np.where((nested >= 0) & summed[np.maximum(nested, 0)],
                          renumber[np.maximum(nested, 0)], -1)
        data = nested_region_sums(buf, at[rows], l4_len[rows], nested)
    p = proto[rows].astype(np.int64)
    header = np.where(p == IPPROTO_ICMP, 0, (pseudo[rows] + p + l4_len[rows]) % _M)
    ok = (data + header) % _M == 0
    offload = (p != IPPROTO_ICMP) & (field[rows] % _M == header)
    status[rows] = np.select([ok, offload], [OK, OFFLOAD], BAD)
    return status


def combine(*statuses: np.ndarray) -> np.ndarray:
    """The table's per-row ``checksum`` code: the worst of several status arrays (NONE
    ignored; zero counts as ok); -1 where every one is NONE."""
    rank = np.full(len(statuses[0]), -1, np.int8)
    for status in statuses:
        s = np.asarray(status)
        rank = np.maximum(rank, np.where(s >= 0, _RANK[np.maximum(s, 0)], -1))
    return np.where(rank >= 0, _BY_RANK[np.maximum(rank, 0)], NONE).astype(np.int8)


# -- one frame (reference decoder) ---------------------------------------------------------------


def region_sum(data: bytes, start: int, length: int) -> int:
    """Σ of big-endian 16-bit words of ``data[start:start + length]`` mod 65535 (scalar)."""
    region = data[start:start + length]
    if length & 1:
        region += b"\x00"
    return int.from_bytes(region, "big") % _M


def ipv4_header_status(data: bytes, ip_off: int, ihl: int) -> int:
    """The status of the IPv4 header of ``ihl`` bytes at ``ip_off`` in the captured ``data``."""
    if ihl < 20 or ip_off + ihl > len(data):
        return UNCHECKED
    if region_sum(data, ip_off, ihl) == 0:
        return OK
    return OFFLOAD if data[ip_off + 10:ip_off + 12] == b"\x00\x00" else BAD


def l4_status(
    data: bytes, ip_off: int, ip_version: int, l4_off: int, proto: int, l4_len: int,
    fragment: bool,
) -> int:
    """The status of the TCP/UDP/ICMP/ICMPv6 checksum of the ``l4_len`` bytes (by the length
    fields) at ``l4_off`` after the IP header at ``ip_off``; NONE for other protocols."""
    field = CHECKSUM_FIELD.get(proto)
    if field is None:
        return NONE
    if fragment or l4_len < field + 2 or l4_off + l4_len > len(data):
        return UNCHECKED
    total = region_sum(data, l4_off, l4_len)
    checksum = int.from_bytes(data[l4_off + field:l4_off + field + 2], "big")
    if proto == IPPROTO_UDP and checksum == 0:
        return ZERO
    if proto == IPPROTO_ICMP:
        return OK if total == 0 else BAD
    addrs = region_sum(data, ip_off + 12, 8) if ip_version == 4 else region_sum(
        data, ip_off + 8, 32)
    pseudo = (addrs + proto + l4_len) % _M
    if (total + pseudo) % _M == 0:
        return OK
    if checksum % _M == pseudo:
        return OFFLOAD
    return BAD


def combine_one(*statuses: int) -> int:
    """:func:`combine` for one frame."""
    ranks = [int(_RANK[s]) for s in statuses if s >= 0]
    return int(_BY_RANK[max(ranks)]) if ranks else NONE
