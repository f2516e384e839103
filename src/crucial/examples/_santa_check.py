"""The Santa Claus problem's invariants, checked on a recorded trace.

Every flavour of ``santa`` (plain threads, threads + DSO objects, cloud
threads) records the same events in the same order in which they happened:
the groups and the gates append theirs *inside* their own monitor, so the
order of a group's events in the trace is the order of its operations, and
Santa's program order orders the events of different groups he touches.
This module replays such a trace and says what went wrong; it is pure (no
threads, no I/O), so hand-made traces test that every check can fail.

An event is a tuple ``(what, kind, who)``: ``kind`` is ``"elves"``,
``"reindeer"`` or ``"santa"``; ``who`` is an entity number or, for Santa's
events, the tuple of group members (``None`` for a look at a group that is
not full).

============  ===========================  =========================================
what          recorded by                  meaning
============  ===========================  =========================================
``join``      the group                    entity ``who`` joined the ``kind`` group
``look``      the group, for Santa         Santa looked at the group: its members
                                           if full, else ``None``
``in``        the entry gate               ``who`` entered the room
``help``      Santa                        Santa solved the elves' problems
``deliver``   Santa                        Santa delivered toys with the reindeer
``out``       the exit gate                ``who`` left the room
``release``   the group                    Santa let the group form again
``retire``    the entity                   the entity stopped (``kind`` "santa": Santa)
``error``     the entity                   the entity raised (``who``: the traceback)
============  ===========================  =========================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Session", "Summary", "check", "summarize"]

#: what Santa does with each kind of group
WORK = {"elves": "help", "reindeer": "deliver"}


@dataclass
class Session:
    """One group's visit to Santa: picked by a look, served, released."""

    kind: str
    members: tuple[int, ...]
    entered: list[int] = field(default_factory=list)
    served: bool = False
    left: list[int] = field(default_factory=list)


