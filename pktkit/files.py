"""Atomic output: every file and folder pktkit writes appears whole, or not at all.

A file is written under a hidden temporary name beside its target (same file system, so the
final step is a rename) and renamed over the target only when complete; on any failure,
including an interrupt, the temporary file is removed. A report folder is staged the same way
(:class:`StagingFolder`). Files get the permissions of an ordinary ``open()`` (0666 less the
umask), never a temp file's 0600. Failures to write become :class:`~pktkit.errors.OutputError`
naming the path and what to do. Files can be written in a second thread while the caller goes
on (:func:`meanwhile`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO, TypeVar

from pktkit.errors import OutputError

PARTIAL_SUFFIX = ".partial"
T = TypeVar("T")


def partial_name(path: Path) -> Path:
    """The temporary name beside ``path``: hidden, unique, ending in ``.partial``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}")


FIX = "choose a writable location"


def output_error(path: Path, what: str, exc: OSError, fix: str = FIX) -> OutputError:
    """The one-line error for an output that cannot be written."""
    return OutputError(f"{path}: cannot write {what} ({exc.strerror or exc}); {fix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], what: str = "the file",
                fix: str = FIX) -> Iterator[Path]:
    """A fresh empty temp file beside ``path`` for the block to fill; renamed to ``path``
    when the block succeeds, removed otherwise. ``what`` and ``fix`` word the error."""
    path = Path(path)
    tmp = partial_name(path)
    created = False
    try:
        # created here, exclusively, with the umask's permissions (mkstemp's would be 0600)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        created = True
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise output_error(path, what, exc, fix) from None
    finally:
        if created:  # never remove a file that some other writer created
            tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], None],
                 what: str = "the file", fix: str = FIX) -> Path:
    """Run ``write(tmp)`` on a temp file beside ``path``, then rename it over ``path``."""
    with atomic_path(path, what, fix) as tmp:
        write(tmp)
    return Path(path)


def write_bytes(path: str | os.PathLike[str], data: bytes, what: str = "the file",
                fix: str = FIX) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), what, fix)


def write_text(path: str | os.PathLike[str], text: str, what: str = "the file",
               fix: str = FIX) -> Path:
    return write_bytes(path, text.encode("utf-8"), what, fix)


def write_json(path: str | os.PathLike[str], value: object, what: str = "the file",
               fix: str = FIX, *, indent: int = 1, ensure_ascii: bool = True) -> Path:
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii) + "\n"
    return write_text(path, text, what, fix)


class AtomicFile:
    """A binary file written progressively (a capture, ``truth.json``): ``handle`` writes to
    the temp file, :meth:`commit` renames it into place, :meth:`abort` removes it. ``error``
    words the failure to create it (default: :func:`output_error`)."""

    def __init__(self, path: Path, what: str = "the file",
                 error: Callable[[OSError], OutputError] | None = None) -> None:
        self.path = path
        self.partial = partial_name(path)
        self.error = error or (lambda exc: output_error(path, what, exc))
        try:
            self.handle: BinaryIO = open(self.partial, "xb")  # noqa: SIM115 - commit/abort
        except OSError as exc:
            raise self.error(exc) from None

    def commit(self) -> None:
        try:
            self.handle.close()
            os.replace(self.partial, self.path)
        except OSError as exc:
            self.abort()
            raise self.error(exc) from None

    def abort(self) -> None:
        self.handle.close()
        self.partial.unlink(missing_ok=True)


class StagingFolder:
    """A hidden temp folder beside ``out_dir`` (same file system, so moves are renames), and
    the parent folders made for it. Leaving the ``with`` block normally moves its contents
    into ``out_dir`` (the whole folder renamed when ``out_dir`` is new; otherwise file by file,
    replacing files of the same name); leaving it by an exception removes everything made."""

    def __init__(self, out_dir: Path) -> None:
        check_output_folder(out_dir)
        self.out = out_dir
        parent = out_dir.absolute().parent
        self.made = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.tmp = partial_name(parent / out_dir.name)
            self.tmp.mkdir()
        except OSError as exc:
            self._remove_made()
            raise _folder_error(out_dir, exc.strerror or str(exc)) from None

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self._publish()
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if kind is not None:
            self._remove_made()

    def _remove_made(self) -> None:
        for folder in self.made:  # deepest first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break

    def _publish(self) -> None:
        out, tmp = self.out, self.tmp
        try:
            if not out.exists():
                os.replace(tmp, out)
                return
            for item in sorted(tmp.iterdir()):
                target = out / item.name
                if item.is_dir() and target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
        except OSError as exc:
            raise _folder_error(out, exc.strerror or str(exc)) from None


@contextlib.contextmanager
def scratch_folder(beside: str | os.PathLike[str]) -> Iterator[Path]:
    """A hidden temp folder beside ``beside`` (same file system) for the block's work, removed
    when the block ends however it ends: what to pack into one file written atomically."""
    path = partial_name(Path(beside))
    try:
        path.mkdir()
    except OSError as exc:
        raise _folder_error(Path(beside).parent, exc.strerror or str(exc)) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _folder_error(out_dir: Path, why: str) -> OutputError:
    return OutputError(f"{out_dir}: cannot write there ({why}); choose a writable folder")


def check_output_folder(out_dir: str | os.PathLike[str]) -> None:
    """Fail early (before any work, writing nothing) when ``out_dir`` cannot be made."""
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose another --out")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise _folder_error(Path(out_dir), f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _folder_error(Path(out_dir), f"{existing} is not writable")


class Stopped(Exception):
    """Work of :func:`meanwhile` given up because the block it ran beside failed."""


@contextlib.contextmanager
def meanwhile(work: Callable[[threading.Event], T]) -> Iterator[Future[T]]:
    """Run ``work(stop)`` in a second thread while the block runs, and wait for it when the
    block ends; the block gets its future, whose result (or exception) is there after the
    block. For writes whose encoding drops the GIL (pyarrow's Parquet and CSV writers): the
    block's Python work and the writing share the cores. If the block fails or is
    interrupted, ``stop`` is set: ``work`` should raise :class:`Stopped` at its next file
    (or row group), and the block's exception is what the caller sees. ``work`` must only
    read what the block may change, or read a copy."""
    future: Future[T] = Future()
    stop = threading.Event()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(work(stop))
        except BaseException as exc:  # given to the caller's thread by the future
            future.set_exception(exc)

    thread = threading.Thread(target=run, name="pktkit-meanwhile", daemon=True)
    thread.start()
    try:
        yield future
    except BaseException:
        stop.set()
        raise
    finally:
        thread.join()
    future.result()  # (its error, if any, is the block's too)
