"""SIGINT, SIGTERM and SIGHUP during a lab run: an exception, so that cleanup runs.

Why an exception (unlike ``pktkit collect``, which finishes its bundle): a lab run interrupted
half-way has nothing worth keeping, and the one thing that matters is that every namespace and
process goes away. The signal goes to the handler the program had (the CLI turns SIGTERM and
SIGHUP into its ``Terminated`` exception, Python SIGINT into KeyboardInterrupt; with no handler
to call, :class:`Interrupted` is raised); the ``with`` block's exit removes everything
(:meth:`~pktkit.lab.netns.Registry.close`) with further signals held back, then the exception
goes on to the CLI (exit 128 + signal number).

Why critical sections: a signal arriving between ``ip netns add`` and the registration of the
namespace, or between a fork and the registration of the child, would leave something behind.
Inside :meth:`Guard.critical` the signal is only noted, and raised when the section ends.
"""

from __future__ import annotations

import atexit
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A lab run ended by a signal the program had no handler of its own for."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"{signal.Signals(signum).name}; the lab's namespaces were removed")


class Guard:
    """Turns stop signals into the program's exception, except inside critical sections and
    during cleanup, where the signal is held until the section ends."""

    def __init__(self, previous: dict[int, Any] | None = None) -> None:
        self.previous = previous or {}
        self.pending: int | None = None
        self.depth = 0
        self.closing = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.closing or self.depth:
            self.pending = self.pending or signum
            return
        self.interrupt(signum, frame)

    def interrupt(self, signum: int, frame: FrameType | None = None) -> None:
        """Raise what the program raises for ``signum`` (its previous handler's exception)."""
        before = self.previous.get(signum)
        if callable(before):
            before(signum, frame)
        raise Interrupted(signum)

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A section a signal must not cut in two (create + register)."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending is not None and not self.closing:
            signum, self.pending = self.pending, None
            self.interrupt(signum)


@contextmanager
def guarded(cleanup: Callable[[], object]) -> Iterator[Guard]:
    """Run the block with stop signals raising; call ``cleanup`` when it ends however it
    ends (also at interpreter exit, as a backstop), with signals held."""
    main = threading.current_thread() is threading.main_thread()
    guard = Guard({sig: signal.getsignal(sig) for sig in SIGNALS} if main else {})
    if main:
        for sig in SIGNALS:
            signal.signal(sig, guard.handler)
    atexit.register(cleanup)
    try:
        yield guard
    finally:
        guard.closing = True
        try:
            cleanup()
        finally:
            atexit.unregister(cleanup)
            for sig, old in guard.previous.items():
                signal.signal(sig, old)
    if guard.pending is not None:
        guard.interrupt(guard.pending)
