"""``CloudThread``: a ``threading.Thread`` whose body runs as a cloud function.

::

    t = CloudThread(target=estimate, args=(1_000_000,))
    t.start()          # ships target+args to the backend, returns at once
    t.join()           # waits for the function, as Thread.join does
    t.result()         # its return value, or its exception re-raised here

A subclass that overrides :meth:`run` works too: the thread object itself
travels (pickled), so its attributes -- shared-object proxies included --
are there on the other side.
"""

from __future__ import annotations

import itertools
import types
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ._backend import Backend, get_backend
from ._invoke import Retry, prepare, start_invocation

__all__ = ["CloudThread"]

_counter = itertools.count(1)


class CloudThread:
    """``CloudThread(target=None, args=(), kwargs=None, name=None, *, backend=None, retry=None, timeout=None)``.

    Differences from ``threading.Thread``: the body runs in another process
    (or machine), so it sees the caller's globals only as they were pickled
    -- share state through DSO objects; ``daemon`` is meaningless; and a
    started function cannot be interrupted (as in the original CRUCIAL).
    """

    def __init__(
        self,
        target: Any = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        *,
        backend: str | Backend | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self.name = name or f"CloudThread-{next(_counter)}"
        self._backend = backend
        self._retry = retry or Retry()
        self._timeout = timeout
        self._future: Future[Any] | None = None

    def run(self) -> Any:
        """The body; runs in the cloud function.  Override it, or pass ``target``."""
        if self._target is not None:
            return self._target(*self._args, **self._kwargs)
        return None

    def start(self) -> None:
        """Invoke the function; raise at once if it cannot be pickled or the backend is full."""
        if self._future is not None:
            raise RuntimeError(f"{self.name}: threads can only be started once")
        backend = get_backend(self._backend)
        if type(self).run is CloudThread.run:
            fn, args, kwargs = self._target or _nothing, self._args, self._kwargs
        else:
            # the plain function with the thread as its argument, not the bound method: the
            # subclass's module then travels by value (workers cannot import the user's modules)
            run = type(self).run
            fn, args, kwargs = (run, (self,), {}) if isinstance(run, types.FunctionType) else (self.run, (), {})
        data = prepare(fn, args, kwargs)
        self._future = start_invocation(
            backend, data, retry=self._retry, timeout=self._timeout, where=f"cloud thread {self.name!r}"
        )

    def join(self, timeout: float | None = None) -> None:
        """Wait until the function ends (or ``timeout`` seconds pass), as ``Thread.join``."""
        if self._future is None:
            raise RuntimeError(f"{self.name}: cannot join thread before it is started")
        try:
            self._future.exception(timeout)
        except FutureTimeout:
            pass

    def is_alive(self) -> bool:
        return self._future is not None and not self._future.done()

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value; re-raises its exception (remote traceback as ``__cause__``)."""
        if self._future is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._future is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._future.exception(timeout)

    @property
    def future(self) -> Future[Any] | None:
        """The :class:`concurrent.futures.Future` of the invocation, once started."""
        return self._future

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_future"] = None  # the invocation's bookkeeping stays with the caller
        if isinstance(state.get("_backend"), Backend):
            state["_backend"] = None
        return state

    def __repr__(self) -> str:
        status = "initial" if self._future is None else ("started" if not self._future.done() else "stopped")
        return f"<{type(self).__name__}({self.name}, {status})>"


def _nothing() -> None:
    return None
