"""The linearizability checker, and real histories checked with it.

Unit tests feed the checker hand-made histories (and, with hypothesis, small
random ones compared against brute force).  End-to-end tests record
histories in 8 spawned client processes hammering real nodes, merge them,
and check every object against its ``*State`` reference model.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import pickle
import queue
import random
import threading
from collections.abc import Callable, Iterator
from multiprocessing.pool import Pool
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crucial
import crucial.objects.containers
from crucial.exceptions import ConnectError
from crucial.objects.atomics import AtomicIntState, AtomicReferenceState, CounterState
from crucial.objects.containers import DictState, QueueState
from crucial.testing.linearizability import History, Operation, assert_linearizable, check, error_name

X = ("AtomicInt", "x")
Y = ("AtomicInt", "y")
D = ("Dict", "d")


def op(process: str, method: str, *args: Any, t: tuple[int, int | None], result: Any = None, error: str | None = None, obj=X):
    return Operation(process, obj, method, args, {}, t[0], t[1], result, error)


# -- the checker on hand-made histories --------------------------------------------------------


def test_empty_history_is_linearizable():
    assert check([], AtomicIntState)


def test_overlapping_operations_may_be_reordered():
    # B's increment starts later but must take effect first (it saw 1).
    h = [
        op("A", "increment_and_get", t=(0, 100), result=2),
        op("B", "increment_and_get", t=(10, 50), result=1),
        op("C", "get", t=(60, 70), result=1),  # between B's and A's linearization points
    ]
    result = check(h, AtomicIntState)
    assert result, result.explanation
    order = [o.process for o in result.objects[X].linearization]
    assert order == ["B", "C", "A"]


def test_sequential_increment_returning_a_stale_value_is_rejected():
    h = [
        op("A", "increment_and_get", t=(0, 10), result=1),
        op("B", "increment_and_get", t=(20, 30), result=1),  # strictly after A, yet saw no increment
    ]
    result = check(h, AtomicIntState)
    assert result.ok is False
    text = result.explanation
    assert "not linearizable" in text
    assert "increment_and_get() recorded 1, model -> 2" in text


def test_read_of_a_value_never_written_is_rejected():
    h = [
        op("A", "set", 1, t=(0, 10), obj=("AtomicReference", "r")),
        op("B", "set", 2, t=(5, 30), obj=("AtomicReference", "r")),
        op("C", "get", t=(6, 40), result=7, obj=("AtomicReference", "r")),
    ]
    assert check(h, AtomicReferenceState).ok is False
    ok = [*h[:2], dataclasses.replace(h[2], result=2)]
    assert check(ok, AtomicReferenceState)


def test_dict_get_seeing_a_later_put_is_rejected():
    h = [
        op("A", "get", "k", t=(0, 10), result="v", obj=D),
        op("B", "put", "k", "v", t=(20, 30), result=None, obj=D),  # strictly after the get
    ]
    result = check(h, DictState)
    assert result.ok is False
    # overlapping, the same history is fine
    assert check([h[0], dataclasses.replace(h[1], invoke=5)], DictState)


def test_a_put_returns_the_previous_value():
    h = [
        op("A", "put", "k", 1, t=(0, 10), result=None, obj=D),
        op("B", "put", "k", 2, t=(0, 10), result=None, obj=D),  # both cannot have seen an absent key
    ]
    assert check(h, DictState).ok is False


def test_exceptions_are_compared_by_type():
    h = [op("A", "getitem", "missing", t=(0, 10), error=error_name(KeyError), obj=D)]
    assert check(h, DictState)
    assert check([dataclasses.replace(h[0], error=error_name(IndexError))], DictState).ok is False
    assert check([dataclasses.replace(h[0], error=None, result=None)], DictState).ok is False
    # an error the model does not raise
    assert check([op("A", "get", t=(0, 10), error=error_name(ValueError))], AtomicIntState).ok is False


def test_pending_operations_may_or_may_not_take_effect():
    set_pending = op("A", "set", 5, t=(0, None))
    assert check([set_pending, op("B", "get", t=(10, 20), result=5)], AtomicIntState)
    assert check([set_pending, op("B", "get", t=(10, 20), result=0)], AtomicIntState)
    # but it cannot take effect before it was invoked
    assert check([op("B", "get", t=(0, 5), result=5), dataclasses.replace(set_pending, invoke=10)], AtomicIntState).ok is False
    # nor once and then not: 5 seen, then 0 again
    h = [set_pending, op("B", "get", t=(10, 20), result=5), op("B", "get", t=(30, 40), result=0)]
    assert check(h, AtomicIntState).ok is False


def test_objects_are_checked_separately_with_their_own_models():
    h = [
        op("A", "increment_and_get", t=(0, 10), result=1, obj=X),
        op("A", "increment_and_get", t=(20, 30), result=1, obj=Y),  # a different object: fine
        op("B", "increment", 5, t=(0, 10), result=15, obj=("Counter", "c")),
    ]
    models = {"AtomicInt": AtomicIntState, ("Counter", "c"): lambda: CounterState(10)}
    result = check(h, models)
    assert result, result.explanation
    assert set(result.objects) == {X, Y, ("Counter", "c")}
    bad = [*h, op("B", "get", t=(40, 50), result=2, obj=Y)]
    result = check(bad, models)
    assert result.ok is False
    assert [r.obj for r in result.failures] == [Y]
    with pytest.raises(KeyError, match="no model"):
        check([op("A", "get", t=(0, 1), obj=("Other", "o"))], models)


def test_explanation_names_the_smallest_failing_prefix():
    # 20 good sequential increments, a bad one, then 20 more (consistent with the bad one).
    h = []
    t = 0
    for i in range(1, 21):
        h.append(op("A", "increment_and_get", t=(t, t + 5), result=i))
        t += 10
    h.append(op("B", "get", t=(t, t + 5), result=3))
    t += 10
    for i in range(21, 41):
        h.append(op("A", "increment_and_get", t=(t, t + 5), result=i))
        t += 10
    result = check(h, AtomicIntState)
    assert result.ok is False
    (failure,) = result.failures
    assert len(failure.prefix) == 21
    assert len(failure.linearization) == 20
    assert "get() recorded 3, model -> 20" in failure.explanation


def test_timeout_gives_an_unknown_verdict_not_a_false_alarm():
    # 400 concurrent increments: linearizable, but the search takes more steps than the budget allows.
    h = [op(f"p{i}", "increment_and_get", t=(i, 10_000 + i), result=i + 1) for i in range(400)]
    assert check(h, AtomicIntState)
    result = check(h, AtomicIntState, timeout=0)
    assert result.ok is None
    assert not result
    with pytest.raises(AssertionError, match="ran out of time"):
        assert_linearizable(h, AtomicIntState, timeout=0)


def test_assert_linearizable_raises_with_the_explanation():
    h = [op("A", "get", t=(0, 10), result=1)]
    with pytest.raises(AssertionError, match=r"get\(\) recorded 1, model -> 0"):
        assert_linearizable(h, AtomicIntState)


def test_unpicklable_models_are_still_checked():
    class Local:  # a local class does not pickle: no memoisation, same verdicts
        def __init__(self) -> None:
            self.v = 0

        def inc(self) -> int:
            self.v += 1
            return self.v

    obj = ("Local", "l")
    good = [op(f"p{i}", "inc", t=(0, 100), result=i + 1, obj=obj) for i in range(6)]
    assert check(good, Local)
    assert check([*good, op("q", "inc", t=(200, 300), result=3, obj=obj)], Local).ok is False


# -- brute force agrees with the search ---------------------------------------------------------


def brute_force(ops: list[Operation], factory: Callable[[], Any]) -> bool:
    """Try every subset of pending operations and every order that respects real time."""
    done = [o for o in ops if o.response is not None]
    pending = [o for o in ops if o.response is None]
    for k in range(len(pending) + 1):
        for chosen in itertools.combinations(pending, k):
            for order in itertools.permutations(done + list(chosen)):
                if any(b.response is not None and b.response < a.invoke for i, a in enumerate(order) for b in order[i + 1 :]):
                    continue
                model = factory()
                for o in order:
                    try:
                        r = getattr(model, o.method)(*o.args)
                    except Exception as exc:
                        if o.response is not None and o.error != error_name(exc):
                            break
                        continue
                    if o.response is not None and (o.error is not None or r != o.result):
                        break
                else:
                    return True
    return False


@st.composite
def small_histories(draw: st.DrawFn) -> list[Operation]:
    n = draw(st.integers(1, 5))
    ops = []
    for i in range(n):
        start = draw(st.integers(0, 20))
        length = draw(st.integers(0, 20))
        pending = draw(st.integers(0, 7)) == 0
        method, args = draw(
            st.sampled_from(
                [
                    ("increment_and_get", ()),
                    ("get", ()),
                    ("set", (0,)),
                    ("set", (2,)),
                    ("compare_and_set", (1, 3)),
                    ("get_and_add", (2,)),
                ]
            )
        )
        result: Any = draw(st.booleans()) if method == "compare_and_set" else draw(st.integers(0, 4))
        if method == "set":
            result = None
        ops.append(Operation(f"p{i}", X, method, args, {}, start, None if pending else start + length, result))
    return ops


@settings(max_examples=300, deadline=None)
@given(small_histories())
def test_search_agrees_with_brute_force(ops):
    expected = brute_force(ops, AtomicIntState)
    assert bool(check(ops, AtomicIntState)) == expected


# -- the recorder -------------------------------------------------------------------------------


class LockedCounter:
    """An object that is linearizable by construction (a lock around the model)."""

    def __init__(self, stale: bool = False) -> None:
        self._state = AtomicIntState(0)
        self._lock = threading.Lock()
        self._stale = stale
        self._last = 0

    def increment_and_get(self) -> int:
        with self._lock:
            self._last = self._state.get()
            return self._state.increment_and_get()

    def get(self) -> int:
        with self._lock:
            return self._last if self._stale else self._state.get()  # stale: misses the last increment


def _hammer(history: History, obj: Any, n: int, seed: int, start: threading.Barrier | None = None) -> None:
    rec = history.wrap(obj)
    rnd = random.Random(seed)
    if start is not None:
        start.wait(timeout=30)
    for _ in range(n):
        rec.increment_and_get() if rnd.random() < 0.6 else rec.get()


def test_recorder_with_threads_on_a_linearizable_object():
    history = History()
    obj = LockedCounter()
    start = threading.Barrier(8)
    threads = [threading.Thread(target=_hammer, args=(history, obj, 100, i, start)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(history) == 800
    assert {o.obj for o in history} == {obj}
    assert len({o.process for o in history}) == 8
    assert_linearizable(history, AtomicIntState)


def test_recorder_catches_a_stale_read():
    history = History(process="solo")
    _hammer(history, LockedCounter(stale=True), 50, 1)
    assert check(history, AtomicIntState).ok is False


def test_recorder_keeps_exceptions_and_leaves_indeterminate_calls_pending():
    class Flaky:
        _type_name = "Flaky"
        _key = "f"

        def boom(self) -> None:
            raise KeyError("x")

        def lost(self) -> None:
            raise ConnectError("connection lost", "127.0.0.1:1")

    history = History(process="p")
    rec = history.wrap(Flaky())
    with pytest.raises(KeyError):
        rec.boom()
    with pytest.raises(ConnectError):
        rec.lost()
    boom, lost = history.operations()
    assert boom.obj == ("Flaky", "f")
    assert boom.error == "builtins.KeyError" and boom.response is not None
    assert lost.pending and lost.error is None


def test_history_pickles_and_merges():
    a, b = History(process="a"), History(process="b")
    a.ok(a.invoke(X, "increment_and_get"), 1)
    h = b.invoke(X, "increment_and_get")
    b.ok(h, 2)
    b.invoke(X, "get")  # pending
    copy = pickle.loads(pickle.dumps(b))
    assert copy.process == "b"
    assert [o.pending for o in copy] == [False, True]
    merged = History.merge(a, copy.operations())
    assert len(merged) == 3
    assert [o.process for o in merged] == ["a", "b", "b"]
    assert_linearizable(merged, AtomicIntState)


# -- end to end: 8 client processes against real nodes ---------------------------------------------

WORKERS = 8
_barrier: Any = None


class InsufficientFunds(Exception):
    pass


@crucial.shared
class Account:
    """A user class made shared: the bank account of the tests."""

    def __init__(self, balance: int = 0) -> None:
        self.balance = balance

    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def withdraw(self, amount: int) -> int:
        if amount > self.balance:
            raise InsufficientFunds(f"balance {self.balance} < {amount}")
        self.balance -= amount
        return self.balance

    def get_balance(self) -> int:
        return self.balance


def _init_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _counter_ops(rnd: random.Random, objs: list[Any], seen: dict[int, int]) -> tuple[Any, str, tuple[Any, ...]]:
    i = rnd.randrange(len(objs))
    obj = objs[i]
    if obj._type_name == "Counter":
        return (obj, "increment", (rnd.randint(1, 3),)) if rnd.random() < 0.7 else (obj, "tally", ())
    r = rnd.random()
    if r < 0.4:
        return obj, "increment_and_get", ()
    if r < 0.6:
        return obj, "get", ()
    if r < 0.8:
        # expect the last value seen (often stale): both outcomes of the CAS happen
        return obj, "compare_and_set", (seen.get(i, 0), seen.get(i, 0) + 10)
    return obj, "add_and_get", (rnd.randint(-3, 3),)


def _dict_ops(rnd: random.Random, objs: list[Any], seen: dict[int, int]) -> tuple[Any, str, tuple[Any, ...]]:
    obj = rnd.choice(objs)
    k = rnd.choice("abc")
    r = rnd.random()
    if r < 0.3:
        return obj, "put", (k, rnd.randint(0, 100))
    if r < 0.6:
        return obj, "get", (k,)
    return obj, "merge", (k, rnd.randint(1, 5), "sum")


def _queue_ops(rnd: random.Random, objs: list[Any], seen: dict[int, int]) -> tuple[Any, str, tuple[Any, ...]]:
    obj = rnd.choice(objs)
    seen[0] = seen.get(0, 0) + 1
    # Slightly more gets than puts keeps queues short: every item still queued whose
    # order is not yet known multiplies the orders the checker must keep apart.
    if rnd.random() < 0.3:
        return obj, "put", ((rnd.random(), seen[0]),)  # unique items
    return obj, "get", (False,)  # get_nowait(), under the name and arguments the node (and the model) see


def _bank_ops(rnd: random.Random, objs: list[Any], seen: dict[int, int]) -> tuple[Any, str, tuple[Any, ...]]:
    obj = rnd.choice(objs)
    r = rnd.random()
    if r < 0.35:
        return obj, "deposit", (rnd.randint(1, 10),)
    if r < 0.8:
        return obj, "withdraw", (rnd.randint(1, 25),)  # often more than there is
    return obj, "get_balance", ()


WORKLOADS = {"counter": _counter_ops, "dict": _dict_ops, "queue": _queue_ops, "bank": _bank_ops}


def _worker(task: tuple[str, str, list[Any], int, int]) -> list[Operation]:
    """One client process: warm up, wait for the others, run ``n`` recorded random operations."""
    name, workload, objs, n, seed = task
    client = objs[0]._transport()
    for address in client.nodes:  # connect to every node before the race starts
        client.ping(address)
    history = History(process=name)
    rnd = random.Random(seed)
    seen: dict[int, int] = {}
    make = WORKLOADS[workload]
    _barrier.wait(timeout=60)
    for _ in range(n):
        obj, method, args = make(rnd, objs, seen)
        try:
            result = history.call(obj, method, *args)
        except Exception as exc:
            if isinstance(exc, ConnectError):
                raise
            continue
        if method in ("get", "increment_and_get", "add_and_get") and isinstance(result, int):
            seen[objs.index(obj)] = result
    return history.operations()


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[Pool, Any]]:
    """8 spawned client processes, reused by every end-to-end test of this module."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    pool = ctx.Pool(WORKERS, initializer=_init_worker, initargs=(barrier,))
    try:
        yield pool, barrier
    finally:
        pool.terminate()
        pool.join()


