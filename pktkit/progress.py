"""Progress bars through tqdm: a stage-by-stage bar for ``pktkit analyze`` and ``analyze()``.

The command line shows one on a terminal only (never with ``--quiet`` or ``--json``, nor when
stderr is redirected); a notebook gets tqdm.auto's widget by passing ``progress=True`` to
:func:`pktkit.analyze`.
"""

from __future__ import annotations

import sys
from typing import Protocol

STEPS = 1000  # the bar's resolution: fractions of the whole job


class Progress(Protocol):
    """``progress(stage, done, total)``: called as the stages of a job complete."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


class ProgressBar:
    """A bar over a whole job, moved to a fraction with a label (``bar(label, fraction)``)."""

    def __init__(self, enabled: bool, *, notebook: bool = False) -> None:
        if notebook:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
        self.bar = tqdm(total=STEPS, disable=not enabled, file=sys.stderr, leave=False,
                        dynamic_ncols=True, mininterval=0, bar_format="{l_bar}{bar}|")

    def __call__(self, label: str, fraction: float) -> None:
        self.bar.set_description_str(label[:60], refresh=False)
        self.bar.n = round(STEPS * min(max(fraction, 0.0), 1.0))
        self.bar.refresh()

    def stages(self) -> Progress:
        """This bar as a :class:`Progress` callback: each completed stage moves it on."""
        return lambda stage, done, total: self(stage, done / total)

    def close(self) -> None:
        self.bar.close()


def terminal_bar(enabled: bool) -> ProgressBar:
    """A bar on stderr when ``enabled`` and stderr is a terminal; otherwise a silent one."""
    return ProgressBar(enabled and sys.stderr.isatty())
