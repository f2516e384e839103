"""Model-based tests: the node-side ``*State`` classes against plain Python.

The ``*State`` classes are the sequential reference models the
linearizability checker trusts, so they are checked here against the
builtins they imitate (``int``, ``bool``, ``bytearray``, ``dict``, ``list``,
``set``, ``collections.deque``): random sequences of calls must give equal
results, or exceptions of the same type, and leave equal contents.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from crucial.objects.atomics import AtomicBoolState, AtomicByteArrayState, AtomicIntState, AtomicReferenceState, CounterState
from crucial.objects.containers import DictState, ListState, QueueState, SetState, SortedDictState

FEW = settings(max_examples=60, deadline=None)

_MISSING = object()


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as exc:
        return "raises", type(exc)


def run(state: Any, ref: Any, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Apply every call to both; outcomes must agree call by call."""
    for i, (name, args) in enumerate(ops):
        got = outcome(lambda: getattr(state, name)(*args))  # noqa: B023
        want = outcome(lambda: getattr(ref, name)(*args))  # noqa: B023
        assert got == want, f"call {i}: {name}{args}: state {got}, python {want}"


def calls(*alternatives: st.SearchStrategy[tuple[str, tuple[Any, ...]]]) -> st.SearchStrategy[list[tuple[str, tuple[Any, ...]]]]:
    return st.lists(st.one_of(*alternatives), max_size=30)


def call(name: str, *args: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, tuple[Any, ...]]]:
    return st.tuples(st.just(name), st.tuples(*args))


small = st.integers(-5, 5)


# -- atomics ------------------------------------------------------------------------------------


class PyInt:
    """What an AtomicInt means, on a plain int."""

    def __init__(self, v: int) -> None:
        self.v = v

    def get(self) -> int:
        return self.v

    def set(self, v: int) -> None:
        self.v = v

    def get_and_set(self, v: int) -> int:
        old, self.v = self.v, v
        return old

    def add_and_get(self, d: int) -> int:
        self.v += d
        return self.v

    def get_and_add(self, d: int) -> int:
        self.v += d
        return self.v - d

    def increment_and_get(self) -> int:
        return self.add_and_get(1)

    def decrement_and_get(self) -> int:
        return self.add_and_get(-1)

    def get_and_increment(self) -> int:
        return self.get_and_add(1)

    def get_and_decrement(self) -> int:
        return self.get_and_add(-1)

    def compare_and_set(self, expect: int, update: int) -> bool:
        if self.v != expect:
            return False
        self.v = update
        return True

    def multiply_and_get(self, f: int) -> int:
        self.v *= f
        return self.v

    def update_and_get(self, fn: Callable[[int], int]) -> int:
        self.v = fn(self.v)
        return self.v


def _double(x: int) -> int:
    return 2 * x


atomic_int_calls = calls(
    call("get"),
    call("set", small),
    call("get_and_set", small),
    call("add_and_get", small),
    call("get_and_add", small),
    call("increment_and_get"),
    call("decrement_and_get"),
    call("get_and_increment"),
    call("get_and_decrement"),
    call("compare_and_set", small, small),
    call("multiply_and_get", small),
    call("update_and_get", st.just(_double)),
)


@FEW
@given(small, atomic_int_calls)
def test_atomic_int_is_an_int(initial, ops):
    state, ref = AtomicIntState(initial), PyInt(initial)
    run(state, ref, ops)
    assert state.value == ref.v


def test_atomic_int_rejects_non_ints():
    state = AtomicIntState(1)
    for bad in (True, 1.5, "2", None):
        with pytest.raises(TypeError):
            state.add_and_get(bad)
        with pytest.raises(TypeError):
            state.set(bad)
    assert state.get() == 1


class PyCounter:
    def __init__(self, v: int) -> None:
        self.v = self.initial = v

    def increment(self, n: int = 1) -> int:
        self.v += n
        return self.v

    def decrement(self, n: int = 1) -> int:
        self.v -= n
        return self.v

    def tally(self) -> int:
        return self.v

    def reset(self) -> int:
        old, self.v = self.v, self.initial
        return old


@FEW
@given(small, calls(call("increment", small), call("increment"), call("decrement", small), call("tally"), call("reset")))
def test_counter_is_an_int_with_a_reset(initial, ops):
    state, ref = CounterState(initial), PyCounter(initial)
    run(state, ref, ops)
    assert state.tally() == ref.v


