"""dpkt layers for the tunnels dpkt lacks, registered with dpkt, and a frame's dpkt object.

dpkt 1.9.8 has GRE, PPP, MPLS-over-Ethernet and IP-in-IP, but no VXLAN, VXLAN-GPE, Geneve,
NVGRE, ERSPAN, NSH, Teredo, WCCP or GRE-in-UDP; its ``UDP`` never looks at its payload and its
``GRE`` hands every payload to ``Ethernet``'s table by protocol type, so ERSPAN type I/II (told
apart by the GRE S bit), Cisco MetaData and PPP without address/control bytes come out as bytes.
This module declares the missing headers the dpkt way (``__hdr__`` once, ``__bit_fields__`` for
bit fields, payloads decoded eagerly, a payload that does not unpack left as bytes) and plugs
them into dpkt's dispatch. It imports dpkt and nothing of pktkit: a dpkt user needs only this.

Registration is process-wide, because dpkt's dispatch tables are: importing this module calls
:func:`install`, which puts :class:`UDP` (``dpkt.udp.UDP`` plus payload dispatch by port) and
:class:`GRE` (``dpkt.gre.GRE`` plus the payloads above) into ``dpkt.ip.IP``'s protocol table
(``IP6`` shares it), so ``dpkt.ethernet.Ethernet(buf)`` then decodes VXLAN and the others
wherever dpkt decodes UDP or GRE; :func:`uninstall` puts dpkt's own classes back. The subclasses
keep dpkt's class names, so ``ip.udp``/``ip.gre`` and ``isinstance(x, dpkt.udp.UDP)`` still work.

UDP tunnels are chosen by **destination** port, as pktkit's own decoder does (:data:`UDP_PORTS`:
VXLAN 4789/8472, VXLAN-GPE 4790, Geneve 6081, GRE-in-UDP 4754, MPLS-in-UDP 6635); Teredo
(3544), whose server answers from its port, by either port. ``decode(..., udp_ports=...)`` uses
another map for one call (a ``ContextVar``: concurrent decoders do not see each other's).

pktkit's reference decoder (:mod:`pktkit.capture.decode`) parses each header with these classes
one layer at a time: :func:`shallow` gives a layer whose payload is left as bytes, and
``payload_class()`` says what the payload is, so the dispatch is declared here once.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from functools import cache
from typing import Any, ClassVar, Protocol

import dpkt
from dpkt import ethernet as _ethernet
from dpkt import gre as _gre
from dpkt import ip as _ip
from dpkt import ip6 as _ip6
from dpkt import loopback as _loopback
from dpkt import sll as _sll
from dpkt import sll2 as _sll2
from dpkt import udp as _udp

__all__ = [
    "CMD",
    "ERSPAN2",
    "ERSPAN3",
    "GRE",
    "LINKTYPES",
    "MPLS",
    "NSH",
    "NVGRE",
    "PPP",
    "UDP",
    "UDP_PORTS",
    "VXLAN",
    "VXLANGPE",
    "WCCP",
    "EthernetCMD",
    "Geneve",
    "GeneveOption",
    "Loopback",
    "Teredo",
    "decode",
    "innermost",
    "install",
    "layers",
    "register_udp_port",
    "shallow",
    "tunnel_id",
    "uninstall",
]

# GRE protocol types (ethertypes) beyond dpkt.ethernet's ETH_TYPE_*
ETH_TYPE_TEB = 0x6558  # transparent Ethernet bridging: NVGRE, Geneve's Ethernet payload
ETH_TYPE_ERSPAN2 = 0x88BE  # ERSPAN type I (no GRE sequence number) and type II
ETH_TYPE_ERSPAN3 = 0x22EB
ETH_TYPE_CMD = 0x8909  # Cisco MetaData (SGT)
ETH_TYPE_PPP = 0x880B  # PPP in GRE (PPTP: enhanced GRE version 1)
ETH_TYPE_MPLS = 0x8847
ETH_TYPE_MPLS_MCAST = 0x8848
ETH_TYPE_WCCP = 0x883E  # WCCP redirect over GRE
ETH_TYPE_NSH = 0x894F

# VXLAN-GPE and NSH "next protocol" values (RFC 9296 / RFC 8300 registries)
NEXT_IPV4, NEXT_IPV6, NEXT_ETHERNET, NEXT_NSH, NEXT_MPLS = 1, 2, 3, 4, 5
# PPP protocol numbers carrying packets (RFC 1332, 5072, 3032)
PPP_IPV4, PPP_IPV6, PPP_MPLS = 0x0021, 0x0057, 0x0281

GRE_KP, GRE_SP = _gre.GRE_KP, _gre.GRE_SP


class _Frame(Protocol):
    """What :func:`decode` needs of a frame (``pktkit.frames`` yields such frames)."""

    linktype: int
    data: bytes


def _ethertype_class(etype: int) -> Any:
    """dpkt's own class for an ethertype (IP, IP6, ARP, ...), or None."""
    return _ethernet.Ethernet._typesw.get(etype)


