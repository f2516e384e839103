"""``threading`` primitives inside shared classes, as node-side monitors.

A Python class written for threads protects itself with the ``threading``
module: ``self._lock = threading.Lock()`` and ``with self._lock:``, or a
``threading.Condition`` it waits on and notifies -- the Python spelling of a
Java monitor.  The seed ports such classes by adding ``@Shared`` alone, so we
do the same: when a node creates an object, :func:`adopt` swaps every
``Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``,
``Event`` and ``Barrier`` among its attributes (and one level into lists,
tuples and dicts held by them) for the twins below, and those inside a
``queue.Queue`` (or ``LifoQueue``, ``PriorityQueue``) it holds, so its
blocking ``get``/``put`` wait as monitors too; a ``queue.SimpleQueue``
(written in C) becomes a Python twin with its contents.

The twins keep ``threading``'s semantics but wait with
:func:`~crucial.objects._monitor.wait_until`: a waiting call releases the
object to other calls instead of blocking the node's only thread (a real
``Condition.wait`` there would stop every object of the node).  Ownership
(``RLock``, ``Condition``) is by *caller* -- the client thread that made the
call -- so a lock acquired by one call and released by a later call of the
same client thread behaves as it does with threads.

``Condition.wait_for(predicate)`` needs no ``notify``: the node re-checks a
waiting predicate after every call on the object.  ``notify``/``notify_all``
still wake plain ``wait()`` callers, oldest first, as ``threading`` does.

Locks, conditions and events created later, inside methods, are not swapped:
create them in ``__init__``.  This module is pure (no I/O).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ._monitor import Caller, current_caller, wait_until

__all__ = [
    "NodeBarrier",
    "NodeBoundedSemaphore",
    "NodeCondition",
    "NodeEvent",
    "NodeLock",
    "NodeRLock",
    "NodeSemaphore",
    "NodeSimpleQueue",
    "adopt",
    "monitors",
]

_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPES: tuple[type, ...] = (type(threading.RLock()), threading._PyRLock)  # type: ignore[attr-defined]


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _deadline(blocking: bool, timeout: float) -> float | None:
    if not blocking and timeout != -1:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0 and timeout != -1:
        raise ValueError("timeout value must be a non-negative number")
    if not blocking:
        return time.monotonic()
    return None if timeout == -1 else time.monotonic() + timeout


class NodeLock:
    """``threading.Lock``: any caller may release it."""

    def __init__(self, locked: bool = False) -> None:
        self._locked = locked

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        deadline = _deadline(blocking, timeout)
        if not wait_until(lambda: not self._locked, _remaining(deadline)):
            return False
        self._locked = True
        return True

    def release(self) -> None:
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        self._locked = False

    def locked(self) -> bool:
        return self._locked

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    # what Condition needs from its lock (the names threading.Condition uses)
    def _is_owned(self) -> bool:
        return self._locked

    def _release_save(self) -> Any:
        self.release()
        return None

    def _acquire_restore(self, state: Any) -> None:
        self.acquire()

    def __repr__(self) -> str:
        return f"<crucial node Lock {'locked' if self._locked else 'unlocked'}>"


class NodeRLock:
    """``threading.RLock``, owned by the calling client thread."""

    def __init__(self) -> None:
        self._owner: Caller | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = current_caller()
        if self._owner == me:
            self._count += 1
            return True
        deadline = _deadline(blocking, timeout)
        if not wait_until(lambda: self._owner is None, _remaining(deadline)):
            return False
        self._owner, self._count = me, 1
        return True

    def release(self) -> None:
        if self._owner != current_caller():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _is_owned(self) -> bool:
        return self._owner == current_caller()

    def _release_save(self) -> Any:
        if self._owner != current_caller():
            raise RuntimeError("cannot release un-acquired lock")
        state, self._owner, self._count = (self._owner, self._count), None, 0
        return state

    def _acquire_restore(self, state: Any) -> None:
        wait_until(lambda: self._owner is None)
        self._owner, self._count = state

    def __repr__(self) -> str:
        return f"<crucial node RLock owner={self._owner} count={self._count}>"


class _Waiter:
    __slots__ = ("notified",)

    def __init__(self) -> None:
        self.notified = False


class NodeCondition:
    """``threading.Condition`` over a node lock (a new ``NodeRLock`` by default)."""

    def __init__(self, lock: NodeLock | NodeRLock | None = None) -> None:
        self._lock = lock if lock is not None else NodeRLock()
        self._waiters: list[_Waiter] = []
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock until notified (or ``timeout``), then take it back."""
        if not self._lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = _Waiter()
        self._waiters.append(waiter)
        saved = self._lock._release_save()
        try:
            return wait_until(lambda: waiter.notified, timeout)
        finally:
            if not waiter.notified:
                self._waiters.remove(waiter)
            self._lock._acquire_restore(saved)

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        """Release the lock until ``predicate()`` holds (no notify needed on a node)."""
        if not self._lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        result = predicate()
        if result:
            return result
        saved = self._lock._release_save()
        try:
            wait_until(lambda: bool(predicate()), timeout)
        finally:
            self._lock._acquire_restore(saved)
        return predicate()

    def notify(self, n: int = 1) -> None:
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        woken, self._waiters = self._waiters[:n], self._waiters[n:]
        for waiter in woken:
            waiter.notified = True

    def notify_all(self) -> None:
        self.notify(len(self._waiters))

    def __repr__(self) -> str:
        return f"<crucial node Condition({self._lock!r}, {len(self._waiters)} waiting)>"


