"""What real networks and hosts do beyond a path's delays: queues, loss, reordering, duplicated
records, and node clocks that are off and drift.

``pktkit generate ... --impair KEY=VALUE`` (repeatable):

- ``queue=DURATION``: a congested underlay (a rate-limited switch port, a busy uplink). Each
  link direction between hosts has its own congestion episodes (a Poisson process,
  :data:`EPISODES_PER_S` a second): the queue grows at 0.5–2 s/s (the offered load over the
  line rate) to a peak drawn from a Pareto law (α :data:`PARETO_ALPHA`, from DURATION / 40,
  capped at DURATION), then drains at 0.25–1 s/s. With ``queue=20ms`` the link is congested
  about 13 % of the time, and a packet crossing it then waits milliseconds. A packet waits
  the queue of the moment it crosses; overlapping episodes count as their maximum. The queue
  never shrinks faster than time passes, so the link stays first in, first out.
- ``loss=FRACTION``: each packet crossing an underlay link is dropped with that probability.
  TCP sends it again after its retransmission timeout (Linux: 1 s for a SYN, else
  ``TCP_RTO_MIN`` 200 ms plus the round trip, doubling on each further loss), with a new IPv4
  ID and TCP timestamp; the conversation waits for it. A lost UDP or ICMP packet is gone, and
  so is the answer it would have had.
- ``reorder=FRACTION``: a packet crossing an underlay link is held 20–200 µs longer (another
  path, another NIC queue) and may be overtaken by the next packet of its flow.
- ``duplicate=FRACTION``: a frame is recorded twice at one capture point, the copy 0–3 µs
  after the original (a mirror port, a capture on a bond and its slave).

``--clock-offset SECONDS`` and ``--clock-drift PPM`` give the second node a clock that reads
``t + offset + drift × (t − epoch)`` at true time t (:class:`ClockModel`).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from pktkit.errors import UsageError
from pktkit.units import duration_text, parse_duration

IMPAIRMENTS = ("queue", "loss", "reorder", "duplicate")
MAX_FRACTION = 0.5  # beyond it TCP would spend the capture retransmitting
MAX_DRIFT_PPM = 500.0  # crystals are within ±100 ppm; the analyzer assumes at most this
EPISODES_PER_S = 30.0
PARETO_ALPHA = 1.2
PARETO_FROM = 1 / 40  # of the cap: the smallest peak
RISE = (0.5, 2.0)  # s of queue per s while an episode builds up
DRAIN = (0.25, 1.0)  # s of queue drained per s (at most 1: first in, first out)
REORDER_HOLD_US = (20, 200)
DUPLICATE_GAP_US = (0, 3)
TCP_RTO_MIN_NS = 200_000_000
TCP_SYN_RTO_NS = 1_000_000_000


@dataclass(frozen=True)
class Impairments:
    """The ``--impair`` settings (zero: off)."""

    queue_ns: int = 0
    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0

    def __bool__(self) -> bool:
        return any(dataclasses.astuple(self))

    def describe(self) -> dict[str, str | float]:
        """As ``truth.json`` records them (the settings that are on)."""
        out: dict[str, str | float] = {}
        if self.queue_ns:
            out["queue"] = duration_text(self.queue_ns)
        for name in ("loss", "reorder", "duplicate"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out


def parse_impairments(items: Iterable[str]) -> Impairments:
    """``--impair`` values (``KEY=VALUE``) into :class:`Impairments`; bad ones raise a
    one-line :class:`UsageError`."""
    values: dict[str, int | float] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or key not in IMPAIRMENTS:
            raise UsageError(f"--impair {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(IMPAIRMENTS)} (e.g. queue=20ms, loss=0.01)")
        if key in values:
            raise UsageError(f"--impair {key} given twice; give each impairment once")
        if key == "queue":
            values["queue_ns"] = parse_duration(f"--impair {key}", value)
            values[key] = 1
            continue
        try:
            fraction = float(value)
        except ValueError:
            fraction = math.nan
        if not 0 <= fraction <= MAX_FRACTION:
            raise UsageError(f"--impair {key}={value!r}: give a fraction of the packets, "
                             f"0..{MAX_FRACTION}")
        values[key] = fraction
    values.pop("queue", None)
    return Impairments(**values)  # type: ignore[arg-type]


def check_drift(drift_ppm: float) -> float:
    if not -MAX_DRIFT_PPM <= drift_ppm <= MAX_DRIFT_PPM:
        raise UsageError(f"--clock-drift {drift_ppm!r} is out of range; give "
                         f"-{MAX_DRIFT_PPM:g}..{MAX_DRIFT_PPM:g} ppm")
    return float(drift_ppm)


@dataclass(frozen=True)
class ClockModel:
    """A node's clock: it reads ``t + offset_ns + drift_ppm × 1e-6 × (t − at_ns)`` at true
    time t (ns since the epoch)."""

    offset_ns: int = 0
    drift_ppm: float = 0.0
    at_ns: int = 0

    def reading(self, true_ns: int) -> int:
        """The clock's reading, whole ns (rounded down, as a counter is)."""
        return true_ns + self.offset_ns + math.floor(self.drift_ppm * (true_ns - self.at_ns)
                                                     / 1e6)

    def describe(self) -> dict[str, int | float]:
        return {"offset_ns": self.offset_ns, "drift_ppm": self.drift_ppm, "at_ns": self.at_ns}


