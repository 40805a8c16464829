"""pktkit.cli: what every verb shares: one-line errors and warnings, exit codes, --version, and
nothing half-written when a signal stops it (SIGINT, SIGTERM, SIGHUP)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pktkit
from pktkit.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "captures"


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pktkit.cli", *args], capture_output=True,
                          text=True, check=False, **kwargs)  # type: ignore[call-overload]


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "partial" in p.name)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pktkit.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def open_writer(fifo: Path, reader: subprocess.Popen[str]) -> int:
    """The FIFO's write end, once the reader has opened it (never blocks: a reader that died
    fails the test instead of hanging it)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert reader.poll() is None, reader.communicate()[1]
            assert time.monotonic() < deadline, "the reader never opened the FIFO"
            time.sleep(0.02)


def wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"pktkit {pktkit.__version__}"
    summary = run("summary", "--help").stdout
    assert "Per capture file of folders written by pktkit generate" in summary
    parser = build_parser()
    generate = next(a for a in parser._subparsers._group_actions[0].choices["generate"]._actions
                    if "--format" in a.option_strings)
    assert generate.help and "pcapng" in generate.help


@pytest.mark.parametrize("mtu", ["-5", "0", "67", "65536", "big"])
def test_an_impossible_underlay_mtu_is_one_line_exit_2(tmp_path: Path, mtu: str) -> None:
    result = run("analyze", str(CAPTURES / "docker-snat"), "--out", str(tmp_path / "o"),
                 "--underlay-mtu", mtu)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--underlay-mtu" in result.stderr
    assert not (tmp_path / "o").exists()
    with pytest.raises(pktkit.UsageError, match="underlay_mtu"):
        if mtu.lstrip("-").isdigit():
            pktkit.analyze(CAPTURES / "docker-snat", underlay_mtu=int(mtu))
        else:
            raise pktkit.UsageError("underlay_mtu: not a number (argparse's case)")


def test_a_cut_capture_warns_the_same_line_in_every_verb(tmp_path: Path) -> None:
    whole = (CAPTURES / "docker-snat" / "host-eth0.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:-7])
    lines = []
    for args in (["packets", str(cut)], ["packets", str(cut), "-o", str(tmp_path / "p.csv")],
                 ["analyze", str(cut), "--out", str(tmp_path / "a"), "-q"]):
        result = run(*args)
        assert result.returncode == 0, result.stderr
        lines.append(result.stderr.strip())
    assert len(set(lines)) == 1, lines
    assert lines[0].startswith("pktkit: warning: cut.pcap: file ends inside a packet record")
    assert "\n" not in lines[0] and ".py" not in lines[0]  # no Python warning with a path


def test_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    """packets.parquet was 0600 (a temp file's mode); every output is what open() makes."""
    env = {**os.environ}
    result = run("analyze", str(CAPTURES / "docker-snat"), "--out", str(tmp_path / "a"), "-q",
                 env=env, preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stderr
    run("packets", str(CAPTURES / "docker-snat" / "host-eth0.pcap"), "-o",
        str(tmp_path / "p.parquet"), preexec_fn=lambda: os.umask(0o022))
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in [*(tmp_path / "a").iterdir(), tmp_path / "p.parquet"]}
    assert set(modes.values()) == {0o644}, modes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_generate_stopped_by_a_signal_leaves_nothing(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "out"
    process = start("generate", "vxlan-overlay", "--flows", "20000", "--out", str(out), "-q")
    wait_for(lambda: out.exists() and leftovers(out))  # writing has begun
    time.sleep(0.3)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # the run made it, the run removed it, partial files and all


@pytest.mark.parametrize("when", ["exit hook", "module teardown"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_after_the_verb_has_finished_keeps_its_exit_code(signum: int,
                                                                  when: str) -> None:
    """A stop signal that arrives once the verb is done does not turn a whole run into a
    killed one: the program exits with the verb's code, without a traceback. Sent from an
    exit hook, while the interpreter shuts down (Python's default would die by the signal);
    or from an object deleted in the module teardown, after Python's finalization has given
    the signals their default action back (how a `packets` run in CI died by SIGTERM: -15)."""
    kill = f"os.kill(os.getpid(), {int(signum)})"
    script = ("import atexit, os, signal, sys\n"
              "from pktkit import cli\n"
              + (f"atexit.register(lambda: {kill})\n" if when == "exit hook" else
                 f"class Late:\n    def __del__(self):\n        {kill}\nlate = Late()\n")
              + "sys.argv = ['pktkit', 'generate', '--list']\n"
              "cli.run()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "vxlan-overlay" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_packets_and_analyze_stopped_by_a_signal_leave_nothing(tmp_path: Path,
                                                               signum: int) -> None:
    """A capture that is still being written (a FIFO fed by hand) keeps the verb busy; the
    signal must unwind it: no table file, no partial file, no report folder."""
    whole = (CAPTURES / "docker-snat" / "host-eth0.pcap").read_bytes()
    for verb in (["packets", "-o", str(tmp_path / "t.parquet")],
                 ["analyze", "--out", str(tmp_path / "report")]):
        fifo = tmp_path / "live.pcap"
        os.mkfifo(fifo)
        process = start(verb[0], str(fifo), *verb[1:])
        feed = open_writer(fifo, process)
        try:
            os.write(feed, whole[:3000])  # header and some records; the writer stays open
            time.sleep(0.5)
            process.send_signal(signum)
            _, err = process.communicate(timeout=60)
        finally:
            os.close(feed)
        assert process.returncode == 128 + signum, err
        assert "Traceback" not in err
        fifo.unlink()
        assert sorted(p.name for p in tmp_path.iterdir()) == [], verb
