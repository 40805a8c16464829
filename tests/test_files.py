"""pktkit.files: every output appears whole or not at all, with ordinary permissions, and a
failure is one line naming the path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pktkit.errors import OutputError
from pktkit.files import (
    AtomicFile,
    StagingFolder,
    Stopped,
    atomic_path,
    check_output_folder,
    meanwhile,
    write_json,
    write_text,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_file_appears_when_complete_with_open_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "t.csv") as tmp:
            tmp.write_text("a,b\n")
            assert not (tmp_path / "t.csv").exists()  # not before the block ends
            assert tmp.name.startswith(".t.csv.") and tmp.name.endswith(".partial")
        write_json(tmp_path / "j.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "t.csv").read_text() == "a,b\n"
    assert mode(tmp_path / "t.csv") == mode(tmp_path / "j.json") == 0o644  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.json", "t.csv"]


def test_a_failure_leaves_nothing_and_the_old_file_as_it_was(tmp_path: Path) -> None:
    write_text(tmp_path / "x.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "x.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_an_unwritable_place_is_one_line_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "t.csv"
    with pytest.raises(OutputError) as error:
        write_text(target, "x", "the table")
    message = str(error.value)
    assert "\n" not in message and str(target) in message and "cannot write the table" in message


def test_atomic_file_commit_and_abort(tmp_path: Path) -> None:
    done = AtomicFile(tmp_path / "a.pcap")
    done.handle.write(b"\xd4\xc3\xb2\xa1")
    done.commit()
    dropped = AtomicFile(tmp_path / "b.pcap")
    dropped.handle.write(b"partial")
    dropped.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pcap"]


def test_a_staging_folder_publishes_whole_or_removes_what_it_made(tmp_path: Path) -> None:
    with StagingFolder(tmp_path / "new" / "out") as tmp:
        (tmp / "index.html").write_text("page")
    assert (tmp_path / "new" / "out" / "index.html").read_text() == "page"
    with pytest.raises(RuntimeError), StagingFolder(tmp_path / "deep" / "er" / "out") as tmp:
        (tmp / "half.csv").write_text("x")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]  # deep/er made and removed


def test_check_output_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(OutputError, match="is not a folder"):
        check_output_folder(tmp_path / "file" / "sub")
    check_output_folder(tmp_path / "a" / "b")  # may be made: no error, nothing made
    assert not (tmp_path / "a").exists()


def test_work_meanwhile_runs_in_another_thread_and_its_result_or_error_follows_the_block(
) -> None:
    import threading

    seen: list[str] = []
    with meanwhile(lambda stop: seen.append(threading.current_thread().name) or 42) as done:
        pass
    assert done.result() == 42 and seen == ["pktkit-meanwhile"]

    def fails(stop: threading.Event) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"), meanwhile(fails):
        pass


def test_a_failed_block_stops_the_work_and_its_own_error_wins() -> None:
    import threading

    began, steps = threading.Event(), []

    def work(stop: threading.Event) -> None:
        began.set()
        while not stop.wait(0.01):  # each step checks, as a writer does between files
            steps.append(1)
            assert len(steps) < 1000, "never stopped"
        raise Stopped("work")

    with pytest.raises(ValueError, match="the block's"), meanwhile(work):
        assert began.wait(10)
        raise ValueError("the block's")
