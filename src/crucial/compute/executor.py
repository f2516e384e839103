"""``ServerlessExecutor``: a ``concurrent.futures.Executor`` whose tasks are cloud functions.

::

    with ServerlessExecutor() as ex:
        f = ex.submit(work, 3)                     # a real concurrent.futures.Future
        squares = list(ex.map(square, range(100), chunksize=10))
        ex.parallel_for(paint_row, 0, rows, workers=8)

At most ``max_workers`` invocations run at once (default: the backend's
cap); more tasks wait in the executor's queue, as with
``ThreadPoolExecutor``.  Cloud threads that wait for each other (a barrier)
must all be running: give them ``max_workers`` >= their number, or use
:class:`~crucial.compute.CloudThread`, which never queues.

Every task is recorded in ``executor.timeline`` (submitted, started,
finished, worker, status); ``executor.plot("run.png")`` draws it.  As
``ThreadPoolExecutor``'s, the work an executor was given is finished before
the interpreter exits.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..exceptions import ConfigError
from ._backend import Backend, get_backend
from ._exit import wait_at_exit
from ._invoke import Retry, prepare, start_invocation
from ._lines import line_buffer_caller
from .timeline import CANCELLED, Call, Timeline, recorded

__all__ = ["ServerlessExecutor"]


class ServerlessExecutor(Executor):
    """``ServerlessExecutor(backend=None, *, max_workers=None, retry=None, timeout=None, progress=False)``."""

    def __init__(
        self,
        backend: str | Backend | None = None,
        *,
        max_workers: int | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        progress: bool = False,
    ) -> None:
        self._backend = get_backend(backend)
        cap = self._backend.max_concurrency
        if max_workers is not None and max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, not {max_workers}")
        self._max = max_workers or cap or 1000
        self._retry = retry or Retry()
        self._timeout = timeout
        self._progress = progress
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[Any], bytes, str, Call]] = deque()
        self._running = 0
        self._shutdown = False
        self._pumping = False  # a thread is in _pump's loop
        self._idle = threading.Condition(self._lock)
        #: every task submitted, in order: when it was submitted, started and finished, where, how it ended
        self.timeline = Timeline()
        wait_at_exit(self)  # its queued and running work is finished before the interpreter exits

    @property
    def backend(self) -> Backend:
        return self._backend

    def plot(self, path: str, title: str | None = None) -> Any:
        """Draw :attr:`timeline` to ``path`` (a PNG): the tasks over time, a histogram of durations (``crucial[plot]``)."""
        return self.timeline.plot(path, title)

    def _wait_at_exit(self) -> None:
        if not getattr(self, "_abandoned", False):  # Pool.terminate() stops waiting for its tasks
            self.shutdown(wait=True)

    # -- the Executor interface ----------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)`` as a cloud function; pickling errors raise here."""
        return self._submit(fn, args, kwargs, _label(fn))

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], label: str) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        data = prepare(fn, args, kwargs)  # fails now, in the caller, if it cannot travel
        line_buffer_caller()
        fut: Future[Any] = Future()
        record = self.timeline.add(label, recorded().add(label))
        with self._lock:
            self._queue.append((fut, data, f"task {label!r}", record))
        self._pump()
        return fut

    def _pump(self) -> None:
        """Start queued tasks while fewer than ``max_workers`` run.

        One pump at a time: a task that fails as it starts (CapacityError, a
        closed backend) runs ``_one_done`` -> ``_pump`` inside this loop, which
        would otherwise recurse once per queued task (RecursionError, tasks
        left queued forever).  The running pump sees their changes on its next
        turn, since it only stops after checking, under the lock, that there
        is nothing to start.
        """
        with self._lock:
            if self._pumping:
                return
            self._pumping = True
        try:
            while True:
                with self._lock:
                    if self._running >= self._max or not self._queue:
                        self._pumping = False
                        return
                    fut, data, where, record = self._queue.popleft()
                    if not fut.set_running_or_notify_cancel():
                        record.end(CANCELLED)
                        continue  # cancelled while queued
                    self._running += 1
                fut.add_done_callback(self._one_done)
                try:
                    start_invocation(
                        self._backend, data, retry=self._retry, timeout=self._timeout, where=where, result=fut, record=record
                    )
                except BaseException as exc:  # CapacityError, a closed backend: the task fails, not the pump
                    record.end("error")
                    fut.set_exception(exc)
        except BaseException:
            with self._lock:
                self._pumping = False
            raise

    def _one_done(self, _: Future[Any]) -> None:
        with self._lock:
            self._running -= 1
            self._idle.notify_all()
        self._pump()

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[Any]:
        """Like ``Executor.map``; ``chunksize`` items travel in one invocation."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        deadline = None if timeout is None else time.monotonic() + timeout
        items = list(zip(*iterables))  # noqa: B905  (map stops at the shortest, as the stdlib's)
        chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        futures = [self._submit(_run_chunk, (fn, chunk), {}, _label(fn)) for chunk in chunks]
        bar = _bar(self._progress, len(items), getattr(fn, "__name__", "map"))

        def results() -> Iterator[Any]:
            try:
                for f, chunk in zip(futures, chunks, strict=True):
                    remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
                    values = f.result(remaining)
                    if bar is not None:
                        bar.update(len(chunk))
                    yield from values
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            finally:
                if bar is not None:
                    bar.close()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    fut, _, _, record = self._queue.popleft()
                    fut.cancel()
                    record.end(CANCELLED)
            if wait:
                while self._running or self._queue:
                    self._idle.wait()

    # -- beyond the Executor interface ------------------------------------------------

    def invoke_all(self, callables: Iterable[Callable[[], Any]], timeout: float | None = None) -> list[Future[Any]]:
        """Run every callable, wait for all, return their futures (Java's ``invokeAll``)."""
        futures = [self.submit(c) for c in callables]
        deadline = None if timeout is None else time.monotonic() + timeout
        for f in futures:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                f.exception(remaining)
            except FutureTimeout:
                for g in futures:
                    g.cancel()
                raise
        return futures

    def parallel_for(
        self,
        fn: Callable[[int], Any],
        start: int,
        stop: int,
        *,
        workers: int,
        finalizer: Callable[[], Any] | None = None,
    ) -> Any:
        """Run ``fn(i)`` for ``i`` in ``range(start, stop)`` over ``workers`` functions.

        The range is split statically into ``workers`` contiguous blocks, as the
        seed's ``invokeIterativeTask`` does; each function runs one block.
        Returns ``finalizer()``, run here once every block is done (or None).
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if stop < start:
            raise ValueError(f"stop ({stop}) is below start ({start})")
        n = stop - start
        bounds = [start + n * w // workers for w in range(workers + 1)]
        blocks = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
        bar = _bar(self._progress, len(blocks), getattr(fn, "__name__", "parallel_for"))
        futures = [self._submit(_run_block, (fn, a, b), {}, _label(fn)) for a, b in blocks]
        try:
            for f in futures:
                f.result()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return finalizer() if finalizer is not None else None


def _run_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


def _run_block(fn: Callable[[int], Any], a: int, b: int) -> None:
    for i in range(a, b):
        fn(i)


def _label(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


def _bar(enabled: bool, total: int, what: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise ConfigError("progress=True needs tqdm: pip install 'crucial[progress]'") from exc
    return tqdm(total=total, desc=what)
