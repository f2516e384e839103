"""The ``local`` backend: an elastic pool of warm worker processes on this machine.

::

    invoke() ──► idle worker? ──yes──► send task ──pipe──► worker: run_task ──► result
                     │ no                                                        │
                     ▼                                                           ▼
               below the cap? ──yes──► fork a worker (from the fork server,    monitor thread:
                     │ no               crucial already imported)              result → future,
                     ▼                                                         death → WorkerDiedError,
               CapacityError (never a hang)                                    deadline → kill, timeout

Each worker runs one invocation at a time, as a FaaS instance does, so N
cloud threads waiting on a barrier of N parties get N workers: the pool
grows on demand up to ``max_workers`` and shrinks again after
``idle_timeout`` seconds without work.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import selectors
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from ..exceptions import CapacityError, ConfigError, InvocationTimeoutError, WorkerDiedError
from ._backend import Backend, Then, settle
from ._frames import frame, read_messages, write_all

__all__ = ["LocalBackend"]


class _Worker:
    __slots__ = ("conn", "deadline", "fd", "idle_since", "process", "served", "then")

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.fd = conn.fileno()  # written and read with os calls (._frames): fewer syscalls and GIL releases
        self.then: Then | None = None  # whom to tell how the running invocation ended
        self.deadline: float | None = None
        self.idle_since = time.monotonic()
        self.served = 0  # invocations answered


class LocalBackend(Backend):
    """``LocalBackend(max_workers=256, idle_timeout=60.0, start_method="forkserver")``."""

    name = "local"

    def __init__(self, max_workers: int = 256, idle_timeout: float = 60.0, start_method: str | None = None) -> None:
        if max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, not {max_workers}")
        if not idle_timeout >= 0:  # also NaN
            raise ConfigError(f"idle_timeout must be a number of seconds >= 0, not {idle_timeout}")
        method = start_method or ("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
        if method not in multiprocessing.get_all_start_methods():
            known = ", ".join(multiprocessing.get_all_start_methods())
            raise ConfigError(f"unknown start_method {method!r}; this platform has: {known}")
        self._ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(["crucial.compute._worker"])
        self._max = max_workers
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, _Worker] = {}
        self._workers: set[_Worker] = set()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        # one selector for the pool's life: rebuilding a wait set per wake-up cost ~100 us at 64 workers
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._closed = False
        self._monitor = threading.Thread(target=self._run, name="crucial-local-backend", daemon=True)
        self._monitor.start()
        self.stats = {"invocations": 0, "workers_started": 0, "workers_died": 0, "workers_reaped": 0}

    @property
    def max_concurrency(self) -> int:
        return self._max

    @property
    def size(self) -> int:
        """Worker processes alive now (busy and idle)."""
        return len(self._workers)

    def invoke(self, task: bytes, timeout: float | None = None) -> Future[bytes]:
        fut: Future[bytes] = Future()
        fut.set_running_or_notify_cancel()
        self.invoke_then(task, timeout, functools.partial(settle, fut))
        return fut

    def invoke_then(self, task: bytes, timeout: float | None, then: Then) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the local backend is closed")
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                if len(self._workers) >= self._max:
                    raise CapacityError(
                        f"the local backend already runs {self._max} invocations (its max_workers); "
                        "raise max_workers, or let fewer cloud threads run at once"
                    )
                worker = self._spawn()
            worker.then = then
            worker.deadline = None if timeout is None else time.monotonic() + timeout
            self._busy[worker.conn] = worker
            self.stats["invocations"] += 1
        try:  # outside the lock: the write wakes the worker, and the monitor may want the lock meanwhile
            write_all(worker.fd, frame(task))
        except OSError:
            pass  # it died: the monitor sees its sentinel and fails the future
        if timeout is not None:  # the monitor must learn the new deadline; replies it sees anyway
            self._wake_w.send_bytes(b"")

    def _spawn(self) -> _Worker:
        from . import _worker

        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker.main, args=(child,), daemon=True, name=_worker.WORKER_NAME
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.add(worker)
        # registered for good: epoll picks it up even while the monitor waits
        self._sel.register(parent, selectors.EVENT_READ, ("reply", worker))
        self._sel.register(process.sentinel, selectors.EVENT_READ, ("exit", worker))
        self.stats["workers_started"] += 1
        return worker

    # -- the monitor thread ------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                deadlines = [w.deadline for w in self._busy.values() if w.deadline is not None]
                deadlines += [w.idle_since + self.idle_timeout for w in self._idle]  # when each may be reaped
            now = time.monotonic()
            wait_for = min([60.0, *(d - now for d in deadlines)])
            events = self._sel.select(max(wait_for, 0.0))
            exits = []
            for key, _ in events:
                kind, worker = key.data
                if kind == "wake":
                    self._wake_r.recv_bytes()
                elif kind == "reply":
                    self._reply(worker)
                else:
                    exits.append(worker)
            for worker in exits:  # after the replies: a worker may answer, then exit
                self._died(worker)
            self._expire(time.monotonic())

    def _reply(self, worker: _Worker) -> None:
        try:  # one read: a reply and its header come in one write
            messages = read_messages(worker.fd)
        except (EOFError, OSError):
            messages = None
        if messages is None:
            self._died(worker)
            return
        for data in messages:  # one, as a worker runs one invocation at a time
            self._answered(worker, data)

    def _answered(self, worker: _Worker, data: bytes) -> None:
        with self._lock:
            then, worker.then = worker.then, None
            self._busy.pop(worker.conn, None)
            worker.deadline = None
            worker.served += 1
            worker.idle_since = time.monotonic()
            if not self._closed:
                self._idle.append(worker)
        if then is not None:
            _tell(then, data, None)

    def _died(self, worker: _Worker, error: Exception | None = None) -> None:
        with self._lock:
            if worker not in self._workers:
                return
            self._workers.discard(worker)
            self._busy.pop(worker.conn, None)
            if worker in self._idle:
                self._idle.remove(worker)
            then, worker.then = worker.then, None
            self.stats["workers_died"] += 1
            self._forget(worker)
        worker.process.join(5)
        worker.conn.close()
        if then is not None:
            if error is None:
                code = worker.process.exitcode
                how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
                hint = ""
                if worker.served == 0 and code == 1:  # died while starting: most often the main script failed to import
                    hint = (  # our workers skip the main script, unless the fork server predates our backend
                        "; if the program's own multiprocessing fork server was running before crucial's backend, "
                        "new workers import the main script first: does it start cloud threads without an "
                        '`if __name__ == "__main__":` guard? (see docs/compute.md)'
                    )
                error = WorkerDiedError(f"the worker process (pid {worker.process.pid}) {how} while running the invocation{hint}")
            _tell(then, None, error)

    def _forget(self, worker: _Worker) -> None:
        """Stop watching a worker's pipe and exit (with the lock held)."""
        for fileobj in (worker.conn, worker.process.sentinel):
            try:
                self._sel.unregister(fileobj)
            except (KeyError, ValueError, OSError):
                pass

    def _expire(self, now: float) -> None:
        with self._lock:
            late = [w for w in self._busy.values() if w.deadline is not None and w.deadline <= now]
            stale = [w for w in self._idle if now - w.idle_since >= self.idle_timeout]
            for w in stale:
                self._idle.remove(w)
                self._workers.discard(w)
                self._forget(w)
                self.stats["workers_reaped"] += 1
        for w in late:
            w.process.kill()
            self._died(
                w, InvocationTimeoutError(f"the invocation ran past its timeout and its worker (pid {w.process.pid}) was stopped")
            )
        _stop(stale)  # idle: nothing of them to lose

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            busy = list(self._busy.values())
            self._busy.clear()
        self._wake_w.send_bytes(b"")
        self._monitor.join(5)
        _stop(workers)
        for w in busy:
            with self._lock:  # the monitor may have answered it meanwhile
                then, w.then = w.then, None
            if then is not None:
                _tell(then, None, WorkerDiedError("the local backend was closed while the invocation ran"))
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()


def _tell(then: Then, data: bytes | None, error: BaseException | None) -> None:
    """Call ``then``; an error there is logged, as a Future's callback's would be, and never stops the monitor."""
    try:
        then(data, error)
    except Exception:
        _LOGGER.exception("a callback of an invocation of the local backend raised")


_LOGGER = logging.getLogger(__name__)


def _stop(workers: list[_Worker]) -> None:
    """End worker processes: close their pipes, then signal them, rather than wait for them to see the end.

    A forkserver worker would exit when its pipe closes, but a forked one (sshell's) may never see
    the end: workers forked later hold copies of this end of its pipe.  Waiting for it held the
    monitor thread -- every reply of the pool -- 5 s per reaped worker, and close() 2 s per worker.
    """
    for w in workers:
        w.conn.close()
        w.process.terminate()
    for w in workers:
        w.process.join(1)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