MAX_NESTING = 32  # tunnel layers decoded inside one another; deeper payloads stay bytes
_nesting: ContextVar[int] = ContextVar("pktkit_dpkt_nesting", default=0)


def _decode_nested(owner: Any, cls: Any, buf: bytes) -> None:
    """The dpkt convention: decode eagerly, name the layer after its class
    (``owner.ethernet``), and keep the bytes when the payload does not unpack. At most
    MAX_NESTING tunnels deep: dpkt's recursion has no bound of its own, and a crafted frame of
    nested GRE headers would end in RecursionError, which no dpkt caller expects."""
    depth = _nesting.get()
    if cls is None or depth >= MAX_NESTING:
        owner.data = buf
        return
    token = _nesting.set(depth + 1)
    try:
        owner.data = cls(buf)
    except (KeyError, dpkt.UnpackError):
        owner.data = buf
        return
    finally:
        _nesting.reset(token)
    setattr(owner, owner.data.__class__.__name__.lower(), owner.data)


class _Layer:
    """What this module's layers share: the eager payload decoding dpkt's classes do, which
    :func:`shallow` turns off for pktkit's layer-by-layer walk."""

    eager: ClassVar[bool] = True

    def payload_class(self) -> Any:
        """The class the payload decodes as (None: not decoded)."""
        return None

    def _decode_payload(self, buf: bytes) -> None:
        _decode_nested(self, self.payload_class() if self.eager else None, buf)

    def unpack(self, buf: bytes) -> None:
        """The ``__hdr__`` fields, then the payload (a fixed-size header's default)."""
        dpkt.Packet.unpack(self, buf)  # type: ignore[arg-type]
        self._decode_payload(self.data)  # type: ignore[attr-defined]


@cache
def shallow(cls: type) -> Any:
    """One of this module's layers, unpacking its header only: ``shallow(VXLAN)(buf)`` leaves
    the payload as bytes in ``data`` (``payload_class()`` says what it would decode as).
    Raises as ``cls(buf)`` does."""
    return type(cls.__name__, (cls,), {"eager": False, "__module__": cls.__module__})


# -- UDP tunnels -------------------------------------------------------------------------------


class VXLAN(_Layer, dpkt.Packet):
    """VXLAN (RFC 7348): flags (I = 0x08), 24 reserved bits, VNI (24), 8 reserved bits, then an
    Ethernet frame. ``i`` must be set for the VNI to be valid (receivers drop the rest); the
    header is decoded either way, the check is the caller's (pktkit: ``bad-tunnel-header``)."""

    __hdr__ = (
        ("flags", "B", 0x08),
        ("reserved1", "3s", b"\x00\x00\x00"),
        ("_vni_reserved2", "I", 0),
    )
    __bit_fields__: ClassVar[dict] = {"_vni_reserved2": (("vni", 24), ("reserved2", 8))}

    @property
    def i(self) -> int:
        """The I flag: the VNI is valid."""
        return (self.flags >> 3) & 1

    def payload_class(self) -> Any:
        return _ethernet.Ethernet


class VXLANGPE(_Layer, dpkt.Packet):
    """VXLAN-GPE (RFC 9296 draft layout): flags R R Ver(2) I P B O, 16 reserved bits, next
    protocol (1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH, 5 MPLS), VNI (24), 8 reserved bits. With the
    P bit clear the payload is Ethernet, as in plain VXLAN."""

    __hdr__ = (
        ("_flags", "B", 0x0C),
        ("reserved1", "H", 0),
        ("next_proto", "B", NEXT_ETHERNET),
        ("_vni_reserved2", "I", 0),
    )
    __bit_fields__: ClassVar[dict] = {
        "_flags": (("_r", 2), ("ver", 2), ("i", 1), ("p", 1), ("b", 1), ("o", 1)),
        "_vni_reserved2": (("vni", 24), ("reserved2", 8)),
    }

    @property
    def flags(self) -> int:
        return self._flags

    @property
    def next_protocol(self) -> int:
        """The payload's protocol: next_proto, or Ethernet when the P bit is clear."""
        return self.next_proto if self.p else NEXT_ETHERNET

    def payload_class(self) -> Any:
        return _NEXT_PROTOCOL.get(self.next_protocol)