class PyBool:
    def __init__(self, v: bool) -> None:
        self.v = v

    def get(self) -> bool:
        return self.v

    def set(self, v: bool) -> None:
        self.v = bool(v)

    def get_and_set(self, v: bool) -> bool:
        old, self.v = self.v, bool(v)
        return old

    def compare_and_set(self, expect: bool, update: bool) -> bool:
        if self.v != bool(expect):
            return False
        self.v = bool(update)
        return True

    def toggle_and_get(self) -> bool:
        self.v = not self.v
        return self.v


@FEW
@given(
    st.booleans(),
    calls(
        call("get"),
        call("set", st.booleans() | st.integers(0, 2)),
        call("get_and_set", st.booleans()),
        call("compare_and_set", st.booleans(), st.booleans()),
        call("toggle_and_get"),
    ),
)
def test_atomic_bool_is_a_bool(initial, ops):
    state, ref = AtomicBoolState(initial), PyBool(initial)
    run(state, ref, ops)
    assert state.get() is ref.v


class PyRef:
    def __init__(self, v: Any) -> None:
        self.v = v

    def get(self) -> Any:
        return self.v

    def set(self, v: Any) -> None:
        self.v = v

    def get_and_set(self, v: Any) -> Any:
        old, self.v = self.v, v
        return old

    def compare_and_set(self, expect: Any, update: Any) -> bool:
        if not self.v == expect:
            return False
        self.v = update
        return True

    def update_and_get(self, fn: Callable[[Any], Any]) -> Any:
        self.v = fn(self.v)
        return self.v


values = st.none() | st.integers(0, 3) | st.text(max_size=2) | st.lists(st.integers(0, 2), max_size=2)


@FEW
@given(
    values,
    calls(
        call("get"),
        call("set", values),
        call("get_and_set", values),
        call("compare_and_set", values, values),
        call("update_and_get", st.just(repr)),
    ),
)
def test_atomic_reference_compares_by_equality(initial, ops):
    state, ref = AtomicReferenceState(initial), PyRef(initial)
    run(state, ref, ops)
    assert state.get() == ref.v


