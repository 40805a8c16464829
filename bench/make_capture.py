"""Build the benchmark capture: N packets of mixed node traffic in one classic pcap (µs).

Template frames come from pktkit's own scenarios (``vxlan-overlay``: Flannel-style VXLAN on
4789 and 8472 with inner TCP/UDP/ICMP; ``flat-routed`` and ``docker-snat``: plain TCP, UDP and
ICMP), generated into a temporary folder. Each output packet is a template with its client
port shifted (one of ``CLONES`` copies of every flow, both directions alike), the innermost IP
ID set from a counter and its payload resized to a drawn frame size between 60 and 1514 bytes
(every IP/UDP length field follows, and every checksum: each frame's checksum column is
``ok``). Timestamps rise by 7 µs a packet (143 kpps).

``--repeat K`` instead writes K copies of an existing capture back to back, each copy shifted
in time after the previous one (how the 4M-packet capture is made from the 1M one).

Usage: python bench/make_capture.py OUT.pcap [--packets N] [--seed S]
       python bench/make_capture.py OUT.pcap --repeat K --source IN.pcap
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pktkit.capture.read import read_frames
from pktkit.capture.write import LINKTYPE_ETHERNET, PcapWriter
from pktkit.craft.generation import generate, make_scenario

SCENARIOS = {"vxlan-overlay": 40, "flat-routed": 40, "docker-snat": 20}  # name → flows
CLONES = 256  # port-shifted copies of each template flow
T0_NS = 1_767_225_600_000_000_000  # 2026-01-01
STEP_NS = 7_000
MIN_FRAME, MAX_FRAME = 60, 1514
# Share of packets per kind; the VXLAN share splits by the templates' own ports (4789/8472).
MIX = {"vxlan": 0.40, "tcp": 0.40, "udp": 0.12, "icmp": 0.08}


@dataclass(frozen=True)
class Template:
    kind: str  # vxlan / tcp / udp / icmp (the innermost protocol for plain frames)
    header: bytes  # every header up to the end of the innermost L4 header
    ip_offsets: tuple[int, ...]  # IPv4 headers whose total length follows the frame size
    udp_offsets: tuple[int, ...]  # UDP headers whose length follows the frame size
    inner_ip: int  # the innermost IPv4 header (its ID is rewritten)
    port_at: int  # the client port to shift (-1: none, ICMP)
    outer_sport_at: int  # the VXLAN UDP source port (-1: not tunnelled)


def _stack(frame: bytes) -> Template | None:
    """Parse Ethernet/IPv4/{TCP,UDP,ICMP} or .../UDP/VXLAN/Ethernet/IPv4/... ; else None."""
    ips: list[int] = []
    udps: list[int] = []
    off, outer_sport_at, vxlan = 0, -1, False
    while True:
        if len(frame) < off + 34 or struct.unpack_from("!H", frame, off + 12)[0] != 0x0800:
            return None
        ip = off + 14
        ihl = (frame[ip] & 0x0F) * 4
        if frame[ip] >> 4 != 4 or struct.unpack_from("!H", frame, ip + 6)[0] & 0x3FFF:
            return None  # not IPv4, or a fragment
        ips.append(ip)
        proto, l4 = frame[ip + 9], ip + ihl
        if proto == 17:
            udps.append(l4)
            sport, dport = struct.unpack_from("!HH", frame, l4)
            if dport in (4789, 8472) and not vxlan:
                vxlan, outer_sport_at, off = True, l4, l4 + 16
                continue
            kind, end = "udp", l4 + 8
        elif proto == 6:
            sport, dport = struct.unpack_from("!HH", frame, l4)
            kind, end = "tcp", l4 + (frame[l4 + 12] >> 4) * 4
        elif proto == 1:
            kind, end, sport, dport = "icmp", l4 + 8, 0, 0
        else:
            return None
        port_at = -1 if kind == "icmp" else (l4 if sport > dport else l4 + 2)
        return Template("vxlan" if vxlan else kind, frame[:end], tuple(ips), tuple(udps),
                        ip, port_at, outer_sport_at)


def _sum(data: bytes | bytearray) -> int:
    """RFC 1071 sum of big-endian 16-bit words, mod 65535 (65536 ≡ 1)."""
    return int.from_bytes(bytes(data) + b"\0" * (len(data) & 1), "big") % 65535


def _fill_checksums(frame: bytearray, t: Template) -> None:
    """Every IPv4 header checksum and the innermost TCP/UDP/ICMP checksum, as a sender's
    stack fills them (the VXLAN UDP checksum stays 0, as Linux sends it): a resized, renumbered
    template would otherwise carry its template's checksums, all wrong. The payload is zeros,
    so the L4 sum covers the header bytes (the ``Template.header``) and the pseudo-header."""
    for ip in t.ip_offsets:
        frame[ip + 10:ip + 12] = b"\0\0"
        ihl = (frame[ip] & 0x0F) * 4
        frame[ip + 10:ip + 12] = (65535 - _sum(frame[ip:ip + ihl]) or 65535).to_bytes(2, "big")
    ip = t.inner_ip
    ihl, proto = (frame[ip] & 0x0F) * 4, frame[ip + 9]
    l4, l4_len = ip + ihl, int.from_bytes(frame[ip + 2:ip + 4], "big") - ihl
    field = l4 + {6: 16, 17: 6, 1: 2}[proto]
    frame[field:field + 2] = b"\0\0"
    total = _sum(frame[l4:len(t.header)])
    if proto != 1:  # TCP and UDP: the pseudo-header (addresses, protocol, L4 length)
        total += _sum(frame[ip + 12:ip + 20]) + proto + l4_len
    frame[field:field + 2] = (65535 - total % 65535 or 65535).to_bytes(2, "big")


def templates(seed: int) -> dict[str, list[Template]]:
    """Frames of the scenarios, grouped by kind (duplicates of one header stack dropped)."""
    out: dict[str, dict[bytes, Template]] = {kind: {} for kind in MIX}
    with tempfile.TemporaryDirectory(prefix="pktkit-bench-") as tmp:
        for name, flows in SCENARIOS.items():
            result = generate(make_scenario(name, seed=seed, flows=flows), Path(tmp) / name)
            for file in result.files:
                for raw in read_frames(result.out_dir / file):
                    if raw.linktype == LINKTYPE_ETHERNET and (t := _stack(raw.data)):
                        out[t.kind].setdefault(t.header, t)
    return {kind: list(found.values()) for kind, found in out.items()}


def build(path: Path, packets: int, seed: int) -> None:
    groups = templates(seed)
    missing = [kind for kind, found in groups.items() if not found]
    if missing:
        sys.exit(f"make_capture: the scenarios gave no {', '.join(missing)} templates")
    pool = [t for kind in MIX for t in groups[kind]]
    weights = np.concatenate([np.full(len(groups[k]), MIX[k] / len(groups[k])) for k in MIX])
    rng = np.random.default_rng(seed)
    which = rng.choice(len(pool), size=packets, p=weights / weights.sum()).tolist()
    clone = rng.integers(0, CLONES, size=packets).tolist()
    # Frame sizes: a third small (ACKs, DNS, pings), a third full-size, a third in between.
    sizes = np.where(rng.random(packets) < 1 / 3, rng.integers(MIN_FRAME, 130, packets),
                     np.where(rng.random(packets) < 0.5, MAX_FRAME,
                              rng.integers(MIN_FRAME, MAX_FRAME + 1, packets))).tolist()
    zeros = bytes(MAX_FRAME)
    writer = PcapWriter(path, LINKTYPE_ETHERNET)
    pack_u16 = struct.Struct("!H").pack_into
    try:
        for i in range(packets):
            t = pool[which[i]]
            frame = bytearray(t.header)
            frame += zeros[:max(0, sizes[i] - len(frame))]
            length = len(frame)
            for ip in t.ip_offsets:
                pack_u16(frame, ip + 2, length - ip)
            for udp in t.udp_offsets:
                pack_u16(frame, udp + 4, length - udp)
            pack_u16(frame, t.inner_ip + 4, i & 0xFFFF)
            if t.port_at >= 0:
                port = struct.unpack_from("!H", frame, t.port_at)[0]
                pack_u16(frame, t.port_at, 1024 + (port + 97 * clone[i]) % 64000)
            if t.outer_sport_at >= 0:
                pack_u16(frame, t.outer_sport_at, 32768 + (clone[i] * 131 + which[i]) % 28000)
            _fill_checksums(frame, t)
            if length < MIN_FRAME:
                frame += zeros[:MIN_FRAME - length]  # Ethernet padding, outside every length
            writer.write(T0_NS + i * STEP_NS, 0, bytes(frame))
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def repeat(source: Path, path: Path, times: int) -> None:
    """``times`` copies of ``source`` (classic little-endian µs pcap), each later in time."""
    data = np.fromfile(source, np.uint8)
    seconds_at: list[int] = []
    pos, size = 24, len(data)
    raw = data.tobytes()
    while pos + 16 <= size:  # record offsets (a plain loop: this is the setup, not the bench)
        seconds_at.append(pos)
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    del raw
    at = np.array(seconds_at, np.int64)
    first = int(data[at[0]:at[0] + 4].view("<u4")[0])
    last = int(data[at[-1]:at[-1] + 4].view("<u4")[0])
    span = last - first + 1
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as out:
        out.write(data[:24].tobytes())
        body = data[24:pos].copy()
        secs = np.lib.stride_tricks.sliding_window_view(body, 4)[at - 24]
        base = secs.copy().view("<u4").ravel()
        for k in range(times):
            shifted = (base + np.uint32(k * span)).view(np.uint8).reshape(-1, 4)
            for j in range(4):  # write the seconds field of every record
                body[at - 24 + j] = shifted[:, j]
            out.write(body.tobytes())
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, help="write K copies of --source instead")
    parser.add_argument("--source", type=Path)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.repeat:
        if not args.source:
            parser.error("--repeat needs --source")
        repeat(args.source, args.out, args.repeat)
    else:
        build(args.out, args.packets, args.seed)
    print(f"make_capture: wrote {args.out} ({args.out.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
