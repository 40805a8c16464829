"""Conversations: the IP packets two endpoints exchange, as a Linux host would send them.

A conversation is a list of :class:`Emission` (who sends which IP packet, and when relative to
the previous one). Link headers, paths and clocks belong to the engine. Values follow Linux:
SYN options ``mss,sackOK,TS,nop,wscale 7``; DF on TCP; per-socket IP ID counters with a random
start; ID 0 on unconnected UDP sockets; timestamps ticking at 1 kHz; ping's 56-byte payload.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Literal

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.packet import Packet, Raw

Direction = Literal["fwd", "rev"]


@dataclass(frozen=True)
class Emission:
    """One logical packet: sent by the originator (fwd) or the responder (rev).

    ``after="arrival"``: sent ``delay_us`` after the previous emission reached its receiver;
    ``after="send"``: ``delay_us`` after the previous emission was sent (back-to-back segments,
    retransmission timers). ``lost_after`` drops it after that many hops of its path."""

    direction: Direction
    l3: Packet
    after: Literal["arrival", "send"] = "arrival"
    delay_us: float = 50.0
    lost_after: int | None = None


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    ttl: int = 64  # initial TTL/hop limit of the sending host


def flow_label(src: Endpoint, dst: Endpoint, proto: int) -> int:
    """The 20-bit IPv6 flow label Linux sets from the flow's hash (auto_flowlabels=1): a hash
    of addresses, ports and protocol, so constant for one flow direction (RFC 6437)."""
    return zlib.crc32(f"{src.ip}|{src.port}|{dst.ip}|{dst.port}|{proto}".encode()) & 0xFFFFF


def _ip(src: Endpoint, dst: Endpoint, proto: int, ip_id: int, df: bool) -> Packet:
    if ":" in src.ip:
        return IPv6(src=src.ip, dst=dst.ip, hlim=src.ttl, nh=proto, tc=0,
                    fl=flow_label(src, dst, proto))
    return IP(src=src.ip, dst=dst.ip, ttl=src.ttl, id=ip_id & 0xFFFF, flags="DF" if df else 0,
              tos=0, proto=proto)


def http_request(host: str, path: str = "/") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\n"
            "Accept: */*\r\n\r\n").encode()


def varied_size(base: int, step: int, index: int, cycle: int = 16) -> int:
    """A payload size that differs from flow to flow but stays bounded however many flows a
    run has (``--flows 20000`` must not grow responses to megabytes)."""
    return base + step * (index % cycle)


def http_response(body_len: int) -> bytes:
    line = b"<p>pktkit reference payload: the quick brown fox jumps over the lazy dog</p>\n"
    body = (b"<html><body>\n" + line * (body_len // len(line) + 1))[:body_len]
    head = (f"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode()
    return head + body


class _TcpSide:
    """One end of a TCP connection: sequence numbers, IP ID and timestamp clocks."""

    def __init__(self, me: Endpoint, peer: Endpoint, rng: random.Random, mss: int) -> None:
        self.me, self.peer, self.mss = me, peer, mss
        self.seq = rng.getrandbits(32)
        self.ip_id = rng.getrandbits(16)
        self.ts_base = rng.getrandbits(32)
        self.ack = 0
        self.peer_ts = 0

    def segment(self, flags: str, payload: bytes = b"", *, at_ms: float, window: int = 502,
                options: list[tuple[str, object]] | None = None, advance: bool = True) -> Packet:
        tsval = (self.ts_base + int(at_ms)) & 0xFFFFFFFF
        opts = options if options is not None else [
            ("NOP", None), ("NOP", None), ("Timestamp", (tsval, self.peer_ts & 0xFFFFFFFF))]
        tcp = TCP(sport=self.me.port, dport=self.peer.port, seq=self.seq,
                  ack=self.ack if "A" in flags else 0, flags=flags, window=window,
                  urgptr=0, options=opts, reserved=0)
        # A SYN-ACK leaves through ip_build_and_send_pkt, which sets ID 0 under DF (the child
        # socket's own counter starts with its next segment)
        synack = "S" in flags and "A" in flags
        pkt = _ip(self.me, self.peer, 6, 0 if synack else self.ip_id, df=True) / tcp
        if payload:
            pkt = pkt / Raw(payload)
        if not synack:
            self.ip_id += 1
        if advance:
            self.seq = (self.seq + len(payload) + (1 if ("S" in flags or "F" in flags) else 0)) \
                & 0xFFFFFFFF
        return pkt

    def syn_options(self, at_ms: float) -> list[tuple[str, object]]:
        tsval = (self.ts_base + int(at_ms)) & 0xFFFFFFFF
        echo = self.peer_ts & 0xFFFFFFFF
        return [("MSS", self.mss), ("SAckOK", b""), ("Timestamp", (tsval, echo)),
                ("NOP", None), ("WScale", 7)]


def tcp_session(client: Endpoint, server: Endpoint, request: bytes, response: bytes,
                rng: random.Random, *, mss: int = 1460, rtt_ms: float = 1.0,
                lose_request_after: int | None = None) -> list[Emission]:
    """Handshake, one request, a response in MSS-sized segments with delayed ACKs, then FIN.

    ``lose_request_after``: the request is dropped after that many hops of its path and
    retransmitted by the client after its RTO, the 200 ms minimum plus the round trip (a real
    retransmission: same sequence number and payload, new IP ID and timestamp)."""
    c, s = _TcpSide(client, server, rng, mss), _TcpSide(server, client, rng, mss)
    out: list[Emission] = []
    t = 0.0

    def sync_acks() -> None:
        c.ack, s.ack = s.seq, c.seq

    # Handshake.
    out.append(Emission("fwd", c.segment("S", at_ms=t, window=64240, options=c.syn_options(t)),
                        after="send", delay_us=0))
    c.ack, s.ack = 0, c.seq
    s.peer_ts = c.ts_base + int(t)
    t += rtt_ms / 2
    out.append(Emission("rev", s.segment("SA", at_ms=t, window=65160,
                                         options=s.syn_options(t)), delay_us=30))
    sync_acks()
    c.peer_ts = s.ts_base + int(t)
    t += rtt_ms / 2
    out.append(Emission("fwd", c.segment("A", at_ms=t), delay_us=20))
    # Request.
    request_seq = c.seq
    out.append(Emission("fwd", c.segment("PA", request, at_ms=t), after="send", delay_us=25,
                        lost_after=lose_request_after))
    if lose_request_after is not None:
        c.seq = request_seq
        t += 200 + rtt_ms
        out.append(Emission("fwd", c.segment("PA", request, at_ms=t), after="send",
                            delay_us=200_000 + rtt_ms * 1000))
    sync_acks()
    s.peer_ts = c.ts_base + int(t)
    t += rtt_ms / 2
    # Response segments; the client ACKs every second one (delayed ACK).
    chunks = [response[i : i + mss - 12] for i in range(0, len(response), mss - 12)]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        flags = "PA" if last else "A"
        out.append(Emission("rev", s.segment(flags, chunk, at_ms=t),
                            after="arrival" if index == 0 else "send",
                            delay_us=120 if index == 0 else 12))
        if index % 2 == 1 or last:
            sync_acks()
            c.peer_ts = s.ts_base + int(t)
            out.append(Emission("fwd", c.segment("A", at_ms=t), delay_us=40))
    # Client closes.
    t += rtt_ms / 2
    out.append(Emission("fwd", c.segment("FA", at_ms=t), after="send", delay_us=3_000))
    sync_acks()
    s.peer_ts = c.ts_base + int(t)  # each side echoes the other's latest TSval (RFC 7323)
    out.append(Emission("rev", s.segment("FA", at_ms=t + rtt_ms / 2), delay_us=60))
    sync_acks()
    c.peer_ts = s.ts_base + int(t + rtt_ms / 2)
    out.append(Emission("fwd", c.segment("A", at_ms=t + rtt_ms), delay_us=20))
    return out


def dns_exchange(client: Endpoint, server: Endpoint, qname: str, answer_ip: str,
                 rng: random.Random) -> list[Emission]:
    """A DNS query over UDP and its answer, DF set; an A query, or AAAA when ``answer_ip`` is
    an IPv6 address. IP IDs: the resolver's socket is connected (glibc's send_dg connects it)
    and sends its counter; the server answers from an unconnected socket, which Linux 6.18
    gives a non-zero ID from its per-destination counters (measured with pktkit lab)."""
    txid = rng.getrandbits(16)
    query_id, answer_id = 1 + rng.getrandbits(16) % 0xFFFF, 1 + rng.getrandbits(16) % 0xFFFF
    qtype = "AAAA" if ":" in answer_ip else "A"
    query = DNS(id=txid, qr=0, opcode=0, rd=1, ra=0, z=0, rcode=0, qdcount=1, ancount=0,
                nscount=0, arcount=0, qd=DNSQR(qname=qname, qtype=qtype, qclass="IN"))
    answer = DNS(id=txid, qr=1, opcode=0, aa=0, rd=1, ra=1, z=0, rcode=0, qdcount=1, ancount=1,
                 nscount=0, arcount=0, qd=DNSQR(qname=qname, qtype=qtype, qclass="IN"),
                 an=DNSRR(rrname=qname, type=qtype, rclass="IN", ttl=300, rdata=answer_ip))
    return [
        Emission("fwd", _ip(client, server, 17, query_id, df=True)
                 / UDP(sport=client.port, dport=server.port) / query, after="send", delay_us=0),
        Emission("rev", _ip(server, client, 17, answer_id, df=True)
                 / UDP(sport=server.port, dport=client.port) / answer, delay_us=80),
    ]


def ping(client: Endpoint, server: Endpoint, ident: int, count: int,
         rng: random.Random) -> list[Emission]:
    """``ping -c COUNT``: echo requests one second apart, each answered (56-byte payload)."""
    out: list[Emission] = []
    client_id, server_id = rng.getrandbits(16), rng.getrandbits(16)
    v6 = ":" in client.ip
    for seq in range(1, count + 1):
        payload = rng.getrandbits(64).to_bytes(8, "little") + bytes(range(0x10, 0x40))
        if v6:
            request = _ip(client, server, 58, 0, df=False) \
                / ICMPv6EchoRequest(id=ident, seq=seq, data=payload)
            reply = _ip(server, client, 58, 0, df=False) \
                / ICMPv6EchoReply(id=ident, seq=seq, data=payload)
        else:
            request = _ip(client, server, 1, client_id + seq, df=True) \
                / ICMP(type=8, code=0, id=ident, seq=seq) / Raw(payload)
            reply = _ip(server, client, 1, server_id + seq, df=False) \
                / ICMP(type=0, code=0, id=ident, seq=seq) / Raw(payload)
        out.append(Emission("fwd", request, after="send",
                            delay_us=0 if seq == 1 else 1_000_000 + rng.uniform(0, 400)))
        out.append(Emission("rev", reply, delay_us=15))
    return out


def udp_datagrams(client: Endpoint, server: Endpoint, sizes: list[int],
                  rng: random.Random) -> list[Emission]:
    """One-way UDP datagrams (DF clear, as an application that allows fragmentation sends).

    Payloads are syslog-style text so that dissectors read them without complaint."""
    ip_id = rng.getrandbits(16)
    out: list[Emission] = []
    for index, size in enumerate(sizes):
        line = f"<14>1 2026-01-15T10:00:00Z pod app - - - message {index} ".encode()
        payload = (line + b"x" * size)[:size]
        pkt = _ip(client, server, 17, ip_id + index, df=False) \
            / UDP(sport=client.port, dport=server.port) / Raw(payload)
        out.append(Emission("fwd", pkt, after="send", delay_us=0 if index == 0 else 400))
    return out


def retransmission(l3: Packet, ip_id: int, waited_ms: int) -> Packet:
    """The same TCP segment sent again after ``waited_ms``: same sequence numbers, flags and
    payload; the next IPv4 ID of the socket and a TCP timestamp that has ticked on (1 kHz),
    checksums recomputed (RFC 6298, RFC 7323)."""
    again = l3.copy()
    if IP in again:
        again[IP].id = ip_id & 0xFFFF
        again[IP].chksum = None
    tcp = again[TCP]
    tcp.options = [("Timestamp", ((value[0] + waited_ms) & 0xFFFFFFFF, value[1]))
                   if kind == "Timestamp" else (kind, value) for kind, value in tcp.options]
    tcp.chksum = None
    return again


def is_tcp(l3: Packet) -> bool:
    return TCP in l3


def resent_when_lost(l3: Packet) -> bool:
    """Whether the sender sends this packet again when it is lost: a TCP segment with data,
    SYN or FIN (RFC 6298's timer). Not a pure ACK (the next segment acknowledges as much),
    nor UDP or ICMP (the application may ask again, as a new packet)."""
    return TCP in l3 and (bool(len(l3[TCP].payload)) or bool(int(l3[TCP].flags) & 0x03))
