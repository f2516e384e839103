"""The ``ray`` backend: cloud threads as Ray tasks.

::

    invoke() ──► run_ray_task.remote(task)  (num_cpus=0, max_retries=0) ──► a Ray worker process
                     │                                                          │ run_task ──► bytes
                     ▼                                                          ▼
               ObjectRef.future() ──► concurrent.futures.Future[bytes]
                                      WorkerCrashedError ──► WorkerDiedError
                                      timeout ──► ray.cancel(force=True) ──► InvocationTimeoutError

* **No CPU slot**: the task asks for ``num_cpus=0``, so Ray runs every
  invocation at once, each in a worker process of its own (one task at a
  time per process, as on a FaaS platform): N cloud threads waiting on a
  barrier of N parties never deadlock.  ``max_workers`` (256) caps them;
  one more is ``CapacityError`` at once.
* **No hidden retries**: ``max_retries=0``; a worker that dies fails the
  call with ``WorkerDiedError`` and crucial's ``Retry`` decides.
* **Timeouts stop the function**: ``ray.cancel(force=True)`` kills its worker.

Ray is imported when the backend is built (``pip install 'crucial[ray]'``).
Without an address the backend joins the Ray runtime this process already
has, else starts a local one; with one (``ray_address`` config key,
``CRUCIAL_RAY_ADDRESS``, ``RayBackend("auto")``...) it joins that cluster.
Ray binds its servers to every interface and to the host's address even
when told 127.0.0.1 (see ``docs/backends.md``): the tests run it inside a
private network namespace.
"""

from __future__ import annotations

import atexit
import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any

from ..exceptions import CapacityError, ConfigError, InvocationError, InvocationTimeoutError, WorkerDiedError
from ._backend import Backend
from ._task import run_task

__all__ = ["RayBackend", "run_ray_task"]

DEFAULT_MAX_WORKERS = 256


def run_ray_task(task: bytes) -> bytes:
    """What the Ray worker runs (wrapped by ``ray.remote`` when the backend is built)."""
    return run_task(task)


class _Call:
    __slots__ = ("future", "ref", "timed_out", "timer")

    def __init__(self, future: Future[bytes], ref: Any) -> None:
        self.future = future
        self.ref = ref
        self.timer: threading.Timer | None = None
        self.timed_out = False


class RayBackend(Backend):
    """``RayBackend(address=None, *, max_workers=256, init_options=None)``.

    * ``address`` -- a Ray cluster ("auto", "host:6379", "ray://host:10001");
      default: the ``ray_address`` config key / ``CRUCIAL_RAY_ADDRESS``, else
      the Ray runtime this process already started, else a new local one.
    * ``max_workers`` -- invocations at once; one more is ``CapacityError``.
    * ``init_options`` -- more keyword arguments for ``ray.init`` when this
      backend starts or joins Ray (e.g. ``{"num_cpus": 4}``).
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, *, max_workers: int = DEFAULT_MAX_WORKERS, init_options: dict[str, Any] | None = None
    ) -> None:
        import ray  # ImportError -> get_backend's ConfigError naming crucial[ray]

        if max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, not {max_workers}")
        from ..config import load_config

        address = address or load_config().ray_address
        self._owns_runtime = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}
            options.update(init_options or {})
            try:
                ray.init(address=address, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"Ray could not start or join a cluster at {address or 'a new local runtime'}: {exc}") from exc
            self._owns_runtime = True
        self._ray = ray
        self._remote = ray.remote(num_cpus=0, max_retries=0)(run_ray_task)
        self._max = max_workers
        self._lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._closed = False
        self.stats = {"invocations": 0, "failures": 0}
        atexit.register(self.close)

    @property
    def max_concurrency(self) -> int:
        return self._max

    @property
    def running(self) -> int:
        return len(self._calls)

    def invoke(self, task: bytes, timeout: float | None = None) -> Future[bytes]:
        fut: Future[bytes] = Future()
        fut.set_running_or_notify_cancel()
        with self._lock:
            if self._closed:
                raise RuntimeError("the ray backend is closed")
            if len(self._calls) >= self._max:
                raise CapacityError(
                    f"the ray backend already runs {self._max} invocations (its max_workers); "
                    "raise max_workers, or let fewer cloud threads run at once"
                )
            ref = self._remote.remote(task)
            call = self._calls[id(fut)] = _Call(fut, ref)
            self.stats["invocations"] += 1
        if timeout is not None:
            call.timer = threading.Timer(timeout, self._expire, (call, timeout))
            call.timer.daemon = True
            call.timer.start()
        ref.future().add_done_callback(lambda rf: self._done(call, rf))
        return fut

    def _done(self, call: _Call, rf: Future[Any]) -> None:
        with self._lock:
            self._calls.pop(id(call.future), None)
        if call.timer is not None:
            call.timer.cancel()
        try:
            value = rf.result()
        except BaseException as exc:
            self.stats["failures"] += 1
            _set(call.future, error=self._error(call, exc))
        else:
            _set(call.future, value=value)

    def _error(self, call: _Call, exc: BaseException) -> InvocationError:
        kind = type(exc).__name__
        if call.timed_out:
            return InvocationTimeoutError(f"the invocation ran past its timeout and Ray stopped its worker ({kind})")
        if kind in ("WorkerCrashedError", "NodeDiedError", "ActorDiedError", "OutOfMemoryError"):
            return WorkerDiedError(f"the Ray worker died while running the invocation ({kind}: {exc})")
        if kind == "TaskCancelledError":
            return InvocationError(f"the Ray task was cancelled ({exc})")
        return InvocationError(f"the Ray task failed ({kind}: {exc})")

    def _expire(self, call: _Call, timeout: float) -> None:
        call.timed_out = True
        try:
            self._ray.cancel(call.ref, force=True)  # kills the worker: the function stops
        except Exception:
            pass

    def close(self) -> None:
        """Cancel the calls still running (their futures fail), and stop Ray if this backend started it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            calls = list(self._calls.values())
            self._calls.clear()
        for call in calls:
            _set(call.future, error=WorkerDiedError("the ray backend was closed while the function ran"))
            try:
                self._ray.cancel(call.ref, force=True)
            except Exception:
                pass
        if self._owns_runtime:
            try:
                self._ray.shutdown()
            except Exception:
                pass
        atexit.unregister(self.close)


def _set(fut: Future[bytes], *, value: bytes | None = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)  # type: ignore[arg-type]
    except InvalidStateError:
        pass
