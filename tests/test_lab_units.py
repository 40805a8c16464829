"""Parts of the lab that need no root: markers, impairment parsing, seeded plans, scenario
parameters, the signal guard, the lab's own reading of conntrack dumps."""

from __future__ import annotations

import os
import signal

import pytest

from pktkit.errors import UsageError
from pktkit.lab import marker
from pktkit.lab.conntrack import nat_entry
from pktkit.lab.guard import Guard, Interrupted
from pktkit.lab.impair import Impairment, parse_impair
from pktkit.lab.scenarios import SCENARIOS, make_lab_scenario


def test_marker_survives_any_cut() -> None:
    token = marker.Token(12, "q", 3, 1500, 64)
    data = marker.payload(token)
    assert len(data) == 1500 and marker.find(data) == token
    for start in range(0, 1500 - 2 * marker.TOKEN_LEN, 97):
        assert marker.find(data[start : start + 2 * marker.TOKEN_LEN]) == token
    with pytest.raises(ValueError):
        marker.payload(marker.Token(1, "q", 0, 10, 0))


def test_impair_parsing() -> None:
    assert parse_impair([]) == Impairment()
    assert parse_impair(["queue=5mbit,loss=2%", "node=node-a"]) == Impairment("5mbit", 2.0,
                                                                              "node-a")
    for bad in ("queue=fast", "loss=0", "loss=90", "jitter=1ms", "queue"):
        with pytest.raises(UsageError):
            parse_impair([bad])


@pytest.mark.parametrize("name", ["docker-snat", "docker-portmap", "k8s-nodeport"])
def test_plans_are_seeded(name: str) -> None:
    def plan(seed: int) -> list[object]:
        return make_lab_scenario(name, seed=seed).plan()  # type: ignore[attr-defined]

    assert plan(3) == plan(3) and plan(3) != plan(4)


def test_scenarios_and_overrides() -> None:
    assert set(SCENARIOS) == {"docker-snat", "docker-portmap", "flat-routed", "vxlan-overlay",
                              "k8s-nodeport"}
    assert make_lab_scenario("vxlan-overlay", overrides={"mtu_2000": "1450"}).params.mtu_2000 \
        == 1450
    with pytest.raises(UsageError):
        make_lab_scenario("vxlan-overlay", overrides={"mtu_2000": "99"})
    with pytest.raises(UsageError):
        make_lab_scenario("geneve-overlay")


def test_guard_holds_signals_in_critical_sections() -> None:
    guard = Guard()
    previous = signal.signal(signal.SIGUSR1, guard.handler)
    try:
        with pytest.raises(Interrupted) as caught, guard.critical():
            os.kill(os.getpid(), signal.SIGUSR1)
            reached = True  # the signal did not cut the section
        assert reached and caught.value.signum == signal.SIGUSR1
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_guard_hands_signals_to_the_programs_handler() -> None:
    """Under the CLI, SIGTERM raises its Terminated: the lab's guard must raise that, not its
    own, so that the exit status is 128 + signal."""

    class Terminated(BaseException):
        pass

    def program(signum: int, frame: object) -> None:
        raise Terminated(signum)

    guard = Guard({signal.SIGUSR1: program})
    previous = signal.signal(signal.SIGUSR1, guard.handler)
    try:
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_the_labs_conntrack_reading() -> None:
    """Lines of a docker-snat run's ``conntrack -L -o extended`` (docs/FIDELITY.md): the
    second container's connection moved to port 9609, its echo to identifier 56836."""
    kept = nat_entry("ipv4     2 tcp      6 118 TIME_WAIT src=172.17.0.2 dst=203.0.113.10 "
                     "sport=46870 dport=80 src=203.0.113.10 dst=192.168.1.10 sport=80 "
                     "dport=46870 [ASSURED] mark=0 use=1")
    moved = nat_entry("tcp 6 118 TIME_WAIT src=172.17.0.3 dst=203.0.113.10 sport=46870 "
                      "dport=80 src=203.0.113.10 dst=192.168.1.10 sport=80 dport=9609 "
                      "[ASSURED] mark=0 use=1")
    echo = nat_entry("icmp 1 28 src=172.17.0.3 dst=203.0.113.10 type=8 code=0 id=26613 "
                     "src=203.0.113.10 dst=192.168.1.10 type=0 code=0 id=56836 mark=0 use=1")
    nodeport = nat_entry("tcp 6 117 TIME_WAIT src=198.51.100.23 dst=192.168.50.11 "
                         "sport=41000 dport=30080 src=10.244.1.7 dst=192.168.50.11 sport=80 "
                         "dport=58268 [ASSURED] mark=0 use=1")
    plain = nat_entry("udp 17 29 src=10.0.0.2 dst=10.0.0.3 sport=5353 dport=53 src=10.0.0.3 "
                      "dst=10.0.0.2 sport=53 dport=5353 mark=0 use=1")
    assert kept is not None and moved is not None and echo is not None and nodeport
    assert (kept.kind, kept.xlat) == ("snat", ("192.168.1.10", 46870, "203.0.113.10", 80))
    assert moved.xlat == ("192.168.1.10", 9609, "203.0.113.10", 80)
    assert (echo.kind, echo.proto, echo.orig, echo.xlat) == (
        "snat", 1, ("172.17.0.3", 26613, "203.0.113.10", 26613),
        ("192.168.1.10", 56836, "203.0.113.10", 56836))
    assert (nodeport.kind, nodeport.xlat) == ("snat+dnat", ("192.168.50.11", 58268,
                                                            "10.244.1.7", 80))
    assert plain is None
