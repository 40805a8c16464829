"""Names in every table, on every generated Kubernetes and Docker scenario, as truth says.

``pktkit generate`` writes ``kubectl.json`` or ``docker.json`` beside the captures (the
analyzer's only input about names) and ``truth.json``'s ``names``: who held which address (and
port) when, straight from the scenario. Every address column of every table must carry the
name truth gives for its address, port, protocol and time — the address itself where truth
has none; a pod address reused during the capture (k8s-clusterip) names each pod in its time.
The truth lookup here is a plain per-row loop, independent of the analyzer's vectorized one.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import pktkit
from pktkit.craft.generation import generate, make_scenario
from pktkit.craft.scenarios import SCENARIOS
from pktkit.report.tables import analysis_tables

NAMED = [name for name in SCENARIOS if make_scenario(name).inventory({}) is not None]
TCP, UDP = 6, 17


def test_the_scenarios_with_metadata() -> None:
    assert set(NAMED) == {"docker-snat", "docker-portmap", "k8s-nodeport", "k8s-clusterip",
                          "flat-routed", "flat-routed-v6", "geneve-overlay", "ipip"}


class Truth:
    """truth.json's names, looked up one row at a time."""

    def __init__(self, names: list[dict[str, Any]]) -> None:
        self.names = [dict(n, address=ipaddress.ip_address(n["address"]).compressed)
                      for n in names]

    def __call__(self, address: Any, port: Any, proto: Any, t: Any) -> str | None:
        if address is None or pd.isna(address):
            return None
        key = ipaddress.ip_address(address).compressed
        port = None if pd.isna(port) else int(port)
        proto = None if pd.isna(proto) else int(proto)
        t = int(t)

        def holds(n: dict[str, Any]) -> bool:
            return (n["address"] == key and (n["from_ns"] is None or n["from_ns"] <= t)
                    and (n["to_ns"] is None or t < n["to_ns"]))

        for n in self.names:
            if holds(n) and n["port"] is not None and n["port"] == port \
                    and n["proto"] == proto:
                return n["name"]
        for n in self.names:
            if holds(n) and n["port"] is None:
                return n["name"]
        return str(address)


@pytest.fixture(scope="module", params=[*NAMED, "docker-snat/sll2"])
def analysed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[str, Any, dict[str, pd.DataFrame], dict[str, Any]]:
    scenario, _, linktype = request.param.partition("/")
    out = tmp_path_factory.mktemp(scenario) / scenario
    generate(make_scenario(scenario, seed=3), out, linktype=linktype or "ether")
    found = pktkit.analyze(out)
    return request.param, found, analysis_tables(found), pktkit.load_truth(out)


def check(table: pd.DataFrame, truth: Truth, address: str, port: str | None,
          proto: str | int | None, time: str | pd.Series, name: str) -> int:
    """Every row's name against truth; returns the rows that are named (not the address)."""
    assert name in table, f"{name} missing"
    times = table[time] if isinstance(time, str) else time
    named = 0
    for row, t in zip(table.itertuples(index=False), times, strict=True):
        row = row._asdict()
        protocol = proto if not isinstance(proto, str) else row[proto]
        expected = truth(row[address], row[port] if port else None, protocol, t)
        got = row[name]
        got = None if pd.isna(got) else str(got)
        assert got == expected, (address, row[address], row[port] if port else None, t)
        named += expected is not None and expected != row[address]
    return named


def test_every_address_in_every_table_is_named_as_truth_says(analysed: tuple) -> None:
    scenario, found, tables, truth_json = analysed
    truth = Truth(truth_json["names"])
    assert truth.names, "the scenario wrote no names"
    packets = found.packets
    true_ts = pd.DataFrame(truth_json["packets"]).set_index(["capture", "frame"])["true_ts_ns"]
    at = true_ts.loc[list(zip(packets["capture"], packets["frame"].astype(int),
                              strict=True))].to_numpy()
    named = 0
    for address, port in (("src", "sport"), ("dst", "dport")):
        named += check(packets, truth, address, port, "proto", pd.Series(at), f"{address}_name")
    for address, port in (("outer_src", "outer_sport"), ("outer_dst", "outer_dport")):
        check(packets, truth, address, port, UDP, pd.Series(at), f"{address}_name")
    assert named, f"{scenario}: no packet named"
    nat = found.nat_flows
    for side in ("orig", "xlat"):
        for end, port in (("src", "sport"), ("dst", "dport")):
            check(nat, truth, f"{side}_{end}", f"{side}_{port}", "proto", "first_ts_ns",
                  f"{side}_{end}_name")
    shakes = tables["handshakes"]
    for address, port in (("src", "sport"), ("dst", "dport")):
        check(shakes, truth, address, port, TCP, "syn_ts_ns", f"{address}_name")
    flows = tables["flows"]
    for end in ("a", "b"):
        check(flows, truth, f"{end}_addr", f"{end}_port", "proto", "first_ts_ns", f"{end}_name")
    for vteps, names in zip(tables["overlays"]["vteps"], tables["overlays"]["vtep_names"],
                            strict=True):
        expected = "; ".join(" ↔ ".join(truth(a, None, None, 0) for a in pair.split(" ↔ "))
                             for pair in vteps.split("; "))
        assert names == expected


def test_names_in_the_other_tables_are_truth_names(analysed: tuple) -> None:
    """The identities table and the latency scopes by pod pair and by service say only
    names truth has."""
    scenario, found, _, truth_json = analysed
    names = {n["name"] for n in truth_json["names"]}
    assert set(found.identities["name"]) <= names
    latency = found.latency
    scopes = latency[latency["metric"].isin(["pod_pair", "service"])]["scope"]
    ends = {end for scope in scopes for end in scope.split(" → ")}
    assert all(end in names or _is_address(end) for end in ends), ends - names
    if scenario.startswith("k8s") or scenario in ("flat-routed", "geneve-overlay", "ipip"):
        assert any(end.startswith("pod:") for end in ends)
    if scenario.startswith("k8s"):
        services = set(latency.loc[latency["metric"] == "service", "scope"])
        assert services and all(s.startswith("service:") for s in services)
        assert set(found.nat_flows["service"].dropna()) <= names
        assert found.nat_flows["service"].notna().all()


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_a_reused_pod_address_names_each_pod_by_time(tmp_path: Path) -> None:
    """k8s-clusterip: the web pod is evicted between two web flows and its replacement
    takes its address; the web connections before are the first pod's, after the second's."""
    out = tmp_path / "clusterip"
    generate(make_scenario("k8s-clusterip", seed=1), out)
    truth = pktkit.load_truth(out)
    web = [n for n in truth["names"] if n["name"].startswith("pod:default/web-")]
    assert len(web) == 2 and web[0]["address"] == web[1]["address"]
    old, new = sorted(web, key=lambda n: n["from_ns"])
    found = pktkit.analyze(out)
    to_web = found.nat_flows[found.nat_flows["xlat_dst"] == old["address"]]
    before = to_web["first_ts_ns"] < new["from_ns"]
    assert before.any() and (~before).any()
    assert set(to_web.loc[before, "xlat_dst_name"]) == {old["name"]}
    assert set(to_web.loc[~before, "xlat_dst_name"]) == {new["name"]}
    rows = found.packets[found.packets["dst"] == old["address"]]
    assert set(rows["dst_name"]) == {old["name"], new["name"]}
