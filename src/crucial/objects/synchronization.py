"""Synchronization objects, with ``threading``'s signatures and semantics.

Waiting happens on the node (:func:`~crucial.objects._monitor.wait_until`):
no client polls, no thread is held per waiter, and other objects -- and other
calls on the same connection -- go on meanwhile.  Differences from
``threading`` are listed in ``docs/objects.md``; the main ones:

* a barrier's ``action`` runs on the node, in the last party's call;
* a ``Lock``/``RLock`` held by a client whose connections all closed is
  released (its process died: nobody else could ever release it);
* a party that vanishes while waiting on a ``Barrier`` breaks it, so the
  others get :class:`~crucial.exceptions.BrokenBarrierError` instead of
  waiting forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import BrokenBarrierError, CallCancelledError, CallTimeoutError
from ._monitor import Caller, current_caller, wait_until, waits
from ._proxy import Proxy

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "CountDownLatch",
    "Event",
    "Exchanger",
    "Lock",
    "RLock",
    "Semaphore",
    "SharedFuture",
]


def _timeout(blocking: bool, timeout: float | None) -> float | None:
    """threading's (blocking, timeout=-1) pair to a wait_until timeout."""
    if not blocking:
        if timeout not in (None, -1):
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0
    if timeout is None or timeout == -1:
        return None
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return timeout


# --------------------------------------------------------------------------- Barrier


class BarrierState:
    def __init__(self, parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None) -> None:
        if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
            raise ValueError(f"parties must be a positive int, not {parties!r}")
        self.parties = parties
        self.action = action
        self.timeout = timeout
        self.count = 0
        self.generation = 0  # bumped each time the barrier trips
        self.epoch = 0  # bumped by reset() and abort(): waiters of an older epoch fail
        self.broken = False

    def _crucial_same_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        parties = args[0] if args else kwargs.get("parties")
        if parties is not None and parties != self.parties:
            return f"barrier exists with parties={self.parties}, not {parties}"
        return None

    @waits
    def wait(self, timeout: float | None = None) -> int:
        if self.broken:
            raise BrokenBarrierError("barrier is broken")
        index = self.count
        self.count += 1
        if self.count == self.parties:
            if self.action is not None:
                try:
                    self.action()
                except BaseException:
                    self._break()
                    raise
            self.count = 0
            self.generation += 1
            return index
        gen, epoch = self.generation, self.epoch
        timeout = self.timeout if timeout is None else timeout
        try:
            # quiet: an arrival only counts itself, which no other party waits for
            wait_until(lambda: self.generation != gen or self.epoch != epoch, timeout, quiet=True)
        except CallCancelledError:
            self._break()  # a party vanished: nobody may wait for it forever
            raise
        if self.generation != gen:
            return index
        if self.epoch == epoch:  # timed out: threading breaks the barrier then
            self._break()
        raise BrokenBarrierError("barrier was broken while waiting" if self.broken else "barrier was reset")

    def _break(self) -> None:
        self.broken = True
        self.count = 0
        self.epoch += 1

    def reset(self) -> None:
        if self.count:
            self.epoch += 1
        self.count = 0
        self.broken = False

    def abort(self) -> None:
        self._break()

    def n_waiting(self) -> int:
        return self.count

    def get_parties(self) -> int:
        return self.parties

    def is_broken(self) -> bool:
        return self.broken


