"""``pktkit generate``: the CLI contract, bad input, seeds, and streaming."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from oracle import read_capture

from pktkit.cli import main
from pktkit.craft.generation import make_scenario
from pktkit.craft.scenarios import SCENARIOS


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pktkit.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_list_names_every_scenario_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(SCENARIOS)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)
    for required in ("docker-snat", "docker-portmap", "k8s-nodeport", "flat-routed",
                     "vxlan-overlay", "geneve-overlay", "nvgre", "ipip"):
        assert required in SCENARIOS


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["no-such-scenario"], ["no-such-scenario", "docker-snat"]),
        (["docker-snat", "--set", "host_ip=300.1.1.1"], ["host_ip", "300.1.1.1", "IP address"]),
        (["docker-snat", "--set", "bridge_cidr=172.17.0.1/16"], ["bridge_cidr", "CIDR"]),
        (["docker-snat", "--set", "server_port=0"], ["server_port", "1..65535"]),
        (["docker-snat", "--set", "server_port=70000"], ["server_port", "1..65535"]),
        (["docker-snat", "--set", "nonsense=1"], ["nonsense", "host_ip"]),
        (["docker-snat", "--set", "novalue"], ["novalue", "KEY=VALUE"]),
        (["docker-snat", "--flows", "0"], ["--flows", "0"]),
        (["docker-snat", "--duration", "-1"], ["--duration"]),
        (["docker-snat", "--format", "pcapx"], ["--format", "pcapx"]),
        (["docker-snat", "--clock-offset", "0.5"], ["--clock-offset", "one node"]),
        # offsets no clock has, or no number at all: the same one line (was a traceback)
        (["vxlan-overlay", "--clock-offset", "1e12"], ["--clock-offset 1000000000000.0", "86400"]),
        (["vxlan-overlay", "--clock-offset", "nan"], ["--clock-offset nan", "finite"]),
        (["vxlan-overlay", "--clock-offset", "inf"], ["--clock-offset inf", "finite"]),
        (["vxlan-overlay", "--clock-offset=-1e10"], ["--clock-offset -10000000000.0", "86400"]),
        (["docker-snat", "--clock-drift", "80"], ["--clock-drift", "one node"]),
        (["flat-routed", "--clock-drift", "900"], ["--clock-drift", "-500..500 ppm"]),
        (["flat-routed", "--impair", "loss=2"], ["--impair loss", "0..0.5"]),
        (["flat-routed", "--impair", "queue=20"], ["--impair queue", "20ms"]),
        (["flat-routed", "--impair", "jitter=1"], ["--impair", "queue, loss, reorder"]),
        (["flat-routed", "--impair", "loss=0.1", "--impair", "loss=0.2"], ["loss", "twice"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, args: list[str], names: list[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli("generate", *args, "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0]
    assert not out.exists()


def test_vni_out_of_range_is_rejected(tmp_path: Path) -> None:
    vni_params = [(name, field) for name, cls in SCENARIOS.items()
                  for field in cls.Params.__dataclass_fields__ if "vni" in field]
    assert vni_params, "an overlay scenario has a VNI parameter"
    name, field = vni_params[0]
    for bad in ("16777216", "-1", "x"):
        result = run_cli("generate", name, "--set", f"{field}={bad}", "--out", str(tmp_path / "o"))
        assert result.returncode == 2
        assert "0..16777215" in result.stderr and bad in result.stderr
    assert run_cli("generate", name, "--set", f"{field}=16777215", "--out",
                   str(tmp_path / "ok")).returncode == 0


def test_unwritable_output_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("generate", "docker-snat", "--out", str(blocker / "sub"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(blocker) in result.stderr
    assert "Traceback" not in result.stderr


def test_failure_midway_leaves_no_partial_files(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from pktkit.craft import generation as generate_module

    calls = {"n": 0}
    real_write = generate_module.CaptureSetWriter.write

    def failing_write(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 20:
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(generate_module.CaptureSetWriter, "write", failing_write)
    out = tmp_path / "existing"
    out.mkdir()
    scenario = generate_module.make_scenario("docker-snat")
    with pytest.raises(OSError):
        generate_module.generate(scenario, out)
    assert list(out.iterdir()) == []


def _structure(folder: Path) -> list[tuple]:
    truth = json.loads((folder / "truth.json").read_text())
    return [(p["capture"], p["frame"], p["packet_id"], p["flow_id"], p["encap"], p["vni"],
             p["proto"], p["overhead_bytes"]) for p in truth["packets"]]


def test_same_seed_same_bytes_other_seed_other_timings_same_structure(tmp_path: Path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert main(["generate", "docker-snat", "--out", str(tmp_path / name), "--seed",
                     str(seed), "-q"]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    for file in files:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    a, c = _structure(tmp_path / "a"), _structure(tmp_path / "c")
    assert len(a) == len(c)
    assert [row[4:] for row in a] == [row[4:] for row in c]  # encap, vni, proto, overhead
    ts_a = [r.ts_ns for r in read_capture(tmp_path / "a" / "host-eth0.pcap")]
    ts_c = [r.ts_ns for r in read_capture(tmp_path / "c" / "host-eth0.pcap")]
    assert ts_a != ts_c


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize(("fmt", "linktype"), [("pcap", "ether"), ("pcapng", "sll2")])
def test_every_scenario_writes_one_truth_entry_per_frame(
    tmp_path: Path, name: str, fmt: str, linktype: str
) -> None:
    assert main(["generate", name, "--out", str(tmp_path), "--format", fmt, "--linktype",
                 linktype, "--flows", "3", "-q"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert set(truth) >= {"scenario", "seed", "packets", "nat_flows"}
    for capture in truth["captures"]:
        records = read_capture(tmp_path / capture)
        entries = sorted((p for p in truth["packets"] if p["capture"] == capture),
                         key=lambda p: p["frame"])
        assert [p["frame"] for p in entries] == list(range(1, len(records) + 1))
        assert [p["ts_ns"] for p in entries] == [r.ts_ns for r in records]
        assert [p["wire_len"] for p in entries] == [r.orig_len for r in records]
        if linktype == "sll2":
            assert {r.linktype for r in records} == {276}
    manifest = json.loads((tmp_path / "capture-set.json").read_text())
    assert [f["file"] for f in manifest["files"]] == truth["captures"]
    for entry in manifest["files"]:  # node and interfaces as the frames were labelled
        labels = {(p["node"], p["interface"]) for p in truth["packets"]
                  if p["capture"] == entry["file"]}
        assert labels <= {(entry["node"], i["name"]) for i in entry["interfaces"]}


def test_generation_streams_with_flat_memory(tmp_path: Path) -> None:
    """Peak RSS of a 10x larger run stays within a few MB of the small one."""
    script = (
        "import resource, sys\n"
        "from pktkit.craft.generation import generate, make_scenario\n"
        "s = make_scenario('docker-snat', flows=int(sys.argv[1]), duration_s=int(sys.argv[1]))\n"
        "generate(s, sys.argv[2])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    # (the two runs side by side: each process's own peak is what is compared)
    runs = [subprocess.Popen([sys.executable, "-c", script, str(flows),
                              str(tmp_path / str(flows))], stdout=subprocess.PIPE, text=True)
            for flows in (200, 2000)]
    peaks = []
    for run in runs:
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0
        peaks.append(int(out.strip()))
    assert peaks[1] - peaks[0] < 20_000, peaks  # kB; the NAT ledger is the only growth


def test_clock_offset_shifts_only_the_second_node(tmp_path: Path) -> None:
    multi = [name for name, cls in SCENARIOS.items()
             if len({i.node for i in make_scenario(name).interfaces()}) > 1]
    assert multi, "a two-node scenario exists"
    assert main(["generate", multi[0], "--out", str(tmp_path), "--clock-offset", "-1.25",
                 "-q"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    nodes = list(dict.fromkeys(i.node for i in make_scenario(multi[0]).interfaces()))
    offsets = {p["node"]: p["ts_ns"] - p["true_ts_ns"] for p in truth["packets"]}
    assert offsets == {nodes[0]: 0, nodes[1]: -1_250_000_000}


def test_list_with_a_scenario_shows_its_set_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "docker-snat", "--list"]) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert ["host_ip", "192.168.1.10"] in rows and ["host_port", "8080"] in rows


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_output_grows_linearly_with_flows(tmp_path: Path, name: str) -> None:
    """Payloads vary per flow but stay bounded: twice the flows, about twice the bytes."""
    sizes = []
    for flows in (32, 64):
        out = tmp_path / str(flows)
        assert main(["generate", name, "--out", str(out), "--flows", str(flows),
                     "--duration", str(flows), "-q"]) == 0
        sizes.append(sum(p.stat().st_size for p in out.glob("*.pcap")))
    assert 1.8 < sizes[1] / sizes[0] < 2.2, sizes
