"""The node's object table and monitor scheduler, driven by a fake clock (no server, no asyncio)."""

from __future__ import annotations

import gc
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

from crucial.exceptions import (
    BrokenBarrierError,
    CallCancelledError,
    ObjectCreationError,
    ObjectNotFoundError,
    UnknownMethodError,
    UnknownTypeError,
    WouldBlockError,
)
from crucial.objects._monitor import Caller, current_caller, suspend, wait_until
from crucial.objects.synchronization import (
    BarrierState,
    ConditionState,
    EventState,
    LockState,
    SemaphoreState,
)
from crucial.server._runtime import Invocation, ObjectTable

# -- a fake event loop: timers fire and call_soon callbacks run only when the test says so --


class FakeTimer:
    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []
        self.soon: deque[Callable[[], None]] = deque()

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, dt: float) -> None:
        """Move the clock and fire due timers, earliest first."""
        self.now += dt
        while due := [t for t in self.pending if t.deadline <= self.now]:
            timer = min(due, key=lambda t: t.deadline)
            self.timers.remove(timer)
            timer.callback()

    def run_soon(self) -> None:
        while self.soon:
            self.soon.popleft()()


class Result:
    """What on_done reported for one call (if anything)."""

    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self._log = log
        self.calls = 0
        self.ok: bool | None = None
        self.value: Any = None
        self.tb = ""

    def __call__(self, ok: bool, value: Any, tb: str) -> None:
        self.calls += 1
        self.ok, self.value, self.tb = ok, value, tb
        self._log.append(self.label)

    @property
    def done(self) -> bool:
        return self.calls > 0

    def returned(self) -> Any:
        assert self.calls == 1, f"{self.label} finished {self.calls} times"
        assert self.ok, f"{self.label} raised {self.value!r}\n{self.tb}"
        return self.value

    def raised(self) -> BaseException:
        assert self.calls == 1, f"{self.label} finished {self.calls} times"
        assert self.ok is False, f"{self.label} returned {self.value!r}"
        assert isinstance(self.value, BaseException)
        return self.value


class Harness:
    def __init__(self, types: dict[str, type]) -> None:
        self.loop = FakeLoop()
        self.table = ObjectTable(types, self.loop.call_later, self.loop.call_soon)
        self.finished: list[str] = []  # labels in the order calls finished
        self.invs: dict[str, Invocation] = {}

    def create(self, type_name: str, key: str, *args: Any, force: bool = False, **kwargs: Any) -> Any:
        return self.table.create(type_name, key, args, kwargs, force)

    def obj(self, type_name: str, key: str) -> Any:
        return self.table.cells[(type_name, key)].obj

    def call(
        self, label: str, ref: tuple[str, str], method: str, *args: Any, client: str = "c1", thread: int = 1, **kwargs: Any
    ) -> Result:
        result = Result(label, self.finished)
        inv = Invocation(method, args, kwargs or None, Caller(client, thread), result)
        self.invs[label] = inv
        self.table.submit(self.table.lookup(ref[0], ref[1], method), inv)
        return result


# -- small state classes ----------------------------------------------------------------


class Box:
    """A value, a log of what ran, and waits on the value."""

    attr = 5  # not callable: not a method

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.log: list[Any] = []
        self.reserved = 0
        self.resume: Callable[[bool, Any], None] | None = None

    def set(self, v: int) -> int:
        self.log.append(("set", v))
        self.value = v
        return v

    def get(self) -> int:
        return self.value

    def record(self, tag: str) -> str:
        self.log.append(tag)
        return tag

    def wait_for(self, target: int, timeout: float | None = None) -> bool:
        self.log.append(("wait", target))
        ok = wait_until(lambda: self.value >= target, timeout)
        self.log.append(("woke", target, ok))
        return ok

    def take(self) -> int:
        """Wait for a unit, then consume it (so the order of wake-ups matters)."""
        wait_until(lambda: self.value > 0)
        self.value -= 1
        return self.value

    def wait_checked(self) -> bool:
        def ready() -> bool:
            if self.value < 0:
                raise ArithmeticError("negative value")
            return self.value > 100

        return wait_until(ready)

    def reserve(self) -> int:
        """Take a reservation while waiting; give it back if the caller goes away."""
        self.reserved += 1
        try:
            wait_until(lambda: self.value > 0)
        except CallCancelledError:
            self.reserved -= 1
            raise
        return self.reserved

    def boom(self) -> None:
        self.value = 99
        raise ValueError("boom in a method")

    def nested(self) -> Any:
        """Suspend on an 'operation elsewhere' until the test resumes it."""

        def start(resume: Callable[[bool, Any], None]) -> None:
            self.resume = resume

        self.log.append("nested-start")
        value = suspend(start)
        self.log.append(("nested-end", value))
        return value

    def whoami(self) -> Caller:
        return current_caller()

    def _private(self) -> str:
        return "secret"