@dataclass
class Summary:
    """What a trace adds up to."""

    deliveries: int = 0
    consultations: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Replay:
    """The state of the North Pole while a trace is replayed, event by event."""

    def __init__(self, elves: int, reindeer: int, elf_group: int, deliveries: int) -> None:
        self.population = {"elves": elves, "reindeer": reindeer}
        self.size = {"elves": elf_group, "reindeer": reindeer}
        self.expected = deliveries
        self.joined: dict[str, list[int]] = {"elves": [], "reindeer": []}
        self.session: Session | None = None
        self.reindeer_looked_empty = False  # in Santa's current decision, before he picked anybody
        self.retired: Counter[tuple[str, Any]] = Counter()
        self.summary = Summary()

    def fail(self, index: int, event: Sequence[Any], why: str) -> None:
        self.summary.problems.append(f"event {index} {tuple(event)!r}: {why}")

    # -- one handler per kind of event; each returns a problem or None

    def join(self, kind: str, who: int) -> str | None:
        if not 0 <= who < self.population[kind]:
            return f"there is no such {kind} member"
        if who in self.joined[kind]:
            return "joined the group twice"
        if len(self.joined[kind]) >= self.size[kind]:
            return f"joined a full group (more than {self.size[kind]})"
        if self.retired[(kind, who)]:
            return "joined after retiring"
        self.joined[kind].append(who)
        return None

    def look(self, kind: str, members: Sequence[int] | None) -> str | None:
        if self.session is not None:
            return f"Santa looked at a group while serving the {self.session.kind}"
        if self.summary.deliveries >= self.expected:
            return f"Santa looked at a group after the last ({self.expected}th) delivery"
        full = len(self.joined[kind]) == self.size[kind]
        reindeer_first = self.reindeer_looked_empty
        # a look at the reindeer starts Santa's decision, a look at the elves ends it
        self.reindeer_looked_empty = kind == "reindeer" and members is None
        if members is None:
            if full:
                return f"the look said 'not full' but {self.joined[kind]} had joined"
            return None
        if not full:
            return f"Santa picked {tuple(members)}, a group of {len(self.joined[kind])} {kind}, not {self.size[kind]}"
        if tuple(members) != tuple(self.joined[kind]):
            return f"Santa picked {tuple(members)} but {tuple(self.joined[kind])} had joined"
        if kind == "elves" and not reindeer_first:
            return "Santa picked the elves without first finding the reindeer group not full"
        self.session = Session(kind, tuple(members))
        return None

    def enter(self, kind: str, who: int) -> str | None:
        s = self.session
        if s is None or s.kind != kind:
            return "entered a room Santa had not opened to its group"
        if who not in s.members:
            return f"not a member of the group being served {s.members}"
        if who in s.entered:
            return "entered twice in one visit"
        if s.served:
            return "entered after Santa had started the work"
        s.entered.append(who)
        return None

    def work(self, what: str, kind: str, members: Sequence[int]) -> str | None:
        s = self.session
        if s is None or s.kind != kind or WORK[kind] != what:
            return f"Santa cannot {what} with no {kind} group in the room"
        if tuple(members) != s.members:
            return f"Santa worked with {tuple(members)}, not the group {s.members}"
        if sorted(s.entered) != sorted(s.members):
            return f"Santa started before the whole group had entered (only {s.entered})"
        if s.served:
            return "Santa served the same group twice"
        s.served = True
        return None

    def leave(self, kind: str, who: int) -> str | None:
        s = self.session
        if s is None or s.kind != kind or who not in s.entered:
            return "left a room it was not in"
        if who in s.left:
            return "left twice in one visit"
        if not s.served:
            return "left before Santa had done the work"
        s.left.append(who)
        return None

    def release(self, kind: str) -> str | None:
        s = self.session
        if s is None or s.kind != kind:
            return "released a group Santa was not serving"
        if sorted(s.left) != sorted(s.members):
            return f"released the group before all of it had left (only {s.left})"
        self.session = None
        self.joined[kind] = []
        if kind == "reindeer":
            self.summary.deliveries += 1
        else:
            self.summary.consultations += 1
        return None

    def retire(self, kind: str, who: int) -> str | None:
        if kind == "santa" and self.summary.deliveries != self.expected:
            return f"Santa retired after {self.summary.deliveries} deliveries, not {self.expected}"
        if self.session is not None and who in self.session.members and kind == self.session.kind:
            return "retired in the middle of a visit to Santa"
        self.retired[(kind, who)] += 1
        return None

    def step(self, index: int, event: Sequence[Any]) -> None:
        try:
            what, kind, who = event
        except (TypeError, ValueError):
            self.fail(index, event, "not a (what, kind, who) triple")
            return
        why = self.dispatch(what, kind, who)
        if why:
            self.fail(index, event, why)

    def dispatch(self, what: str, kind: str, who: Any) -> str | None:
        if what == "error":
            return f"{kind} raised: {who}"
        if what == "retire":
            return self.retire(kind, who)
        if kind not in self.size:
            return f"unknown kind {kind!r}"
        if what == "join":
            return self.join(kind, who)
        if what == "look":
            return self.look(kind, who)
        if what == "in":
            return self.enter(kind, who)
        if what in ("help", "deliver"):
            return self.work(what, kind, who)
        if what == "out":
            return self.leave(kind, who)
        if what == "release":
            return self.release(kind)
        return f"unknown event {what!r}"

    def finish(self) -> None:
        """What must hold once everybody has retired."""
        if self.session is not None:
            self.summary.problems.append(f"the trace ends during a visit of the {self.session.kind}")
        if self.summary.deliveries != self.expected:
            self.summary.problems.append(f"{self.summary.deliveries} deliveries, not {self.expected}")
        everybody = [("santa", 0)] + [(k, i) for k, n in self.population.items() for i in range(n)]
        for entity in everybody:
            if self.retired[entity] != 1:
                self.summary.problems.append(f"{entity[0]} {entity[1]} retired {self.retired[entity]} times, not once")


def summarize(events: Iterable[Sequence[Any]], *, elves: int, reindeer: int, deliveries: int, elf_group: int = 3) -> Summary:
    """Replay ``events`` and return the counts and every broken invariant (``summary.ok``: none)."""
    replay = _Replay(elves, reindeer, elf_group, deliveries)
    for index, event in enumerate(events):
        replay.step(index, event)
    replay.finish()
    return replay.summary


def check(events: Iterable[Sequence[Any]], *, elves: int, reindeer: int, deliveries: int, elf_group: int = 3) -> list[str]:
    """The broken invariants of a trace, one line each (empty when it is a correct run)."""
    return summarize(events, elves=elves, reindeer=reindeer, deliveries=deliveries, elf_group=elf_group).problems
