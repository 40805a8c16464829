"""One tcpdump process: started, confirmed capturing, stopped with SIGINT, its counts parsed.

Why each step is careful:

- tcpdump opens the device before it prints ``listening on``; packets sent earlier are not
  captured. :meth:`Tcpdump.start` returns only after that line (or raises with tcpdump's own
  error line), so a caller can start traffic knowing it will be recorded.
- No ``--immediate-mode``, and a 32 MiB ring (``-B``): in immediate mode libpcap gives
  ``-i any`` one ring slot per snaplen-sized frame (a 2 MB ring of 256 KiB frames: 8 slots),
  and bursts of a dozen packets were dropped by the kernel (measured). In the default
  TPACKET_V3 mode frames are packed into blocks, but a block reaches tcpdump only when full or
  after tcpdump's 1 s timeout, and SIGINT discards the open block: :data:`DRAIN_S` after a
  stop request passes before SIGINT, so everything seen until the request is written.
- ``-Z root``: Debian's tcpdump drops to the ``tcpdump`` user after opening the device and
  could then fail to create the file in a root-owned folder.
- Stopped with SIGINT, tcpdump prints ``N packets captured``, ``N packets received by filter``
  and ``N packets dropped by kernel``: the only record of kernel drops, so they go to
  ``bundle.json``.
- :func:`~pktkit.collect.tools.dies_with_us`: if the collector itself is killed (SIGKILL
  cannot be caught), the kernel ends tcpdump too instead of leaving it capturing forever.
- A session of its own: Ctrl-C in the terminal reaches the collector only, which then stops
  tcpdump in order (so the end snapshot is taken after the capture ended, not during it).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from pktkit.capture.bundle import ANY, CaptureRecord
from pktkit.collect.tools import dies_with_us, in_netns
from pktkit.errors import UsageError

START_TIMEOUT_S = 10.0
DRAIN_S = 1.2  # > tcpdump's 1 s TPACKET_V3 block timeout (pcap_set_timeout)
BUFFER_KIB = 32768  # -B: the kernel ring, in KiB
STOP_TIMEOUT_S = 10.0
_COUNT = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel"
                    r"|dropped by interface)$")
_LISTENING = re.compile(r"^(?:tcpdump: )?listening on \S+, link-type (\S+)")
_COUNT_KEYS = {"captured": "packets_captured", "received by filter": "packets_received",
               "dropped by kernel": "packets_dropped", "dropped by interface":
               "packets_dropped_by_interface"}


def tcpdump_argv(interface: str, path: Path | str, *, snaplen: int,
                 bpf: str | None) -> list[str]:
    """tcpdump's command line: nanosecond timestamps, SLL2 on ``any``, no name lookups."""
    argv = ["tcpdump", "-i", interface, "-n", "-B", str(BUFFER_KIB), "-Z", "root",
            "--time-stamp-precision=nano", "-s", str(snaplen), "-w", str(path)]
    if interface == ANY:
        argv[3:3] = ["-y", "LINUX_SLL2"]
    if bpf:
        argv.append(bpf)
    return argv


class Tcpdump:
    """A tcpdump writing ``path`` from ``interface`` (inside ``netns``)."""

    def __init__(self, interface: str, path: Path, file: str, *, netns: str | None,
                 snaplen: int, bpf: str | None) -> None:
        self.interface = interface
        self.path = path
        # bundle.json records the command with the file's name in the bundle
        self.record = CaptureRecord(file, interface, "LINUX_SLL2" if interface == ANY else "",
                                    tcpdump_argv(interface, file, snaplen=snaplen, bpf=bpf))
        argv = tcpdump_argv(interface, path, snaplen=snaplen, bpf=bpf)
        self._argv = dies_with_us(in_netns(argv, netns))
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._listening = threading.Event()

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start tcpdump and wait until it captures. Raises UsageError with tcpdump's own
        message when it exits instead (bad interface, bad filter)."""
        self.record.started_ns = time.time_ns()
        self._process = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)
        assert self._process.stderr is not None
        self._reader = threading.Thread(target=self._read_stderr, args=(self._process.stderr,),
                                        name=f"tcpdump-{self.interface}", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.02):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                reason = self._error_line() or "it did not start capturing"
                raise UsageError(f"--interface {self.interface}: tcpdump cannot capture "
                                 f"({reason}); check the interface name (ip link) and the "
                                 "--filter expression")

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            self.record.stderr.append(line)
            listening = _LISTENING.search(line)
            if listening:
                self.record.linktype = listening.group(1)  # EN10MB, LINUX_SLL2, RAW, ...
                self._listening.set()
            match = _COUNT.match(line)
            if match:
                setattr(self.record, _COUNT_KEYS[match.group(2)], int(match.group(1)))

    def _error_line(self) -> str:
        if self._reader is not None:
            self._reader.join(1.0)
        lines = [line for line in self.record.stderr
                 if "listening on" not in line and "data link type" not in line]
        return lines[-1].removeprefix("tcpdump: ") if lines else ""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> CaptureRecord:
        """SIGINT, wait for the counts; SIGKILL if it does not end in ``timeout``. The caller
        waits :data:`DRAIN_S` after its stop request first (once for all its tcpdumps)."""
        process = self._process
        if process is None:
            return self.record
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGINT)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(2.0)
        self.record.exit_status = process.returncode
        self.record.ended_ns = time.time_ns()
        return self.record
