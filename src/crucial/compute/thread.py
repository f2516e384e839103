"""``CloudThread``: a ``threading.Thread`` whose body runs as a cloud function.

::

    t = CloudThread(target=estimate, args=(1_000_000,))
    t.start()          # ships the thread (target, args) to the backend, returns at once
    t.join()           # waits for the function, as Thread.join does
    t.result()         # its return value, or its exception re-raised here

What travels is the thread object itself, run remotely by
:func:`_bootstrap`: a subclass that overrides :meth:`run` works, its
attributes -- shared-object proxies included -- are there on the other side,
and the attributes ``run()`` sets come back when it ends (visible after
``join()``, as a thread's are)::

    caller: start() ── pickle(thread) ──► worker: _bootstrap(run, thread)
            join()  ◄── _Ended(value, changed attributes) ── run(thread)

As with ``threading``, the interpreter waits at exit for the cloud threads
that are not daemons (their errors are reported as ``threading.excepthook``
reports a thread's, if the program never asked for them).
"""

from __future__ import annotations

import itertools
import pickle
import sys
import threading
import types
import warnings
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple

from .. import protocol as P
from ._backend import Backend, get_backend
from ._exit import ended as exit_ended
from ._exit import exiting, wait_at_exit
from ._exit import register as register_exit
from ._fncache import Shipped, unpickled
from ._invoke import Retry, prepare, run_invocation
from ._lines import line_buffer_caller
from ._task import shipped_function
from .timeline import Call, recorded

__all__ = ["CloudThread", "alive", "current_cloud_thread"]

_counter = itertools.count(1)
#: idents of cloud threads: far from the OS thread ids that threading.get_ident() gives
_idents = itertools.count(1 << 48)

#: the caller-side attributes of a CloudThread: never sent back from the worker
_OWN = frozenset(
    {"_target", "_args", "_kwargs", "name", "_daemonic", "_backend", "_retry", "_timeout", "_future", "_ident", "_retrieved"}
    | {"_call"}
)
#: values that cannot have been changed in place: sent back only when rebound
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range)


class _Ended(NamedTuple):
    """What a cloud thread's worker sends back: the value of ``run()`` and the attributes it changed."""

    value: Any
    changed: dict[str, Any]
    removed: list[str]


_here = threading.local()  # .thread: the CloudThread running in this worker thread
_alive: weakref.WeakSet[CloudThread] = weakref.WeakSet()  # started here, not ended


def alive() -> list[CloudThread]:
    """The cloud threads this process started that have not ended (``threading.enumerate``'s share)."""
    return [t for t in list(_alive) if t.is_alive()]


def current_cloud_thread() -> CloudThread | None:
    """The cloud thread whose body is running in this (worker) thread, if any."""
    return getattr(_here, "thread", None)


def _bootstrap(run: Any, thread: CloudThread) -> _Ended:
    """The cloud function of a thread: ``run(thread)``, then what it changed on ``thread``."""
    if isinstance(thread._target, Shipped):  # its bytes were cached by the caller (see CloudThread.start)
        thread._target = unpickled(thread._target, pickle.loads)
    before = dict(thread.__dict__)
    _here.thread = thread
    try:
        value = thread._crucial_run(run)
    finally:
        _here.thread = None
    changed = {}
    for name, v in thread.__dict__.items():
        if name in _OWN or (before.get(name, _Ended) is v and isinstance(v, _IMMUTABLE)):
            continue
        if before.get(name, _Ended) is v and _is_proxy(v):
            continue
        try:  # an attribute that cannot travel back stays behind rather than failing the thread
            P.pickle_bytes(v)
        except Exception:
            continue
        changed[name] = v
    removed = [name for name in before if name not in thread.__dict__ and name not in _OWN]
    return _Ended(value, changed, removed)


# the error messages for what does not pickle look inside it (compute._diagnose)
_bootstrap._crucial_thread_bootstrap = True  # type: ignore[attr-defined]


def _is_proxy(v: Any) -> bool:
    from ..objects._proxy import Proxy

    return isinstance(v, Proxy)


