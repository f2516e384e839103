"""Functions shipped by value are pickled once -- and never with stale captures (compute/_fncache.py).

cloudpickle captures the values of the globals a function reads at each
start; reusing its bytes must not change what a cloud thread sees.  Each
case starts real cloud threads on the local backend, changes what the
function captures between starts, and checks the new value arrives.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from crucial import CloudThread
from crucial.compute import _fncache
from crucial.compute._task import _by_reference, _dumps_by_value

WAIT = 60

SCALE = 2
ITEMS = [1, 2]
WRITES = 0


def scaled(x: int) -> int:
    return SCALE * x


def listed(i: int) -> int:
    return ITEMS[i]


def with_default(x: int, k: int = 3) -> int:
    return k * x


def writer() -> int:
    global WRITES
    WRITES += 1
    return WRITES


def calls_scaled(x: int) -> int:
    return scaled(x) + 1


def run(fn: Any, *args: Any) -> Any:
    t = CloudThread(target=fn, args=args)
    t.start()
    return t.result(WAIT)


def shipped(fn: Any) -> _fncache.Shipped | None:
    return _fncache.pickled(fn, _by_reference, _dumps_by_value)


def test_bytes_are_reused_while_nothing_captured_changes() -> None:
    first, second = shipped(scaled), shipped(scaled)
    assert first is not None and second is first
    assert first.reusable
    assert shipped(listed) is None  # a list: mutable, never cached
    assert shipped(lambda: ITEMS) is None
    assert shipped(writer) is not None and not shipped(writer).reusable  # type: ignore[union-attr]


def test_a_rebound_global_is_seen(dso1: Any, monkeypatch: Any) -> None:
    assert run(scaled, 5) == 10
    monkeypatch.setitem(globals(), "SCALE", 7)
    assert run(scaled, 5) == 35
    assert run(calls_scaled, 5) == 36  # through a function it calls


def test_a_mutated_global_is_seen(dso1: Any) -> None:
    assert run(listed, 1) == 2
    ITEMS[1] = 20
    try:
        assert run(listed, 1) == 20
    finally:
        ITEMS[1] = 2


def test_changed_defaults_and_closures_are_seen(dso1: Any) -> None:
    f = types.FunctionType(with_default.__code__, with_default.__globals__, "f", (3,))
    assert run(f, 2) == 6
    f.__defaults__ = (4,)
    assert run(f, 2) == 8

    def make(n: int) -> Any:
        def add(x: int) -> int:
            return x + n

        return add

    add = make(1)
    assert run(add, 1) == 2
    add.__closure__[0].cell_contents = 10  # type: ignore[index]
    assert run(add, 1) == 11


def test_a_function_that_writes_its_globals_starts_fresh_each_time(dso1: Any) -> None:
    # as a thread started twice in a fresh process each time: the worker does not keep it
    with pytest.warns(RuntimeWarning, match="assigns the global 'WRITES'"):  # said once per function
        assert [run(writer) for _ in range(3)] == [1, 1, 1]


def test_a_cloud_threads_target_is_pickled_once_and_the_thread_with_pickle(dso1: Any, monkeypatch: Any) -> None:
    """A plain thread ships its by-value target as the cached bytes, and itself with the stdlib pickler."""
    from crucial.compute import _task

    def triple(x: int) -> int:  # a fresh function: nothing cached for it yet
        return 3 * x

    made, plain = [], []
    real_dumps, real_encode = _task._dumps_by_value, _task.encode_task

    def counting_dumps(fn: Any) -> bytes:
        made.append(fn)
        return real_dumps(fn)

    def watching_encode(*args: Any, **kwargs: Any) -> bytes:
        plain.append(kwargs.get("plain", False))
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(_task, "_dumps_by_value", counting_dumps)
    monkeypatch.setattr("crucial.compute._invoke.encode_task", watching_encode)
    assert [run(triple, i) for i in range(3)] == [0, 3, 6]
    assert made == [triple] and plain == [True, True, True]


class Labelled(CloudThread):
    """A subclass (its own attributes, the inherited run): pickled by cloudpickle, as before."""

    def __init__(self, *args: Any, label: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label


def read_extra(key: str) -> Any:
    from crucial.compute.thread import current_cloud_thread

    here = current_cloud_thread()
    assert here is not None
    value = getattr(here, "extra", None) or {}
    return (getattr(here, "label", None), value[key](2) if key in value else None)


def test_threads_that_are_not_plain_still_travel_whole(dso1: Any) -> None:
    t = CloudThread(target=read_extra, args=("f",))
    t.extra = {"f": lambda x: x * 10}  # type: ignore[attr-defined]  # a lambda: not plain data
    t.start()
    assert t.result(WAIT) == (None, 20)
    s = Labelled(target=read_extra, args=("f",), label="mine")
    s.start()
    assert s.result(WAIT) == ("mine", None)