def run_workload(workers: tuple[Pool, Any], workload: str, objs: list[Any], n: int) -> History:
    pool, barrier = workers
    barrier.reset()
    seed = random.randrange(1 << 30)
    tasks = [(f"p{i}", workload, objs, n, seed + i) for i in range(WORKERS)]
    parts = pool.map_async(_worker, tasks, chunksize=1).get(timeout=90)
    history = History.merge(*parts)
    assert len(history) == WORKERS * n
    assert len({o.process for o in history}) == WORKERS
    return history


def assert_checked(history: History, models: dict[Any, Callable[[], Any]], corrupt: Callable[[Operation], bool]) -> None:
    """Check the history, and check that the check is not vacuous: one corrupted result must fail it."""
    result = check(history, models, timeout=60)
    assert result.ok is True, result.explanation
    ops = history.operations()
    victim = next(i for i, o in enumerate(ops) if o.response is not None and o.error is None and corrupt(o))
    ops[victim] = dataclasses.replace(ops[victim], result=("corrupted", ops[victim].result))
    assert check(ops, models, timeout=60).ok is False


def test_atomics_are_linearizable(dso, key, workers):
    objs = [crucial.AtomicInt(0, key=f"{key}-{i}", force_new=True) for i in range(3)]
    objs.append(crucial.Counter(5, key=key, force_new=True))
    history = run_workload(workers, "counter", objs, 40)
    models = {"AtomicInt": AtomicIntState, "Counter": lambda: CounterState(5)}
    assert_checked(history, models, lambda o: o.method in ("increment_and_get", "increment"))
    total = sum(o.args[0] for o in history if o.method == "increment")
    assert objs[3].tally() == 5 + total