class GeneveOption(dpkt.Packet):
    """One Geneve TLV option: class (16), type (8, high bit = critical), 3 reserved bits,
    length (5 bits, in 4-byte words, not counting this 4-byte header), then the data."""

    __hdr__ = (
        ("cls", "H", 0),
        ("type", "B", 0),
        ("_rsvd_len", "B", 0),
    )
    __bit_fields__: ClassVar[dict] = {"_rsvd_len": (("rsvd", 3), ("len", 5))}

    @property
    def critical(self) -> int:
        """The receiver must drop the packet if it does not understand this option."""
        return self.type >> 7

    def unpack(self, buf: bytes) -> None:
        dpkt.Packet.unpack(self, buf)
        size = self.len * 4
        if len(self.data) < size:
            raise dpkt.NeedData(f"Geneve option needs {size} data bytes, has {len(self.data)}")
        self.data = self.data[:size]


class Geneve(_Layer, dpkt.Packet):
    """Geneve (RFC 8926): Ver(2) OptLen(6, 4-byte words) O C Rsvd(6) Protocol(16) VNI(24)
    Rsvd(8), then the options (kept, as :class:`GeneveOption` objects in ``opts``) and the
    payload by protocol type: 0x6558 Ethernet, else what dpkt's Ethernet would decode for that
    ethertype (GCP sends 0x0800, IPv4 without inner Ethernet)."""

    __hdr__ = (
        ("_ver_optlen", "B", 0),
        ("_o_c_rsvd1", "B", 0),
        ("proto", "H", ETH_TYPE_TEB),
        ("_vni_rsvd2", "I", 0),
    )
    __bit_fields__: ClassVar[dict] = {
        "_ver_optlen": (("ver", 2), ("opt_len", 6)),
        "_o_c_rsvd1": (("o", 1), ("c", 1), ("rsvd1", 6)),
        "_vni_rsvd2": (("vni", 24), ("rsvd2", 8)),
    }
    opts: tuple[GeneveOption, ...] | list[GeneveOption] = ()

    def payload_class(self) -> Any:
        return _gre_payload_class(self.proto, 0)

    def unpack(self, buf: bytes) -> None:
        dpkt.Packet.unpack(self, buf)
        size = self.opt_len * 4
        if len(self.data) < size:
            raise dpkt.NeedData(f"Geneve options need {size} bytes, have {len(self.data)}")
        options, rest = self.data[:size], self.data[size:]
        opts = []
        while options:
            opt = GeneveOption(options)
            opts.append(opt)
            options = options[opt.__hdr_len__ + len(opt.data):]
        self.opts = opts
        self._decode_payload(rest)

    def __len__(self) -> int:
        return self.__hdr_len__ + sum(len(o) for o in self.opts) + len(self.data)

    def __bytes__(self) -> bytes:
        return self.pack_hdr() + b"".join(bytes(o) for o in self.opts) + bytes(self.data)


class Teredo(_Layer, dpkt.Packet):
    """Teredo (RFC 4380, UDP 3544): optional authentication (0x0001) and origin indication
    (0x0000) headers, then an IPv6 packet. Both indicators are kept as raw bytes (``auth``,
    ``origin``); ``origin_port``/``origin_addr`` undo the origin's obfuscation. A payload that
    is not an IPv6 packet (version 6, 40 bytes, a payload length that fits) does not unpack
    (UnpackError): port 3544 is Teredo's by convention only, so the UDP payload stays bytes."""

    __hdr__ = ()
    match_source_port: ClassVar[bool] = True  # the server answers from 3544
    auth = b""
    origin = b""

    def payload_class(self) -> Any:
        return _ip6.IP6

    def unpack(self, buf: bytes) -> None:
        pos = 0
        if buf[:2] == b"\x00\x01":  # authentication: id_len, au_len, id, auth, nonce(8), conf
            end = 4 + buf[2] + buf[3] + 9 if len(buf) >= 4 else 4
            if len(buf) < end:
                raise dpkt.NeedData("Teredo authentication header")
            self.auth, pos = buf[:end], end
        if buf[pos:pos + 2] == b"\x00\x00":  # origin indication: port(16) address(32)
            if len(buf) < pos + 8:
                raise dpkt.NeedData("Teredo origin indication")
            self.origin, pos = buf[pos:pos + 8], pos + 8
        if len(buf) < pos + 40 or buf[pos] >> 4 != 6 or (
                40 + int.from_bytes(buf[pos + 4:pos + 6], "big") > len(buf) - pos):
            raise dpkt.UnpackError("Teredo payload is not an IPv6 packet")
        self.data = b""
        self._decode_payload(buf[pos:])

    @property
    def origin_port(self) -> int | None:
        return struct.unpack(">H", self.origin[2:4])[0] ^ 0xFFFF if self.origin else None

    @property
    def origin_addr(self) -> bytes | None:
        return bytes(b ^ 0xFF for b in self.origin[4:8]) if self.origin else None

    def __len__(self) -> int:
        return len(self.auth) + len(self.origin) + len(self.data)

    def __bytes__(self) -> bytes:
        return self.auth + self.origin + bytes(self.data)


# -- below GRE, VXLAN-GPE, UDP -----------------------------------------------------------------


