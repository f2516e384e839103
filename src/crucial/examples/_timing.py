"""Per-iteration timing breakdown shared by the iterative examples.

The seed reports where an iteration's time goes -- computing on the local
partition, reading and updating shared state, waiting at the barrier -- and
so do the examples: every thread keeps a :class:`Stopwatch`, returns it (it
pickles: plain lists of floats), and the driver prints :func:`breakdown` of
them all.  Pure standard library, so the single-machine originals use it
unchanged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["PHASES", "Stopwatch", "breakdown", "mean_per_iteration", "plot_functions"]

#: the phases an iteration is split into, in the order they are reported
PHASES = ("compute", "shared state", "sync")


class Stopwatch:
    """Seconds spent in each phase, one entry per iteration.

    ::

        watch = Stopwatch()
        for it in range(n):
            with watch.phase("compute"): ...
            with watch.phase("shared state"): ...
            with watch.phase("sync"): barrier.wait()
            watch.lap()
    """

    def __init__(self) -> None:
        self.laps: list[dict[str, float]] = []
        self._current: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in self._current:
            raise ValueError(f"unknown phase {name!r}: one of {', '.join(PHASES)}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self._current[name] += time.perf_counter() - start

    def lap(self) -> None:
        """End the current iteration."""
        self.laps.append(self._current)
        self._current = dict.fromkeys(PHASES, 0.0)


def mean_per_iteration(watches: Sequence[Stopwatch]) -> dict[str, float]:
    """Each phase's seconds per iteration, averaged over threads and iterations."""
    laps = [lap for w in watches for lap in w.laps]
    if not laps:
        return dict.fromkeys(PHASES, 0.0)
    return {name: sum(lap[name] for lap in laps) / len(laps) for name in PHASES}


def breakdown(watches: Sequence[Stopwatch]) -> str:
    """One line: milliseconds per iteration in each phase, and their share."""
    mean = mean_per_iteration(watches)
    total = sum(mean.values()) or 1.0
    parts = [f"{name} {1e3 * sec:.2f} ms ({100 * sec / total:.0f}%)" for name, sec in mean.items()]
    iterations = max((len(w.laps) for w in watches), default=0)
    return f"per iteration ({iterations} iterations, {len(watches)} threads): " + ", ".join(parts)


def plot_functions(path: str | None) -> None:
    """``--plot PATH``: draw the timeline of every cloud function the run started (needs ``crucial[plot]``).

    Imported and called alike by the originals and the ports; an original
    starts no cloud function, so it says so instead of drawing an empty plot.
    """
    if not path:
        return
    from crucial.compute.timeline import recorded

    timeline = recorded()
    if not timeline.calls:
        print(f"--plot: no cloud function ran (the single-machine original runs threads); {path} not written", file=sys.stderr)
        return
    timeline.plot(path)
    summary = timeline.summary()
    print(f"timeline of {summary['calls']} cloud functions on {summary['workers']} workers written to {path}")
