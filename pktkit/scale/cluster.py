"""A Dask cluster for one run: N local worker processes, or an existing cluster by address.

:func:`dask_client` yields a connected :class:`distributed.Client` and closes everything it
started when the block ends, however it ends (an error, Ctrl-C, SIGTERM raised as an
exception; a signal that arrives while a local cluster starts takes effect once it has
started, so that it can be closed). A local cluster has ``workers`` processes of one
thread each (the decoders and the analysis hold the GIL: threads would not add up), a memory
limit per worker (Dask spills to disk at 70 % of it, pauses at 80 %, restarts the worker at
95 %) and its spill files in a temporary folder removed at the end. With ``scheduler`` an
existing cluster is used as it is: its workers must see the inputs and the output folder at
the same paths as this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pktkit.errors import ClusterError, UsageError

if TYPE_CHECKING:
    from distributed import Client

AUTO = "auto"
CONNECT_TIMEOUT_S = 10


def workers_arg(text: str) -> int | str:
    """``--workers``: a number of worker processes >= 1, or ``auto`` (one per core); a
    ValueError otherwise (argparse's one-line error)."""
    if text == AUTO:
        return text
    count = int(text)
    if count < 1:
        raise ValueError(text)
    return count


# a task works on a part of up to ROWS_PER_PARTITION rows (scale.correlate); on the 32-node
# 3M-frame set (6 parts of 500,000 rows) 1GB workers were killed by their nannies in the
# shuffle, again and again; 1.5GB ones spilled and peaked at 1.32-1.35 GB
MIN_MEMORY_LIMIT = 1_500_000_000


def memory_limit_arg(text: str) -> int | str:
    """``--memory-limit``: ``auto`` or a size (``1.5GB``, ``2GiB``, bytes) of at least
    :data:`MIN_MEMORY_LIMIT`; a ValueError otherwise (argparse's one-line error)."""
    if text == AUTO:
        return text
    from dask.utils import parse_bytes

    size = parse_bytes(text)
    if size < MIN_MEMORY_LIMIT:
        raise ValueError(text)
    return size


def worker_total(workers: int | str) -> int:
    """The number of workers ``--workers`` asks for (``auto``: the cores this process may use)."""
    if workers == AUTO:
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity else (os.cpu_count() or 1)
    return int(workers)


@contextlib.contextmanager
def dask_client(workers: int | str = 1, scheduler: str | None = None, *,
                memory_limit: str | int = "auto", dashboard_address: str = ":8787",
                announce: Callable[[str], None] | None = None) -> Iterator[Client]:
    """A client of a new local cluster of ``workers`` processes, or of the cluster at
    ``scheduler``; ``announce`` gets one line naming the cluster and its dashboard.
    ``memory_limit`` per worker: bytes, a size such as ``"1.5GB"``, or ``"auto"`` (the
    machine's memory shared out). Everything started here is closed when the block ends."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, ValueError, TypeError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"--scheduler {scheduler}: cannot connect ({why}); start a Dask "
                             "scheduler there (dask scheduler) or give its address as "
                             "tcp://HOST:PORT") from None
        try:
            if announce:
                count = len(client.scheduler_info(n_workers=-1).get("workers", {}))
                announce(f"Dask cluster at {scheduler}: {count} worker{'s' * (count != 1)}; "
                         f"dashboard {client.dashboard_link}")
            with _quiet_when_stopped(), _without_graph_size_advice(), _workers_lost():
                yield client
        finally:
            client.close()
        return
    spill = tempfile.mkdtemp(prefix="pktkit-dask-")
    try:
        with contextlib.ExitStack() as stack:
            with _signals_deferred():  # (a cluster half started cannot be closed cleanly)
                cluster = stack.enter_context(LocalCluster(
                    n_workers=worker_total(workers), threads_per_worker=1, processes=True,
                    memory_limit=memory_limit, local_directory=spill,
                    # (CRITICAL: a task's error reaches the client, which says it in one
                    # line; a worker still busy when a stopped run closes the scheduler
                    # would log its failed heartbeats as tracebacks)
                    dashboard_address=dashboard_address, silence_logs=logging.CRITICAL))
                client = stack.enter_context(Client(cluster))
            if announce:
                from dask.utils import format_bytes

                count = len(cluster.workers)
                limits = {w.get("memory_limit") for w in
                          client.scheduler_info(n_workers=-1).get("workers", {}).values()}
                memory = (f" and {format_bytes(limits.pop())} of memory"
                          if len(limits) == 1 and None not in limits else "")
                announce(f"Dask cluster: {count} worker{'s' * (count != 1)} of 1 thread"
                         f"{memory}; dashboard {client.dashboard_link}")
            with _quiet_when_stopped(), _without_graph_size_advice(), _workers_lost():
                yield client
    finally:
        shutil.rmtree(spill, ignore_errors=True)


@contextlib.contextmanager
def _workers_lost() -> Iterator[None]:
    """Dask's KilledWorker (a task whose workers all died running it: its retries spent) as
    a one-line :class:`~pktkit.errors.ClusterError` saying what to do."""
    from distributed.scheduler import KilledWorker

    try:
        yield
    except KilledWorker as exc:
        task = exc.task[0] if isinstance(exc.task, tuple) else exc.task
        raise ClusterError(
            f"Dask workers died every time they ran the task {str(task)[:60]!r} (out of "
            "memory, most often): give each worker more memory (--memory-limit, at least "
            f"{MIN_MEMORY_LIMIT / 1e9:g}GB), or run with fewer workers per machine") from None


@contextlib.contextmanager
def _without_graph_size_advice() -> Iterator[None]:
    """Dask's "Sending large graph of size ..." warning silenced while the block runs. A
    step's shared state (pending handshakes, NAT flows) is sent in a task's arguments on
    purpose, once per step (scale.shared.given_once): scattered data lost with a killed
    worker cannot be made again. The warning is advice to a program's author, and would
    print source lines among the CLI's one-line messages."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        yield


@contextlib.contextmanager
def _quiet_when_stopped() -> Iterator[None]:
    """When the block is left by Ctrl-C or a signal (not an Exception), Dask's and asyncio's
    loggers are silenced for good, before the cluster closes: the client's calls cut short
    would be reported by them as tracebacks ("Task exception was never retrieved", closed
    connections) around the program's one line."""
    try:
        yield
    except Exception:
        raise
    except BaseException:
        for name in ("asyncio", "distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP held while the block runs and raised again after it (in
    the main thread; elsewhere the block runs as it is). A local cluster interrupted while it
    starts leaves its nannies half made: Dask's exit hook then fails on them with
    tracebacks. Held, the signal stops the run once the cluster can be closed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {kind: signal.signal(kind, lambda signum, frame: caught.append(signum))
                for kind in kinds}
    try:
        yield
    finally:
        for kind, handler in previous.items():
            signal.signal(kind, handler)
        if caught:
            signal.raise_signal(caught[0])