class Tracker:
    def __init__(self) -> None:
        self.gone: list[str] = []

    def touch(self) -> None:
        pass

    def _crucial_client_gone(self, client_id: str) -> None:
        self.gone.append(client_id)


class Fragile:
    def __init__(self, x: int) -> None:
        if x < 0:
            raise ValueError("x must be >= 0")


TYPES: dict[str, type] = {
    "Box": Box,
    "Tracker": Tracker,
    "Fragile": Fragile,
    "Barrier": BarrierState,
    "Lock": LockState,
    "Condition": ConditionState,
    "Semaphore": SemaphoreState,
    "Event": EventState,
}
BOX = ("Box", "b")


@pytest.fixture
def h() -> Harness:
    harness = Harness(TYPES)
    harness.create(*BOX)
    return harness


def _hold(h: Harness) -> Result:
    """Park a call on a nested operation, so the object stays held."""
    held = h.call("nested", BOX, "nested")
    assert not held.done
    return held


def _release(h: Harness, value: Any = "nested-value") -> None:
    box = h.obj(*BOX)
    assert box.resume is not None
    box.resume(True, value)
    h.loop.run_soon()


# -- order and holding --------------------------------------------------------------------


def test_calls_run_in_submission_order(h: Harness) -> None:
    held = _hold(h)
    results = [h.call(f"r{i}", BOX, "record", f"r{i}") for i in range(5)]
    box = h.obj(*BOX)
    assert box.log == ["nested-start"]  # the held object ran nothing else
    assert not any(r.done for r in results)
    _release(h)
    assert held.returned() == "nested-value"
    assert box.log == ["nested-start", ("nested-end", "nested-value"), "r0", "r1", "r2", "r3", "r4"]
    assert h.finished == ["nested", "r0", "r1", "r2", "r3", "r4"]


def test_nested_failure_is_raised_in_the_method(h: Harness) -> None:
    held = _hold(h)
    h.obj(*BOX).resume(False, KeyError("elsewhere"))
    h.loop.run_soon()
    assert isinstance(held.raised(), KeyError)


def test_resume_goes_through_call_soon(h: Harness) -> None:
    held = _hold(h)
    h.obj(*BOX).resume(True, 1)
    assert not held.done  # not re-entered from inside the nested operation's callback
    h.loop.run_soon()
    assert held.returned() == 1


def test_calls_on_other_objects_are_not_held(h: Harness) -> None:
    h.create("Box", "other")
    _hold(h)
    assert h.call("x", ("Box", "other"), "set", 3).returned() == 3


def test_waiting_call_releases_the_object(h: Harness) -> None:
    waiter = h.call("w", BOX, "wait_for", 5)
    assert not waiter.done
    assert h.call("s1", BOX, "set", 1).returned() == 1
    assert h.call("g", BOX, "get").returned() == 1
    assert not waiter.done
    h.call("s5", BOX, "set", 5)
    assert waiter.returned() is True
    assert h.obj(*BOX).log == [("wait", 5), ("set", 1), ("set", 5), ("woke", 5, True)]
    assert h.finished == ["s1", "g", "s5", "w"]


def test_waiters_are_rechecked_before_queued_calls_run(h: Harness) -> None:
    waiter = h.call("w", BOX, "wait_for", 5)
    _hold(h)
    h.call("s5", BOX, "set", 5)
    h.call("after", BOX, "record", "after")
    _release(h)
    assert waiter.returned() is True
    log = h.obj(*BOX).log
    assert log.index(("woke", 5, True)) == log.index(("set", 5)) + 1
    assert log[-1] == "after"


def test_waiters_woken_oldest_first(h: Harness) -> None:
    takers = [h.call(f"t{i}", BOX, "take") for i in range(3)]
    assert not any(t.done for t in takers)
    h.call("s2", BOX, "set", 2)
    assert [t.done for t in takers] == [True, True, False]
    assert h.finished == ["s2", "t0", "t1"]
    assert [takers[0].value, takers[1].value] == [1, 0]
    h.call("s1", BOX, "set", 1)
    assert takers[2].returned() == 0