@dataclass(frozen=True)
class _Episode:
    start: float  # ns
    peak: float
    rise: float
    drain: float

    def wait(self, t: float) -> float:
        up = self.peak / self.rise
        if t < self.start:
            return 0.0
        if t < self.start + up:
            return (t - self.start) * self.rise
        return max(0.0, self.peak - (t - self.start - up) * self.drain)


class _LinkQueue:
    """The congestion episodes of one link direction, drawn in time order on first need from
    the link's own random stream (so a link's queue does not depend on what asked first)."""

    def __init__(self, rng: random.Random, cap_ns: int) -> None:
        self.rng, self.cap = rng, float(cap_ns)
        self.starts: list[float] = []
        self.episodes: list[_Episode] = []
        self.longest = self.cap / RISE[0] + self.cap / DRAIN[0]
        self.scale = self.cap * PARETO_FROM

    def _draw_until(self, t: float) -> None:
        while not self.starts or self.starts[-1] <= t:
            start = (self.starts[-1] if self.starts else 0.0) \
                + self.rng.expovariate(EPISODES_PER_S) * 1e9
            peak = min(self.cap, self.scale * (1.0 - self.rng.random()) ** (-1 / PARETO_ALPHA))
            episode = _Episode(start, peak, self.rng.uniform(*RISE), self.rng.uniform(*DRAIN))
            self.starts.append(start)
            self.episodes.append(episode)

    def wait_ns(self, t: float) -> int:
        self._draw_until(t)
        wait = 0.0
        k = bisect.bisect_right(self.starts, t) - 1
        while k >= 0 and self.starts[k] >= t - self.longest:
            wait = max(wait, self.episodes[k].wait(t))
            k -= 1
        return round(wait / 1000) * 1000  # whole µs, as every delay of the engine


class Underlay:
    """The impairments of one run, drawn from their own random streams: an unimpaired run
    draws nothing, so its timing is the same with or without this object."""

    def __init__(self, impairments: Impairments, seed: str) -> None:
        self.impairments = impairments
        self.seed = seed
        self.rng = random.Random(f"{seed}:impair")
        self.queues: dict[str, _LinkQueue] = {}

    def queue_wait_ns(self, link: str, t_ns: int) -> int:
        """The queue a packet meets on ``link`` (one direction of one link) at time t."""
        if not self.impairments.queue_ns:
            return 0
        if link not in self.queues:
            self.queues[link] = _LinkQueue(random.Random(f"{self.seed}:queue:{link}"),
                                           self.impairments.queue_ns)
        return self.queues[link].wait_ns(float(t_ns))

    def lost(self) -> bool:
        return bool(self.impairments.loss) and self.rng.random() < self.impairments.loss

    def reorder_hold_ns(self) -> int:
        """Extra time a reordered packet is held on the link (0: not reordered)."""
        if not self.impairments.reorder or self.rng.random() >= self.impairments.reorder:
            return 0
        return self.rng.randint(*REORDER_HOLD_US) * 1000

    def duplicate_gap_ns(self) -> int | None:
        """When a duplicate record follows the original (None: no duplicate)."""
        if not self.impairments.duplicate or self.rng.random() >= self.impairments.duplicate:
            return None
        return self.rng.randint(*DUPLICATE_GAP_US) * 1000
