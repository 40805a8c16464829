"""The lab's scenarios by name: the generator's, staged with the real kernel."""

from __future__ import annotations

from collections.abc import Mapping

from pktkit.craft import params as P
from pktkit.errors import UsageError
from pktkit.lab.scenarios.base import LabScenario
from pktkit.lab.scenarios.docker import DockerPortmapLab, DockerSnatLab
from pktkit.lab.scenarios.overlay import VxlanOverlayLab
from pktkit.lab.scenarios.routed import FlatRoutedLab, K8sNodePortLab

SCENARIOS: dict[str, type[LabScenario]] = {
    cls.name: cls
    for cls in (DockerSnatLab, DockerPortmapLab, FlatRoutedLab, VxlanOverlayLab, K8sNodePortLab)
}


def list_scenarios() -> list[tuple[str, str]]:
    """(name, one-line description) of every lab scenario."""
    return [(name, cls.description) for name, cls in SCENARIOS.items()]


def make_lab_scenario(name: str, *, seed: int = 1, flows: int | None = None,
                      overrides: Mapping[str, str] | None = None) -> LabScenario:
    """A scenario with validated parameters (``overrides`` as from ``--set``)."""
    if name not in SCENARIOS:
        raise UsageError(f"unknown lab scenario {name!r}; choose one of: "
                         f"{', '.join(SCENARIOS)}")
    cls = SCENARIOS[name]
    params = P.apply_overrides(P.validate(cls.Params()), overrides or {})
    if flows is not None:
        P.check_range("--flows", flows, 1, 1000, "flow count")
    return cls(params, seed, flows)