class NodeSemaphore:
    """``threading.Semaphore``."""

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        if not wait_until(lambda: self._value > 0, timeout if blocking else 0):
            return False
        self._value -= 1
        return True

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        self._value += n

    def __exit__(self, *exc: object) -> None:
        self.release()


class NodeBoundedSemaphore(NodeSemaphore):
    """``threading.BoundedSemaphore``."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        if self._value + n > self._initial_value:
            raise ValueError("Semaphore released too many times")
        self._value += n


class NodeEvent:
    """``threading.Event``."""

    def __init__(self, flag: bool = False) -> None:
        self._flag = flag

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        return wait_until(lambda: self._flag, timeout)


class NodeBarrier:
    """``threading.Barrier``: the last of ``parties`` callers runs ``action`` and releases the others.

    As in ``threading``, a wait that times out, an ``action`` that raises,
    ``abort()`` and a waiter whose caller vanishes break the barrier
    (``BrokenBarrierError`` for everyone until ``reset()``), and ``reset()``
    breaks the waits in progress.
    """

    def __init__(self, parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None) -> None:
        if parties < 1:
            raise ValueError("parties must be > 0")
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._count = 0  # callers waiting in this generation
        self._generation = 0
        self._broken = False
        self._reset: set[int] = set()  # generations ended by reset(): their waiters fail

    def wait(self, timeout: float | None = None) -> int:
        if self._broken:
            raise threading.BrokenBarrierError
        gen, index = self._generation, self._count
        self._count += 1
        if self._count == self._parties:  # the last one in
            try:
                if self._action is not None:
                    self._action()
            except BaseException:
                self._break()
                raise
            self._count, self._generation = 0, self._generation + 1
            return index
        try:
            wait_until(lambda: self._generation != gen or self._broken, self._timeout if timeout is None else timeout)
        except BaseException:  # the caller vanished: the others must not wait for it forever
            self._break()
            raise
        if gen in self._reset:
            raise threading.BrokenBarrierError
        if self._generation != gen:
            return index
        self._break()  # timed out (or broken by another)
        raise threading.BrokenBarrierError

    def _break(self) -> None:
        self._broken = True
        self._count = 0

    def reset(self) -> None:
        if self._count:
            self._reset.add(self._generation)
            self._generation += 1
        self._count = 0
        self._broken = False

    def abort(self) -> None:
        self._break()

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        return self._count

    @property
    def broken(self) -> bool:
        return self._broken


class NodeSimpleQueue:
    """``queue.SimpleQueue`` (written in C: its blocking ``get`` would stop the node's thread)."""

    def __init__(self, items: list[Any] | None = None) -> None:
        self._items: collections.deque[Any] = collections.deque(items or ())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._items.append(item)  # unbounded: never waits, as SimpleQueue

    put_nowait = put

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        if not wait_until(lambda: bool(self._items), timeout if block else 0):
            raise queue.Empty
        return self._items.popleft()

    def get_nowait(self) -> Any:
        return self.get(False)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


def _drain(q: queue.SimpleQueue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


def _twin(value: Any, memo: dict[int, Any]) -> Any:
    """The node twin of a ``threading`` primitive, or ``value`` itself."""
    kind = type(value)
    if kind is _LOCK_TYPE:
        twin: Any = NodeLock(value.locked())
    elif isinstance(value, _RLOCK_TYPES):
        twin = NodeRLock()
    elif isinstance(value, threading.Condition):
        lock = value._lock  # type: ignore[attr-defined]
        twin = NodeCondition(memo[id(lock)] if id(lock) in memo else _twin(lock, memo))
    elif isinstance(value, threading.BoundedSemaphore):
        twin = NodeBoundedSemaphore(value._initial_value)  # type: ignore[attr-defined]
        twin._value = value._value  # type: ignore[attr-defined]
    elif isinstance(value, threading.Semaphore):
        twin = NodeSemaphore(value._value)  # type: ignore[attr-defined]
    elif isinstance(value, threading.Event):
        twin = NodeEvent(value.is_set())
    elif isinstance(value, threading.Barrier):
        twin = NodeBarrier(value.parties, value._action, value._timeout)  # type: ignore[attr-defined]
    elif isinstance(value, queue.SimpleQueue):
        twin = NodeSimpleQueue(_drain(value))
    elif isinstance(value, queue.Queue):  # Queue, LifoQueue, PriorityQueue: their lock and conditions
        memo[id(value)] = value
        _swap_attributes(value, memo)
        return value
    else:
        return value
    memo[id(value)] = twin
    return twin


def _swap(value: Any, memo: dict[int, Any]) -> Any:
    """``value`` with its primitives swapped; the very same object when it holds none."""
    if id(value) in memo:
        return memo[id(value)]
    kind = type(value)
    if kind is list or kind is tuple:
        twins = [_twin(v, memo) for v in value]
        if all(t is v for t, v in zip(twins, value, strict=True)):
            return value
        if kind is tuple:
            return tuple(twins)
        value[:] = twins
        return value
    if kind is dict:
        for k, v in value.items():
            twin = _twin(v, memo)
            if twin is not v:
                value[k] = twin
        return value
    return _twin(value, memo)


def _swap_attributes(obj: Any, memo: dict[int, Any]) -> None:
    attrs = getattr(obj, "__dict__", None)
    for name, value in list((attrs or {}).items()):
        twin = _swap(value, memo)
        if twin is not value:
            attrs[name] = twin  # type: ignore[index]


def adopt(obj: Any) -> Any:
    """Swap ``obj``'s ``threading`` primitives for their node twins; returns ``obj``."""
    _swap_attributes(obj, {})  # memo: id of a primitive -> its twin (a Condition shares its lock's twin)
    return obj


def monitors(obj: Any) -> list[str]:
    """The attributes of ``obj`` holding node monitors that park waiters (all but plain locks).

    A ``Lock`` or ``RLock`` used in ``with`` blocks inside a method never makes
    a call wait (calls on an object run one at a time); a ``Condition``,
    ``Semaphore``, ``Event``, ``Barrier`` or queue exists to make calls wait.
    """
    waiting = (NodeCondition, NodeSemaphore, NodeEvent, NodeBarrier, NodeSimpleQueue, queue.Queue)
    found: list[str] = []
    for name, value in (getattr(obj, "__dict__", None) or {}).items():
        values = value.values() if type(value) is dict else value if type(value) in (list, tuple) else (value,)
        if any(isinstance(v, waiting) for v in values):
            found.append(f"{name} ({type(value).__name__})")
    return found
