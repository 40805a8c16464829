"""The lab's traffic program, run inside a namespace: ``python3 -m pktkit.lab.agent``.

One agent per namespace that talks, driven by JSON lines on stdin, answering one JSON line per
command on stdout. Why a long-lived agent rather than a process per flow: flows then cost
microseconds to start, not a Python start-up each, and run in the order the driver says (the
SNAT collision needs the second container's connection while the first's entry is alive).

Commands::

    {"op": "serve", "proto": "tcp"|"udp", "addr": A, "port": P}   start a server thread
    {"op": "flow", "kind": "tcp"|"udp"|"ping", "flow": F, "src": S, "sport": N, "dst": D,
     "dport": M, "request": BYTES, "response": BYTES, "count": K, "df": bool,
     "gap_ms": G, "timeout_s": T}                                  run one flow, answer
    {"op": "quit"}

Servers answer what the request's marker asks (its reply length). Clients bind the source
address and port the plan chose (deterministic under --seed), so that the truth builder and
the tests know every tuple before NAT. ICMP echo uses a raw socket with the plan's identifier
(two containers colliding on one identifier is a scenario case); its payload carries the
marker too, and the kernel's reply copies it.

stdlib only, and nothing heavy: it starts in every namespace that talks.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from typing import Any

from pktkit.lab.marker import TOKEN_LEN, Token, parse, payload

IP_MTU_DISCOVER = 10  # linux/in.h (Python 3.11's socket module lacks the name)
IP_PMTUDISC_DONT = 0  # never set DF: the kernel fragments instead
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            raise ConnectionError(f"peer closed after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# -- servers ----------------------------------------------------------------------------------


def _serve_tcp_connection(conn: socket.socket) -> None:
    """Messages until EOF: read a marked request, send the reply it asks for; then close."""
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = conn.recv(TOKEN_LEN, socket.MSG_WAITALL)
                if len(head) < TOKEN_LEN:
                    return
                token = parse(head)
                _recv_exact(conn, token.length - TOKEN_LEN)
                if token.reply:
                    conn.sendall(payload(Token(token.flow, "r", token.message, token.reply, 0)))
        except (OSError, ValueError):
            return


def _serve_tcp(addr: str, port: int, ready: threading.Event) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((addr, port))
        listener.listen(64)
        ready.set()
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_serve_tcp_connection, args=(conn,), daemon=True).start()


def _serve_udp(addr: str, port: int, ready: threading.Event) -> None:
    """Answer each marked datagram from an unconnected socket (as DNS servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((addr, port))
        ready.set()
        while True:
            data, peer = sock.recvfrom(65535)
            try:
                token = parse(data[:TOKEN_LEN])
            except ValueError:
                continue
            if token.reply:
                sock.sendto(payload(Token(token.flow, "r", token.message, token.reply, 0)), peer)


def serve(command: dict[str, Any]) -> dict[str, Any]:
    target = _serve_tcp if command["proto"] == "tcp" else _serve_udp
    ready = threading.Event()
    threading.Thread(target=target, args=(command["addr"], int(command["port"]), ready),
                     daemon=True).start()
    if not ready.wait(5.0):
        raise OSError(f"{command['proto']} server on {command['addr']}:{command['port']} "
                      "did not start")
    return {}


# -- clients ----------------------------------------------------------------------------------


def tcp_flow(c: dict[str, Any]) -> dict[str, Any]:
    """Connect from (src, sport), ``count`` request/response exchanges, then an orderly close
    (our FIN first, then wait for the server's), so that the flow is over when we answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(float(c["timeout_s"]))
        sock.bind((c["src"], int(c["sport"])))
        sock.connect((c["dst"], int(c["dport"])))
        sport = sock.getsockname()[1]
        for message in range(int(c["count"])):
            sock.sendall(payload(Token(c["flow"], "q", message, c["request"], c["response"])))
            _recv_exact(sock, int(c["response"]))
            time.sleep(float(c["gap_ms"]) / 1000)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return {"sport": sport}


def udp_flow(c: dict[str, Any]) -> dict[str, Any]:
    """``count`` datagrams from (src, sport), each awaiting its reply (a lost one is noted,
    not fatal: the loss impairment drops some). ``df`` False clears DF (the kernel fragments
    datagrams above the MTU instead of refusing them)."""
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if not c["df"]:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        sock.settimeout(float(c["timeout_s"]))
        sock.bind((c["src"], int(c["sport"])))
        sock.connect((c["dst"], int(c["dport"])))
        for message in range(int(c["count"])):
            try:
                sock.send(payload(Token(c["flow"], "q", message, c["request"], c["response"])))
                if c["response"]:
                    sock.recv(65535)
                    answered += 1
            except OSError:
                pass  # timeout, or an ICMP error reported on the connected socket
            time.sleep(float(c["gap_ms"]) / 1000)
    return {"answered": answered}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping_flow(c: dict[str, Any]) -> dict[str, Any]:
    """Echo requests with the plan's identifier (``sport``) and sequence 1..count, the marker
    as payload; waits for each reply (matched on identifier and sequence)."""
    ident, answered = int(c["sport"]), 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.bind((c["src"], 0))
        for seq in range(1, int(c["count"]) + 1):
            data = payload(Token(c["flow"], "q", seq, c["request"], 0))
            header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
            packet = header[:2] + struct.pack("!H", _checksum(header + data)) + header[4:] + data
            sock.sendto(packet, (c["dst"], 0))
            deadline = time.monotonic() + float(c["timeout_s"])
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    reply = sock.recv(65535)
                except TimeoutError:
                    break
                ihl = (reply[0] & 0x0F) * 4
                kind, _, _, rid, rseq = struct.unpack_from("!BBHHH", reply, ihl)
                if kind == ICMP_ECHOREPLY and rid == ident and rseq == seq:
                    answered += 1
                    break
            time.sleep(float(c["gap_ms"]) / 1000)
    return {"answered": answered}


FLOWS = {"tcp": tcp_flow, "udp": udp_flow, "ping": ping_flow}


def handle(command: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        if command["op"] == "serve":
            result = serve(command)
        elif command["op"] == "flow":
            result = FLOWS[command["kind"]](command)
        else:
            return {"ok": False, "error": f"unknown op {command['op']!r}"}
    except Exception as exc:  # reported to the driver; the agent stays up for the next flow
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "elapsed_ms": (time.monotonic() - started) * 1000, **result}


def main() -> int:
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        print(json.dumps(handle(command)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