def test_dicts_are_linearizable(dso, key, workers):
    objs = [crucial.Dict(key=f"{key}-{i}", force_new=True) for i in range(2)]
    history = run_workload(workers, "dict", objs, 40)
    assert_checked(history, {"Dict": DictState}, lambda o: o.method == "merge")


def test_queues_are_linearizable(dso, key, workers):
    queue_state = QueueState
    queue_cls = crucial.Queue
    objs = [queue_cls(key=f"{key}-{i}", force_new=True) for i in range(2)]
    history = run_workload(workers, "queue", objs, 30)
    assert any(o.method == "get" and o.error is None for o in history)
    assert any(o.error == error_name(queue.Empty) for o in history)
    assert_checked(history, {"Queue": queue_state}, lambda o: o.method == "get")


def test_shared_user_class_is_linearizable(dso, key, workers):
    objs = [Account(20, key=f"{key}-{i}", force_new=True) for i in range(2)]  # type: ignore[call-arg]
    history = run_workload(workers, "bank", objs, 40)
    refused = [o for o in history if o.error is not None]
    assert refused and all(o.error == error_name(InsufficientFunds) for o in refused)
    model = {Account._type_name: lambda: Account._State(20)}  # type: ignore[attr-defined]
    assert_checked(history, model, lambda o: o.method == "deposit")