class PyBytes:
    def __init__(self, data: bytes) -> None:
        self.b = bytearray(data)

    def length(self) -> int:
        return len(self.b)

    def get(self, i: int) -> int:
        return self.b[i]

    def set(self, i: int, v: int) -> None:
        self.b[i]  # the index is checked before the value
        self.b[i] = v

    def get_and_set(self, i: int, v: int) -> int:
        old = self.b[i]
        self.b[i] = v
        return old

    def add_and_get(self, i: int, d: int) -> int:
        self.b[i] = (self.b[i] + d) % 256
        return self.b[i]

    def compare_and_set(self, i: int, expect: int, update: int) -> bool:
        if self.b[i] != expect:
            return False
        self.b[i] = update
        return True

    def read(self, start: int = 0, stop: int | None = None) -> bytes:
        return bytes(self.b[start:stop])

    def write(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > len(self.b):
            raise IndexError("out of range")
        self.b[offset : offset + len(data)] = data


index = st.integers(-6, 6)
byte = st.integers(0, 255) | st.sampled_from([256, -1])


@FEW
@given(
    st.binary(max_size=5),
    calls(
        call("length"),
        call("get", index),
        call("set", index, byte),
        call("get_and_set", index, byte),
        call("add_and_get", index, st.integers(-300, 300)),
        call("compare_and_set", index, st.integers(0, 2), byte),
        call("read", index, st.none() | index),
        call("write", index, st.binary(max_size=3)),
    ),
)
def test_atomic_byte_array_is_a_bytearray(initial, ops):
    state, ref = AtomicByteArrayState(initial), PyBytes(initial)
    run(state, ref, ops)
    assert bytes(state.data) == bytes(ref.b)


# -- dict ----------------------------------------------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "d"])
ints = st.integers(-3, 3)


class PyDict:
    def __init__(self) -> None:
        self.d: dict[Any, Any] = {}

    def get(self, k: Any, default: Any = None) -> Any:
        return self.d.get(k, default)

    def getitem(self, k: Any) -> Any:
        return self.d[k]

    def put(self, k: Any, v: Any) -> Any:
        old = self.d.get(k)
        self.d[k] = v
        return old

    def setitem(self, k: Any, v: Any) -> None:
        self.d[k] = v

    def delitem(self, k: Any) -> None:
        del self.d[k]

    def pop(self, k: Any, *default: Any) -> Any:
        return self.d.pop(k, *default)

    def setdefault(self, k: Any, default: Any = None) -> Any:
        return self.d.setdefault(k, default)

    def put_if_absent(self, k: Any, v: Any) -> Any:
        if k in self.d:
            return self.d[k]
        self.d[k] = v
        return None

    def update(self, other: dict[Any, Any]) -> None:
        self.d.update(other)

    def contains(self, k: Any) -> bool:
        return k in self.d

    def len(self) -> int:
        return len(self.d)

    def keys(self) -> list[Any]:
        return list(self.d)

    def values(self) -> list[Any]:
        return list(self.d.values())

    def items(self) -> list[tuple[Any, Any]]:
        return list(self.d.items())

    def copy(self) -> dict[Any, Any]:
        return dict(self.d)

    def clear(self) -> None:
        self.d.clear()

    def merge(self, k: Any, v: Any, fn: str = "sum") -> Any:
        assert fn in ("sum", "max")
        f = (lambda a, b: a + b) if fn == "sum" else max
        self.d[k] = f(self.d[k], v) if k in self.d else v
        return self.d[k]

    def merge_all(self, other: dict[Any, Any], fn: str = "sum") -> None:
        for k, v in other.items():
            self.merge(k, v, fn)


dict_calls = [
    call("get", keys),
    call("get", keys, ints),
    call("getitem", keys),
    call("put", keys, ints),
    call("setitem", keys, ints),
    call("delitem", keys),
    call("pop", keys),
    call("pop", keys, ints),
    call("setdefault", keys, ints),
    call("put_if_absent", keys, ints),
    call("update", st.dictionaries(keys, ints, max_size=3)),
    call("contains", keys),
    call("len"),
    call("keys"),
    call("values"),
    call("items"),
    call("copy"),
    call("merge", keys, ints),
    call("merge", keys, ints, st.sampled_from(["sum", "max"])),
    call("merge_all", st.dictionaries(keys, ints, max_size=3)),
    call("merge_all", st.dictionaries(keys, ints, max_size=3), st.sampled_from(["sum", "max"])),
    st.just(("clear", ())),
]


@FEW
@given(calls(*dict_calls))
def test_dict_is_a_dict(ops):
    state, ref = DictState(), PyDict()
    run(state, ref, ops)
    assert state.copy() == ref.d and list(state.data) == list(ref.d)


class DictMachine(RuleBasedStateMachine):
    """The same, as a state machine: merges accumulate as sums would."""

    names = Bundle("names")

    def __init__(self) -> None:
        super().__init__()
        self.state = DictState()
        self.ref: dict[str, int] = {}

    @rule(target=names, k=st.text(alphabet="xyz", min_size=1, max_size=2))
    def name(self, k: str) -> str:
        return k

    @rule(k=names, v=ints)
    def merge(self, k: str, v: int) -> None:
        self.ref[k] = self.ref.get(k, 0) + v if k in self.ref else v
        assert self.state.merge(k, v, "sum") == self.ref[k]

    @rule(items=st.dictionaries(names, ints, max_size=4))
    def merge_all(self, items: dict[str, int]) -> None:
        self.state.merge_all(items, "sum")
        for k, v in items.items():
            self.ref[k] = self.ref[k] + v if k in self.ref else v

    @rule(k=names, v=ints)
    def put(self, k: str, v: int) -> None:
        assert self.state.put(k, v) == self.ref.get(k)
        self.ref[k] = v

    @rule(k=names)
    def pop(self, k: str) -> None:
        assert self.state.pop(k, None) == self.ref.pop(k, None)

    @invariant()
    def same(self) -> None:
        assert self.state.copy() == self.ref
        assert self.state.len() == len(self.ref)


TestDictMachine = DictMachine.TestCase
TestDictMachine.settings = settings(max_examples=50, stateful_step_count=25, deadline=None)


def test_merge_all_is_atomic_when_the_function_fails():
    state = DictState({"a": 1, "b": "x"})
    with pytest.raises(TypeError):
        state.merge_all({"a": 1, "b": 2}, "sum")  # "x" + 2 fails after "a" was merged
    assert state.copy() == {"a": 1, "b": "x"}


# -- the rest of the containers ---------------------------------------------------------


class PyList:
    def __init__(self, data: list[Any]) -> None:
        self.l = list(data)

    def _check(self, i: int) -> int:
        if not -len(self.l) <= i < len(self.l):
            raise IndexError(i)
        return i

    def get(self, i: int) -> Any:
        return self.l[i]

    def set(self, i: int, v: Any) -> Any:
        old, self.l[i] = self.l[i], v
        return old

    def append(self, v: Any) -> None:
        self.l.append(v)

    def extend(self, vs: list[Any]) -> None:
        self.l.extend(vs)

    def insert(self, i: int, v: Any) -> None:
        self.l.insert(i, v)

    def remove(self, v: Any) -> None:
        self.l.remove(v)

    def pop(self, i: int = -1) -> Any:
        return self.l.pop(i)

    def index_of(self, v: Any) -> int:
        return self.l.index(v) if v in self.l else -1

    def last_index_of(self, v: Any) -> int:
        return len(self.l) - 1 - self.l[::-1].index(v) if v in self.l else -1

    def count(self, v: Any) -> int:
        return self.l.count(v)

    def contains(self, v: Any) -> bool:
        return v in self.l

    def len(self) -> int:
        return len(self.l)

    def sub_list(self, i: int, j: int) -> list[Any]:
        if not 0 <= i <= j <= len(self.l):
            raise IndexError((i, j))
        return self.l[i:j]

    def to_list(self) -> list[Any]:
        return list(self.l)

    def reverse(self) -> None:
        self.l.reverse()

    def sort(self, key: Any = None, reverse: bool = False) -> None:
        self.l.sort(key=key, reverse=reverse)

    def clear(self) -> None:
        self.l.clear()


@FEW
@given(
    st.lists(ints, max_size=4),
    calls(
        call("get", index),
        call("set", index, ints),
        call("append", ints),
        call("extend", st.lists(ints, max_size=3)),
        call("insert", st.integers(-8, 8), ints),
        call("remove", ints),
        call("pop"),
        call("pop", index),
        call("index_of", ints),
        call("last_index_of", ints),
        call("count", ints),
        call("contains", ints),
        call("len"),
        call("sub_list", index, index),
        call("to_list"),
        call("reverse"),
        call("sort", st.none(), st.booleans()),
        st.just(("clear", ())),
    ),
)
def test_list_is_a_list(initial, ops):
    state, ref = ListState(initial), PyList(initial)
    run(state, ref, ops)
    assert state.to_list() == ref.l


class PySet:
    def __init__(self, data: set[Any]) -> None:
        self.s = set(data)

    def add(self, v: Any) -> bool:
        absent = v not in self.s
        self.s.add(v)
        return absent

    def discard(self, v: Any) -> bool:
        present = v in self.s
        self.s.discard(v)
        return present

    def remove(self, v: Any) -> None:
        self.s.remove(v)

    def contains(self, v: Any) -> bool:
        return v in self.s

    def len(self) -> int:
        return len(self.s)

    def update(self, vs: list[Any]) -> None:
        self.s.update(vs)

    def to_set(self) -> set[Any]:
        return set(self.s)

    def clear(self) -> None:
        self.s.clear()


@FEW
@given(
    st.sets(ints, max_size=4),
    st.lists(
        st.one_of(
            call("add", ints),
            call("discard", ints),
            call("remove", ints),
            call("contains", ints),
            call("len"),
            call("update", st.lists(ints, max_size=3)),
            call("to_set"),
            call("pop"),
            st.just(("clear", ())),
        ),
        max_size=30,
    ),
)
def test_set_is_a_set(initial, ops):
    state, ref = SetState(initial), PySet(initial)
    for name, args in ops:
        if name == "pop":  # any element may come out: it must be one, and must go
            got = outcome(state.pop)
            if ref.s:
                assert got[0] == "ok" and got[1] in ref.s
                ref.s.remove(got[1])
            else:
                assert got == ("raises", KeyError)
        else:
            run(state, ref, [(name, args)])
    assert state.to_set() == ref.s


class PySortedDict(PyDict):
    def _sorted(self) -> list[Any]:
        return sorted(self.d)

    def keys(self) -> list[Any]:
        return self._sorted()

    def values(self) -> list[Any]:
        return [self.d[k] for k in self._sorted()]

    def items(self) -> list[tuple[Any, Any]]:
        return [(k, self.d[k]) for k in self._sorted()]

    def first_key(self) -> Any:
        if not self.d:
            raise KeyError("empty")
        return self._sorted()[0]

    def last_key(self) -> Any:
        if not self.d:
            raise KeyError("empty")
        return self._sorted()[-1]

    def floor_key(self, k: Any) -> Any:
        return max((x for x in self.d if x <= k), default=None)

    def lower_key(self, k: Any) -> Any:
        return max((x for x in self.d if x < k), default=None)

    def ceiling_key(self, k: Any) -> Any:
        return min((x for x in self.d if x >= k), default=None)

    def higher_key(self, k: Any) -> Any:
        return min((x for x in self.d if x > k), default=None)

    def head(self, to: Any, inclusive: bool = False) -> list[tuple[Any, Any]]:
        return [(k, v) for k, v in self.items() if k < to or (inclusive and k == to)]

    def tail(self, frm: Any, inclusive: bool = True) -> list[tuple[Any, Any]]:
        return [(k, v) for k, v in self.items() if k > frm or (inclusive and k == frm)]

    def sub(self, frm: Any, to: Any, fi: bool = True, ti: bool = False) -> list[tuple[Any, Any]]:
        if to < frm:
            raise ValueError("backwards")
        return [(k, v) for k, v in self.items() if (k > frm or (fi and k == frm)) and (k < to or (ti and k == to))]

    def top(self, n: int, by: str = "value", reverse: bool = True) -> list[tuple[Any, Any]]:
        if n < 0:
            raise ValueError(n)
        if by == "key":
            return sorted(self.items(), reverse=reverse)[:n]
        # by value, ties by ascending key
        return sorted(self.items(), key=lambda kv: (-kv[1], kv[0]) if reverse else (kv[1], kv[0]))[:n]

    def pop_first(self) -> tuple[Any, Any]:
        k = self.first_key()
        return k, self.d.pop(k)

    def pop_last(self) -> tuple[Any, Any]:
        k = self.last_key()
        return k, self.d.pop(k)


@FEW
@given(
    calls(
        *dict_calls,
        call("first_key"),
        call("last_key"),
        call("floor_key", keys),
        call("lower_key", keys),
        call("ceiling_key", keys),
        call("higher_key", keys),
        call("head", keys, st.booleans()),
        call("tail", keys, st.booleans()),
        call("sub", keys, keys, st.booleans(), st.booleans()),
        call("top", st.integers(-1, 5)),
        call("top", st.integers(0, 5), st.just("key"), st.booleans()),
        call("top", st.integers(0, 5), st.just("value"), st.booleans()),
        call("pop_first"),
        call("pop_last"),
    )
)
def test_sorted_dict_is_a_dict_in_key_order(ops):
    state, ref = SortedDictState(), PySortedDict()
    run(state, ref, ops)
    assert state.items() == ref.items()


class PyQueue:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.q: collections.deque[Any] = collections.deque()
        self.unfinished = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        assert not block
        if 0 < self.maxsize <= len(self.q):
            raise queue.Full
        self.q.append(item)
        self.unfinished += 1

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        assert not block
        if not self.q:
            raise queue.Empty
        return self.q.popleft()

    def qsize(self) -> int:
        return len(self.q)

    def empty(self) -> bool:
        return not self.q

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self.q)

    def task_done(self) -> None:
        if self.unfinished <= 0:
            raise ValueError("too many")
        self.unfinished -= 1


@FEW
@given(
    st.integers(0, 3),
    calls(
        call("put", ints, st.just(False)),
        call("get", st.just(False)),
        call("qsize"),
        call("empty"),
        call("full"),
        call("task_done"),
    ),
)
def test_queue_is_a_fifo_without_blocking(maxsize, ops):
    state, ref = QueueState(maxsize), PyQueue(maxsize)
    run(state, ref, ops)
    assert list(state.items) == list(ref.q)


def test_queue_like_the_stdlib_queue():
    """The same calls on ``queue.Queue`` itself."""
    state, q = QueueState(2), queue.Queue[int](2)
    for name, args in [
        ("put", (1, False)),
        ("put", (2, False)),
        ("put", (3, False)),
        ("get", (False,)),
        ("get", (False,)),
        ("get", (False,)),
    ]:
        assert outcome(lambda: getattr(state, name)(*args)) == outcome(lambda: getattr(q, name)(*args))  # noqa: B023
    assert outcome(state.task_done) == outcome(q.task_done)
