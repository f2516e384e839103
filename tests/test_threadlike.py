"""``threading`` primitives inside ``@crucial.shared`` classes work as node monitors.

The classes below are written as for threads (locks, conditions, semaphores,
events as attributes); adding ``@crucial.shared`` is the whole port.  The
calls run on a real node from several client threads.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

import crucial
from crucial.objects._threadlike import NodeBarrier, NodeCondition, NodeEvent, NodeLock, NodeRLock, NodeSemaphore, adopt
from crucial.testing import LocalCluster
from crucial.testing.faults import eventually, run_threads


@crucial.shared
class BoundedBuffer:
    """The textbook monitor: ``wait()`` in a loop, ``notify_all()`` on change."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[Any] = []
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)

    def put(self, item: Any) -> None:
        with self._lock:
            while len(self.items) >= self.capacity:
                self._not_full.wait()
            self.items.append(item)
            self._not_empty.notify()

    def get(self) -> Any:
        with self._not_empty:
            while not self.items:
                self._not_empty.wait()
            item = self.items.pop(0)
            self._not_full.notify()
            return item

    def waiting(self) -> tuple[int, int]:
        return len(self._not_full._waiters), len(self._not_empty._waiters)  # type: ignore[attr-defined]

    def shares_lock(self) -> bool:
        return self._not_full._lock is self._lock is self._not_empty._lock  # type: ignore[attr-defined]


@crucial.shared
class Gate:
    """``wait_for`` with a predicate, a notify count, an RLock, a semaphore and an event."""

    def __init__(self) -> None:
        self.open = False
        self.cond = threading.Condition()
        self.rlock = threading.RLock()
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(2)
        self.bounded = threading.BoundedSemaphore(1)
        self.event = threading.Event()
        self.woken: list[str] = []

    def pass_when_open(self, timeout: float | None = None) -> bool:
        with self.cond:
            return bool(self.cond.wait_for(lambda: self.open, timeout))

    def set_open(self) -> None:
        self.open = True  # no notify: a node re-checks predicates after every call

    def wait_notified(self, name: str) -> None:
        with self.cond:
            self.cond.wait()
            self.woken.append(name)

    def notify(self, n: int) -> int:
        with self.cond:
            self.cond.notify(n)
            return len(self.cond._waiters)  # type: ignore[attr-defined]

    def waiters(self) -> int:
        return len(self.cond._waiters)  # type: ignore[attr-defined]

    def woken_names(self) -> list[str]:
        return list(self.woken)

    def lock_acquire(self, timeout: float = -1) -> bool:
        return self.lock.acquire(timeout=timeout)

    def lock_release(self) -> None:
        self.lock.release()

    def rlock_acquire(self) -> bool:
        return self.rlock.acquire()

    def rlock_release(self) -> None:
        self.rlock.release()

    def slot(self, timeout: float | None = None) -> bool:
        return self.slots.acquire(timeout=timeout)

    def free_slot(self) -> None:
        self.slots.release()

    def bounded_release(self) -> None:
        self.bounded.release()

    def wait_event(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout)

    def set_event(self) -> None:
        self.event.set()

    def wait_unowned(self) -> None:
        self.cond.wait()


def test_bounded_buffer_monitor_moves_every_item_in_order(dso: LocalCluster, key: str) -> None:
    buf = BoundedBuffer(2, key=key)
    assert buf.shares_lock()  # one lock twin behind both conditions
    got: list[int] = []
    n = 200

    def produce() -> None:
        for i in range(n):
            buf.put(i)

    def consume() -> None:
        got.extend(buf.get() for _ in range(n))

    assert run_threads([produce, consume]) == []
    assert got == list(range(n))
    assert buf.waiting() == (0, 0)


def test_consumer_waits_on_the_node_until_a_put(dso: LocalCluster, key: str) -> None:
    buf = BoundedBuffer(1, key=key)
    out: list[Any] = []
    consumer = threading.Thread(target=lambda: out.append(buf.get()))
    consumer.start()
    eventually(lambda: buf.waiting() == (0, 1), what="the consumer waits in Condition.wait on the node")
    buf.put("x")  # the node is not blocked: this call runs while the consumer waits
    consumer.join(20)
    assert out == ["x"]


