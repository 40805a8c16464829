"""The scenario registry: every builder ``pktkit generate`` knows, by name."""

from __future__ import annotations

from pktkit.craft.engine import Scenario
from pktkit.craft.scenarios.docker import DockerPortmap, DockerSnat
from pktkit.craft.scenarios.k8s import K8sClusterIp, K8sNodePort
from pktkit.craft.scenarios.overlay import GeneveOverlay, Ipip, Nvgre, VxlanOverlay, VxlanOverlayV6
from pktkit.craft.scenarios.routed import FlatRouted, FlatRoutedV6

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        DockerSnat,
        DockerPortmap,
        K8sNodePort,
        K8sClusterIp,
        FlatRouted,
        FlatRoutedV6,
        VxlanOverlay,
        VxlanOverlayV6,
        GeneveOverlay,
        Nvgre,
        Ipip,
    )
}
