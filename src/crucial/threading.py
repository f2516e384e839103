"""``import crucial.threading as threading``: the ``threading`` module, on cloud threads and DSO objects.

::

    import crucial.threading as threading      # the one line that changes

    lock = threading.Lock()                    # a Lock on a DSO node, shared by whoever is given it
    def work(i):
        with lock:
            print("thread", threading.current_thread().name, "has the lock")
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]   # cloud threads

Every name of ``threading`` a program uses to share work is here with its
signature: ``Thread`` (a :class:`~crucial.CloudThread`), ``Timer``,
``Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``,
``Event``, ``Barrier`` (DSO objects: they pickle as references, so every
thread given one -- as an argument, an attribute or a global of its
function -- shares it), ``current_thread``, ``get_ident``,
``active_count``, ``enumerate``, ``local``, ``excepthook`` ...; the rest is
``threading``'s own.  Made on a node -- in the ``__init__`` of a
``@crucial.shared`` class -- a primitive is the node's monitor instead
(see :class:`~crucial.objects._dropin.OnNode`), so a class written for
threads works there unchanged.

What cannot hold across machines, and every other difference, is in
``docs/porting.md``: globals a thread *assigns* stay in its process, a
thread's arguments are copies (objects change in place only when they are
shared objects), a started thread cannot be interrupted.
"""

from __future__ import annotations

import itertools
import threading as _threading
import weakref
from collections.abc import Callable
from threading import (
    TIMEOUT_MAX,
    BrokenBarrierError,
    ExceptHookArgs,
    get_native_id,
    main_thread,
    setprofile,
    settrace,
    stack_size,
)
from typing import Any

from .compute._invoke import Retry
from .compute.thread import CloudThread, alive, current_cloud_thread
from .exceptions import ObjectNotFoundError
from .objects import _threadlike
from .objects import synchronization as _sync
from .objects._dropin import ConditionVar, OnNode

__all__ = [
    "TIMEOUT_MAX",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "ExceptHookArgs",
    "Lock",
    "RLock",
    "Semaphore",
    "Thread",
    "Timer",
    "active_count",
    "current_thread",
    "enumerate",
    "excepthook",
    "get_ident",
    "get_native_id",
    "local",
    "main_thread",
    "setprofile",
    "settrace",
    "stack_size",
]


def excepthook(args: Any) -> None:
    """Called with a ``threading.ExceptHookArgs`` when a thread's body raises; set it to handle them yourself.

    By default it is ``threading.excepthook`` -- whatever that is when a thread fails.
    """
    _threading.excepthook(args)


excepthook._crucial_default = True  # type: ignore[attr-defined]

_names = itertools.count(1)