def test_only_satisfied_waiters_wake(h: Harness) -> None:
    big = h.call("big", BOX, "wait_for", 10)
    small = h.call("small", BOX, "wait_for", 1)
    h.call("s1", BOX, "set", 1)
    assert small.returned() is True
    assert not big.done
    h.call("s10", BOX, "set", 10)
    assert big.returned() is True


def test_predicate_that_raises_is_thrown_into_the_waiter(h: Harness) -> None:
    waiter = h.call("w", BOX, "wait_checked")
    h.call("neg", BOX, "set", -1)
    exc = waiter.raised()
    assert isinstance(exc, ArithmeticError)
    assert "negative value" in str(exc)


# -- timeouts --------------------------------------------------------------------------------


def test_timeout_wakes_with_false(h: Harness) -> None:
    waiter = h.call("w", BOX, "wait_for", 5, 2.0)
    assert [t.deadline for t in h.loop.pending] == [2.0]
    h.loop.advance(1.5)
    assert not waiter.done
    h.loop.advance(0.5)
    assert waiter.returned() is False
    assert h.obj(*BOX).log == [("wait", 5), ("woke", 5, False)]
    assert not h.loop.pending
    h.call("s5", BOX, "set", 5)  # a timed-out waiter is not woken again
    assert waiter.calls == 1


def test_wakeup_cancels_the_timer(h: Harness) -> None:
    waiter = h.call("w", BOX, "wait_for", 5, 2.0)
    h.call("s5", BOX, "set", 5)
    assert waiter.returned() is True
    assert not h.loop.pending
    h.loop.advance(10)
    assert waiter.calls == 1


def test_timeout_runs_calls_queued_behind_it(h: Harness) -> None:
    first = h.call("w1", BOX, "wait_for", 5, 1.0)
    second = h.call("w2", BOX, "wait_for", 5, 3.0)
    h.loop.advance(1.0)
    assert first.returned() is False
    assert not second.done
    h.loop.advance(2.0)
    assert second.returned() is False


def test_zero_timeout_does_not_park(h: Harness) -> None:
    waiter = h.call("w", BOX, "wait_for", 5, 0)
    assert waiter.returned() is False
    assert not h.loop.pending
    assert not h.table.cells[BOX].waiters


def test_timeout_while_held_waits_for_the_holder(h: Harness) -> None:
    waiter = h.call("w", BOX, "wait_for", 5, 1.0)
    _hold(h)
    h.loop.advance(1.0)
    assert h.obj(*BOX).log == [("wait", 5), "nested-start"]  # the held call still owns the object
    assert not waiter.done
    _release(h)
    assert waiter.returned() is False
    assert h.obj(*BOX).log == [("wait", 5), "nested-start", ("nested-end", "nested-value"), ("woke", 5, False)]


# -- cancellation -----------------------------------------------------------------------------


def test_cancel_waiter_throws_call_cancelled(h: Harness) -> None:
    waiter = h.call("w", BOX, "reserve")
    assert h.obj(*BOX).reserved == 1
    h.table.cancel(h.invs["w"])
    assert isinstance(waiter.raised(), CallCancelledError)
    assert h.obj(*BOX).reserved == 0  # the method undid its reservation
    assert not h.table.cells[BOX].waiters
    h.call("s", BOX, "set", 1)
    assert waiter.calls == 1


def test_cancel_waiter_cancels_its_timer(h: Harness) -> None:
    h.call("w", BOX, "wait_for", 5, 4.0)
    h.table.cancel(h.invs["w"])
    assert not h.loop.pending


def test_cancel_waiter_lets_others_run(h: Harness) -> None:
    h.call("w", BOX, "reserve")
    other = h.call("t", BOX, "take")
    h.table.cancel(h.invs["w"])
    h.call("s", BOX, "set", 1)
    assert other.returned() == 0


def test_cancel_waiter_while_held_waits_for_the_holder(h: Harness) -> None:
    waiter = h.call("w", BOX, "reserve")
    _hold(h)
    h.table.cancel(h.invs["w"])
    assert not waiter.done  # its cleanup must not run inside the held call
    assert h.obj(*BOX).reserved == 1
    _release(h)
    assert isinstance(waiter.raised(), CallCancelledError)
    assert h.obj(*BOX).reserved == 0