class NSH(_Layer, dpkt.Packet):
    """Network Service Header (RFC 8300): Ver(2) O U TTL(6) Length(6, 4-byte words, whole
    header) U(4) MD type(4) next protocol (1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH, 5 MPLS), then the
    service path header SPI(24) SI(8), then the context (MD type 1: 16 bytes; MD type 2:
    variable TLVs), kept raw in ``context``."""

    __hdr__ = (
        ("_ver_o_u_ttl_len", "H", 0x0FC6),  # version 0, TTL 63, length 6 (MD type 1)
        ("_u_mdtype", "B", 1),
        ("next_proto", "B", NEXT_IPV4),
        ("_spi_si", "I", 255),
    )
    __bit_fields__: ClassVar[dict] = {
        "_ver_o_u_ttl_len": (("ver", 2), ("o", 1), ("_u", 1), ("ttl", 6), ("length", 6)),
        "_u_mdtype": (("_u", 4), ("md_type", 4)),
        "_spi_si": (("spi", 24), ("si", 8)),
    }
    context = b""

    def payload_class(self) -> Any:
        return _NEXT_PROTOCOL.get(self.next_proto)

    def unpack(self, buf: bytes) -> None:
        dpkt.Packet.unpack(self, buf)
        size = self.length * 4 - self.__hdr_len__
        if size < 0:
            raise dpkt.UnpackError(f"NSH length {self.length} words is below its 8-byte header")
        if len(self.data) < size:
            raise dpkt.NeedData("NSH context headers")
        self.context = self.data[:size]
        self._decode_payload(self.data[size:])

    def __len__(self) -> int:
        return self.__hdr_len__ + len(self.context) + len(self.data)

    def __bytes__(self) -> bytes:
        return self.pack_hdr() + self.context + bytes(self.data)


class MPLS(_Layer, dpkt.Packet):
    """An MPLS label stack (RFC 3032) up to the bottom-of-stack bit, then the payload by its
    first nibble, as tshark does: 4 IPv4, 6 IPv6, 0 a pseudowire control word (4 bytes) then
    Ethernet. Used in GRE, MPLS-in-UDP (RFC 7510, port 6635), VXLAN-GPE, NSH and PPP (and by
    pktkit for Ethernet frames of type 0x8847/0x8848; dpkt's own Ethernet parses those itself,
    ``eth.mpls_labels``, recognising IPv4 only without options)."""

    __hdr__ = ()
    labels: list[_ethernet.MPLSlabel] | tuple = ()
    control_word = b""
    nibble = -1  # the payload's first nibble (-1: no payload byte)

    def payload_class(self) -> Any:
        return {4: _ip.IP, 6: _ip6.IP6}.get(self.nibble, _ethernet.Ethernet
                                             if self.control_word else None)

    def unpack(self, buf: bytes) -> None:
        labels = []
        while True:
            if len(buf) < 4:
                raise dpkt.NeedData("MPLS label stack")
            label = _ethernet.MPLSlabel(buf[:4])
            labels.append(label)
            buf = buf[4:]
            if label.s:
                break
        self.labels = labels
        self.data = b""
        self.nibble = buf[0] >> 4 if buf else -1
        if self.nibble == 0 and len(buf) >= 4:
            self.control_word, buf = buf[:4], buf[4:]
        self._decode_payload(buf)

    def __len__(self) -> int:
        return 4 * len(self.labels) + len(self.control_word) + len(self.data)

    def __bytes__(self) -> bytes:
        return (b"".join(label.pack_hdr() for label in self.labels) + self.control_word
                + bytes(self.data))


class PPP(_Layer, dpkt.Packet):
    """PPP as GRE carries it (RFC 1661/2637): the address/control bytes 0xFF 0x03 are optional
    (ACFC) and the protocol field is one byte when odd (PFC). dpkt's own ``ppp.PPP`` assumes
    the address/control bytes, so a PPTP link that negotiated ACFC decodes wrongly there."""

    __hdr__ = ()
    acfc = False  # the address/control bytes were omitted
    p = 0
    _hdr = b"\xff\x03\x00\x21"

    def payload_class(self) -> Any:
        return _PPP_PROTOCOLS.get(self.p)

    def unpack(self, buf: bytes) -> None:
        pos = 0
        if buf[:2] == b"\xff\x03":
            pos = 2
        else:
            self.acfc = True
        if len(buf) < pos + 1:
            raise dpkt.NeedData("PPP protocol field")
        if buf[pos] & 1:  # PFC: a one-byte protocol field
            self.p, pos = buf[pos], pos + 1
        else:
            if len(buf) < pos + 2:
                raise dpkt.NeedData("PPP protocol field")
            self.p, pos = (buf[pos] << 8) | buf[pos + 1], pos + 2
        self._hdr = buf[:pos]
        self.data = b""
        self._decode_payload(buf[pos:])

    def __len__(self) -> int:
        return len(self._hdr) + len(self.data)

    def __bytes__(self) -> bytes:
        return self._hdr + bytes(self.data)