class Barrier(Proxy):
    """``threading.Barrier`` shared by processes: ``Barrier(parties, action=None, timeout=None, key=...)``.

    ``wait(timeout=None)`` returns an index in ``range(parties)``; a timeout,
    ``abort()``, ``reset()`` or a vanished party raises
    :class:`~crucial.exceptions.BrokenBarrierError` (a subclass of
    ``threading.BrokenBarrierError``).  ``action`` runs on the node.
    """

    _impl = BarrierState

    def __init__(
        self,
        parties: int,
        action: Callable[[], Any] | None = None,
        timeout: float | None = None,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(parties, action, timeout, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def wait(self, timeout: float | None = None) -> int:
        return self._call("wait", timeout)

    def reset(self) -> None:
        self._call("reset")

    def abort(self) -> None:
        self._call("abort")

    @property
    def parties(self) -> int:
        return self._call("get_parties")

    @property
    def n_waiting(self) -> int:
        return self._call("n_waiting")

    @property
    def broken(self) -> bool:
        return self._call("is_broken")


# --------------------------------------------------------------------------- locks


class _Context:
    def __enter__(self) -> bool:
        return self.acquire()  # type: ignore[attr-defined,no-any-return]

    def __exit__(self, *exc: object) -> None:
        self.release()  # type: ignore[attr-defined]


class LockState:
    def __init__(self) -> None:
        self.owner: Caller | None = None

    @waits
    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        if not wait_until(lambda: self.owner is None, _timeout(blocking, timeout)):
            return False
        self.owner = current_caller()
        return True

    def release(self) -> None:
        if self.owner is None:
            raise RuntimeError("release unlocked lock")
        self.owner = None

    def locked(self) -> bool:
        return self.owner is not None

    def _crucial_client_gone(self, client_id: str) -> None:
        if self.owner is not None and self.owner.client_id == client_id:
            self.owner = None


class _LockProxy(_Context, Proxy):
    """What Lock and RLock proxies share: the ``threading`` lock interface."""

    def __init__(
        self, *, key: str | None = None, force_new: bool = False, persistent: bool | None = None, rf: int | None = None
    ) -> None:
        super().__init__(key=key, force_new=force_new, persistent=persistent, rf=rf)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._call("acquire", blocking, timeout)

    def release(self) -> None:
        self._call("release")

    def locked(self) -> bool:
        return self._call("locked")


class Lock(_LockProxy):
    """``threading.Lock`` shared by processes.

    Like ``threading.Lock`` any holder may release it.  Unlike it, a lock held
    by a client process whose connections all closed is released by the node.
    """

    _impl = LockState


class RLockState:
    def __init__(self) -> None:
        self.owner: Caller | None = None
        self.count = 0

    @waits
    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        wait = _timeout(blocking, timeout)  # bad arguments fail even for the owner, as in threading
        me = current_caller()
        if self.owner == me:
            self.count += 1
            return True
        if not wait_until(lambda: self.owner is None, wait):
            return False
        self.owner, self.count = me, 1
        return True

    def release(self) -> None:
        if self.owner != current_caller():
            raise RuntimeError("cannot release un-acquired lock")
        self.count -= 1
        if not self.count:
            self.owner = None

    def locked(self) -> bool:
        return self.owner is not None

    # what a condition over this lock needs (threading.Condition's names, public: they are remote calls)
    def is_owned(self) -> bool:
        return self.owner == current_caller()

    def release_save(self) -> int:
        """Release whatever the recursion count; return it for :meth:`acquire_restore`."""
        if self.owner != current_caller():
            raise RuntimeError("cannot release un-acquired lock")
        count, self.owner, self.count = self.count, None, 0
        return count

    @waits
    def acquire_restore(self, count: int) -> None:
        wait_until(lambda: self.owner is None)
        self.owner, self.count = current_caller(), count

    def _crucial_client_gone(self, client_id: str) -> None:
        if self.owner is not None and self.owner.client_id == client_id:
            self.owner, self.count = None, 0


class RLock(_LockProxy):
    """``threading.RLock`` shared by processes; the owner is (client process, thread)."""

    _impl = RLockState


class SemaphoreState:
    def __init__(self, value: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"semaphore initial value must be an int >= 0, not {value!r}")
        self.value = value
        self.initial = value

    @waits
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        # threading.Semaphore: None waits forever, a timeout <= 0 does not wait at all
        wait = 0 if not blocking else None if timeout is None else max(timeout, 0)
        if not wait_until(lambda: self.value > 0, wait):
            return False
        self.value -= 1
        return True

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        self.value += n

    def get_value(self) -> int:
        return self.value


class BoundedSemaphoreState(SemaphoreState):
    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        if self.value + n > self.initial:
            raise ValueError("Semaphore released too many times")
        self.value += n


class Semaphore(_Context, Proxy):
    """``threading.Semaphore`` shared by processes.

    A semaphore has no owner, so permits taken by a vanished client are not
    given back (as with ``threading``): use a ``Lock`` when that matters.
    """

    _impl = SemaphoreState

    def __init__(
        self,
        value: int = 1,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(value, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return self._call("acquire", blocking, timeout)

    def release(self, n: int = 1) -> None:
        self._call("release", n)

    def get_value(self) -> int:
        """The number of free permits (not in ``threading``; Java's ``availablePermits``)."""
        return self._call("get_value")


class BoundedSemaphore(Semaphore):
    """``threading.BoundedSemaphore``: releasing past the initial value raises ValueError."""

    _impl = BoundedSemaphoreState


# --------------------------------------------------------------------------- Condition


class _Ticket:
    __slots__ = ("notified",)

    def __init__(self) -> None:
        self.notified = False


class ConditionState(RLockState):
    """A condition variable with its own reentrant lock (``threading.Condition()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: list[_Ticket] = []

    def _owned(self, what: str) -> None:
        if self.owner != current_caller():
            raise RuntimeError(f"cannot {what} on un-acquired lock")

    @waits
    def wait(self, timeout: float | None = None) -> bool:
        self._owned("wait")
        me, count = self.owner, self.count
        self.owner, self.count = None, 0
        ticket = _Ticket()
        self.waiters.append(ticket)
        try:
            notified = wait_until(lambda: ticket.notified, timeout)
        finally:
            if not ticket.notified:
                self.waiters.remove(ticket)
        wait_until(lambda: self.owner is None)  # re-acquire, however long it takes
        self.owner, self.count = me, count
        return notified

    def notify(self, n: int = 1) -> None:
        self._owned("notify")
        woken, self.waiters = self.waiters[:n], self.waiters[n:]
        for t in woken:
            t.notified = True

    def notify_all(self) -> None:
        self.notify(len(self.waiters))


class Condition(_Context, Proxy):
    """``threading.Condition()`` shared by processes, with its own reentrant lock.

    ``wait_for(predicate)`` evaluates ``predicate`` in the caller, as
    ``threading`` does, re-checking after every wake-up.
    """

    _impl = ConditionState

    def __init__(
        self, *, key: str | None = None, force_new: bool = False, persistent: bool | None = None, rf: int | None = None
    ) -> None:
        super().__init__(key=key, force_new=force_new, persistent=persistent, rf=rf)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._call("acquire", blocking, timeout)

    def release(self) -> None:
        self._call("release")

    def wait(self, timeout: float | None = None) -> bool:
        return self._call("wait", timeout)

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        self._call("notify", n)

    def notify_all(self) -> None:
        self._call("notify_all")


# --------------------------------------------------------------------------- Event, latch, future, exchanger


class EventState:
    def __init__(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.flag = False

    @waits
    def wait(self, timeout: float | None = None) -> bool:
        return wait_until(lambda: self.flag, timeout)


class Event(Proxy):
    """``threading.Event`` shared by processes."""

    _impl = EventState

    def __init__(
        self, *, key: str | None = None, force_new: bool = False, persistent: bool | None = None, rf: int | None = None
    ) -> None:
        super().__init__(key=key, force_new=force_new, persistent=persistent, rf=rf)

    def is_set(self) -> bool:
        return self._call("is_set")

    def set(self) -> None:
        self._call("set")

    def clear(self) -> None:
        self._call("clear")

    def wait(self, timeout: float | None = None) -> bool:
        return self._call("wait", timeout)


class CountDownLatchState:
    def __init__(self, count: int) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, not {count!r}")
        self.count = count

    def _crucial_same_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        return None  # the count changes by design; any later declaration attaches

    def count_down(self) -> int:
        if self.count:
            self.count -= 1
        return self.count

    def get_count(self) -> int:
        return self.count

    @waits
    def wait(self, timeout: float | None = None) -> bool:
        return wait_until(lambda: self.count == 0, timeout)


class CountDownLatch(Proxy):
    """``java.util.concurrent.CountDownLatch``: ``count_down()``, ``wait(timeout)`` (Java's ``await``)."""

    _impl = CountDownLatchState

    def __init__(
        self,
        count: int,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(count, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def count_down(self) -> int:
        """Decrement the count (never below zero) and return it."""
        return self._call("count_down")

    def get_count(self) -> int:
        return self._call("get_count")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the count reaches zero; ``False`` on timeout."""
        return self._call("wait", timeout)


_UNSET = ("crucial.unset",)


class SharedFutureState:
    def __init__(self) -> None:
        self.value: Any = _UNSET
        self.error: BaseException | None = None

    def _done(self) -> bool:
        return self.value is not _UNSET or self.error is not None

    def set(self, value: Any) -> bool:
        if self._done():
            return False
        self.value = value
        return True

    def set_exception(self, exc: BaseException) -> bool:
        if not isinstance(exc, BaseException):
            raise TypeError(f"set_exception takes an exception, not {type(exc).__name__}")
        if self._done():
            return False
        self.error = exc
        return True

    def done(self) -> bool:
        return self._done()

    @waits
    def get(self, timeout: float | None = None) -> Any:
        if not wait_until(self._done, timeout):
            raise CallTimeoutError(f"shared future not set within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


class SharedFuture(Proxy):
    """A settable future shared by processes: the first ``set``/``set_exception`` wins.

    ``get(timeout=None)`` waits for the value (raising what was set with
    ``set_exception``, or :class:`~crucial.exceptions.CallTimeoutError`).
    """

    _impl = SharedFutureState

    def __init__(
        self, *, key: str | None = None, force_new: bool = False, persistent: bool | None = None, rf: int | None = None
    ) -> None:
        super().__init__(key=key, force_new=force_new, persistent=persistent, rf=rf)

    def set(self, value: Any) -> bool:
        """Set the value if nobody did; ``True`` if this call set it."""
        return self._call("set", value)

    def set_exception(self, exc: BaseException) -> bool:
        return self._call("set_exception", exc)

    def done(self) -> bool:
        return self._call("done")

    def get(self, timeout: float | None = None) -> Any:
        return self._call("get", timeout)

    result = get


class _Offer:
    __slots__ = ("matched", "reply", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.reply: Any = None
        self.matched = False


class ExchangerState:
    def __init__(self) -> None:
        self.offer: _Offer | None = None

    @waits
    def exchange(self, value: Any, timeout: float | None = None) -> Any:
        offer = self.offer
        if offer is not None:  # someone is waiting: swap and wake them
            self.offer = None
            offer.reply, offer.matched = value, True
            return offer.value
        mine = self.offer = _Offer(value)
        try:
            ok = wait_until(lambda: mine.matched, timeout)
        finally:
            if self.offer is mine:
                self.offer = None
        if not ok:
            raise CallTimeoutError(f"no partner arrived within {timeout} s")
        return mine.reply


class Exchanger(Proxy):
    """A rendezvous of two parties (``java.util.concurrent.Exchanger``).

    ``exchange(value, timeout=None)`` waits for a partner and returns its value.
    """

    _impl = ExchangerState

    def __init__(
        self, *, key: str | None = None, force_new: bool = False, persistent: bool | None = None, rf: int | None = None
    ) -> None:
        super().__init__(key=key, force_new=force_new, persistent=persistent, rf=rf)

    def exchange(self, value: Any, timeout: float | None = None) -> Any:
        return self._call("exchange", value, timeout)
