"""Signals during a capture: the first SIGINT (Ctrl-C), SIGTERM or SIGHUP ends the capture.

Why an event and not an exception: ``pktkit collect`` must still write a complete bundle when it
is stopped that way (stop tcpdump, take the end snapshot, write ``bundle.json``), so the first
signal only asks the capture to end and the work after it runs normally. A second signal is
handed to the handler the program had before (the CLI's: an exception, exit 128 + signal; a
plain Python program's SIGINT: KeyboardInterrupt), which unwinds the collector and removes the
unfinished bundle.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_on_signals(event: threading.Event) -> Iterator[list[int]]:
    """Within the block the first stop signal sets ``event``; later ones go to the previous
    handler (or raise KeyboardInterrupt when there was none to call). Yields the list of
    signals received, for ``bundle.json``.

    Handlers can only be installed from the main thread; elsewhere this does nothing and the
    caller's own event is the only way to stop."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous: dict[int, object] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            event.set()
            return
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        raise KeyboardInterrupt  # nothing of the program's to call: still unwind and clean up

    previous.update({sig: signal.signal(sig, handler) for sig in STOP_SIGNALS})
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