class Thread(CloudThread):
    """``Thread(group=None, target=None, name=None, args=(), kwargs=None, *, daemon=None)``: a cloud thread.

    As ``threading.Thread``: an error in the body is reported through
    :data:`excepthook` when the thread ends, and the interpreter waits at exit
    for the threads that are not daemons.  Beyond it: ``backend``, ``retry``,
    ``timeout`` (keywords), and ``result()``.
    """

    _report_at_end = True

    def __init__(
        self,
        group: None = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        daemon: bool | None = None,
        backend: Any = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        if group is not None:
            raise AssertionError("group argument must be None for now")
        if name is None:
            name = f"Thread-{next(_names)}"
            if target is not None and getattr(target, "__name__", None):
                name += f" ({target.__name__})"
        super().__init__(target, args, kwargs, name, daemon=daemon, backend=backend, retry=retry, timeout=timeout)


class Timer(Thread):
    """``Timer(interval, function, args=None, kwargs=None)``: call ``function`` after ``interval`` seconds, unless cancelled.

    The wait happens in the cloud thread, on a shared :class:`Event`
    (``finished``), so :meth:`cancel` reaches it wherever it runs.
    """

    def __init__(
        self, interval: float, function: Callable[..., Any], args: Any = None, kwargs: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.interval = interval
        self.function = function
        self.args = args if args is not None else []
        self.kwargs = kwargs if kwargs is not None else {}
        self.finished = Event()

    def cancel(self) -> None:
        """Stop the timer if it has not acted yet."""
        try:
            self.finished.set()
        except ObjectNotFoundError:  # it ended and its event was deleted
            pass

    def run(self) -> None:
        self.finished.wait(self.interval)
        if not self.finished.is_set():
            self.function(*self.args, **self.kwargs)
        self.finished.set()


# -- primitives: DSO objects in a program, monitors on a node ------------------------------------


class Lock(_sync.Lock, metaclass=OnNode):
    """``threading.Lock`` on a DSO node (any holder may release it)."""

    _on_node = staticmethod(_threadlike.NodeLock)


class RLock(_sync.RLock, metaclass=OnNode):
    """``threading.RLock`` on a DSO node; the owner is the thread (process and thread) that acquired it."""

    _on_node = staticmethod(_threadlike.NodeRLock)


class Semaphore(_sync.Semaphore, metaclass=OnNode):
    """``threading.Semaphore(value=1)`` on a DSO node."""

    _on_node = staticmethod(_threadlike.NodeSemaphore)


class BoundedSemaphore(_sync.BoundedSemaphore, metaclass=OnNode):
    """``threading.BoundedSemaphore(value=1)`` on a DSO node."""

    _on_node = staticmethod(_threadlike.NodeBoundedSemaphore)


class Event(_sync.Event, metaclass=OnNode):
    """``threading.Event`` on a DSO node."""

    _on_node = staticmethod(_threadlike.NodeEvent)


class Barrier(_sync.Barrier, metaclass=OnNode):
    """``threading.Barrier(parties, action=None, timeout=None)`` on a DSO node; ``action`` runs on the node."""

    _on_node = staticmethod(_threadlike.NodeBarrier)


class Condition:
    """``threading.Condition(lock=None)`` shared by cloud threads.

    Without a lock it is one DSO object with its own reentrant lock (a wait is
    one call).  Given a :class:`Lock` or :class:`RLock` of this module -- two
    conditions over one lock, as in a bounded buffer -- a wait takes a ticket
    on a condition variable, releases the lock, waits for the ticket and
    takes the lock back (four calls); a ``notify`` made holding the lock
    after the release finds the ticket, so no wake-up is lost.
    """

    def __new__(cls, lock: Any = None) -> Any:
        from .objects import _proxy

        if _proxy._node_transport is not None:  # made on a node: a monitor (OnNode's rule)
            return _threadlike.NodeCondition(lock)
        return super().__new__(cls)

    def __init__(self, lock: Any = None) -> None:
        if lock is not None and not isinstance(lock, (_sync.Lock, _sync.RLock)):
            raise TypeError(
                f"Condition(lock) needs a crucial.threading.Lock or RLock (shared by the cloud threads), "
                f"not {type(lock).__module__}.{type(lock).__qualname__}"
            )
        self._own: _sync.Condition | None = _sync.Condition() if lock is None else None
        self._lock: Any = lock
        self._cv: ConditionVar | None = None if lock is None else ConditionVar()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_condition, (self._own, self._lock, self._cv))

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._own is not None:
            return self._own.acquire(blocking, timeout)
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        if self._own is not None:
            self._own.release()
        else:
            self._lock.release()

    def _is_owned(self) -> bool:
        if isinstance(self._lock, _sync.RLock):
            return bool(self._lock._call("is_owned"))
        return bool(self._lock.locked())  # threading.Condition's own test for a plain Lock

    def wait(self, timeout: float | None = None) -> bool:
        if self._own is not None:
            return self._own.wait(timeout)
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        assert self._cv is not None
        ticket = self._cv.enqueue()
        reentrant = isinstance(self._lock, _sync.RLock)
        saved = self._lock._call("release_save") if reentrant else self._lock.release()
        try:
            return self._cv.wait(ticket, timeout)
        finally:
            if reentrant:
                self._lock._call("acquire_restore", saved)
            else:
                self._lock.acquire()

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (it runs here, after each wake-up), as ``threading``'s."""
        import time

        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = time.monotonic() + waittime
                else:
                    waittime = endtime - time.monotonic()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        if self._own is not None:
            self._own.notify(n)
            return
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        assert self._cv is not None
        self._cv.notify(n)

    def notify_all(self) -> None:
        if self._own is not None:
            self._own.notify_all()
            return
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        assert self._cv is not None
        self._cv.notify_all()

    def __repr__(self) -> str:
        return f"<crucial.threading.Condition({self._own if self._own is not None else self._lock!r})>"


def _rebuild_condition(own: Any, lock: Any, cv: Any) -> Condition:
    c = object.__new__(Condition)
    c._own, c._lock, c._cv = own, lock, cv
    return c


# -- who is running -------------------------------------------------------------------------------------


def current_thread() -> Any:
    """The running thread: inside a cloud thread, that thread (its ``name``, ``ident``); else ``threading``'s."""
    here = current_cloud_thread()
    return here if here is not None else _threading.current_thread()


def get_ident() -> int:
    here = current_cloud_thread()
    return here.ident if here is not None and here.ident is not None else _threading.get_ident()


def active_count() -> int:
    """This process's live threads plus the cloud threads it started that have not ended."""
    return _threading.active_count() + len(alive())


def enumerate() -> list[Any]:
    """This process's live threads, then the cloud threads it started that have not ended."""
    return [*_threading.enumerate(), *alive()]


class local(_threading.local):
    """``threading.local``: each thread sees its own attributes -- and so does each cloud thread.

    It pickles (a ``threading.local`` does not) as a fresh instance: a cloud
    thread given one starts with no attributes, or with what a subclass's
    ``__init__`` sets, called again with the original arguments, as a new
    thread of ``threading`` would.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> local:
        self = super().__new__(cls, *args, **kwargs)
        _local_args[self] = (args, kwargs)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = _local_args.get(self, ((), {}))
        return (_new_local, (type(self), args, kwargs))


_local_args: weakref.WeakKeyDictionary[local, tuple[tuple[Any, ...], dict[str, Any]]] = weakref.WeakKeyDictionary()


def _new_local(cls: type[local], args: tuple[Any, ...], kwargs: dict[str, Any]) -> local:
    return cls(*args, **kwargs)
