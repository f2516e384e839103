"""One conformance suite for every synchronization type, run on real nodes.

Lock-like types (``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``,
``Condition`` used as a lock) share one set of tests, as trio and anyio test
their locks; waiting types (``Barrier``, ``Event``, ``CountDownLatch``,
``SharedFuture``, ``Exchanger``) share another.  Where ``threading`` has a
twin, the same script runs on both and must give the same outcomes.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import crucial
from crucial.testing import LocalCluster, run_in_process
from crucial.testing.faults import eventually

WAIT = 20.0  # generous bound for things that must happen "soon"

# --------------------------------------------------------------------------- helpers


class Worker:
    """A long-lived thread that runs what it is given (stable thread id: RLock owners)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, out = job
            try:
                out.put((True, fn()))
            except BaseException as exc:
                out.put((False, exc))

    def submit(self, fn: Callable[[], Any]) -> queue.Queue[tuple[bool, Any]]:
        out: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._jobs.put((fn, out))
        return out

    def run(self, fn: Callable[[], Any], timeout: float = WAIT) -> Any:
        """``fn``'s outcome as a comparable value (see :func:`outcome`)."""
        ok, value = self.submit(fn).get(timeout=timeout)
        return value if ok else ("raise", std_kind(value))

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(WAIT)


def std_kind(exc: BaseException) -> str:
    """The nearest stdlib ancestor of an exception, so crucial and threading compare."""
    for cls in type(exc).__mro__:
        if cls.__module__ in ("builtins", "threading"):
            return cls.__qualname__
    raise AssertionError(f"no stdlib ancestor: {exc!r}")


def outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return ("raise", std_kind(exc))