def test_cancel_queued_call_drops_it(h: Harness) -> None:
    _hold(h)
    dropped = h.call("x", BOX, "record", "x")
    kept = h.call("y", BOX, "record", "y")
    h.table.cancel(h.invs["x"])
    _release(h)
    assert not dropped.done
    assert kept.returned() == "y"
    assert "x" not in h.obj(*BOX).log


def test_cancel_finished_call_is_a_no_op(h: Harness) -> None:
    res = h.call("s", BOX, "set", 1)
    h.table.cancel(h.invs["s"])
    assert res.returned() == 1


# -- errors in methods ---------------------------------------------------------------------------


def test_exception_in_method(h: Harness) -> None:
    res = h.call("boom", BOX, "boom")
    exc = res.raised()
    assert isinstance(exc, ValueError)
    assert "ValueError: boom in a method" in res.tb
    assert "in boom" in res.tb  # the frame of the method itself
    assert h.call("g", BOX, "get").returned() == 99  # state mutated before the raise is kept


def test_exception_after_wait(h: Harness) -> None:
    class Late:
        def __init__(self) -> None:
            self.go = False

        def fire(self) -> None:
            self.go = True

        def wait_then_fail(self) -> None:
            wait_until(lambda: self.go)
            raise KeyError("late")

    h.table.types["Late"] = Late
    h.create("Late", "l")
    waiter = h.call("w", ("Late", "l"), "wait_then_fail")
    h.call("f", ("Late", "l"), "fire")
    assert isinstance(waiter.raised(), KeyError)
    assert "KeyError" in waiter.tb


@pytest.mark.parametrize("method", ["_private", "__init__", "__class__", "", "nope", "attr"])
def test_unknown_or_private_method(h: Harness, method: str) -> None:
    with pytest.raises(UnknownMethodError) as info:
        h.call("x", BOX, method)
    assert info.value.type_name == "Box"
    assert info.value.key == "b"


def test_unknown_method_lists_public_methods(h: Harness) -> None:
    with pytest.raises(UnknownMethodError, match="has no method 'nope'") as info:
        h.call("x", BOX, "nope")
    assert "wait_for" in str(info.value)
    assert "_private" not in str(info.value)


# -- object lifecycle ------------------------------------------------------------------------------


def test_create_is_create_if_absent(h: Harness) -> None:
    cell = h.create("Box", "c", 1)
    again = h.create("Box", "c", 2)
    assert again is cell
    assert h.obj("Box", "c").value == 1


def test_force_replaces_and_wakes_old_waiters(h: Harness) -> None:
    h.create("Box", "f", 0)
    waiter = h.call("w", ("Box", "f"), "wait_for", 5, 3.0)
    new = h.create("Box", "f", 7, force=True)
    exc = waiter.raised()
    assert isinstance(exc, ObjectNotFoundError)
    assert (exc.type_name, exc.key) == ("Box", "f")
    assert new.obj.value == 7
    assert h.table.cells[("Box", "f")] is new
    assert not h.loop.pending


def test_force_fails_queued_calls_on_the_old_object(h: Harness) -> None:
    _hold(h)
    queued = h.call("q", BOX, "record", "q")
    h.create(*BOX, force=True)
    assert isinstance(queued.raised(), ObjectNotFoundError)


def test_delete_wakes_waiters(h: Harness) -> None:
    waiter = h.call("w", BOX, "take")
    assert h.table.delete(*BOX) is True
    assert isinstance(waiter.raised(), ObjectNotFoundError)
    assert h.table.delete(*BOX) is False
    with pytest.raises(ObjectNotFoundError, match="'b'"):
        h.call("x", BOX, "get")


def test_lookup_unknown_type(h: Harness) -> None:
    with pytest.raises(UnknownTypeError):
        h.table.lookup("Nope", "k", "m")
    with pytest.raises(UnknownTypeError):
        h.create("Nope", "k")


def test_same_args_mismatch() -> None:
    h = Harness(TYPES)
    cell = h.create("Barrier", "bar", 3)
    assert h.create("Barrier", "bar", 3) is cell
    assert h.create("Barrier", "bar") is cell  # no parties given: attach
    with pytest.raises(ObjectCreationError, match="parties=3") as info:
        h.create("Barrier", "bar", 4)
    assert info.value.key == "bar"
    with pytest.raises(ObjectCreationError):
        h.create("Barrier", "bar", parties=5)
    assert h.create("Barrier", "bar", 4, force=True) is not cell