class CMD(_Layer, dpkt.Packet):
    """Cisco MetaData as GRE carries it (protocol 0x8909): the payload's ethertype comes
    first, then version, length, option type and the security group tag (8 bytes)."""

    __hdr__ = (
        ("type", "H", _ethernet.ETH_TYPE_IP),
        ("ver", "B", 1),
        ("len", "B", 1),
        ("opt_type", "H", 1),
        ("sgt", "H", 0),
    )

    def payload_class(self) -> Any:
        return _gre_payload_class(self.type, 0)


class EthernetCMD(_Layer, dpkt.Packet):
    """Cisco MetaData as an Ethernet frame carries it (ethertype 0x8909): version, length,
    option type, the security group tag, then the payload's ethertype (8 bytes; the GRE form,
    :class:`CMD`, puts the ethertype first). Registered with dpkt's Ethernet by
    :func:`install`."""

    __hdr__ = (
        ("ver", "B", 1),
        ("len", "B", 1),
        ("opt_type", "H", 1),
        ("sgt", "H", 0),
        ("type", "H", _ethernet.ETH_TYPE_IP),
    )

    def payload_class(self) -> Any:
        return _ethertype_class(self.type)


class WCCP(_Layer, dpkt.Packet):
    """WCCPv2 redirect header over GRE (protocol 0x883E): flags (D dynamic service, A
    alternate bucket used), service id, alternate and primary bucket, then IPv4. WCCPv1 sends
    the IPv4 packet with no redirect header: then the header fields are absent (``v1``)."""

    __hdr__ = (
        ("_rsvd_d_a", "B", 0),
        ("service_id", "B", 0),
        ("alt_bucket", "B", 0),
        ("pri_bucket", "B", 0),
    )
    __bit_fields__: ClassVar[dict] = {"_rsvd_d_a": (("_rsvd", 6), ("d", 1), ("a", 1))}
    v1 = False

    def payload_class(self) -> Any:
        return _ip.IP

    def unpack(self, buf: bytes) -> None:
        if buf[:1] and buf[0] >> 4 == 4:  # an IPv4 header straight away: WCCPv1
            self.v1 = True
            self._rsvd_d_a = self.service_id = self.alt_bucket = self.pri_bucket = 0
            self.data = b""
            self._decode_payload(buf)
            return
        dpkt.Packet.unpack(self, buf)
        self._decode_payload(self.data)

    def __len__(self) -> int:
        return (0 if self.v1 else self.__hdr_len__) + len(self.data)

    def __bytes__(self) -> bytes:
        return (b"" if self.v1 else self.pack_hdr()) + bytes(self.data)


# -- ERSPAN ------------------------------------------------------------------------------------


class ERSPAN2(_Layer, dpkt.Packet):
    """ERSPAN type II (GRE 0x88BE with a sequence number): Ver(4) = 1, VLAN(12), COS(3),
    En(2), T(1), session id(10), reserved(12), index(20), then the mirrored Ethernet frame.
    Type I is the same GRE protocol without a sequence number and without this header."""

    __hdr__ = (
        ("_ver_vlan", "H", 0x1000),
        ("_cos_en_t_session", "H", 0),
        ("_reserved_index", "I", 0),
    )
    __bit_fields__: ClassVar[dict] = {
        "_ver_vlan": (("ver", 4), ("vlan", 12)),
        "_cos_en_t_session": (("cos", 3), ("en", 2), ("t", 1), ("session_id", 10)),
        "_reserved_index": (("reserved", 12), ("index", 20)),
    }
    erspan_type = 2

    def payload_class(self) -> Any:
        return _ethernet.Ethernet


class ERSPAN3(_Layer, dpkt.Packet):
    """ERSPAN type III (GRE 0x22EB): Ver(4) = 2, VLAN(12), COS(3), BSO(2), T(1), session
    id(10), timestamp(32), SGT(16), P(1) frame type(5: 0 Ethernet, 2 IP) hardware id(6) D(1)
    granularity(2) O(1); with O an 8-byte platform-specific subheader (``platform``)."""

    __hdr__ = (
        ("_ver_vlan", "H", 0x2000),
        ("_cos_bso_t_session", "H", 0),
        ("timestamp", "I", 0),
        ("sgt", "H", 0),
        ("_p_ft_hwid_d_gra_o", "H", 0),
    )
    __bit_fields__: ClassVar[dict] = {
        "_ver_vlan": (("ver", 4), ("vlan", 12)),
        "_cos_bso_t_session": (("cos", 3), ("bso", 2), ("t", 1), ("session_id", 10)),
        "_p_ft_hwid_d_gra_o": (("p", 1), ("ft", 5), ("hw_id", 6), ("d", 1), ("gra", 2),
                               ("o", 1)),
    }
    erspan_type = 3
    platform = b""

    def payload_class(self) -> Any:
        return {0: _ethernet.Ethernet, 2: _ip.IP}.get(self.ft)

    def unpack(self, buf: bytes) -> None:
        dpkt.Packet.unpack(self, buf)
        data = self.data
        if self.o:
            if len(data) < 8:
                raise dpkt.NeedData("ERSPAN III platform-specific subheader")
            self.platform, data = data[:8], data[8:]
        self._decode_payload(data)

    def __len__(self) -> int:
        return self.__hdr_len__ + len(self.platform) + len(self.data)

    def __bytes__(self) -> bytes:
        return self.pack_hdr() + self.platform + bytes(self.data)