def start_threads(n: int, target: Callable[[int], Any]) -> tuple[list[threading.Thread], dict[int, Any]]:
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join_all(threads: list[threading.Thread], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        assert not t.is_alive(), "a thread is still blocked"


@pytest.fixture
def worker() -> Any:
    w = Worker()
    yield w
    w.stop()


# --------------------------------------------------------------------------- lock-like types

LOCKS = ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition"]
REENTRANT = ["RLock", "Condition"]


def make_lock(kind: str, key: str) -> Any:
    if kind in ("Semaphore", "BoundedSemaphore"):
        return getattr(crucial, kind)(1, key=key)
    return getattr(crucial, kind)(key=key)


def make_std_lock(kind: str) -> Any:
    if kind in ("Semaphore", "BoundedSemaphore"):
        return getattr(threading, kind)(1)
    return getattr(threading, kind)()


def contend(kind: str, key: str, iters: int, parties: int) -> int:
    """Hammer a lock: a non-atomic read-modify-write inside it loses updates
    without mutual exclusion, and the occupancy counter sees overlap.
    Returns the largest occupancy this party observed."""
    lock = make_lock(kind, key)
    inside = crucial.AtomicInt(0, key=key + "-inside")
    total = crucial.AtomicInt(0, key=key + "-total")
    crucial.Barrier(parties, key=key + "-start").wait(timeout=WAIT)
    seen = 0
    for _ in range(iters):
        with lock:
            seen = max(seen, inside.increment_and_get())
            value = total.get()
            total.set(value + 1)
            inside.decrement_and_get()
    return seen


@pytest.mark.parametrize("kind", LOCKS)
def test_mutual_exclusion_threads(dso: LocalCluster, key: str, kind: str) -> None:
    n, iters = 4, 15
    threads, results = start_threads(n, lambda i: contend(kind, key, iters, n))
    join_all(threads)
    assert results == dict.fromkeys(range(n), 1)
    assert crucial.AtomicInt.attach(key + "-total").get() == n * iters
    if kind in ("Lock", "RLock"):
        assert not make_lock(kind, key).locked()


@pytest.mark.parametrize("kind", LOCKS)
def test_mutual_exclusion_processes(cluster: LocalCluster, key: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    n, iters = 3, 10
    children = [run_in_process(contend, kind, key, iters, n, env=cluster.env_vars()) for _ in range(n)]
    try:
        seen = [c.result(timeout=60) for c in children]
    finally:
        for c in children:
            c.close()
    assert seen == [1] * n
    client = cluster.client()
    assert client.call("AtomicInt", key + "-total", "get") == n * iters


def lock_script(lock: Any, worker: Worker) -> list[Any]:
    """acquire/release outcomes, for a lock and its stdlib twin."""
    out: list[Any] = []
    out.append(lock.acquire(blocking=False))  # True: free
    out.append(worker.run(lambda: lock.acquire(blocking=False)))  # False: held
    t0 = time.monotonic()
    out.append(worker.run(lambda: lock.acquire(timeout=0.2)))  # False after ~0.2 s
    out.append(time.monotonic() - t0 >= 0.19)
    out.append(worker.run(lambda: lock.acquire(blocking=False, timeout=1)))  # ValueError
    out.append(outcome(lambda: lock.acquire(False, 1)))  # ValueError, even for the owner
    out.append(worker.run(lambda: lock.acquire(timeout=-5)))  # negative timeout
    lock.release()
    out.append(worker.run(lambda: lock.acquire(blocking=False)))  # True: free again
    out.append(worker.run(lock.release))
    with lock as entered:
        out.append(entered)
        out.append(worker.run(lambda: lock.acquire(blocking=False)))  # False inside `with`
    out.append(worker.run(lambda: lock.acquire(timeout=1)))  # True after `with`
    out.append(worker.run(lock.release))
    with pytest.raises(KeyError):
        with lock:
            raise KeyError("inside")
    out.append(worker.run(lambda: lock.acquire(blocking=False)))  # True: `with` released on error
    out.append(worker.run(lock.release))
    out.append(outcome(lock.release))  # release when not held: error kind depends on type
    return out


@pytest.mark.parametrize("kind", LOCKS)
def test_lock_semantics_match_threading(dso: LocalCluster, key: str, kind: str, worker: Worker) -> None:
    expected = lock_script(make_std_lock(kind), worker)
    assert lock_script(make_lock(kind, key), worker) == expected
    assert expected[0] is True and expected[1] is False and expected[2] is False


@pytest.mark.parametrize(
    ("kind", "error"),
    [("Lock", RuntimeError), ("RLock", RuntimeError), ("Condition", RuntimeError), ("BoundedSemaphore", ValueError)],
)
def test_release_unheld_raises(dso: LocalCluster, key: str, kind: str, error: type[Exception]) -> None:
    lock = make_lock(kind, key)
    with pytest.raises(error):
        lock.release()
    assert lock.acquire(timeout=1) is True  # the failed release left it usable
    lock.release()


def test_semaphore_counts_permits(dso: LocalCluster, key: str, worker: Worker) -> None:
    sem = crucial.Semaphore(2, key=key)
    assert sem.acquire() and sem.acquire(timeout=1)
    assert worker.run(lambda: sem.acquire(blocking=False)) is False
    sem.release(2)
    assert sem.get_value() == 2
    bounded = crucial.BoundedSemaphore(2, key=key + "-b")
    assert bounded.acquire()
    bounded.release()
    with pytest.raises(ValueError, match="too many"):
        bounded.release()
    assert bounded.get_value() == 2


def test_semaphore_admits_n_holders(dso: LocalCluster, key: str) -> None:
    n = 2
    sem = crucial.Semaphore(n, key=key)
    inside = crucial.AtomicInt(0, key=key + "-in")
    peak = crucial.AtomicInt(0, key=key + "-peak")

    def run(_: int) -> None:
        for _ in range(8):
            with sem:
                now = inside.increment_and_get()
                current = peak.get()
                while now > current and not peak.compare_and_set(current, now):
                    current = peak.get()
                inside.decrement_and_get()

    threads, results = start_threads(5, run)
    join_all(threads)
    assert all(r is None for r in results.values()), results
    assert 1 <= peak.get() <= n
    assert sem.get_value() == n


def reentrant_script(lock: Any, worker: Worker) -> list[Any]:
    out: list[Any] = []
    out += [lock.acquire(), lock.acquire(timeout=1), lock.acquire(blocking=False)]
    out.append(worker.run(lambda: lock.acquire(blocking=False)))  # False: another thread owns it
    out.append(worker.run(lock.release))  # RuntimeError: not the owner
    lock.release()
    lock.release()
    out.append(worker.run(lambda: lock.acquire(blocking=False)))  # still held once
    lock.release()
    out.append(worker.run(lambda: lock.acquire(blocking=False)))  # True now
    out.append(outcome(lock.release))  # the main thread does not own it
    out.append(worker.run(lock.release))
    out.append(outcome(lock.release))  # nobody owns it
    return out


@pytest.mark.parametrize("kind", REENTRANT)
def test_reentrancy_and_owner_match_threading(dso: LocalCluster, key: str, kind: str, worker: Worker) -> None:
    expected = reentrant_script(make_std_lock(kind), worker)
    assert reentrant_script(make_lock(kind, key), worker) == expected
    assert expected[:4] == [True, True, True, False] and expected[4] == ("raise", "RuntimeError")


def test_rlock_owner_is_per_process(cluster: LocalCluster, key: str) -> None:
    """Another process -- same thread id or not -- is never the owner."""
    lock = cluster.client()
    lock.call("RLock", key, "acquire", (), create=((), {}))

    def other(k: str) -> tuple[bool, str]:
        rl = crucial.RLock.attach(k)
        got = rl.acquire(blocking=False)
        try:
            rl.release()
        except RuntimeError as exc:
            return got, type(exc).__name__
        return got, "released"

    with run_in_process(other, key, env=cluster.env_vars()) as child:
        assert child.result(timeout=60) == (False, "RuntimeError")


# --------------------------------------------------------------------------- Condition


def condition_script(cond: Any, worker: Worker, helpers: list[Worker]) -> list[Any]:
    out: list[Any] = []
    out.append(outcome(lambda: cond.wait(0.01)))  # RuntimeError: not held
    out.append(outcome(cond.notify))
    out.append(outcome(cond.notify_all))
    with cond:
        t0 = time.monotonic()
        out.append(cond.wait(0.2))  # False: nobody notifies
        out.append(time.monotonic() - t0 >= 0.19)
        out.append(worker.run(lambda: cond.acquire(blocking=False)))  # False: re-acquired after wait
        out.append(cond.wait_for(lambda: False, timeout=0.1))

    # notify(1) wakes exactly one of two waiters; the other times out
    ready = [0]

    def waiter(timeout: float) -> Callable[[], bool]:
        def run() -> bool:
            with cond:
                ready[0] += 1
                return bool(cond.wait(timeout))

        return run

    pending = [h.submit(waiter(1.5)) for h in helpers[:2]]

    def all_ready(n: int) -> bool:
        with cond:
            return ready[0] == n

    eventually(lambda: all_ready(2), what="both waiters waiting")
    with cond:
        cond.notify()
    out.append(sorted(p.get(timeout=WAIT)[1] for p in pending))  # [False, True]

    # notify_all wakes everyone
    ready[0] = 0
    pending = [h.submit(waiter(WAIT)) for h in helpers]
    eventually(lambda: all_ready(len(helpers)), what="all waiters waiting")
    with cond:
        cond.notify_all()
    out.append([p.get(timeout=WAIT)[1] for p in pending])

    # wait_for: the predicate runs in the caller, re-checked after each notify
    flag: list[bool] = []

    def setter() -> None:
        with cond:
            flag.append(True)
            cond.notify_all()

    with cond:
        worker.submit(setter)
        out.append(cond.wait_for(lambda: bool(flag), timeout=WAIT))
    return out


def test_condition_matches_threading(dso: LocalCluster, key: str, worker: Worker) -> None:
    helpers = [Worker() for _ in range(3)]
    try:
        expected = condition_script(threading.Condition(), worker, helpers)
        got = condition_script(crucial.Condition(key=key), worker, helpers)
    finally:
        for h in helpers:
            h.stop()
    assert got == expected
    assert expected[3:6] == [False, True, False] and expected[7] == [False, True] and expected[-1] is True


# --------------------------------------------------------------------------- Barrier


def barrier_rounds(make: Callable[[], Any], parties: int, rounds: int) -> list[list[int]]:
    barrier = make()

    def run(_: int) -> list[int]:
        return [barrier.wait(timeout=WAIT) for _ in range(rounds)]

    threads, results = start_threads(parties, run)
    join_all(threads)
    assert all(isinstance(r, list) for r in results.values()), results
    # column r: the indices handed out in generation r
    return [sorted(results[i][r] for i in range(parties)) for r in range(rounds)]


def test_barrier_indices_and_generations(dso: LocalCluster, key: str, tmp_path: Path) -> None:
    path = tmp_path / "actions"
    path.touch()

    def action() -> None:  # runs on the node, once per generation
        with open(path, "a") as f:
            f.write("x\n")

    local_runs: list[int] = []
    parties, rounds = 3, 12
    expected = barrier_rounds(lambda: threading.Barrier(parties, action=lambda: local_runs.append(1)), parties, rounds)
    got = barrier_rounds(lambda: crucial.Barrier(parties, action=action, key=key), parties, rounds)
    assert got == expected == [list(range(parties))] * rounds
    assert len(local_runs) == rounds
    assert path.read_text() == "x\n" * rounds
    b = crucial.Barrier(parties, key=key)
    assert (b.parties, b.n_waiting, b.broken) == (parties, 0, False)


def barrier_break_script(b: Any, worker: Worker, helpers: list[Worker], waiting: Callable[[int], None]) -> list[Any]:
    out: list[Any] = []
    # a timeout breaks the barrier for everyone (threading semantics)
    pending = [h.submit(lambda: b.wait(timeout=0.3)) for h in helpers[:2]]
    out.append(sorted(std_kind(p.get(timeout=WAIT)[1]) for p in pending))
    out.append(b.broken)
    out.append(outcome(lambda: b.wait(timeout=WAIT)))  # broken: fails at once
    b.reset()
    out.append(b.broken)
    # reset() while parties wait: they get BrokenBarrierError, the barrier stays usable
    pending = [h.submit(lambda: b.wait(timeout=WAIT)) for h in helpers[:2]]
    waiting(2)
    b.reset()
    out.append(sorted(std_kind(p.get(timeout=WAIT)[1]) for p in pending))
    out.append(b.broken)
    pending = [h.submit(lambda: b.wait(timeout=WAIT)) for h in helpers[:2]]
    out.append(b.wait(timeout=WAIT) in range(3))
    out.append(sorted(p.get(timeout=WAIT)[1] for p in pending) != [])
    # abort(): waiters and later callers get BrokenBarrierError until reset()
    pending = [h.submit(lambda: b.wait(timeout=WAIT)) for h in helpers[:2]]
    waiting(2)
    b.abort()
    out.append(sorted(std_kind(p.get(timeout=WAIT)[1]) for p in pending))
    out.append((b.broken, outcome(lambda: b.wait(timeout=WAIT))))
    b.reset()
    out.append(b.n_waiting)
    return out


def test_barrier_breaking_matches_threading(dso: LocalCluster, key: str, worker: Worker) -> None:
    helpers = [Worker() for _ in range(2)]
    try:
        std = threading.Barrier(3)
        expected = barrier_break_script(std, worker, helpers, lambda n: eventually(lambda: std.n_waiting == n))
        b = crucial.Barrier(3, key=key)
        got = barrier_break_script(b, worker, helpers, lambda n: eventually(lambda: b.n_waiting == n))
    finally:
        for h in helpers:
            h.stop()
    assert got == expected
    assert expected[0] == ["BrokenBarrierError"] * 2 and expected[1] is True


def test_broken_barrier_error_is_threadings(dso: LocalCluster, key: str) -> None:
    b = crucial.Barrier(2, timeout=0.2, key=key)  # the default timeout applies
    t0 = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError) as info:
        b.wait()
    assert 0.19 <= time.monotonic() - t0 < WAIT
    assert isinstance(info.value, crucial.BrokenBarrierError)
    assert b.broken


def test_barrier_action_error_breaks_it(dso: LocalCluster, key: str) -> None:
    def boom() -> None:
        raise ValueError("action failed")

    def run(make: Callable[[], Any]) -> list[str]:
        b = make()
        threads, results = start_threads(2, lambda i: b.wait(timeout=WAIT))
        join_all(threads)
        return sorted(type(r).__name__ if not isinstance(r, threading.BrokenBarrierError) else "Broken" for r in results.values())

    expected = run(lambda: threading.Barrier(2, action=boom))
    assert run(lambda: crucial.Barrier(2, action=boom, key=key)) == expected == ["Broken", "ValueError"]
    assert crucial.Barrier(2, key=key).broken


def test_barrier_parties_mismatch_is_clear(dso: LocalCluster, key: str) -> None:
    assert crucial.Barrier(3, key=key).parties == 3
    with pytest.raises(crucial.ObjectCreationError, match=r"parties=3.*4") as info:
        crucial.Barrier(4, key=key).wait(timeout=1)
    assert info.value.key == key
    assert crucial.Barrier(3, key=key).n_waiting == 0  # the original is untouched


# --------------------------------------------------------------------------- Event, latch, future, exchanger


def event_script(ev: Any, helpers: list[Worker]) -> list[Any]:
    out: list[Any] = [ev.is_set(), ev.wait(0.1)]
    pending = [h.submit(lambda: ev.wait(WAIT)) for h in helpers]
    ev.set()
    out.append([p.get(timeout=WAIT)[1] for p in pending])
    out += [ev.is_set(), ev.wait(), ev.wait(0)]
    ev.clear()
    out += [ev.is_set(), ev.wait(0.1), ev.wait(0)]
    return out


def test_event_matches_threading(dso: LocalCluster, key: str) -> None:
    helpers = [Worker() for _ in range(3)]
    try:
        expected = event_script(threading.Event(), helpers)
        got = event_script(crucial.Event(key=key), helpers)
    finally:
        for h in helpers:
            h.stop()
    assert got == expected == [False, False, [True] * 3, True, True, True, False, False, False]


def test_count_down_latch(dso: LocalCluster, key: str) -> None:
    latch = crucial.CountDownLatch(2, key=key)
    assert latch.wait(0.1) is False
    threads, results = start_threads(3, lambda i: latch.wait(WAIT))
    assert latch.count_down() == 1
    assert latch.count_down() == 0
    join_all(threads)
    assert results == dict.fromkeys(range(3), True)
    assert latch.count_down() == 0  # never below zero
    assert latch.get_count() == 0 and latch.wait(0) is True
    assert crucial.CountDownLatch(5, key=key).get_count() == 0  # a later declaration attaches


def test_shared_future_first_set_wins(dso: LocalCluster, key: str) -> None:
    fut = crucial.SharedFuture(key=key)
    getters, got = start_threads(3, lambda i: fut.get(timeout=WAIT))
    setters, won = start_threads(5, lambda i: (fut.set(f"value-{i}"), i))
    join_all(setters)
    join_all(getters)
    winners = [i for ok, i in won.values() if ok]
    assert len(winners) == 1
    assert set(got.values()) == {f"value-{winners[0]}"}
    assert fut.done() and fut.result() == f"value-{winners[0]}"
    assert fut.set_exception(ValueError("late")) is False


def test_shared_future_timeout_and_exception(dso: LocalCluster, key: str) -> None:
    fut = crucial.SharedFuture(key=key)
    t0 = time.monotonic()
    with pytest.raises(crucial.CallTimeoutError) as info:
        fut.get(timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    assert isinstance(info.value, TimeoutError)
    assert not fut.done()
    assert fut.set_exception(KeyError("boom")) is True
    assert fut.set("late") is False
    with pytest.raises(KeyError, match="boom"):
        fut.get(timeout=WAIT)
    with pytest.raises(TypeError):
        fut.set_exception("not an exception")  # type: ignore[arg-type]


def test_exchanger_pairs_values(dso: LocalCluster, key: str) -> None:
    ex = crucial.Exchanger(key=key)
    threads, results = start_threads(4, lambda i: ex.exchange(i, timeout=WAIT))
    join_all(threads)
    assert sorted(results.values()) == [0, 1, 2, 3]
    for i, partner in results.items():
        assert partner != i and results[partner] == i  # pairs swap with each other
    with pytest.raises(crucial.CallTimeoutError):
        ex.exchange("alone", timeout=0.1)


# --------------------------------------------------------------------------- every waiting type


@dataclass(frozen=True)
class Waiting:
    """How to block on, time out on and release one waiting type."""

    name: str
    create: tuple[Any, ...]
    wait: tuple[str, tuple[Any, ...]]  # a call that blocks until released
    release: tuple[str, tuple[Any, ...]]  # a call that releases it (may itself block briefly)
    probe: str  # a fast read on the same object
    timed_out: Callable[[Any], bool]  # the outcome of a wait given a small timeout

    def proxy(self, key: str) -> Any:
        return getattr(crucial, self.name)(*self.create, key=key)

    def call(self, key: str, method: str, args: tuple[Any, ...]) -> Callable[[], Any]:
        proxy = self.proxy(key)
        return lambda: getattr(proxy, method)(*args)


def _is_broken(r: Any) -> bool:
    return isinstance(r, crucial.BrokenBarrierError)


def _is_call_timeout(r: Any) -> bool:
    return isinstance(r, crucial.CallTimeoutError)


WAITING = [
    Waiting("Barrier", (2,), ("wait", (None,)), ("wait", (WAIT,)), "n_waiting", _is_broken),
    Waiting("Event", (), ("wait", (None,)), ("set", ()), "is_set", lambda r: r is False),
    Waiting("CountDownLatch", (1,), ("wait", (None,)), ("count_down", ()), "get_count", lambda r: r is False),
    Waiting("SharedFuture", (), ("get", (None,)), ("set", (7,)), "done", _is_call_timeout),
    Waiting("Exchanger", (), ("exchange", ("a", None)), ("exchange", ("b", WAIT)), "exchange", _is_call_timeout),
]
IDS = [w.name for w in WAITING]


def _timed(w: Waiting, timeout: float) -> tuple[str, tuple[Any, ...]]:
    method, args = w.wait
    return method, (*args[:-1], timeout)


@pytest.mark.parametrize("w", WAITING, ids=IDS)
def test_wait_times_out(dso: LocalCluster, key: str, w: Waiting) -> None:
    fn = w.call(key, *_timed(w, 0.2))
    t0 = time.monotonic()
    try:
        result: Any = fn()
    except crucial.CrucialError as exc:
        result = exc
    elapsed = time.monotonic() - t0
    assert w.timed_out(result), result
    assert 0.19 <= elapsed < WAIT


@pytest.mark.parametrize("w", WAITING, ids=IDS)
def test_waiter_is_released(dso: LocalCluster, key: str, w: Waiting) -> None:
    threads, results = start_threads(1, lambda i: w.call(key, *_timed(w, WAIT))())
    w.call(key, *w.release)()
    join_all(threads)
    assert not w.timed_out(results[0]) and not isinstance(results[0], BaseException), results


@pytest.mark.parametrize(
    "w", [*WAITING, Waiting("Lock", (), ("acquire", ()), ("release", ()), "locked", bool)], ids=[*IDS, "Lock"]
)
def test_blocked_call_does_not_hold_up_its_connection(any_cluster: LocalCluster, key: str, w: Waiting) -> None:
    """One multiplexed connection: a blocked call, then fast calls that overtake it."""
    type_name = w.name
    create: tuple[tuple[Any, ...], dict[str, Any]] = (w.create, {})

    async def main() -> None:
        async with crucial.AsyncClient(any_cluster.addresses, any_cluster.config()) as client:
            assert await client.call(type_name, key, "", create=create) is None  # create only
            if w.name == "Lock":  # hold it first, so that the next acquire blocks
                assert await client.call("Lock", key, "acquire") is True
            blocked = asyncio.ensure_future(client.call(type_name, key, *w.wait, create=create))
            counter = f"{key}-fast"
            for i in range(1, 4):  # fast calls on another object and on the same one return first
                assert await client.call("AtomicInt", counter, "increment_and_get", create=((0,), {})) == i
                assert not blocked.done()
            # the same object answers a fast read while its waiter is parked
            idle = {"Barrier": 1, "Event": False, "CountDownLatch": 1, "SharedFuture": False, "Lock": True}
            if w.name in idle:
                assert await client.call(type_name, key, w.probe) == idle[w.name]
            assert not blocked.done()
            released = await asyncio.wait_for(client.call(type_name, key, *w.release, create=create), WAIT)
            result = await asyncio.wait_for(blocked, WAIT)
            if w.name == "Exchanger":
                assert (result, released) == ("b", "a")
            elif w.name == "Barrier":
                assert sorted([result, released]) == [0, 1]
            elif w.name == "Lock":
                assert result is True
            elif w.name == "SharedFuture":
                assert result == 7
            else:
                assert result is True

    asyncio.run(main())