def test_constructor_error_is_object_creation_error() -> None:
    h = Harness(TYPES)
    with pytest.raises(ObjectCreationError, match="x must be >= 0") as info:
        h.create("Fragile", "f", -1)
    assert isinstance(info.value.__cause__, ValueError)
    assert ("Fragile", "f") not in h.table.cells
    with pytest.raises(ObjectCreationError, match="TypeError"):
        h.create("Fragile", "f", 1, 2, 3)


def test_failed_force_keeps_the_old_object() -> None:
    h = Harness(TYPES)
    cell = h.create("Fragile", "f", 1)
    with pytest.raises(ObjectCreationError):
        h.create("Fragile", "f", -1, force=True)
    assert h.table.cells[("Fragile", "f")] is cell


# -- a finished call keeps nothing alive (worker greenlets are parked and reused) ------------------


class Blob:
    pass


class Maker:
    def make(self) -> Blob:
        return Blob()

    def look(self, blob: Blob) -> None:
        pass

    def fail(self) -> None:
        raise ValueError("fails with self in its traceback")


def _fresh_table() -> tuple[ObjectTable, Any]:
    loop = FakeLoop()
    table = ObjectTable({"Maker": Maker}, loop.call_later, loop.call_soon)
    return table, table.create("Maker", "m", (), {}, False)


def _run(table: ObjectTable, cell: Any, method: str, *args: Any) -> list[Any]:
    seen: list[Any] = []

    def on_done(ok: bool, value: Any, tb: str) -> None:
        seen.append(ok)
        if isinstance(value, Blob):
            seen.append(weakref.ref(value))

    table.submit(cell, Invocation(method, args, None, Caller("c", 1), on_done))
    return seen


LEAK = "BUG: a parked worker greenlet keeps its {} alive (see the report: pass job/outcome as attributes, not switch args)"


def test_result_is_not_kept_alive() -> None:
    table, cell = _fresh_table()
    ok, ref = _run(table, cell, "make")
    assert ok is True
    gc.collect()
    assert ref() is None


def test_arguments_are_not_kept_alive() -> None:
    table, cell = _fresh_table()
    blob = Blob()
    ref = weakref.ref(blob)
    assert _run(table, cell, "look", blob) == [True]
    del blob
    gc.collect()
    assert ref() is None


def test_deleted_object_is_not_kept_alive_by_an_error() -> None:
    table, cell = _fresh_table()
    ref = weakref.ref(cell.obj)
    assert _run(table, cell, "fail") == [False]
    table.delete("Maker", "m")
    del cell
    gc.collect()
    assert ref() is None


# -- callers and client_gone -------------------------------------------------------------------


def test_current_caller_inside_a_call(h: Harness) -> None:
    assert h.call("me", BOX, "whoami", client="alice", thread=42).returned() == Caller("alice", 42)


def test_client_gone_notifies_touched_objects_only() -> None:
    h = Harness(TYPES)
    for key in ("t1", "t2", "t3"):
        h.create("Tracker", key)
    h.call("a1", ("Tracker", "t1"), "touch", client="a")
    h.call("a2", ("Tracker", "t2"), "touch", client="a")
    h.call("b3", ("Tracker", "t3"), "touch", client="b")
    h.table.client_gone("a")
    assert h.obj("Tracker", "t1").gone == ["a"]
    assert h.obj("Tracker", "t2").gone == ["a"]
    assert h.obj("Tracker", "t3").gone == []
    h.table.client_gone("a")  # told once only
    assert h.obj("Tracker", "t1").gone == ["a"]
    h.table.client_gone("nobody")


def test_client_gone_skips_deleted_objects() -> None:
    h = Harness(TYPES)
    h.create("Tracker", "t")
    h.call("a", ("Tracker", "t"), "touch", client="a")
    obj = h.obj("Tracker", "t")
    h.table.delete("Tracker", "t")
    h.table.client_gone("a")
    assert obj.gone == []


