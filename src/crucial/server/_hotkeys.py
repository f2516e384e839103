"""The hottest keys of a node: a bounded top-K counter, pure (no I/O, no clock of its own).

:class:`SpaceSaving` is Metwally, Agrawal and El Abbadi's *Space-Saving*
(ICDT 2005) with its "stream summary": ``capacity`` counters, O(1) per item.
An item that is not counted takes over the counter of an item with the
smallest count, inheriting that count as its *error*; so for every counted
item ``count - error <= true count <= count``, and every item whose true
count exceeds ``total / capacity`` is counted.

:class:`HotKeys` keeps two of them over consecutive windows, so that "hot"
means recently, and merges them when asked (an item absent from a full
summary may have up to its smallest count there: that is added to both
its estimate and its error, as in Agarwal et al.'s mergeable summaries).
The node feeds it a sample of its calls (about one in ``sample``), chosen
at random intervals so that a periodic workload cannot alias with it.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import NamedTuple

__all__ = ["Hot", "HotKeys", "SpaceSaving"]


class Hot(NamedTuple):
    item: Hashable
    estimate: int  # an upper bound of the item's true count
    error: int  # estimate - error is a lower bound


class SpaceSaving:
    """Approximate counts of the most frequent items, in ``capacity`` counters."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.total = 0
        self._count: dict[Hashable, int] = {}
        self._error: dict[Hashable, int] = {}
        self._buckets: dict[int, dict[Hashable, None]] = {}  # count -> items with that count (insertion ordered)
        self._min = 0

    def __len__(self) -> int:
        return len(self._count)

    @property
    def floor(self) -> int:
        """What an uncounted item may have had: the smallest count once every counter is taken, else 0."""
        return self._min if len(self._count) >= self.capacity else 0

    def add(self, item: Hashable) -> None:
        self.total += 1
        count = self._count.get(item)
        if count is None:
            if len(self._count) < self.capacity:
                self._count[item] = 1
                self._error[item] = 0
                self._buckets.setdefault(1, {})[item] = None
                self._min = 1
                return
            bucket = self._buckets[self._min]  # take over the oldest counter with the smallest count
            victim = next(iter(bucket))
            del bucket[victim], self._count[victim], self._error[victim]
            count = self._min
            bucket[item] = None
            self._error[item] = count
        bucket = self._buckets[count]
        del bucket[item]
        if not bucket:
            del self._buckets[count]
            if self._min == count:
                self._min = count + 1
        self._count[item] = count + 1
        self._buckets.setdefault(count + 1, {})[item] = None

    def get(self, item: Hashable) -> Hot:
        """``item``'s estimate (an uncounted item gets the floor, as count and error)."""
        count = self._count.get(item)
        if count is None:
            return Hot(item, self.floor, self.floor)
        return Hot(item, count, self._error[item])

    def top(self, k: int) -> list[Hot]:
        ranked = sorted(self._count.items(), key=lambda kv: (-kv[1], self._error[kv[0]]))
        return [Hot(item, count, self._error[item]) for item, count in ranked[:k]]

    def items(self) -> list[Hashable]:
        return list(self._count)


class HotKeys:
    """Sampled, windowed heavy hitters: ``add(item, now)`` per call, ``top(k, now)`` when asked.

    ``sample``: about one call in ``sample`` is counted, and estimates are
    scaled back up by it; ``window``: seconds after which the current
    summary becomes the previous one (reports cover one to two windows).
    """

    def __init__(self, capacity: int = 64, sample: int = 16, window: float = 60.0, rng: random.Random | None = None) -> None:
        if sample < 1:
            raise ValueError(f"sample must be at least 1, not {sample}")
        self.capacity = capacity
        self.sample = sample
        self.window = window
        self._rng = rng or random.Random()
        self._current = SpaceSaving(capacity)
        self._previous = SpaceSaving(capacity)
        self._since: float | None = None
        self.skip = self._next_skip()

    def _next_skip(self) -> int:
        """Calls until the next sampled one: geometric with mean ``sample`` (1 when every call counts)."""
        if self.sample == 1:
            return 1
        return 1 + int(self._rng.expovariate(1.0 / (self.sample - 1)))

    def tick(self, item: Hashable, now: float) -> None:
        """One call on ``item``: counted when its turn in the sample comes (the node's per-call hook)."""
        self.skip -= 1
        if self.skip <= 0:
            self.take(item, now)

    def take(self, item: Hashable, now: float) -> None:
        """Count a sampled call, and draw the gap to the next one."""
        self.skip = self._next_skip()
        self.add(item, now)

    def add(self, item: Hashable, now: float) -> None:
        self._rotate(now)
        self._current.add(item)

    def _rotate(self, now: float) -> None:
        if self._since is None:
            self._since = now
        elif now - self._since >= self.window:
            # a gap of more than a window leaves nothing recent in the current summary either
            self._previous = self._current if now - self._since < 2 * self.window else SpaceSaving(self.capacity)
            self._current = SpaceSaving(self.capacity)
            self._since = now

    def top(self, k: int, now: float) -> list[Hot]:
        """The ``k`` hottest items of the last one to two windows; counts scaled to calls."""
        self._rotate(now)
        cur, prev = self._current, self._previous
        merged = []
        for item in dict.fromkeys(cur.items() + prev.items()):
            a, b = cur.get(item), prev.get(item)
            merged.append(Hot(item, (a.estimate + b.estimate) * self.sample, (a.error + b.error) * self.sample))
        merged.sort(key=lambda h: (-h.estimate, h.error))
        return merged[:k]

    @property
    def seconds(self) -> float:
        """How long the reports cover, at most."""
        return 2 * self.window
