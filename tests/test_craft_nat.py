"""The builders' conntrack (pktkit.craft.nat): NAT decisions against what netfilter's rules
imply (nf_nat_l4proto_unique_tuple: keep the port when free, pick another on collision)."""

from __future__ import annotations

import random

from pktkit.craft.nat import Conntrack, NatLedger


def table() -> Conntrack:
    return Conntrack(random.Random(7), NatLedger())


def test_masquerade_keeps_the_source_port_when_free_and_changes_it_on_collision() -> None:
    ct = table()
    first = ct.translate((6, "172.17.0.2", 40000, "203.0.113.10", 80), snat_to="192.168.1.10")
    second = ct.translate((6, "172.17.0.3", 40000, "203.0.113.10", 80), snat_to="192.168.1.10")
    assert first.xlat == (6, "192.168.1.10", 40000, "203.0.113.10", 80)
    assert second.xlat[1] == "192.168.1.10" and second.xlat[3:] == ("203.0.113.10", 80)
    assert second.xlat[2] != 40000 and 1024 <= second.xlat[2] <= 65535
    assert (first.kind, second.kind) == ("snat", "snat")
    # A different server makes the same port unique again.
    third = ct.translate((6, "172.17.0.3", 40000, "203.0.113.11", 80), snat_to="192.168.1.10")
    assert third.xlat[2] == 40000


def test_icmp_identifier_is_rewritten_on_collision_and_stays_snat() -> None:
    ct = table()
    ct.translate((1, "172.17.0.2", 77, "203.0.113.10", 77), snat_to="192.168.1.10")
    other = ct.translate((1, "172.17.0.3", 77, "203.0.113.10", 77), snat_to="192.168.1.10")
    assert other.xlat[2] == other.xlat[4] != 77
    assert other.kind == "snat"


def test_dnat_and_snat_together_and_ledger_numbering() -> None:
    ledger = NatLedger()
    ct = Conntrack(random.Random(1), ledger)
    entry = ct.translate((6, "198.51.100.7", 51000, "192.168.1.20", 30080),
                         snat_to="192.168.1.20", dnat_to=("10.244.1.5", 80))
    assert entry.kind == "snat+dnat"
    assert entry.xlat == (6, "192.168.1.20", 51000, "10.244.1.5", 80)
    dnat_only = ct.translate((6, "198.51.100.8", 51000, "192.168.1.10", 8080),
                             dnat_to=("172.17.0.2", 80))
    assert dnat_only.kind == "dnat"
    assert [f.nat_flow_id for f in ledger.flows] == [1, 2]
    assert ledger.flows[0].orig_dport == 30080 and ledger.flows[0].xlat_dport == 80


def test_expired_entries_free_their_ports() -> None:
    ct = table()
    first = ct.translate((17, "172.17.0.2", 5353, "198.51.100.53", 53), snat_to="192.168.1.10")
    first.expires_ns = 100
    ct.expire(101)
    again = ct.translate((17, "172.17.0.3", 5353, "198.51.100.53", 53), snat_to="192.168.1.10")
    assert again.xlat[2] == 5353