# -- GRE -----------------------------------------------------------------------------------------


def _gre_payload_class(protocol: int, flags: int) -> Any:
    """The class of a GRE payload (or of Geneve's, Cisco MetaData's: the same ethertype
    space): this module's for the protocols dpkt lacks, else dpkt's."""
    if protocol == ETH_TYPE_ERSPAN2:
        return ERSPAN2 if flags & GRE_SP else _ethernet.Ethernet  # type I: no header
    cls = _GRE_PROTOCOLS.get(protocol)
    return cls if cls is not None else _ethertype_class(protocol)


def _is_nvgre(buf: bytes) -> bool:
    """Version 0, key present, protocol 0x6558: the NVGRE layout (RFC 7637), as pktkit reads
    it (the C and S bits are tolerated: captures in the wild set S)."""
    return (len(buf) >= 4 and buf[1] & 0x07 == 0 and buf[0] & 0x20 != 0
            and buf[2:4] == b"\x65\x58")


class GRE(_Layer, _gre.GRE):
    """``dpkt.gre.GRE`` with this module's payload dispatch (ERSPAN I/II/III, Cisco MetaData,
    PPP with ACFC, MPLS, WCCP, NSH). Header, options and source routes are parsed as dpkt
    does (version 1, PPTP: ``len`` = payload length and ``callid`` instead of a key), except
    that version 0 has no acknowledgment field (RFC 2784: bit 8 is reserved there).
    Constructing it from an NVGRE header gives an :class:`NVGRE`."""

    def __new__(cls, *args: Any, **kwargs: Any) -> GRE:
        chosen = NVGRE if cls is GRE and args and _is_nvgre(args[0]) else cls
        return super().__new__(chosen)

    def payload_class(self) -> Any:
        return _gre_payload_class(self.p, self.flags)

    def opt_fields_fmts(self) -> tuple[list[str], list[str]]:
        fields, fmts = super().opt_fields_fmts()
        if self.v == 0 and "ack" in fields:  # (dpkt reads an acknowledgment in version 0 too)
            fields, fmts = fields[:-1], fmts[:-1]
        return fields, fmts

    def unpack(self, buf: bytes) -> None:
        dpkt.Packet.unpack(self, buf)
        fields, fmts = self.opt_fields_fmts()
        if fields:
            fmt = "!" + "".join(fmts)
            size = struct.calcsize(fmt)
            if len(self.data) < size:
                raise dpkt.NeedData(f"GRE optional fields need {size} bytes")
            self.__dict__.update(zip(fields, struct.unpack(fmt, self.data[:size]), strict=True))
            self.data = self.data[size:]
        if self.flags & _gre.GRE_RP:
            entries = []
            while True:
                sre = self.SRE(self.data)
                if len(sre.data) < sre.len:
                    raise dpkt.NeedData("GRE source route entry")
                self.data = self.data[len(sre):]
                entries.append(sre)
                if not sre.len and not sre.family:
                    break
            self.sre = entries
        self._decode_payload(self.data)

    @property
    def header_len(self) -> int:
        """Bytes from the start of the GRE header to its payload."""
        return (self.__hdr_len__ + struct.calcsize("!" + "".join(self.opt_fields_fmts()[1]))
                + sum(len(s) for s in self.sre))


class NVGRE(GRE):
    """NVGRE (RFC 7637): GRE version 0 with the key bit and protocol 0x6558, whose key is the
    virtual subnet id (24 bits) and a flow id (8 bits); the payload is an Ethernet frame."""

    @property
    def vsid(self) -> int:
        return self.key >> 8

    @property
    def flow_id(self) -> int:
        return self.key & 0xFF