class CloudThread:
    """``CloudThread(target=None, args=(), kwargs=None, name=None, *, daemon=None, backend=None, retry=None, timeout=None)``.

    Differences from ``threading.Thread``: the body runs in another process
    (or machine), so it sees the caller's globals only as they were pickled
    -- share state through DSO objects; attributes that ``run()`` changes
    come back as copies when it ends; a started function cannot be
    interrupted (as in the original CRUCIAL).  ``daemon`` means what it
    means for threads: the program does not wait for it at exit (the
    function itself runs on, wherever it runs).
    """

    #: report an error when the thread ends (threading.Thread does); else only if the program never asks for it
    _report_at_end = False

    def __init__(
        self,
        target: Any = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        *,
        daemon: bool | None = None,
        backend: str | Backend | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self.name = str(name) if name else f"{type(self).__name__}-{next(_counter)}"
        self._daemonic = _current_daemon() if daemon is None else bool(daemon)
        self._backend = backend
        self._retry = retry or Retry()
        self._timeout = timeout
        self._future: Future[Any] | None = None
        self._ident: int | None = None
        self._retrieved = False
        self._call: Call | None = None  # its entry in the process's timeline, once started

    def _crucial_run(self, run: Any) -> Any:
        """How the worker calls ``run`` (``crucial.multiprocessing.Process`` turns errors into an exit code)."""
        return run(self)

    def run(self) -> Any:
        """The body; runs in the cloud function.  Override it, or pass ``target``."""
        if self._target is not None:
            return self._target(*self._args, **self._kwargs)
        return None

    def start(self) -> None:
        """Invoke the function; raise at once if it cannot be pickled or the backend is full."""
        if getattr(self, "_future", None) is not None or getattr(self, "_ident", None) is not None:
            raise RuntimeError(f"{self.name}: threads can only be started once")
        if not hasattr(self, "_retry"):
            raise RuntimeError("thread.__init__() not called")
        backend = get_backend(self._backend)
        line_buffer_caller()
        run = type(self).run
        if not isinstance(run, types.FunctionType):
            raise TypeError(f"{type(self).__qualname__}.run must be a plain method")
        self._ident = next(_idents)
        target = self._target
        _warn_about_globals(run if run is not CloudThread.run else target)
        code = [run, type(self), target, type(target), *self._args, *self._kwargs.values()]
        what = f"{type(self).__qualname__}.run" if run is not CloudThread.run else getattr(target, "__qualname__", None)
        shipped = shipped_function(target, code[4:]) if run is CloudThread.run else None
        if shipped is not None:  # the target travels as bytes pickled once (compute._fncache), not pickled anew
            self.__dict__["_shipped"] = shipped
            code = [type(self), *code[4:]]
        try:
            plain = shipped is not None and _plain_state(self)
            data = prepare(_bootstrap, (run, self), {}, code=code, what=what or "CloudThread.run", plain=plain)
        except BaseException:
            self._ident = None
            raise
        finally:
            self.__dict__.pop("_shipped", None)
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        self._call = recorded().add(self.name)
        where = f"cloud thread {self.name!r}"
        # registered before the invocation, which may end before run_invocation returns
        self._future = future
        _alive.add(self)
        if not self._daemonic:
            wait_at_exit(self, running=True)
        else:
            register_exit()
        try:
            run_invocation(backend, data, self._ended, retry=self._retry, timeout=self._timeout, where=where, record=self._call)
        except BaseException:  # it never started (CapacityError, a closed backend): nothing to wait for
            self._future = None
            _alive.discard(self)
            exit_ended(self)
            raise

    def _ended(self, value: Any, exc: BaseException | None) -> None:
        """The invocation ended: take back what run() changed, then let join() return."""
        assert self._future is not None
        _alive.discard(self)
        exit_ended(self)  # before join() can return: the program may drop the thread then
        if self._future.done():  # the caller stopped waiting (Process.terminate)
            return
        if exc is None:
            ended = value
            if not isinstance(ended, _Ended):  # the body called sys.exit(0): nothing came back
                self._future.set_result(None)
                return
            for name in ended.removed:
                self.__dict__.pop(name, None)
            self.__dict__.update(ended.changed)
            self._future.set_result(ended.value)
            return
        self._future.set_exception(exc)
        if self._report_at_end:
            self._retrieved = True
            report(self, exc)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the function ends (or ``timeout`` seconds pass), as ``Thread.join``."""
        if self._future is None:
            raise RuntimeError(f"{self.name}: cannot join thread before it is started")
        try:
            self._future.exception(timeout)
        except FutureTimeout:
            pass

    def is_alive(self) -> bool:
        if current_cloud_thread() is self:  # asked from inside its own body
            return True
        return self._future is not None and not self._future.done()

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value; re-raises its exception (remote traceback as ``__cause__``)."""
        if self._future is None:
            raise RuntimeError(f"{self.name}: not started")
        self._retrieved = True
        return self._future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._future is None:
            raise RuntimeError(f"{self.name}: not started")
        self._retrieved = True
        return self._future.exception(timeout)

    @property
    def future(self) -> Future[Any] | None:
        """The :class:`concurrent.futures.Future` of the invocation, once started (its errors are yours then)."""
        if self._future is not None:
            self._retrieved = True
        return self._future

    # -- the rest of threading.Thread ------------------------------------------------

    @property
    def daemon(self) -> bool:
        """Whether the program exits without waiting for this thread (the function runs on regardless)."""
        return self._daemonic

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        if self._ident is not None:
            raise RuntimeError("cannot set daemon status of active thread")
        self._daemonic = bool(daemonic)

    def isDaemon(self) -> bool:
        warnings.warn("isDaemon() is deprecated, get the daemon attribute instead", DeprecationWarning, stacklevel=2)
        return self.daemon

    def setDaemon(self, daemonic: bool) -> None:
        warnings.warn("setDaemon() is deprecated, set the daemon attribute instead", DeprecationWarning, stacklevel=2)
        self.daemon = daemonic

    def getName(self) -> str:
        warnings.warn("getName() is deprecated, get the name attribute instead", DeprecationWarning, stacklevel=2)
        return self.name

    def setName(self, name: str) -> None:
        warnings.warn("setName() is deprecated, set the name attribute instead", DeprecationWarning, stacklevel=2)
        self.name = str(name)

    @property
    def ident(self) -> int | None:
        """A number naming this started thread (``None`` before ``start()``); not an OS thread id."""
        return self._ident

    native_id = ident

    def _wait_at_exit(self) -> None:
        """Called at interpreter exit for a non-daemon thread: join it, and report an error nobody saw."""
        if self._future is None:
            return
        exc = self._future.exception()
        if exc is not None and not self._retrieved:
            self._retrieved = True
            report(self, exc)

    def __del__(self) -> None:
        future = getattr(self, "_future", None)
        if future is None or getattr(self, "_retrieved", True) or not future.done():
            return
        try:
            exc = future.exception(0)
            if exc is not None:
                self._retrieved = True
                report(self, exc)
        except Exception:  # never raise from a finalizer
            pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        shipped = state.pop("_shipped", None)
        if shipped is not None:  # start() is pickling it: the target as its cached bytes
            state["_target"] = shipped
        state["_future"] = None  # the invocation's bookkeeping stays with the caller
        state["_retrieved"] = True
        state.pop("_call", None)
        if isinstance(state.get("_backend"), Backend):
            state["_backend"] = None
        return state

    def __repr__(self) -> str:
        if self._ident is None:
            status = "initial"
        else:
            status = "started" if self.is_alive() else "stopped"
        if self._daemonic:
            status += " daemon"
        return f"<{type(self).__name__}({self.name}, {status})>"


def _plain_state(thread: CloudThread) -> bool:
    """Whether the stdlib pickler can write ``thread`` (its target shipped): our class, plain attributes."""
    if type(thread) is not CloudThread or type(thread._retry) is not Retry:
        return False
    state = thread.__getstate__()
    del state["_target"], state["_retry"]
    return P.is_plain(state)


_warned: weakref.WeakSet[Any] = weakref.WeakSet()


def _warn_about_globals(fn: Any) -> None:
    """A thread body that assigns globals expects its parent to see them: it cannot (once per function)."""
    from ._diagnose import assigned_globals

    names = assigned_globals(fn)
    if not names:
        return
    try:
        if fn in _warned:
            return
        _warned.add(fn)
    except TypeError:  # not weak-referenceable: warn every time
        pass
    what = ", ".join(repr(n) for n in names)
    warnings.warn(
        f"{getattr(fn, '__qualname__', fn)}() assigns the global {what}: a cloud thread runs in another process, "
        "where that changes its own copy, not the program's; share the value through a DSO object "
        "(crucial.AtomicInt, a @crucial.shared class) or return it (docs/porting.md)",
        RuntimeWarning,
        stacklevel=4,
    )


def _current_daemon() -> bool:
    """The daemon flag a new thread inherits: its creator's, as in ``threading``."""
    here = current_cloud_thread()
    return here.daemon if here is not None else threading.current_thread().daemon


def report(thread: CloudThread, exc: BaseException) -> None:
    """Tell ``threading.excepthook`` about a cloud thread's error, as a thread's own would be."""
    if isinstance(exc, SystemExit) or (thread.daemon and exiting()):  # threading says nothing for either
        return
    hook = threading.excepthook
    chosen = getattr(sys.modules.get("crucial.threading"), "excepthook", None)
    if chosen is not None and not getattr(chosen, "_crucial_default", False):
        hook = chosen  # the program set crucial.threading.excepthook
    try:
        # no local traceback: the frames that matter are the worker's, chained as __cause__
        args = threading.ExceptHookArgs([type(exc), exc, None, thread])  # type: ignore[arg-type]
        hook(args)
    except Exception:
        sys.stderr.write(f"Exception in cloud thread {thread.name}: {exc!r}\n")
