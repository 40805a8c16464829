"""Capture-file formats as numbers: magics, pcapng block and option codes, link types.

One home for what the readers (:mod:`~pktkit.capture.read`, :mod:`~pktkit.capture.batches`),
the decoders and the writers (:mod:`~pktkit.capture.write`) must agree on. Values are those of
the pcap and pcapng specifications (IETF draft-ietf-opsawg-pcap / -pcapng) and of tcpdump's
``LINKTYPE_*`` list.
"""

from __future__ import annotations

from typing import Literal

CaptureFormat = Literal["pcap", "pcapng"]

# -- classic pcap ------------------------------------------------------------------------------

PCAP_HEADER_BYTES = 24
PCAP_RECORD_HEADER_BYTES = 16  # seconds, fraction, captured length, original length
# the four magic numbers, as the file's first four bytes → (byte order, ticks per second)
PCAP_MAGICS: dict[bytes, tuple[str, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),  # µs, little-endian file
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),  # µs, big-endian file
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),  # ns, little-endian file
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),  # ns, big-endian file
}
PCAP_MAGIC_US = 0xA1B2C3D4  # written in the writer's byte order
PCAP_MAGIC_NS = 0xA1B23C4D

# -- pcapng ------------------------------------------------------------------------------------

PCAPNG_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"  # the section header block type, palindromic
BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001  # interface description
BLOCK_OPB = 0x00000002  # (obsolete) packet block
BLOCK_SPB = 0x00000003  # simple packet block: no interface, no timestamp
BLOCK_EPB = 0x00000006  # enhanced packet block
EPB_HEADER_BYTES = 28  # type, length, interface, ts high, ts low, captured, original
# the section header's byte-order magic as stored → the section's byte order
BYTE_ORDER_MAGICS: dict[bytes, str] = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
BYTE_ORDER_MAGIC = 0x1A2B3C4D
# option codes
OPT_END = 0
SHB_USERAPPL = 4
IF_NAME = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14
EPB_FLAGS = 2

GZIP_MAGIC = b"\x1f\x8b"

# A record or block longer than this is a corrupt length field, not a packet: stop there rather
# than try to allocate it. (GSO/GRO frames reach 64 KiB, BIG TCP a few hundred KiB.)
MAX_RECORD_BYTES = 64 * 1024 * 1024
SNAPLEN = 262144  # tcpdump's default snapshot length, what the writers declare

# -- link types --------------------------------------------------------------------------------

LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_ALIASES = (12, 14)  # DLT_RAW values some platforms wrote into pcap files
LINKTYPE_RAW = 101  # raw IPv4/IPv6, what tcpdump records on an ipip device such as tunl0
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# Linux ARPHRD_* device types, as SLL/SLL2 headers carry them
ARPHRD_ETHER = 1
ARPHRD_TUNNEL = 768  # ipip (tunl0)
ARPHRD_TUNNEL6 = 769
ARPHRD_NETLINK = 824  # the SLL protocol field is a netlink family, not an ethertype

# SLL/SLL2 packet types (the kernel's PACKET_*) → direction as seen by the capturing host
SLL_PKTTYPES = {"in": 0, "broadcast": 1, "multicast": 2, "otherhost": 3, "out": 4}
PKTTYPE_DIRECTION = {0: "in", 1: "in", 2: "in", 3: "other", 4: "out"}
# ... and the packet type a writer records for a direction ("other": a bridge port received a
# frame addressed to another host, as every frame a pod sends through its bridge)
DIRECTION_PKTTYPE = {"in": 0, "other": 3, "out": 4}
DIRECTIONS = ("in", "out", "other")  # category order of the packet table's ``direction``

# capture-set.json: which node and interfaces each capture file of a folder holds
CAPTURE_SET_FILE = "capture-set.json"
# Metadata beside the captures (``pktkit generate`` writes them; ``pktkit analyze`` reads them
# as if given with --k8s / --docker): kubectl get ... -o json, docker inspect output.
KUBECTL_FILE = "kubectl.json"
DOCKER_FILE = "docker.json"
