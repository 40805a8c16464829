"""The scenario registry: every builder ``pktkit generate`` knows, by name."""

from __future__ import annotations

from pktkit.craft.engine import Scenario
from pktkit.craft.scenarios.docker import DockerPortmap, DockerSnat

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        DockerSnat,
        DockerPortmap,
    )
}
