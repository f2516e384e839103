r"""The Santa Claus problem, ported through the drop-in modules.

``crucial.examples.original.santa`` with ``from crucial import shared,
threading`` for ``import threading`` and ``@shared`` on its four monitor
classes: their ``threading.Condition``\ s are made on the node that hosts
each, where they are monitors, and every entity -- a ``threading.Thread`` --
is a cloud thread.  Nothing else changed.

    python -m crucial.examples.dropin.santa --deliveries 15 --work-delay 0.2
"""

from __future__ import annotations

import argparse
import random
import sys
from crucial import shared, threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from crucial.examples._santa_check import WORK, summarize
from crucial.examples._timing import Stopwatch, breakdown, plot_functions

#: the thread class of the entities, by flavour
FLAVOURS: dict[str, Callable[..., Any]] = {"threads": threading.Thread}

ELF_GROUP = 3  # elves that wake Santa up together

#: the delays of the seed's Java solution, in units of --work-delay: (low, high) of uniform draws
DELAYS = {
    "elves": ((0.0, 2.0), (0.0, 0.5)),  # work until a problem comes up; inside Santa's workshop
    "reindeer": ((0.9, 1.1), (0.0, 0.02)),  # holidays until Christmas; delivering toys
}


@shared
class Trace:
    """The log the monitors and the entities append their events to, and where they leave their timings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, str, Any]] = []
        self._watches: dict[str, Stopwatch] = {}

    def append(self, what: str, kind: str, who: Any) -> None:
        with self._lock:
            self._events.append((what, kind, who))

    def keep_watch(self, name: str, watch: Stopwatch) -> None:
        with self._lock:
            self._watches[name] = watch

    def events(self) -> list[tuple[str, str, Any]]:
        with self._lock:
            return list(self._events)

    def watches(self) -> dict[str, Stopwatch]:
        with self._lock:
            return dict(self._watches)


@shared
class Bell:
    """Santa's attention: whoever completes a group rings, and Santa sleeps until somebody has."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.rings = 0

    def ring(self) -> None:
        with self._cond:
            self.rings += 1
            self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.rings > 0)
            self.rings -= 1


@shared
class Group:
    """Elves (or reindeer) gathering for Santa; full, it rings his bell and takes no one until released."""

    def __init__(self, kind: str, size: int, trace: Any, bell: Any) -> None:
        self._cond = threading.Condition()
        self.kind = kind
        self.size = size
        self.trace = trace
        self.bell = bell
        self.members: list[int] = []
        self.disbanded = False

    def join(self, who: int) -> bool:
        """Wait for a place in the group; ``False`` once Santa has retired."""
        with self._cond:
            self._cond.wait_for(lambda: self.disbanded or len(self.members) < self.size)
            if self.disbanded:
                return False
            self.members.append(who)
            self.trace.append("join", self.kind, who)  # inside the monitor: the trace has the group's own order
            if len(self.members) == self.size:
                self.bell.ring()
            return True

    def look(self) -> tuple[int, ...] | None:
        """Santa: the members if the group is full, else ``None`` (he never waits here)."""
        with self._cond:
            members = tuple(self.members) if len(self.members) == self.size else None
            self.trace.append("look", self.kind, members)
            return members

    def release(self) -> None:
        """Santa, once the group has left the room: it may form again."""
        with self._cond:
            self.members.clear()
            self.trace.append("release", self.kind, ())
            self._cond.notify_all()

    def disband(self) -> None:
        with self._cond:
            self.disbanded = True
            self._cond.notify_all()


@shared
class Gate:
    """A barrier Santa operates: he lets ``count`` through and returns once they all have passed."""

    def __init__(self, side: str, kind: str, trace: Any) -> None:
        self._cond = threading.Condition()
        self.side = side  # "in" or "out"
        self.kind = kind
        self.trace = trace
        self.passes = 0  # entities that may still go through
        self.closed = False

    def go_through(self, who: int) -> bool:
        """Wait until Santa opens the gate; ``False`` if he closed it for good instead."""
        with self._cond:
            self._cond.wait_for(lambda: self.passes > 0 or self.closed)
            if self.passes == 0:
                return False
            self.passes -= 1
            self.trace.append(self.side, self.kind, who)
            if self.passes == 0:
                self._cond.notify_all()
            return True

    def operate(self, count: int) -> None:
        with self._cond:
            self.passes = count
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.passes == 0)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


@dataclass
class Side:
    """One kind of helper: its group and the two gates of its room."""

    kind: str
    group: Any
    entry: Any
    exit: Any


@dataclass
class NorthPole:
    trace: Any
    bell: Any
    elves: Side
    reindeer: Side


def north_pole(elf_group: int, reindeer: int) -> NorthPole:
    trace, bell = Trace(), Bell()
    sides = {}
    for kind, size in (("elves", elf_group), ("reindeer", reindeer)):
        group = Group(kind, size, trace, bell)
        sides[kind] = Side(kind, group, Gate("in", kind, trace), Gate("out", kind, trace))
    return NorthPole(trace, bell, sides["elves"], sides["reindeer"])


# --------------------------------------------------------------------------- the entities


@contextmanager
def retiring(trace: Any, kind: str, who: int) -> Iterator[None]:
    """Log the entity's end, or what it raised: the checker reports both (a thread's exception is not returned)."""
    try:
        yield
    except BaseException:
        trace.append("error", kind, traceback.format_exc())
        raise
    trace.append("retire", kind, who)