def test_client_gone_waits_for_a_held_object() -> None:
    class HeldTracker(Tracker, Box):
        def __init__(self) -> None:
            Tracker.__init__(self)
            Box.__init__(self)

    h = Harness({"Box": HeldTracker})
    h.create(*BOX)
    h.call("a", BOX, "touch", client="a")
    _hold(h)
    h.table.client_gone("a")
    assert h.obj(*BOX).gone == []  # the held call keeps the object
    _release(h)
    assert h.obj(*BOX).gone == ["a"]


# -- the sequential model: wait_until outside a node -------------------------------------------


def test_wait_until_outside_a_node() -> None:
    assert wait_until(lambda: True) is True
    with pytest.raises(WouldBlockError):
        wait_until(lambda: False)
    with pytest.raises(WouldBlockError):
        wait_until(lambda: False, timeout=5)
    assert wait_until(lambda: False, timeout=0) is False
    assert wait_until(lambda: False, timeout=-1) is False


def test_current_caller_outside_a_node() -> None:
    assert current_caller() == Caller("local", threading.get_ident())


def test_states_used_directly_outside_a_node() -> None:
    lock = LockState()
    assert lock.acquire() is True
    assert lock.acquire(blocking=False) is False
    with pytest.raises(WouldBlockError):
        lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


# -- the built-in synchronization states through the table -------------------------------------


def test_barrier_three_parties() -> None:
    h = Harness(TYPES)
    h.create("Barrier", "bar", 3)
    ref = ("Barrier", "bar")
    a = h.call("a", ref, "wait", client="a")
    b = h.call("b", ref, "wait", client="b")
    assert not a.done and not b.done
    assert h.call("n", ref, "n_waiting").returned() == 2
    c = h.call("c", ref, "wait", client="c")
    assert (a.returned(), b.returned(), c.returned()) == (0, 1, 2)
    assert h.finished == ["n", "c", "a", "b"]
    # and it is reusable
    d = h.call("d", ref, "wait")
    e = h.call("e", ref, "wait")
    f = h.call("f", ref, "wait")
    assert sorted([d.returned(), e.returned(), f.returned()]) == [0, 1, 2]


def test_barrier_party_cancelled_breaks_it() -> None:
    h = Harness(TYPES)
    h.create("Barrier", "bar", 3)
    ref = ("Barrier", "bar")
    a = h.call("a", ref, "wait", client="a")
    b = h.call("b", ref, "wait", client="b")
    h.table.cancel(h.invs["a"])
    assert isinstance(a.raised(), CallCancelledError)
    assert isinstance(b.raised(), BrokenBarrierError)
    assert h.call("broken", ref, "is_broken").returned() is True
    assert isinstance(h.call("c", ref, "wait").raised(), BrokenBarrierError)
    assert h.table.cells[ref].flagged == 0  # the cancelled waiter was counted, then taken off


def test_barrier_timeout_breaks_it() -> None:
    # arrivals park quietly (nobody is re-checked): the timed-out one, parked between two others, is still woken
    h = Harness(TYPES)
    h.create("Barrier", "bar", 4)
    ref = ("Barrier", "bar")
    a = h.call("a", ref, "wait")
    b = h.call("b", ref, "wait", 1.0)
    c = h.call("c", ref, "wait")
    assert h.table.cells[ref].flagged == 0
    h.loop.advance(1.0)
    assert isinstance(b.raised(), BrokenBarrierError)
    assert isinstance(a.raised(), BrokenBarrierError) and isinstance(c.raised(), BrokenBarrierError)
    assert h.table.cells[ref].flagged == 0 and not h.table.cells[ref].waiters
    h.call("reset", ref, "reset")
    assert h.call("broken", ref, "is_broken").returned() is False


def test_lock_handed_over_in_fifo_order() -> None:
    h = Harness(TYPES)
    h.create("Lock", "l")
    ref = ("Lock", "l")
    assert h.call("a", ref, "acquire", client="a").returned() is True
    waiters = {c: h.call(c, ref, "acquire", client=c) for c in "bcd"}
    assert not any(w.done for w in waiters.values())
    holder = "a"
    for nxt in "bcd":
        h.call(f"rel-{holder}", ref, "release", client=holder)
        assert waiters[nxt].returned() is True
        assert h.obj(*ref).owner == Caller(nxt, 1)
        assert not any(waiters[c].done for c in "bcd" if c > nxt)
        holder = nxt
    assert h.finished == ["a", "rel-a", "b", "rel-b", "c", "rel-c", "d"]


