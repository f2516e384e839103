"""The hot-key summary (Space-Saving), checked against exact counts."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crucial._commands import hot_keys
from crucial.server._hotkeys import HotKeys, SpaceSaving


def test_exact_while_it_has_room() -> None:
    s = SpaceSaving(8)
    stream = list("abracadabra")
    for x in stream:
        s.add(x)
    exact = collections.Counter(stream)
    assert {h.item: h.estimate for h in s.top(8)} == dict(exact)
    assert all(h.error == 0 for h in s.top(8))
    assert [h.item for h in s.top(2)] == ["a", "b"] and s.total == len(stream)
    assert s.floor == 0 and s.get("z").estimate == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=400), st.integers(1, 12))
def test_the_space_saving_guarantees(stream: list[int], capacity: int) -> None:
    s = SpaceSaving(capacity)
    for x in stream:
        s.add(x)
    exact = collections.Counter(stream)
    assert len(s) == min(capacity, len(exact))
    assert sum(h.estimate for h in s.top(capacity)) == len(stream)  # counts are conserved
    for h in s.top(capacity):
        assert h.estimate - h.error <= exact[h.item] <= h.estimate
    for item, n in exact.items():  # a frequent item is always counted
        if n > len(stream) / capacity:
            assert item in s.items()
        assert exact[item] <= s.get(item).estimate  # uncounted ones are bounded by the floor


def test_a_skewed_stream_finds_the_heavy_hitters() -> None:
    rng = random.Random(7)
    keys = [f"k{i}" for i in range(10_000)]
    weights = [1 / (i + 1) ** 1.2 for i in range(len(keys))]  # Zipf-like
    stream = rng.choices(keys, weights, k=50_000)
    s = SpaceSaving(64)
    for x in stream:
        s.add(x)
    exact = collections.Counter(stream)
    assert [h.item for h in s.top(5)] == [k for k, _ in exact.most_common(5)]


def test_hot_keys_windows_and_sampling() -> None:
    hot = HotKeys(capacity=8, sample=1, window=10.0)
    for _ in range(5):
        hot.tick("old", 0.0)
    for _ in range(3):
        hot.tick("new", 12.0)  # a new window: "old" is in the previous one
    assert [(h.item, h.estimate) for h in hot.top(5, 12.0)] == [("old", 5), ("new", 3)]
    assert [(h.item, h.estimate) for h in hot.top(5, 25.0)] == [("new", 3)]  # "old" aged out
    assert hot.top(5, 100.0) == []  # a long gap: nothing is recent
    sampled = HotKeys(capacity=8, sample=16, rng=random.Random(1))
    for i in range(16_000):
        sampled.tick("hot" if i % 2 else f"cold{i % 40}", 1.0)
    top = sampled.top(1, 1.0)[0]
    assert top.item == "hot" and 6_000 < top.estimate < 10_000  # ~8,000 calls, estimated from ~1 in 16
    with pytest.raises(ValueError):
        HotKeys(sample=0)
    with pytest.raises(ValueError):
        SpaceSaving(0)


def test_status_merges_the_nodes_hot_keys() -> None:
    reports = {
        "a:1": {"metrics": {"hot_keys": [{"type": "AtomicInt", "key": "x", "calls": 90, "error": 0}]}},
        "b:2": {"metrics": {"hot_keys": [{"type": "Dict", "key": "y", "calls": 120, "error": 16}]}},
        "c:3": {"metrics": None},
        "d:4": {"error": "ConnectError: gone"},
    }
    assert [(h["key"], h["node"]) for h in hot_keys(reports, 5)] == [("y", "b:2"), ("x", "a:1")]
    assert len(hot_keys(reports, 1)) == 1