def helper(kind: str, who: int, pole: NorthPole, delay: float, seed: int) -> None:
    """An elf or a reindeer: work (or holidays), join the group, go through Santa's room with it; again."""
    side = pole.elves if kind == "elves" else pole.reindeer
    away, inside = DELAYS[kind]
    rnd = random.Random(seed)
    watch = Stopwatch()
    with retiring(pole.trace, kind, who):
        while True:
            with watch.phase("compute"):
                time.sleep(delay * rnd.uniform(*away))
            with watch.phase("shared state"):
                if not side.group.join(who):
                    break
            with watch.phase("sync"):
                if not side.entry.go_through(who):
                    break
            with watch.phase("compute"):
                time.sleep(delay * rnd.uniform(*inside))
            with watch.phase("sync"):
                side.exit.go_through(who)
            watch.lap()
        pole.trace.keep_watch(f"{kind} {who}", watch)


def santa(pole: NorthPole, deliveries: int) -> None:
    """Sleep until a group is full, serve it, and again until the last delivery; then send everybody home."""
    watch = Stopwatch()
    with retiring(pole.trace, "santa", 0):
        done = 0
        while done < deliveries:
            with watch.phase("sync"):
                pole.bell.wait()
            side, members = choose(pole, watch)
            if side is None or members is None:  # cannot happen: every ring follows a group's filling
                continue
            serve(pole.trace, side, members, watch)
            done += side.kind == "reindeer"
            watch.lap()
        for side in (pole.elves, pole.reindeer):
            side.group.disband()
            side.entry.close()
            side.exit.close()
        pole.trace.keep_watch("santa", watch)


def choose(pole: NorthPole, watch: Stopwatch) -> tuple[Side | None, tuple[int, ...] | None]:
    """The reindeer come first: Santa looks at the elves only when the reindeer group is not full."""
    with watch.phase("shared state"):
        for side in (pole.reindeer, pole.elves):
            members = side.group.look()
            if members is not None:
                return side, members
    return None, None


def serve(trace: Any, side: Side, members: tuple[int, ...], watch: Stopwatch) -> None:
    with watch.phase("sync"):
        side.entry.operate(len(members))  # returns once the whole group is in
    with watch.phase("shared state"):
        trace.append(WORK[side.kind], side.kind, members)
    with watch.phase("sync"):
        side.exit.operate(len(members))
    with watch.phase("shared state"):
        side.group.release()


# --------------------------------------------------------------------------- the driver


@dataclass
class Result:
    flavour: str
    seconds: float  # from starting the entities to the last one's end
    deliveries: int
    consultations: int
    problems: list[str]  # broken invariants (none when the run is correct)
    events: list[tuple[str, str, Any]] = field(repr=False)
    watches: dict[str, Stopwatch] = field(repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems


def run(
    flavour: str, *, elves: int = 10, reindeer: int = 9, deliveries: int = 15, work_delay: float = 0.2, **more: Any
) -> Result:
    """Run the North Pole until ``deliveries`` deliveries; check its trace (``more``: ``seed``, ``timeout``)."""
    seed, timeout = more.get("seed", 0), more.get("timeout", 600.0)
    thread = FLAVOURS[flavour]
    pole = north_pole(ELF_GROUP, reindeer)
    threads = [thread(target=santa, args=(pole, deliveries))]
    threads += [thread(target=helper, args=("elves", i, pole, work_delay, seed * 1000 + i)) for i in range(elves)]
    threads += [thread(target=helper, args=("reindeer", i, pole, work_delay, seed * 1000 + 500 + i)) for i in range(reindeer)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    deadline = start + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    seconds = time.perf_counter() - start
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"the North Pole did not finish within {timeout} s")
    events = pole.trace.events()
    summary = summarize(events, elves=elves, reindeer=reindeer, deliveries=deliveries, elf_group=ELF_GROUP)
    return Result(flavour, seconds, summary.deliveries, summary.consultations, summary.problems, events, pole.trace.watches())


def report(result: Result) -> None:
    print(f"{result.deliveries} deliveries and {result.consultations} consultations in {result.seconds:.2f} s ({result.flavour})")
    print(f"invariants OK: {result.ok}")
    for problem in result.problems:
        print(f"  {problem}")
    for kind in ("santa", "elves", "reindeer"):
        watches = [w for name, w in result.watches.items() if name.split()[0] == kind]
        print(f"{kind:8s} {breakdown(watches)}")


def main(argv: list[str] | None = None) -> Result:
    doc = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name if __spec__ else __name__}", description=doc)
    parser.add_argument("--flavour", choices=list(FLAVOURS), default=next(iter(FLAVOURS)), help="what the entities run in")
    parser.add_argument("--elves", type=int, default=10, help="elves (default 10)")
    parser.add_argument("--reindeer", type=int, default=9, help="reindeer (default 9)")
    parser.add_argument("--deliveries", type=int, default=15, help="deliveries before Santa retires (default 15)")
    parser.add_argument("--work-delay", type=float, default=0.2, help="seconds per unit of delay (default 0.2; seed: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the entities' random delays")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--plot", metavar="PATH", help="draw a timeline of the cloud functions to PATH (crucial[plot])")
    args = parser.parse_args(argv)
    if args.elves < ELF_GROUP or args.reindeer < 1 or args.deliveries < 0 or args.work_delay < 0:
        parser.error(f"need at least {ELF_GROUP} elves, one reindeer, deliveries >= 0 and work delay >= 0")
    options = {k: getattr(args, k) for k in ("elves", "reindeer", "deliveries", "work_delay", "seed", "timeout")}
    result = run(args.flavour, **options)
    report(result)
    plot_functions(args.plot)
    return result


if __name__ == "__main__":
    sys.exit(0 if main().ok else 1)