_GRE_PROTOCOLS: dict[int, Any] = {
    ETH_TYPE_TEB: _ethernet.Ethernet,
    ETH_TYPE_ERSPAN3: ERSPAN3,
    ETH_TYPE_CMD: CMD,
    ETH_TYPE_PPP: PPP,
    ETH_TYPE_MPLS: MPLS,
    ETH_TYPE_MPLS_MCAST: MPLS,
    ETH_TYPE_WCCP: WCCP,
    ETH_TYPE_NSH: NSH,
}
_NEXT_PROTOCOL: dict[int, Any] = {
    NEXT_IPV4: _ip.IP, NEXT_IPV6: _ip6.IP6, NEXT_ETHERNET: _ethernet.Ethernet,
    NEXT_NSH: NSH, NEXT_MPLS: MPLS,
}
_PPP_PROTOCOLS: dict[int, Any] = {PPP_IPV4: _ip.IP, PPP_IPV6: _ip6.IP6, PPP_MPLS: MPLS}


# -- UDP and registration ------------------------------------------------------------------------

VXLAN_PORTS = (4789, 8472)  # IANA, and the Linux kernel's (Flannel's) historical default
VXLAN_GPE_PORT, GENEVE_PORT = 4790, 6081
GRE_IN_UDP_PORT = 4754  # RFC 8086: a GRE header straight after UDP
MPLS_IN_UDP_PORT = 6635  # RFC 7510
TEREDO_PORT = 3544  # RFC 4380
UDP_PORTS: dict[int, Any] = {
    **dict.fromkeys(VXLAN_PORTS, VXLAN),
    VXLAN_GPE_PORT: VXLANGPE,
    GENEVE_PORT: Geneve,
    GRE_IN_UDP_PORT: GRE,
    MPLS_IN_UDP_PORT: MPLS,
    TEREDO_PORT: Teredo,
}
_ports: ContextVar[Mapping[int, Any]] = ContextVar("pktkit_dpkt_udp_ports", default=UDP_PORTS)


def register_udp_port(port: int, cls: Any | None) -> None:
    """Decode UDP payloads to ``port`` as ``cls`` from now on, process-wide (None: stop)."""
    if cls is None:
        UDP_PORTS.pop(port, None)
    else:
        UDP_PORTS[port] = cls


def udp_tunnel(ports: Mapping[int, Any], sport: int, dport: int) -> Any:
    """The class a UDP payload decodes as with the port map ``ports``, or None: the
    destination port's, else the source port's if that class matches either port (Teredo)."""
    cls = ports.get(dport)
    if cls is None:
        cls = ports.get(sport)
        if cls is None or not getattr(cls, "match_source_port", False):
            return None
    return cls


class UDP(_udp.UDP):
    """``dpkt.udp.UDP`` whose payload is decoded when a port is a registered tunnel port (see
    the module docstring). Bytes past the UDP length are left in ``data``, as dpkt leaves
    them (Ethernet padding already went with the IP length)."""

    def unpack(self, buf: bytes) -> None:
        dpkt.Packet.unpack(self, buf)
        _decode_nested(self, udp_tunnel(_ports.get(), self.sport, self.dport), self.data)


_SAVED: dict[str, Any] = {}


def install() -> None:
    """Make dpkt's IP/IPv6 decode UDP and GRE with this module's classes (idempotent)."""
    if not _SAVED:
        _SAVED["udp"] = _ip.IP._protosw.get(_ip.IP_PROTO_UDP)
        _SAVED["gre"] = _ip.IP._protosw.get(_ip.IP_PROTO_GRE)
        _SAVED["cmd"] = _ethernet.Ethernet._typesw.get(ETH_TYPE_CMD)
    _ip.IP.set_proto(_ip.IP_PROTO_UDP, UDP)
    _ip.IP.set_proto(_ip.IP_PROTO_GRE, GRE)
    _ethernet.Ethernet._typesw[ETH_TYPE_CMD] = EthernetCMD


def uninstall() -> None:
    """Put dpkt's own UDP and GRE classes back."""
    if _SAVED:
        _ip.IP.set_proto(_ip.IP_PROTO_UDP, _SAVED.pop("udp"))
        _ip.IP.set_proto(_ip.IP_PROTO_GRE, _SAVED.pop("gre"))
        cmd = _SAVED.pop("cmd")
        if cmd is None:
            _ethernet.Ethernet._typesw.pop(ETH_TYPE_CMD, None)
        else:
            _ethernet.Ethernet._typesw[ETH_TYPE_CMD] = cmd


install()


# -- frames and link types ---------------------------------------------------------------------

IPV6_FAMILIES = frozenset({10, 24, 28, 30})  # AF_INET6: Linux, NetBSD/OpenBSD, FreeBSD, macOS


class Loopback(_Layer, _loopback.Loopback):
    """BSD loopback (LINKTYPE_NULL 0, host byte order of the writer; LINKTYPE_LOOP 108,
    network order). dpkt's class reads the family in *this* host's order and takes any
    unknown family (Linux's AF_INET6 = 10 among them) for Ethernet."""

    def payload_class(self) -> Any:
        return _ip.IP if self.family == 2 else _ip6.IP6 if self.family in IPV6_FAMILIES else None

    def unpack(self, buf: bytes) -> None:
        if len(buf) < 4:
            raise dpkt.NeedData("loopback header")
        family = int.from_bytes(buf[:4], "little")
        if family > 0xFFFF:  # written big-endian
            family = int.from_bytes(buf[:4], "big")
        self.family = family
        self._decode_payload(buf[4:])


