"""``multiprocessing.Pool`` on a serverless executor: each task chunk is a cloud function.

::

    with Pool(4) as pool:                      # at most 4 functions run at once
        print(pool.map(f, range(10)))          # chunks of the input, one function each
        res = pool.apply_async(f, (20,))
        res.get(timeout=1)                     # multiprocessing.TimeoutError if late

``Pool(processes)`` bounds how many functions run at once (``os.cpu_count()``
by default, as ``multiprocessing``'s); there are no worker processes of
its own, so ``initializer(*initargs)`` runs before every chunk, in the
chunk's worker, and ``maxtasksperchild`` has nothing to limit.  Like
``multiprocessing``'s, leaving ``with`` calls :meth:`Pool.terminate`; the
functions still running then run on to their end, unwaited for.  Every
chunk is in ``pool.timeline``; ``pool.plot("run.png")`` draws it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, as_completed
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing import TimeoutError
from typing import Any

from ..compute.timeline import Timeline
from ..concurrent.futures import ThreadPoolExecutor

__all__ = ["ApplyResult", "AsyncResult", "IMapIterator", "MapResult", "Pool"]

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class ApplyResult:
    """``multiprocessing.pool.AsyncResult``: ``get(timeout)``, ``wait(timeout)``, ``ready()``, ``successful()``."""

    def __init__(self, futures: list[Future[Any]], callback: Callable[[Any], Any] | None, error_callback: Any) -> None:
        self._futures = futures
        self._callback = callback
        self._error_callback = error_callback
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._left = len(futures)
        self._lock = threading.Lock()
        if not futures:
            self._finish()
        for f in futures:
            f.add_done_callback(self._one_done)

    def _one_done(self, _: Future[Any]) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()

    def _collect(self) -> Any:
        return self._futures[0].result()

    def _finish(self) -> None:
        try:
            self._value = self._collect()
        except BaseException as exc:
            self._error = exc
        self._done.set()
        if self._error is None and self._callback is not None:
            self._callback(self._value)
        elif self._error is not None and self._error_callback is not None:
            self._error_callback(self._error)

    def ready(self) -> bool:
        return self._done.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: the chunks' values, in order."""

    def _collect(self) -> Any:
        out: list[Any] = []
        for f in self._futures:
            out.extend(f.result())
        return out


class IMapIterator:
    """What ``imap``/``imap_unordered`` return: the values in order (or as they come), ``next(timeout)``."""

    def __init__(self, futures: list[Future[Any]], ordered: bool) -> None:
        self._chunks: Iterator[Future[Any]] = iter(futures) if ordered else as_completed(futures)
        self._pending: list[Any] = []

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        while not self._pending:
            chunk = next(self._chunks)  # StopIteration ends the iteration
            try:
                self._pending = list(chunk.result(timeout))
            except FutureTimeout:
                raise TimeoutError from None
        return self._pending.pop(0)

    __next__ = next


class Pool:
    """``Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None)``."""

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        backend: Any = None,
        retry: Any = None,
        timeout: float | None = None,
    ) -> None:
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._executor = ThreadPoolExecutor(
            processes, initializer=initializer, initargs=tuple(initargs), backend=backend, retry=retry, timeout=timeout
        )
        self._state = RUN

    @property
    def timeline(self) -> Timeline:
        """Every chunk run: submitted, started, finished, worker, status."""
        return self._executor.timeline

    def plot(self, path: str, title: str | None = None) -> Any:
        """Draw :attr:`timeline` to ``path`` (a PNG; needs ``crucial[plot]``)."""
        return self._executor.plot(path, title)

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _chunks(self, func: Callable[..., Any], items: list[tuple[Any, ...]], chunksize: int | None) -> list[Future[Any]]:
        self._check_running()
        if chunksize is None:
            chunksize, extra = divmod(len(items), self._processes * 4)
            chunksize += bool(extra)
        if chunksize < 1:
            chunksize = 1
        ex = self._executor
        label = getattr(func, "__qualname__", None) or type(func).__qualname__
        init = (ex._initializer, ex._initargs)
        starts = range(0, len(items), chunksize)
        return [ex._submit(_run_chunk, (func, items[i : i + chunksize], *init), {}, label) for i in starts]

    # -- one call ----------------------------------------------------------------------------

    def apply(self, func: Callable[..., Any], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> Any:
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> ApplyResult:
        self._check_running()
        future = self._executor.submit(func, *args, **(kwds or {}))
        return ApplyResult([future], callback, error_callback)

    # -- many calls ----------------------------------------------------------------------------

    def map(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        return self.map_async(func, iterable, chunksize).get()  # type: ignore[no-any-return]

    def map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        items = [(x,) for x in iterable]
        return MapResult(self._chunks(func, items, chunksize), callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]], chunksize: int | None = None) -> list[Any]:
        return self.starmap_async(func, iterable, chunksize).get()  # type: ignore[no-any-return]

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        items = [tuple(args) for args in iterable]
        return MapResult(self._chunks(func, items, chunksize), callback, error_callback)

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> IMapIterator:
        return IMapIterator(self._chunks(func, [(x,) for x in iterable], chunksize), ordered=True)

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> IMapIterator:
        return IMapIterator(self._chunks(func, [(x,) for x in iterable], chunksize), ordered=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Take no more tasks; those given run to their end (``join()`` waits for them)."""
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self) -> None:
        """Take no more tasks, drop the queued ones and stop waiting for those running."""
        self._state = TERMINATE
        self._executor._abandoned = True  # type: ignore[attr-defined]
        self._executor.shutdown(wait=False, cancel_futures=True)

    def join(self) -> None:
        """Wait for the tasks given (after ``close()``; right away after ``terminate()``)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state == CLOSE:
            self._executor.shutdown(wait=True)

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"<crucial.multiprocessing.pool.Pool state={self._state} pool_size={self._processes}>"


def _run_chunk(
    fn: Callable[..., Any], chunk: list[tuple[Any, ...]], initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
) -> list[Any]:
    if initializer is not None:
        initializer(*initargs)
    return [fn(*args) for args in chunk]