def test_wait_for_needs_no_notify_and_times_out(dso: LocalCluster, key: str) -> None:
    gate = Gate(key=key)
    assert gate.pass_when_open(0.05) is False
    errors = run_threads([lambda: gate.pass_when_open(20) or pytest.fail("not woken"), gate.set_open])
    assert errors == []
    assert gate.pass_when_open(0) is True


def test_notify_wakes_the_oldest_waiters_only(dso: LocalCluster, key: str) -> None:
    gate = Gate(key=key)
    threads = []
    for i, name in enumerate(["first", "second", "third"]):
        t = threading.Thread(target=gate.wait_notified, args=(name,))
        t.start()
        threads.append(t)
        eventually(lambda i=i: gate.waiters() == i + 1, what=f"waiter {name} queued")
    assert gate.notify(2) == 1
    eventually(lambda: len(gate.woken_names()) == 2, what="two waiters woken")
    assert gate.woken_names() == ["first", "second"]
    assert gate.waiters() == 1
    gate.notify(1)
    for t in threads:
        t.join(20)
    assert gate.woken_names() == ["first", "second", "third"]


def test_lock_taken_by_one_call_and_released_by_a_later_one(dso: LocalCluster, key: str) -> None:
    gate = Gate(key=key)
    assert gate.lock_acquire() is True
    assert gate.lock_acquire(0.05) is False  # held: the timed acquire gives up
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(gate.lock_acquire(20)))
    t.start()
    gate.lock_release()
    t.join(20)
    assert got == [True]
    gate.lock_release()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        gate.lock_release()


def test_rlock_is_owned_by_the_calling_thread(dso: LocalCluster, key: str) -> None:
    gate = Gate(key=key)
    assert gate.rlock_acquire() and gate.rlock_acquire()  # re-entrant across calls of one thread
    errors = run_threads([gate.rlock_release])  # another thread does not own it
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    gate.rlock_release()
    gate.rlock_release()
    with pytest.raises(RuntimeError, match="un-acquired"):
        gate.rlock_release()


def test_semaphores_and_event(dso: LocalCluster, key: str) -> None:
    gate = Gate(key=key)
    assert gate.slot() and gate.slot()
    assert gate.slot(0.05) is False  # both slots taken
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(gate.slot(20)))
    t.start()
    gate.free_slot()
    t.join(20)
    assert got == [True]
    with pytest.raises(ValueError, match="released too many times"):
        gate.bounded_release()
    assert gate.wait_event(0.05) is False
    assert run_threads([lambda: gate.wait_event(20) or pytest.fail("event not seen"), gate.set_event]) == []


def test_waiting_without_the_lock_is_an_error(dso: LocalCluster, key: str) -> None:
    with pytest.raises(RuntimeError, match="cannot wait on un-acquired lock"):
        Gate(key=key).wait_unowned()


@crucial.shared
class Stage:
    """A class holding a ``queue.Queue`` and a ``threading.Barrier``, as thread code does."""

    def __init__(self, parties: int) -> None:
        self.jobs: queue.Queue[int] = queue.Queue(maxsize=2)
        self.meet = threading.Barrier(parties, timeout=20)

        self.simple: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.simple.put(-1)  # contents survive the swap

    def put(self, item: int) -> None:
        self.jobs.put(item)  # blocks (on the node) while the queue is full

    def simple_put(self, item: int) -> None:
        self.simple.put(item)

    def simple_get(self, timeout: float | None = None) -> int:
        return self.simple.get(timeout=timeout)

    def get(self, timeout: float | None = None) -> int:
        return self.jobs.get(timeout=timeout)

    def arrive(self, timeout: float | None = None) -> int:
        return self.meet.wait(timeout)

    def state(self) -> tuple[int, bool]:
        return self.meet.n_waiting, self.meet.broken

    def reset(self) -> None:
        self.meet.reset()


