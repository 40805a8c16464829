"""Independent oracles for the tests: RFC checksums, a plain file reader, and tshark.

Nothing here imports pktkit: a test that checks pktkit's bytes with pktkit's own parser would
only show that the writer agrees with itself.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

VXLAN_PORTS = (4789, 8472)
GENEVE_PORT = 6081


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum of 16-bit words (the result, not yet complemented)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_ok(data: bytes) -> bool:
    """A block whose checksum field is included sums to 0xFFFF (RFC 1071)."""
    return internet_checksum(data) == 0xFFFF


@dataclass
class Record:
    ts_ns: int
    linktype: int
    orig_len: int
    data: bytes
    interface_id: int = 0


def read_capture(path: Path) -> list[Record]:
    """Read a pcap (µs/ns) or pcapng written in little-endian, with plain struct code."""
    raw = Path(path).read_bytes()
    magic = struct.unpack_from("<I", raw)[0]
    records: list[Record] = []
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        scale = 1000 if magic == 0xA1B2C3D4 else 1
        linktype = struct.unpack_from("<I", raw, 20)[0]
        offset = 24
        while offset < len(raw):
            sec, frac, caplen, origlen = struct.unpack_from("<IIII", raw, offset)
            data = raw[offset + 16 : offset + 16 + caplen]
            records.append(Record(sec * 10**9 + frac * scale, linktype, origlen, data))
            offset += 16 + caplen
        return records
    assert magic == 0x0A0D0D0A, f"{path}: neither pcap nor pcapng"
    interfaces: list[tuple[int, int]] = []  # (linktype, ticks per second)
    offset = 0
    while offset < len(raw):
        block_type, length = struct.unpack_from("<II", raw, offset)
        body = raw[offset + 8 : offset + length - 4]
        if block_type == 1:
            linktype = struct.unpack_from("<H", body)[0]
            resolution = 10**6
            opt = 8
            while opt + 4 <= len(body):
                code, size = struct.unpack_from("<HH", body, opt)
                if code == 0:
                    break
                if code == 9:
                    resolution = 10 ** body[opt + 4]
                opt += 4 + size + (-size % 4)
            interfaces.append((linktype, resolution))
        elif block_type == 6:
            iface, high, low, caplen, origlen = struct.unpack_from("<IIIII", body)
            linktype, resolution = interfaces[iface]
            ticks = (high << 32) | low
            records.append(Record(ticks * 10**9 // resolution, linktype, origlen,
                                  body[20 : 20 + caplen], iface))
        offset += length
    return records


@dataclass
class Layer:
    """One header found by :func:`walk`: its name, its bytes from its start, a few fields."""

    name: str
    data: bytes
    fields: dict[str, int | str]


def _ip_checks(ip: bytes, v6: bool) -> tuple[bytes, int, bytes, int, bool]:
    """(pseudo-header source+dest, upper protocol, payload, header length, is_fragment)."""
    if v6:
        nh, header = ip[6], 40
        payload_len = struct.unpack_from("!H", ip, 4)[0]
        return ip[8:40], nh, ip[header : header + payload_len], header, False
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    flags_frag = struct.unpack_from("!H", ip, 6)[0]
    fragment = bool(flags_frag & 0x2000) or (flags_frag & 0x1FFF) != 0
    return ip[12:20], ip[9], ip[ihl:total], ihl, fragment


def walk(frame: bytes, linktype: int) -> list[Layer]:
    """Decode the headers of one frame, tunnels included, outermost first."""
    layers: list[Layer] = []
    if linktype == 276:  # SLL2
        proto = struct.unpack_from("!H", frame)[0]
        layers.append(Layer("sll2", frame, {"proto": proto, "ifindex":
                                            struct.unpack_from("!I", frame, 4)[0],
                                            "pkttype": frame[10]}))
        _walk_l3(frame[20:], proto, layers)
    elif linktype == 101:
        _walk_l3(frame, 0x86DD if frame[0] >> 4 == 6 else 0x0800, layers)
    else:
        _walk_ether(frame, layers)
    return layers


def _walk_ether(frame: bytes, layers: list[Layer]) -> None:
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    layers.append(Layer("eth", frame, {"dst": frame[0:6].hex(":"), "src": frame[6:12].hex(":"),
                                      "type": ethertype}))
    _walk_l3(frame[14:], ethertype, layers)


def _walk_l3(data: bytes, ethertype: int, layers: list[Layer]) -> None:
    if ethertype not in (0x0800, 0x86DD):
        return
    v6 = ethertype == 0x86DD
    pseudo, proto, payload, header_len, fragment = _ip_checks(data, v6)
    fields: dict[str, int | str] = {"proto": proto, "fragment": int(fragment)}
    if v6:
        import ipaddress

        fields |= {"src": str(ipaddress.IPv6Address(data[8:24])),
                   "dst": str(ipaddress.IPv6Address(data[24:40])), "ttl": data[7],
                   "len": 40 + len(payload)}
    else:
        flags_frag = struct.unpack_from("!H", data, 6)[0]
        fields |= {"src": ".".join(map(str, data[12:16])), "dst": ".".join(map(str, data[16:20])),
                   "ttl": data[8], "id": struct.unpack_from("!H", data, 4)[0],
                   "len": struct.unpack_from("!H", data, 2)[0], "df": (flags_frag >> 14) & 1,
                   "mf": (flags_frag >> 13) & 1, "frag_offset": (flags_frag & 0x1FFF) * 8,
                   "header_ok": int(checksum_ok(data[:header_len]))}
    layers.append(Layer("ipv6" if v6 else "ipv4", data, fields))
    if fragment and fields.get("frag_offset"):
        return  # a non-first fragment has no upper-layer header
    length = len(payload)
    pseudo_header = pseudo + (struct.pack("!IxxxB", length, proto) if v6
                              else struct.pack("!xBH", proto, length))
    if proto in (6, 17) and not fragment:
        sport, dport = struct.unpack_from("!HH", payload)
        stored = struct.unpack_from("!H", payload, 16 if proto == 6 else 6)[0]
        ok = (proto == 17 and stored == 0 and not v6) or checksum_ok(pseudo_header + payload)
        name = "tcp" if proto == 6 else "udp"
        layer_fields: dict[str, int | str] = {"sport": sport, "dport": dport,
                                              "checksum_ok": int(ok), "csum": stored}
        if proto == 6:
            seq, ack = struct.unpack_from("!II", payload, 4)
            offset = (payload[12] >> 4) * 4
            layer_fields |= {"seq": seq, "ack": ack, "flags": payload[13],
                             "payload_len": length - offset}
        layers.append(Layer(name, payload, layer_fields))
        if proto == 17 and dport in VXLAN_PORTS:
            flags, vni_field = struct.unpack_from("!I", payload, 8)[0], \
                struct.unpack_from("!I", payload, 12)[0]
            layers.append(Layer("vxlan", payload[8:], {"flags": flags >> 24,
                                                        "reserved1": flags & 0xFFFFFF,
                                                        "vni": vni_field >> 8,
                                                        "reserved2": vni_field & 0xFF}))
            _walk_ether(payload[16:], layers)
        elif proto == 17 and dport == GENEVE_PORT:
            opt_len = (payload[8] & 0x3F) * 4
            protocol = struct.unpack_from("!H", payload, 10)[0]
            vni = struct.unpack_from("!I", payload, 12)[0] >> 8
            layers.append(Layer("geneve", payload[8:], {"opt_len": opt_len, "vni": vni,
                                                         "proto": protocol}))
            inner = payload[16 + opt_len :]
            if protocol == 0x6558:
                _walk_ether(inner, layers)
            else:
                _walk_l3(inner, protocol, layers)
    elif proto in (1, 58) and not fragment:
        data_ok = checksum_ok(pseudo_header + payload) if proto == 58 else checksum_ok(payload)
        ident, seq = struct.unpack_from("!HH", payload, 4)
        layers.append(Layer("icmp" if proto == 1 else "icmpv6", payload, {
            "type": payload[0], "id": ident, "seq": seq, "checksum_ok": int(data_ok)}))
    elif proto == 47:
        flags, gre_proto = struct.unpack_from("!HH", payload)
        offset = 4 + (4 if flags & 0x8000 else 0)
        key = struct.unpack_from("!I", payload, offset)[0] if flags & 0x2000 else None
        offset += (4 if flags & 0x2000 else 0) + (4 if flags & 0x1000 else 0)
        layers.append(Layer("gre", payload, {"flags": flags, "proto": gre_proto,
                                             "key": -1 if key is None else key,
                                             "header_len": offset}))
        if gre_proto == 0x6558:
            _walk_ether(payload[offset:], layers)
        else:
            _walk_l3(payload[offset:], gre_proto, layers)
    elif proto in (4, 41):
        _walk_l3(payload, 0x0800 if proto == 4 else 0x86DD, layers)


def iter_layers(path: Path) -> Iterator[tuple[Record, list[Layer]]]:
    for record in read_capture(path):
        yield record, walk(record.data, record.linktype)


def tshark_path() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (.ci/run installs it)")
    return path


def tshark_fields(path: Path, fields: list[str], *, vxlan_8472: bool = True,
                  extra: tuple[str, ...] = ()) -> list[list[str]]:
    """One row per frame: the requested fields (occurrences joined by ',')."""
    cmd = [tshark_path(), "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=,", *extra]
    if vxlan_8472:
        cmd += ["-d", "udp.port==8472,vxlan"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


# tshark does not verify checksums unless asked; a bad one is then an expert error.
CHECKSUM_PREFS = ("-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                  "-o", "udp.check_checksum:TRUE")
PI_ERROR = 0x00800000  # expert severity "error" (epan/proto.h)


def tshark_problems(path: Path, rows: list[list[str]] | None = None) -> list[str]:
    """Frames tshark marks malformed or with an expert error, checksums verified.

    ``rows`` may be a :func:`tshark_fields` result that starts with ``frame.number``,
    ``frame.protocols``, ``_ws.expert.severity``, ``_ws.expert.message`` (read with
    ``extra=CHECKSUM_PREFS``), to share one tshark pass with other checks."""
    if rows is None:
        rows = tshark_fields(path, PROBLEM_FIELDS, extra=CHECKSUM_PREFS)
    problems = []
    for number, protocols, severities, messages, *_ in ((r + [""] * 4) for r in rows):
        malformed = "_ws.malformed" in protocols.split(":")
        if malformed or str(PI_ERROR) in severities.split(","):
            problems.append(f"{path.name} frame {number}: {messages or 'malformed'}")
    return problems


PROBLEM_FIELDS = ["frame.number", "frame.protocols", "_ws.expert.severity", "_ws.expert.message"]
