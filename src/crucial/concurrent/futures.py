"""``concurrent.futures`` with pools of cloud functions: ``from crucial.concurrent.futures import ThreadPoolExecutor``.

``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` are
:class:`~crucial.ServerlessExecutor`\\ s with the stdlib's signatures; the
rest -- ``Future``, ``wait``, ``as_completed``, the constants and
exceptions -- is ``concurrent.futures``' own (our futures are its futures).
Differences (``docs/porting.md``): without ``max_workers`` a pool runs as
many functions at once as its backend allows (the stdlib sizes it by the
machine's cores); an ``initializer`` runs before every task, in the task's
worker, since tasks do not own a worker; ``thread_name_prefix``,
``mp_context`` and ``max_tasks_per_child`` are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    InvalidStateError,
    TimeoutError,
    as_completed,
    wait,
)
from typing import Any

from ..compute._invoke import Retry
from ..compute.executor import ServerlessExecutor

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "CancelledError",
    "Executor",
    "Future",
    "InvalidStateError",
    "ProcessPoolExecutor",
    "ThreadPoolExecutor",
    "TimeoutError",
    "as_completed",
    "wait",
]


class ThreadPoolExecutor(ServerlessExecutor):
    """``ThreadPoolExecutor(max_workers=None, thread_name_prefix="", initializer=None, initargs=())`` on cloud functions."""

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        backend: Any = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        super().__init__(backend, max_workers=max_workers, retry=retry, timeout=timeout)
        self._initializer = initializer
        self._initargs = tuple(initargs)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._initializer is None:
            return super().submit(fn, *args, **kwargs)
        return self._submit(_initialized, (self._initializer, self._initargs, fn, args, kwargs), {}, _label(fn))

    def map(self, fn: Callable[..., Any], *iterables: Any, timeout: float | None = None, chunksize: int = 1) -> Any:
        return super().map(self._run_with_initializer(fn), *iterables, timeout=timeout, chunksize=chunksize)

    def _run_with_initializer(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, with the initializer run before it in its worker (when there is one)."""
        return fn if self._initializer is None else _WithInitializer(self._initializer, self._initargs, fn)


class ProcessPoolExecutor(ThreadPoolExecutor):
    """``ProcessPoolExecutor(max_workers=None, mp_context=None, initializer=None, initargs=(), *, max_tasks_per_child=None)``."""

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        backend: Any = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(max_workers, "", initializer, initargs, backend=backend, retry=retry, timeout=timeout)


def _initialized(
    initializer: Callable[..., Any],
    initargs: tuple[Any, ...],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    initializer(*initargs)
    return fn(*args, **kwargs)


class _WithInitializer:
    """``fn`` with the pool's initializer run first (in the worker)."""

    def __init__(self, initializer: Callable[..., Any], initargs: tuple[Any, ...], fn: Callable[..., Any]) -> None:
        self.initializer, self.initargs, self.fn = initializer, initargs, fn
        self.__qualname__ = _label(fn)

    def __call__(self, *args: Any) -> Any:
        self.initializer(*self.initargs)
        return self.fn(*args)


def _label(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)
