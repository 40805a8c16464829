"""Bundles as the user gives them: folders or tarballs, pktkit's or Microsoft Retina's.

:func:`open_bundles` yields the :class:`~pktkit.capture.bundle.Bundle` s of one path for the
length of a ``with`` block: a bundle folder, a bundle tarball (unpacked into a temporary folder
that the block's end removes: the capture reader maps files, so they must be on disk), or a
tarball of bundle tarballs (``kubectl retina capture download --all``). Members are unpacked
with tarfile's ``data`` filter: no absolute paths, no links out of the folder, no devices.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pktkit.capture.bundle import BUNDLE_FILE, Bundle, read_bundle_folder
from pktkit.capture.retina import is_retina_folder, read_retina_folder
from pktkit.errors import CaptureError

TARBALL_SUFFIXES = (".tar.gz", ".tgz")


def is_bundle_folder(path: Path) -> bool:
    """A pktkit bundle (bundle.json) or a Retina bundle (tcpdump.log beside a pcap)."""
    return path.is_dir() and ((path / BUNDLE_FILE).is_file() or is_retina_folder(path))


def is_tarball(path: Path) -> bool:
    return path.name.endswith(TARBALL_SUFFIXES)


def read_folder(folder: Path, source: Path | None = None) -> Bundle:
    """A bundle folder of either kind."""
    if not (folder / BUNDLE_FILE).is_file() and is_retina_folder(folder):
        return read_retina_folder(folder, source)
    return read_bundle_folder(folder, source)


@contextlib.contextmanager
def open_bundles(path: str | Path) -> Iterator[list[Bundle]]:
    """The bundles of ``path`` (a folder or a tarball), for the length of the block.
    CaptureError names a path that holds no bundle."""
    path = Path(path)
    if path.is_dir():
        yield [read_folder(path)]
        return
    with tempfile.TemporaryDirectory(prefix="pktkit-bundle-") as scratch:
        yield _tarball_bundles(path, Path(scratch), path)


def _tarball_bundles(tarball: Path, scratch: Path, source: Path) -> list[Bundle]:
    """Unpack ``tarball`` below ``scratch``: its bundle, or the bundles of the tarballs in it."""
    into = Path(tempfile.mkdtemp(dir=scratch))
    _unpack(tarball, into, source)
    for folder in (into, *sorted(p for p in into.iterdir() if p.is_dir())):
        if is_bundle_folder(folder):
            return [read_folder(folder, source)]
    inner = sorted(p for p in into.rglob("*") if p.is_file() and is_tarball(p))
    if inner:  # a tarball of bundle tarballs: each one is its own node's bundle
        return [b for t in inner
                for b in _tarball_bundles(t, scratch, source / t.relative_to(into))]
    if (into / "netsh.log").is_file() or any(into.glob("*.etl")):
        raise CaptureError(f"{source}: a Windows Retina capture (netsh trace); pktkit reads "
                           "Linux bundles only")
    raise CaptureError(f"{source}: no bundle in this tarball (neither a bundle.json nor "
                       "Retina's tcpdump.log beside a pcap); give a pktkit collect or Retina "
                       "bundle")


def _unpack(tarball: Path, into: Path, source: Path) -> None:
    try:
        with tarfile.open(tarball, "r:*") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(into, ignore_errors=True)
        raise CaptureError(f"{source}: not a readable bundle tarball ({exc}); copy it "
                           "again") from None
