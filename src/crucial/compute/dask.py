"""The ``dask`` backend: cloud threads as tasks on a Dask ``distributed`` cluster.

::

    invoke() ──► least-loaded worker W ──► client.submit(run_dask_task, task, workers=[W],
                     │ (none, or at the cap:       allow_other_workers=False)
                     │  CapacityError)                      │
                     ▼                                      ▼
               calls[key] = W              worker W: secede() from its thread pool,
                     ▲                               run_task(task) ──► bytes
                     │                                      │
     scheduler event "remove-worker" W ──► every call on W fails: WorkerDiedError
     dask future done ──► fetcher thread: result() ──► concurrent.futures.Future[bytes]
     timeout ──► InvocationTimeoutError, the Dask task is cancelled

Three choices make Dask behave like a FaaS platform for cloud threads:

* **Every task secedes** from its worker's thread pool as soon as it starts
  (:func:`distributed.secede`), so a running cloud thread holds a thread of
  the worker process but no scheduling slot.  N cloud threads that wait on a
  barrier of N parties all run, whatever ``nthreads`` the workers have: no
  deadlock.  The cap is ``max_workers`` running invocations in all (each is
  a thread in a worker process); one more is a ``CapacityError`` at once.
* **Every task is pinned** to the worker this backend chose (the one running
  the fewest of our calls per thread), with ``allow_other_workers=False``.
  When that worker dies, Dask cannot silently run the function again
  elsewhere (its own rule re-runs a task up to ``allowed-failures`` times):
  the scheduler's ``remove-worker`` event fails the call with
  ``WorkerDiedError`` and crucial's ``Retry`` decides, as on the local backend.
* **A timeout is the caller's**: Dask cannot stop a running task, so at the
  deadline the call fails with ``InvocationTimeoutError`` and its task is
  cancelled, but the function goes on in its thread until it returns.

The function runs in the Dask worker process, so a crash of the function
(``os._exit``, a segfault) is a crash of that worker; its nanny restarts it.
The DSO address and token reach the function inside its task, as on the local backend.
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any

from ..exceptions import CapacityError, ConfigError, ConnectError, InvocationError, InvocationTimeoutError, WorkerDiedError
from ._backend import Backend
from ._task import Outcome, run_task

__all__ = ["DaskBackend", "run_dask_task"]

#: running invocations at once unless ``max_workers`` says otherwise (each holds a thread of a worker)
DEFAULT_MAX_WORKERS = 256


# -- what runs on the Dask worker --------------------------------------------------

_tenant_lock = threading.Lock()
_tenant: str | None = None  # the DSO the cloud threads running in this process use
_tenant_running = 0


def run_dask_task(task: bytes, tenant: str) -> bytes:
    """What the Dask worker runs: leave the thread pool, run one crucial task, return its outcome.

    ``tenant`` names the caller's DSO.  A worker process has one default DSO
    client, so it runs the cloud threads of one DSO at a time: a task for
    another DSO while some run fails as a platform error (``InvocationError``,
    so ``Retry`` may run it again) instead of repointing the running ones.
    """
    global _tenant, _tenant_running
    try:
        from distributed import secede

        secede()  # our slot goes to the next task: blocking cloud threads cannot starve the pool
    except (ImportError, ValueError, AttributeError):
        pass  # not in a worker thread (called directly): nothing to leave
    with _tenant_lock:
        if _tenant_running and tenant != _tenant:
            from .. import protocol as P

            busy = InvocationError(
                f"this Dask worker (pid {os.getpid()}) runs cloud threads of another DSO ({_tenant}) at the moment; "
                "a worker process serves one DSO at a time"
            )
            return P.pickle_bytes(Outcome(False, busy, ""))
        _tenant, _tenant_running = tenant, _tenant_running + 1
    try:
        return run_task(task)
    finally:
        with _tenant_lock:
            _tenant_running -= 1


# -- the caller's side -------------------------------------------------------------


class _Call:
    __slots__ = ("dask_future", "future", "timer", "worker")

    def __init__(self, future: Future[bytes], worker: str) -> None:
        self.future = future
        self.worker = worker
        self.dask_future: Any = None
        self.timer: threading.Timer | None = None


class _Worker:
    __slots__ = ("calls", "nthreads")

    def __init__(self, nthreads: int) -> None:
        self.nthreads = max(int(nthreads or 1), 1)
        self.calls: set[str] = set()  # keys of our calls running there


class DaskBackend(Backend):
    """``DaskBackend(address=None, *, client=None, max_workers=256, connect_timeout=None, worker_wait=10.0, check_interval=2.0)``.

    * ``address`` -- the scheduler ("tcp://10.0.0.5:8786"); default: the
      ``dask_scheduler`` config key / ``CRUCIAL_DASK_SCHEDULER``, else the
      process's current ``distributed.Client``, else Dask's own
      ``scheduler-address`` setting (``DASK_SCHEDULER_ADDRESS``).
    * ``client`` -- a ``distributed.Client`` you already have (left open by ``close()``).
    * ``max_workers`` -- running invocations at once; one more is ``CapacityError``.
    * ``connect_timeout`` -- seconds to reach the scheduler (default: crucial's ``connect_timeout``).
    * ``worker_wait`` -- seconds ``invoke()`` waits for a worker when the cluster has
      none (all restarting, or scaling up from zero) before ``CapacityError``.
    * ``check_interval`` -- seconds between checks, while calls run, that their
      workers are still in the cluster (the scheduler's events say it at once;
      this catches one that was missed).
    """

    name = "dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Any = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        connect_timeout: float | None = None,
        worker_wait: float = 10.0,
        check_interval: float = 2.0,
    ) -> None:
        import distributed  # ImportError -> get_backend's ConfigError naming crucial[dask]

        if max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, not {max_workers}")
        from ..config import load_config

        config = load_config()
        self._owns_client = False
        if client is None and not (address or config.dask_scheduler):
            client = _current_client(distributed)  # the user's own Client: use it, leave it open
        if client is None:
            address = address or config.dask_scheduler or _dask_setting()
            if not address:
                raise ConfigError(
                    "the dask backend needs a scheduler: DaskBackend(address) or DaskBackend(client=...), "
                    "the dask_scheduler config key, CRUCIAL_DASK_SCHEDULER, a distributed.Client made in this "
                    "process, or DASK_SCHEDULER_ADDRESS"
                )
            timeout = connect_timeout or config.connect_timeout
            try:
                client = distributed.Client(address, set_as_default=False, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise ConnectError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
            self._owns_client = True
        self._client = client
        self.address = str(client.scheduler.address)
        self._max = max_workers
        self.worker_wait = worker_wait
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._calls: dict[str, _Call] = {}
        self._stale = True  # the worker list must be fetched before the next placement
        self._ready: list[str] = []  # keys whose Dask task is done, to fetch
        self._fetching = False
        self._gone: set[str] = set()  # workers removed (addresses are not reused: a restart gets a new port)
        self._closed = False
        self._stop = threading.Event()
        self.check_interval = check_interval
        self._fetchers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="crucial-dask-fetch")
        self.stats = {"invocations": 0, "failures": 0, "workers_lost": 0}
        _listen(client, self)  # before the first fetch: no removal goes unseen
        self._refresh()
        self._watcher = threading.Thread(target=self._watch, name="crucial-dask-watch", daemon=True)
        self._watcher.start()
        atexit.register(self.close)

    @property
    def max_concurrency(self) -> int:
        return self._max

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` in use."""
        return self._client

    def running(self) -> dict[str, int]:
        """Our calls running now, by worker address."""
        with self._lock:
            return {address: len(w.calls) for address, w in self._workers.items()}

    # -- invoking ------------------------------------------------------------------

    def invoke(self, task: bytes, timeout: float | None = None) -> Future[bytes]:
        from ._invoke import dso_of_caller

        dso, _token = dso_of_caller()
        tenant = ",".join(dso)
        if self._stale or not self._workers:
            self._refresh()
        if not self._workers:  # all restarting (a nanny brings a dead worker back), or none yet
            try:
                self._client.wait_for_workers(1, timeout=self.worker_wait)
            except (TimeoutError, OSError):
                pass
            self._refresh()
        fut: Future[bytes] = Future()
        fut.set_running_or_notify_cancel()
        key = f"crucial-{uuid.uuid4().hex}"
        with self._lock:
            if self._closed:
                raise RuntimeError("the dask backend is closed")
            if len(self._calls) >= self._max:
                raise CapacityError(
                    f"the dask backend already runs {self._max} invocations (its max_workers); "
                    "raise max_workers, or let fewer cloud threads run at once"
                )
            if not self._workers:
                raise CapacityError(f"the Dask cluster at {self.address} has no workers (waited {self.worker_wait:g} s)")
            worker = min(self._workers, key=lambda a: (len(self._workers[a].calls) / self._workers[a].nthreads, a))
            call = self._calls[key] = _Call(fut, worker)
            self._workers[worker].calls.add(key)
            self.stats["invocations"] += 1
        try:
            dfut = self._client.submit(
                run_dask_task, task, tenant, key=key, workers=[worker], allow_other_workers=False, pure=False
            )
        except Exception as exc:
            self._settle(key, error=InvocationError(f"Dask could not take the task: {type(exc).__name__}: {exc}"))
            return fut
        with self._lock:
            live = key in self._calls
            call.dask_future = dfut if live else None
        if not live:  # settled while we submitted (its worker left, close()): drop the task
            self._cancel(dfut)
            return fut
        if timeout is not None:
            call.timer = threading.Timer(timeout, self._expire, (key, timeout))
            call.timer.daemon = True
            call.timer.start()
        dfut.add_done_callback(lambda f: self._fetch_soon(key))
        return fut

    def _refresh(self) -> None:
        """Fetch the workers and their thread counts from the scheduler (one round trip).

        A worker of ours that the scheduler no longer lists is gone, even if its
        ``remove-worker`` event was missed: its calls fail with ``WorkerDiedError``.
        """
        try:
            info = self._client.scheduler_info(n_workers=-1)
        except Exception as exc:
            raise ConnectError(f"the Dask scheduler at {self.address} did not answer: {exc}") from exc
        seen = info.get("workers", {})
        with self._lock:
            self._stale = False
            for address, about in seen.items():
                if address not in self._workers and address not in self._gone:
                    self._workers[address] = _Worker(about.get("nthreads", 1))
            vanished = [a for a in self._workers if a not in seen]
        for address in vanished:
            self._lose_worker(address, "is gone")

    def _watch(self) -> None:
        """Every ``check_interval`` while calls run: compare our workers with the scheduler's."""
        while not self._stop.wait(self.check_interval):
            if self._calls:
                try:
                    self._refresh()
                except Exception:
                    pass  # the scheduler is unreachable: the calls' own futures will tell

    # -- outcomes ------------------------------------------------------------------

    def _fetch_soon(self, key: str) -> None:
        """Dask's callback thread: queue the result; one fetcher gathers all that are ready at once."""
        with self._lock:
            self._ready.append(key)
            if self._fetching:
                return
            self._fetching = True
        try:
            self._fetchers.submit(self._fetch_ready)
        except RuntimeError:  # closed meanwhile
            pass

    def _fetch_ready(self) -> None:
        while True:
            with self._lock:
                keys, self._ready = self._ready, []
                if not keys:
                    self._fetching = False
                    return
                calls = [(k, self._calls[k]) for k in keys if k in self._calls]
            done = [(k, c) for k, c in calls if c.dask_future is not None and c.dask_future.status == "finished"]
            others = [(k, c) for k, c in calls if (k, c) not in done]
            if done:
                try:  # one round trip for the batch
                    values = self._client.gather([c.dask_future for _, c in done])
                except BaseException:  # one of them was lost: fetch them one by one
                    others += done
                else:
                    for (k, _), value in zip(done, values, strict=True):
                        self._settle(k, value=value)
            for k, c in others:
                self._fetch(k, c)

    def _fetch(self, key: str, call: _Call) -> None:
        dfut = call.dask_future
        if dfut is None:
            return  # already settled (timed out, worker lost, closed)
        status = dfut.status
        if status == "finished":
            try:
                value = dfut.result()
            except BaseException as exc:  # lost between done and gather (its worker died)
                self._settle(key, error=_lost(call.worker, exc))
                return
            self._settle(key, value=value)
        elif status == "error":
            try:
                cause = dfut.exception()
            except BaseException as err:
                cause = err
            self._settle(key, error=_task_error(cause, call.worker))
        else:  # cancelled: by us (already settled), or the scheduler forgot it
            self._settle(key, error=InvocationError(f"Dask dropped the task on {call.worker} ({status})"))

    def _settle(self, key: str, *, value: bytes | None = None, error: BaseException | None = None) -> None:
        with self._lock:
            call = self._calls.pop(key, None)
            if call is None:
                return
            w = self._workers.get(call.worker)
            if w is not None:
                w.calls.discard(key)
            if error is not None:
                self.stats["failures"] += 1
        if call.timer is not None:
            call.timer.cancel()
        if error is not None:
            if call.dask_future is not None and not call.dask_future.done():
                self._cancel(call.dask_future)
            _set(call.future, error=error)
        else:
            _set(call.future, value=value)
        call.dask_future = None  # Dask forgets the task and its result once no future holds it

    def _cancel(self, dfut: Any) -> None:
        try:
            self._fetchers.submit(dfut.cancel)  # a round trip; never on Dask's event loop
        except RuntimeError:
            pass

    def _expire(self, key: str, timeout: float) -> None:
        with self._lock:
            call = self._calls.get(key)
        if call is not None:
            self._settle(
                key,
                error=InvocationTimeoutError(
                    f"the invocation on Dask worker {call.worker} ran past its timeout of {timeout:g} s "
                    "(Dask cannot stop a running task: the function goes on in its thread until it returns)"
                ),
            )

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Scheduler events (on Dask's event loop: no round trips here)."""
        _, msg = event
        if not isinstance(msg, dict):
            return
        action = msg.get("action")
        if action == "add-worker":
            self._stale = True
        elif action == "remove-worker":
            address = str(msg.get("worker"))
            self._lose_worker(address, "was retired" if msg.get("expected") else "died")

    def _lose_worker(self, address: str, how: str) -> None:
        with self._lock:  # at once: no later invoke() may choose this worker
            self._gone.add(address)
            w = self._workers.pop(address, None)
            keys = list(w.calls) if w is not None else []
            if keys:
                self.stats["workers_lost"] += 1
        if keys:
            error = f"the Dask worker {address} {how} while running the invocation"
            try:  # settling runs the callers' callbacks, which may invoke again: not on Dask's loop
                self._fetchers.submit(self._lose, keys, error)
            except RuntimeError:  # closed
                pass

    def _lose(self, keys: list[str], error: str) -> None:
        for key in keys:
            self._settle(key, error=WorkerDiedError(error))

    def close(self) -> None:
        """Fail the calls still running, cancel their tasks; close the client if this backend made it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            keys = list(self._calls)
        self._stop.set()
        for key in keys:
            self._settle(key, error=WorkerDiedError("the dask backend was closed while the function ran"))
        self._fetchers.shutdown(wait=True, cancel_futures=False)
        _listen(self._client, self, stop=True)
        if self._owns_client:
            try:
                self._client.close()
            except Exception:
                pass
        atexit.unregister(self.close)

    def __repr__(self) -> str:
        return f"<DaskBackend {self.address}, {len(self._calls)} running on {len(self._workers)} workers>"


_listeners_lock = threading.Lock()
_listeners: dict[int, list[DaskBackend]] = {}  # id(client) -> backends fed by its "all" topic


def _listen(client: Any, backend: DaskBackend, stop: bool = False) -> None:
    """Feed the scheduler's events to every backend on ``client`` (a Client has one handler per topic)."""
    with _listeners_lock:
        backends = _listeners.setdefault(id(client), [])
        if stop:
            if backend in backends:
                backends.remove(backend)
            if backends:
                return
            del _listeners[id(client)]
            try:
                client.unsubscribe_topic("all")
            except Exception:
                pass
            return
        backends.append(backend)
        if len(backends) > 1:
            return
    theirs = getattr(client, "_event_handlers", {}).get("all")  # a handler the user set keeps its events

    def dispatch(event: Any) -> None:
        for b in list(_listeners.get(id(client), ())):
            b._on_event(event)
        if theirs is not None:
            theirs(event)

    client.subscribe_topic("all", dispatch)


def _set(fut: Future[bytes], *, value: bytes | None = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)  # type: ignore[arg-type]
    except InvalidStateError:  # settled by a timeout, a lost worker or close() first
        pass


def _lost(worker: str, exc: BaseException) -> InvocationError:
    return WorkerDiedError(f"the result on Dask worker {worker} was lost before it could be fetched ({type(exc).__name__})")


def _task_error(exc: BaseException | None, worker: str) -> InvocationError:
    """The task never raises, so its error is the platform's (crucial missing there, a killed worker...)."""
    text = f"{type(exc).__name__}: {exc}"
    if type(exc).__name__ == "KilledWorker":  # the cluster's allowed-failures is 0
        return WorkerDiedError(f"the Dask worker {worker} died while running the invocation ({text})")
    if isinstance(exc, ImportError):
        return InvocationError(f"the Dask worker {worker} could not load the task ({text}); is crucial installed on the workers?")
    return InvocationError(f"the Dask task on {worker} failed ({text})")


def _current_client(distributed: Any) -> Any:
    try:
        return distributed.default_client()
    except ValueError:  # no client in this process
        return None


def _dask_setting() -> str | None:
    import dask

    value = dask.config.get("scheduler-address", None)
    return str(value) if value else None