def test_a_queue_attribute_blocks_as_a_monitor(dso: LocalCluster, key: str) -> None:
    stage = Stage(1, key=key)
    got: list[int] = []
    errors = run_threads([lambda: [stage.put(i) for i in range(50)], lambda: got.extend(stage.get(20) for _ in range(50))])
    assert errors == [] and got == list(range(50))
    with pytest.raises(queue.Empty):
        stage.get(0.05)
    assert stage.simple_get(0) == -1
    taken: list[int] = []
    assert (
        run_threads(
            [lambda: taken.extend(stage.simple_get(20) for _ in range(3)), lambda: [stage.simple_put(i) for i in range(3)]]
        )
        == []
    )
    assert taken == [0, 1, 2]
    with pytest.raises(queue.Empty):
        stage.simple_get(0.05)


def test_a_barrier_attribute_releases_its_parties_and_breaks_on_timeout(dso: LocalCluster, key: str) -> None:
    stage = Stage(3, key=key)
    indices: list[int] = []
    assert run_threads([lambda: indices.append(stage.arrive()) for _ in range(3)]) == []
    assert sorted(indices) == [0, 1, 2] and stage.state() == (0, False)
    with pytest.raises(threading.BrokenBarrierError):
        stage.arrive(0.05)  # nobody else comes: the wait times out and breaks the barrier
    assert stage.state() == (0, True)
    with pytest.raises(threading.BrokenBarrierError):
        stage.arrive()  # broken until reset
    stage.reset()
    failed: list[BaseException] = []

    def waiter() -> None:
        try:
            stage.arrive(20)
        except threading.BrokenBarrierError as exc:
            failed.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    eventually(lambda: stage.state() == (1, False), what="one party waits")
    stage.reset()  # breaks the wait in progress, as threading's reset does
    t.join(20)
    assert len(failed) == 1 and stage.state() == (0, False)


# -- adopt(), without a node ---------------------------------------------------------------


class Plain:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.own = threading.Condition()
        self.sems = [threading.Semaphore(3), threading.BoundedSemaphore(2)]
        self.events = {"a": threading.Event()}
        self.pair = (threading.RLock(), 7)
        self.other = "text"


def test_adopt_swaps_every_primitive_and_keeps_sharing() -> None:
    obj = Plain()
    obj.events["a"].set()
    adopt(obj)
    assert type(obj.lock) is NodeLock and type(obj.cond) is NodeCondition
    assert obj.cond._lock is obj.lock  # the condition still uses the attribute's lock
    assert isinstance(obj.own._lock, NodeRLock)  # Condition() makes its own RLock
    assert type(obj.sems[0]) is NodeSemaphore and obj.sems[0]._value == 3
    assert obj.sems[1]._initial_value == 2  # type: ignore[attr-defined]
    assert type(obj.events["a"]) is NodeEvent and obj.events["a"].is_set()
    assert type(obj.pair[0]) is NodeRLock and obj.pair[1] == 7
    assert obj.other == "text"


def test_adopt_reaches_into_queues_and_barriers() -> None:
    class Holder:
        def __init__(self) -> None:
            self.q: queue.Queue[int] = queue.LifoQueue()
            self.b = threading.Barrier(4, timeout=3.0)

    obj = adopt(Holder())
    assert type(obj.q) is queue.LifoQueue  # the queue stays, its insides change
    assert type(obj.q.mutex) is NodeLock and obj.q.not_empty._lock is obj.q.mutex  # type: ignore[attr-defined]
    assert type(obj.b) is NodeBarrier and obj.b.parties == 4 and obj.b._timeout == 3.0  # type: ignore[attr-defined]
    obj.q.put(1)
    assert obj.q.get_nowait() == 1


def test_uncontended_twins_need_no_node() -> None:
    obj = adopt(Plain())
    with obj.lock:
        assert obj.lock.locked()
        obj.cond.notify_all()  # owning the lock: allowed
    assert not obj.lock.locked()
    with pytest.raises(RuntimeError, match="cannot notify"):
        obj.cond.notify()
    with pytest.raises(ValueError, match="non-blocking"):
        obj.lock.acquire(False, 1.0)


def test_adopt_leaves_objects_without_primitives_untouched() -> None:
    marker = ("sentinel",)
    items = [1, 2]

    class Holder:
        def __init__(self) -> None:
            self.marker = marker
            self.items = items
            self.lookup = {"k": marker}

    obj = adopt(Holder())
    assert obj.marker is marker and obj.items is items and obj.lookup["k"] is marker  # identity kept (sentinels)