def test_lock_acquire_timeout_gives_up_its_place() -> None:
    h = Harness(TYPES)
    h.create("Lock", "l")
    ref = ("Lock", "l")
    h.call("a", ref, "acquire", client="a")
    impatient = h.call("b", ref, "acquire", True, 1.0, client="b")
    patient = h.call("c", ref, "acquire", client="c")
    h.loop.advance(1.0)
    assert impatient.returned() is False
    h.call("rel", ref, "release", client="a")
    assert patient.returned() is True
    assert h.obj(*ref).owner == Caller("c", 1)


def test_lock_released_when_its_holder_is_gone() -> None:
    h = Harness(TYPES)
    h.create("Lock", "l")
    ref = ("Lock", "l")
    h.call("a", ref, "acquire", client="a")
    waiter = h.call("b", ref, "acquire", client="b")
    h.table.client_gone("b")  # b holds nothing: the lock stays with a
    assert not waiter.done
    h.table.client_gone("a")
    assert waiter.returned() is True
    assert h.obj(*ref).owner == Caller("b", 1)


def test_condition_notify() -> None:
    h = Harness(TYPES)
    h.create("Condition", "cv")
    ref = ("Condition", "cv")
    assert h.call("a-acq", ref, "acquire", client="a").returned() is True
    waiting = h.call("a-wait", ref, "wait", client="a")
    assert not waiting.done
    assert h.call("b-acq", ref, "acquire", client="b").returned() is True  # wait() released the lock
    h.call("b-notify", ref, "notify", client="b")
    assert not waiting.done  # notified, but b still holds the lock
    h.call("b-rel", ref, "release", client="b")
    assert waiting.returned() is True
    assert h.obj(*ref).owner == Caller("a", 1)
    assert h.call("a-rel", ref, "release", client="a").ok is True


def test_condition_notify_one_of_two_then_all() -> None:
    h = Harness(TYPES)
    h.create("Condition", "cv")
    ref = ("Condition", "cv")
    waits = {}
    for c in "ab":
        h.call(f"{c}-acq", ref, "acquire", client=c)
        waits[c] = h.call(f"{c}-wait", ref, "wait", client=c)
    h.call("n-acq", ref, "acquire", client="n")
    h.call("n-notify", ref, "notify", 1, client="n")
    h.call("n-rel", ref, "release", client="n")
    assert waits["a"].returned() is True
    assert not waits["b"].done
    h.call("a-rel", ref, "release", client="a")
    h.call("n-acq2", ref, "acquire", client="n")
    h.call("n-all", ref, "notify_all", client="n")
    h.call("n-rel2", ref, "release", client="n")
    assert waits["b"].returned() is True


def test_condition_wait_timeout_reacquires() -> None:
    h = Harness(TYPES)
    h.create("Condition", "cv")
    ref = ("Condition", "cv")
    h.call("acq", ref, "acquire", client="a")
    waiting = h.call("wait", ref, "wait", 2.0, client="a")
    h.loop.advance(2.0)
    assert waiting.returned() is False
    assert h.obj(*ref).owner == Caller("a", 1)
    assert h.obj(*ref).waiters == []


def test_condition_wait_without_lock() -> None:
    h = Harness(TYPES)
    h.create("Condition", "cv")
    assert isinstance(h.call("w", ("Condition", "cv"), "wait").raised(), RuntimeError)


def test_semaphore_release_wakes_in_order() -> None:
    h = Harness(TYPES)
    h.create("Semaphore", "s", 0)
    ref = ("Semaphore", "s")
    acq = [h.call(f"a{i}", ref, "acquire") for i in range(3)]
    h.call("rel2", ref, "release", 2)
    assert [a.done for a in acq] == [True, True, False]
    assert h.call("v", ref, "get_value").returned() == 0
    h.call("rel1", ref, "release")
    assert acq[2].returned() is True
    assert h.finished == ["rel2", "a0", "a1", "v", "rel1", "a2"]


def test_event_wakes_every_waiter() -> None:
    h = Harness(TYPES)
    h.create("Event", "e")
    ref = ("Event", "e")
    waits = [h.call(f"w{i}", ref, "wait") for i in range(3)]
    timed = h.call("t", ref, "wait", 5.0)
    h.call("set", ref, "set")
    assert [w.returned() for w in waits] == [True, True, True]
    assert timed.returned() is True
    assert not h.loop.pending