def _raw(buf: bytes) -> dpkt.Packet:
    """Raw IP: the version nibble chooses."""
    if buf and buf[0] >> 4 == 6:
        return _ip6.IP6(buf)
    return _ip.IP(buf)


LINKTYPES: dict[int, Any] = {
    0: Loopback, 108: Loopback,
    1: _ethernet.Ethernet,
    12: _raw, 14: _raw, 101: _raw,
    113: _sll.SLL,
    228: _ip.IP, 229: _ip6.IP6,
    276: _sll2.SLL2,
}


def decode(frame: _Frame | int, data: bytes | None = None, /, *,
           udp_ports: Mapping[int, Any] | None = None) -> dpkt.Packet:
    """The dpkt object of a frame for its link type, tunnels decoded inside.

    ``decode(frame)`` takes a frame of ``pktkit.frames`` (anything with ``linktype`` and
    ``data``); ``decode(linktype, data)`` a link type and bytes. ``udp_ports`` replaces
    :data:`UDP_PORTS` for this call only. Raises ``dpkt.UnpackError`` (``NeedData`` when the
    frame is too short) for a link header that does not unpack, ``ValueError`` for a link type
    without a class; inner layers that do not unpack stay bytes, as dpkt leaves them."""
    if data is None:
        if isinstance(frame, int):
            raise TypeError("decode(linktype, data): data missing")
        linktype, data = frame.linktype, frame.data
    else:
        linktype = int(frame)  # type: ignore[arg-type]
    cls = LINKTYPES.get(linktype)
    if cls is None:
        raise ValueError(f"link type {linktype} has no dpkt class")
    if udp_ports is None:
        return cls(data)
    token = _ports.set(udp_ports)
    try:
        return cls(data)
    finally:
        _ports.reset(token)


# -- walking a decoded frame -------------------------------------------------------------------

TUNNEL_CLASSES: tuple[type, ...] = (
    VXLAN, VXLANGPE, Geneve, _gre.GRE, ERSPAN2, ERSPAN3, NSH, MPLS, PPP, Teredo, CMD, WCCP,
)
_ICMP_CLASSES: tuple[type, ...] = (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)


def layers(packet: dpkt.Packet) -> Iterator[dpkt.Packet]:
    """Every decoded layer, outermost first (stops at the first payload left as bytes)."""
    layer: Any = packet
    while isinstance(layer, dpkt.Packet):
        yield layer
        layer = layer.data


def tunnel_id(layer: dpkt.Packet) -> int | None:
    """What pktkit's ``vni`` column holds for a tunnel layer: the VXLAN/VXLAN-GPE/Geneve VNI,
    the NVGRE VSID, the key of a plain version-0 GRE header; None for the rest (an ERSPAN
    session is not a VNI; a PPTP key is payload length + call id)."""
    if isinstance(layer, VXLAN | VXLANGPE | Geneve):
        return layer.vni
    if isinstance(layer, NVGRE):
        return layer.vsid
    if isinstance(layer, _gre.GRE) and layer.v == 0 and layer.flags & GRE_KP:
        return layer.key
    return None


def innermost(packet: dpkt.Packet) -> tuple[str, str, int, int | None, int | None] | None:
    """(src, dst, proto, sport, dport) of the innermost IP packet, as pktkit's table has them:
    headers an ICMP error quotes do not count; None when the innermost tunnel carries no IP
    (ARP, a GRE keepalive, CDP) or there is no IP at all. Ports for TCP/UDP only (not on
    non-first fragments, which dpkt leaves undecoded); ``proto`` after IPv6 extension headers."""
    found: Any = None
    for layer in layers(packet):
        if isinstance(layer, _ICMP_CLASSES):
            break
        if isinstance(layer, _ip.IP | _ip6.IP6):
            found = layer
        elif isinstance(layer, TUNNEL_CLASSES) and found is not None:
            found = None  # a tunnel after the last IP header: that IP header is an outer one
    if found is None:
        return None
    family = socket.AF_INET if isinstance(found, _ip.IP) else socket.AF_INET6
    src, dst = socket.inet_ntop(family, found.src), socket.inet_ntop(family, found.dst)
    proto = found.p if isinstance(found, _ip.IP) else getattr(found, "p", found.nxt)
    l4 = found.data
    if isinstance(l4, dpkt.tcp.TCP | _udp.UDP):
        return src, dst, proto, l4.sport, l4.dport
    return src, dst, proto, None, None
