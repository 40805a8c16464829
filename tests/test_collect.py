"""``pktkit collect``: a bundle recorded inside a lab namespace is complete and ``pktkit
analyze`` reads it; a stop signal still gives a complete bundle; a missing tool is recorded;
user errors are one line and exit 2. Skipped without root and network namespaces (but the
argument errors)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lab_checks import CLI

from pktkit.analysis.pipeline import analyze
from pktkit.capture.unpack import open_bundles
from pktkit.lab.netns import Registry
from pktkit.lab.stage import staged


def wait_for_capture(parent: Path, name: str, timeout: float = 10.0) -> None:
    """Until the collector's tcpdump has created its file in the staging folder (pktkit.files'
    hidden ``.NAME.<random>.partial`` beside the bundle)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(parent.glob(f".{name}.*.partial/*-any.pcap")):
            time.sleep(0.3)
            return
        time.sleep(0.05)
    raise AssertionError("the collector did not start capturing")


def tool_dir(tmp_path: Path, without: str) -> dict[str, str]:
    """An environment whose PATH has every tool the collector uses except ``without``."""
    bin_dir = tmp_path / f"bin-without-{without}"
    bin_dir.mkdir()
    for tool in ("tcpdump", "conntrack", "ip", "iptables-save", "bridge", "hostname", "chronyc",
                 "timedatectl", "setpriv"):
        found = shutil.which(tool)
        if found and tool != without:
            (bin_dir / tool).symlink_to(found)
    return {**os.environ, "PATH": str(bin_dir)}


def test_collect_in_a_lab_namespace_gives_an_analyzable_tarball(lab_available: None,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    with staged("flat-routed", log_dir=tmp_path / "agents") as lab:
        collector = subprocess.Popen([*CLI, "collect", "--duration", "5", "--netns",
                                      lab.netns("node-a"), "--out", str(out), "-i", "eth0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_capture(tmp_path, "b.tar.gz")
        results = lab.run_flows()
        stdout, stderr = collector.communicate(timeout=30)
    assert collector.returncode == 0, stderr
    assert all(r.ok for r in results)
    assert "0 dropped" in stdout
    with open_bundles(out) as bundles:
        bundle = json.loads((bundles[0].root / "bundle.json").read_text())
        assert bundles[0].root.name == "b"  # the tarball's one top folder
        assert (bundles[0].root / "end").is_dir() and (bundles[0].root / "start").is_dir()
    assert bundle["netns"] == lab.netns("node-a") and bundle["stopped_by"] == "duration"
    assert {c["interface"] for c in bundle["captures"]} == {"any", "eth0"}
    assert all(c["packets_dropped"] == 0 and c["packets_captured"] > 0
               for c in bundle["captures"])
    names = {(c["name"], c["phase"]) for c in bundle["commands"]}
    for probe in ("conntrack", "ip-link", "ip-addr", "ip-route", "ip-neigh", "iptables-nat",
                  "iptables-filter", "iptables-mangle", "bridge-fdb", "hostname", "adjtimex"):
        assert {(probe, "start"), (probe, "end")} <= names
    assert all(c["exit_status"] is not None or c["missing"] or c["error"]
               for c in bundle["commands"])
    assert bundle["tool_versions"]["tcpdump"].startswith("tcpdump version")
    result = analyze([out])  # the tarball itself
    packets = result.packets
    assert len(packets) > 50 and packets.interface.notna().all()
    assert {"vethce2a28d0", "cni0", "eth0"} <= set(packets.interface.astype(str))
    assert set(packets.node) == {lab.netns("node-a")}  # --netns names the node
    assert set(packets.direction.dropna().astype(str)) == {"in", "out", "other"}
    assert result.node_addresses[lab.netns("node-a")] == ["192.168.50.11", "10.244.0.1"]
    assert not list(tmp_path.glob(".b.*"))  # no staging folder or partial tarball left
    done = subprocess.run([*CLI, "analyze", str(out), "--out", str(tmp_path / "r"), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert (tmp_path / "r" / "packets.parquet").is_file()


def test_sigterm_ends_the_capture_with_a_complete_bundle(lab_available: None,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    registry = Registry()
    try:
        ns = registry.namespace("collect")
        collector = subprocess.Popen([*CLI, "collect", "--netns", ns.name, "--out", str(out)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_capture(tmp_path, "bundle")
        collector.send_signal(signal.SIGTERM)
        _, stderr = collector.communicate(timeout=30)
    finally:
        registry.close()
    assert collector.returncode == 0, stderr
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["stopped_by"] == "signal:SIGTERM" and bundle["signals"] == ["SIGTERM"]
    assert not list(tmp_path.glob(".bundle.*"))
    assert (out / "start" / "ip-link.json").is_file() and (out / "end" / "ip-link.json").is_file()
    assert (out / bundle["captures"][0]["file"]).is_file()
    assert bundle["captures"][0]["exit_status"] == 0


def test_a_missing_tool_is_recorded_not_fatal(lab_available: None, tmp_path: Path) -> None:
    registry = Registry()
    try:
        ns = registry.namespace("nocttool")
        done = subprocess.run([*CLI, "collect", "--duration", "0.5", "--netns", ns.name,
                               "--out", str(tmp_path / "b")], capture_output=True, text=True,
                              env=tool_dir(tmp_path, "conntrack"), timeout=30)
    finally:
        registry.close()
    assert done.returncode == 0, done.stderr
    bundle = json.loads((tmp_path / "b" / "bundle.json").read_text())
    conntrack = [c for c in bundle["commands"] if c["name"] == "conntrack"]
    assert conntrack and all(c["missing"] and c["exit_status"] is None for c in conntrack)
    assert bundle["tool_versions"]["conntrack"] is None


def test_without_tcpdump_it_is_a_one_line_error(lab_available: None, tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "collect", "--duration", "1", "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, env=tool_dir(tmp_path, "tcpdump"),
                          timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("pktkit: error: tcpdump")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv", [["collect", "--duration", "1", "--out", "/tmp/pktkit-x"],
                                  ["lab", "flat-routed", "--out", "/tmp/pktkit-y"]])
def test_not_root_is_a_one_line_error(lab_available: None, argv: list[str]) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is needed to drop root for this test")
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           *CLI, *argv], capture_output=True, text=True, timeout=60,
                          cwd="/", env={**os.environ, "HOME": "/"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "must run as root" in done.stderr
    assert not list(Path("/tmp").glob(".pktkit-x*")) and not Path("/tmp/pktkit-y").exists()


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for argv in (["collect", "--out", str(tmp_path / "full"), "--duration", "1"],
                 ["collect", "--out", str(tmp_path / "b"), "--netns", "pktkit-lab-none"],
                 ["collect", "--out", str(tmp_path / "b"), "--duration", "-1"],
                 ["lab", "no-such-scenario", "--out", str(tmp_path / "l")],
                 ["lab", "flat-routed", "--out", str(tmp_path / "l"), "--impair", "loss=x"]):
        done = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("pktkit: error:"), argv
