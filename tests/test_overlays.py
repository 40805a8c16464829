"""pktkit.analysis.overlays: each sighting's overlay from its packet's tunnelled copy, and one
flow_id per conversation per overlay across NAT, tunnels and files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pktkit.analysis.overlays import conversation_ids, overlay_columns


def table(rows: list[dict]) -> pd.DataFrame:
    defaults = {"encap": "none", "vni": None, "src": "10.0.0.2", "dst": "10.0.0.3",
                "sport": 40000, "dport": 80, "proto": 6, "outer_src": None, "outer_dst": None,
                "frag_offset": 0}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    frame["encap"] = frame["encap"].astype("category")
    for name in ("vni", "sport", "dport", "proto", "frag_offset"):
        frame[name] = frame[name].astype("Int64")
    for name in ("src", "dst", "outer_src", "outer_dst"):
        frame[name] = frame[name].astype("string")
    return frame


def test_every_sighting_gets_its_packets_overlay() -> None:
    """Two tenants with identical inner addresses and ports: packet 0 of VNI 1000, packet 1 of
    VNI 2000, each seen decapsulated on a veth and encapsulated on eth0; packet 2 never
    tunnelled."""
    packets = table([{"encap": "none"}, {"encap": "vxlan", "vni": 1000},
                     {"encap": "none"}, {"encap": "vxlan", "vni": 2000},
                     {"encap": "none", "src": "10.1.0.1", "dst": "10.1.0.2"}])
    packet_id = np.array([0, 0, 1, 1, 2])
    encap, vni = overlay_columns(packets, packet_id)
    assert list(encap) == ["vxlan", "vxlan", "vxlan", "vxlan", "none"]
    assert list(vni.to_numpy(np.int64, na_value=-1)) == [1000, 1000, 2000, 2000, -1]
    flow = conversation_ids(packets, packet_id, encap, vni)
    assert list(flow) == [0, 0, 1, 1, 2]  # the tenants' identical tuples apart


def test_both_directions_and_both_sides_of_a_nat_are_one_conversation() -> None:
    """The request seen before and after DNAT (one packet), the reply after and before the
    reverse translation (one packet): one flow; another client's connection: another."""
    packets = table([
        {"dst": "10.96.0.10", "dport": 80},  # request, before DNAT
        {"dst": "10.244.1.7", "dport": 8080},  # request, after DNAT
        {"src": "10.244.1.7", "sport": 8080, "dst": "10.0.0.2", "dport": 40000},  # reply
        {"src": "10.96.0.10", "sport": 80, "dst": "10.0.0.2", "dport": 40000},  # reply, back
        {"sport": 40001, "dst": "10.96.0.10", "dport": 80},  # another connection
    ])
    packet_id = np.array([0, 0, 1, 1, 2])
    flow = conversation_ids(packets, packet_id, *overlay_columns(packets, packet_id))
    assert list(flow) == [0, 0, 0, 0, 1]


def test_frames_without_addresses_have_no_flow() -> None:
    packets = table([{"src": None, "dst": None, "proto": None}, {}])
    packet_id = np.array([0, 1])
    flow = conversation_ids(packets, packet_id, *overlay_columns(packets, packet_id))
    assert flow.isna().tolist() == [True, False] and flow[1] == 0
    assert str(pd.Series(flow).dtype) == "Int64"


def test_a_tunnel_packets_pieces_belong_to_its_conversation() -> None:
    """Two conversations of tenant 2000 between the same VTEPs, each with one outer packet too
    big for the underlay: the first piece holds the VXLAN header and the inner packet, the
    other piece only the outer IP header (the VTEPs, UDP, an offset). The piece has its
    packet's overlay and conversation; the VTEP pair joins nothing."""
    vteps = {"outer_src": "192.168.10.1", "outer_dst": "192.168.10.2"}
    piece = {"src": "192.168.10.1", "dst": "192.168.10.2", "proto": 17, "sport": None,
             "dport": None, "frag_offset": 1480}
    rows = []
    for sport in (40000, 40001):
        rows += [{"sport": sport, "proto": 17},  # the pod's veth
                 {"sport": sport, "proto": 17, "encap": "vxlan", "vni": 2000, **vteps},
                 piece]
    packets = table(rows)
    packet_id = np.array([0, 0, 0, 1, 1, 1])
    encap, vni = overlay_columns(packets, packet_id)
    assert list(encap) == ["vxlan"] * 6 and set(vni) == {2000}
    assert list(conversation_ids(packets, packet_id, encap, vni)) == [0, 0, 0, 1, 1, 1]
