"""Timelines: when each function of an executor (or ``Pool``) was submitted, started and finished, where, how it ended.

::

    with crucial.ServerlessExecutor() as ex:
        list(ex.map(work, range(100)))
    ex.timeline.calls[0]   # Call(name='work', submitted=..., started=..., finished=..., worker='vm:4242', status='done')
    ex.plot("run.png")     # the calls as bars over time, and a histogram of their durations

Every cloud function of the process is also in :func:`recorded` (cloud
threads included), which is what the examples' ``--plot PATH`` draws.
Times are the caller's wall clock (``time.time()``): *submitted* when the
program handed the function over, *started* when it was sent to the backend
(after waiting for a free ``max_workers`` slot), *finished* when its outcome
came back.  *worker* is ``host:pid`` of the process that ran it, as the
worker reported it.  Plotting needs matplotlib: ``pip install 'crucial[plot]'``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError

__all__ = ["Call", "Timeline", "recorded"]

#: status of a call: waiting for a slot, sent to the backend, and the three ends
QUEUED, RUNNING, DONE, ERROR, CANCELLED = "queued", "running", "done", "error", "cancelled"


@dataclass
class Call:
    """One function's record.  Times in seconds since the epoch; ``None`` until they happen."""

    name: str
    submitted: float
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    status: str = QUEUED
    attempts: int = 0  # invocations, retries included

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish."""
        return None if self.started is None or self.finished is None else self.finished - self.started

    def start(self) -> None:
        self.attempts += 1
        if self.started is None:
            self.started = time.time()
        self.status = RUNNING

    def end(self, status: str, worker: str | None = None) -> None:
        self.finished = time.time()
        self.status = status
        if worker:
            self.worker = worker


class Timeline:
    """The calls of one executor or pool, in submission order (thread-safe).

    It keeps the last ``maxlen`` calls (``dropped`` counts the older ones),
    so a long-lived executor does not grow without bound.
    """

    def __init__(self, maxlen: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._calls: deque[Call] = deque(maxlen=maxlen)
        self.dropped = 0

    def add(self, name: str, call: Call | None = None) -> Call:
        """Record a new call named ``name`` (or ``call``, already recorded elsewhere)."""
        call = call or Call(name, time.time())
        with self._lock:
            if len(self._calls) == self._calls.maxlen:
                self.dropped += 1
            self._calls.append(call)
        return call

    @property
    def calls(self) -> list[Call]:
        """A snapshot of the records."""
        with self._lock:
            return list(self._calls)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.calls]

    def summary(self) -> dict[str, Any]:
        """Counts by status, the workers used, and the wall time from the first submission to the last finish."""
        calls = self.calls
        statuses: dict[str, int] = {}
        for c in calls:
            statuses[c.status] = statuses.get(c.status, 0) + 1
        ends = [c.finished for c in calls if c.finished is not None]
        return {
            "calls": len(calls),
            "statuses": statuses,
            "workers": len({c.worker for c in calls if c.worker}),
            "wall_s": (max(ends) - min(c.submitted for c in calls)) if ends else 0.0,
        }

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Draw the calls over time (waiting light, running coloured by how they ended) and a histogram of durations."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ConfigError("plotting a timeline needs matplotlib: pip install 'crucial[plot]'") from exc
        calls = self.calls
        if not calls:
            raise ValueError("nothing to plot: no function was submitted")
        t0 = min(c.submitted for c in calls)
        now = time.time()
        colours = {DONE: "tab:green", ERROR: "tab:red", CANCELLED: "tab:gray", RUNNING: "tab:blue", QUEUED: "tab:gray"}
        fig, (bars, hist) = plt.subplots(2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [3, 1]})
        try:
            for i, c in enumerate(calls):
                start = c.started if c.started is not None else (c.finished or now)
                bars.barh(i, start - c.submitted, left=c.submitted - t0, color="lightgray", height=0.8)
                if c.started is not None:
                    end = c.finished if c.finished is not None else now
                    bars.barh(i, max(end - c.started, 1e-4), left=c.started - t0, color=colours[c.status], height=0.8)
            bars.set_xlabel("seconds since the first submission")
            bars.set_ylabel("function (in submission order)")
            workers = len({c.worker for c in calls if c.worker})
            bars.set_title(title or f"{len(calls)} functions on {workers} workers (grey: waiting; red: failed)")
            bars.invert_yaxis()
            durations = [d for d in (c.duration for c in calls) if d is not None]
            hist.hist(durations or [0.0], bins=min(30, max(1, len(durations))), color="tab:blue")
            hist.set_xlabel("duration (s), start to finish")
            hist.set_ylabel("functions")
            fig.tight_layout()
            out = Path(path)
            fig.savefig(out, dpi=100)
        finally:
            plt.close(fig)
        return out


_process = Timeline()


def recorded() -> Timeline:
    """Every cloud function this process started -- cloud threads and executor tasks alike."""
    return _process
