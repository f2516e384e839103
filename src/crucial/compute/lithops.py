"""The ``lithops`` backend: cloud functions through a Lithops ``FunctionExecutor``.

::

    invoke() ──► FunctionExecutor.call_async(run_lithops_task, task) ──► Lithops compute backend
                     │                                                 (localhost, AWS Lambda, k8s, ...)
                     ▼                                                               │
               pending[future] ◄── waiter thread: Lithops' job monitor marks it ready, ┘
                     │              result() fetches the bytes run_task returned
                     ▼
               concurrent.futures.Future[bytes]  (or InvocationError / WorkerDiedError /
                                                  InvocationTimeoutError with Lithops' message)

Every Lithops compute backend works: the function Lithops runs is
:func:`run_lithops_task`, which hands the task's bytes to
:func:`~crucial.compute._task.run_task` and returns the bytes it produced,
so the user's function, its arguments, its result and its exception travel
inside crucial's own payload and Lithops only ever sees bytes.  The runtime
(image, or interpreter for ``localhost``) must have crucial installed.

Lithops is imported when the backend is built, never by ``import crucial``;
without it :func:`~crucial.compute.get_backend` raises a ``ConfigError``
naming the ``crucial[lithops]`` extra.  See ``docs/backends.md``.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import math
import os
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..exceptions import CapacityError, ConfigError, InvocationError, InvocationTimeoutError, WorkerDiedError
from ._backend import Backend
from ._task import run_task

__all__ = ["LithopsBackend", "run_lithops_task"]

#: how many invocations may run at once on Lithops' localhost backend unless
#: ``max_workers``/``localhost.worker_processes`` say otherwise: cloud threads
#: that wait for each other (a barrier) must all run, whatever the core count
LOCALHOST_WORKERS = 64


def run_lithops_task(task: bytes) -> bytes:
    """What Lithops runs: one crucial task in, the pickled outcome out (never raises)."""
    return run_task(task)


class _Call:
    __slots__ = ("deadline", "fetching", "future")

    def __init__(self, future: Future[bytes], deadline: float | None) -> None:
        self.future = future
        self.deadline = deadline
        self.fetching = False


class LithopsBackend(Backend):
    """``LithopsBackend(config=None, *, backend=None, storage=None, runtime=None, ...)``.

    * ``config`` -- a Lithops config dict (what ``~/.lithops/config`` holds);
      default: Lithops' own resolution (``LITHOPS_CONFIG_FILE``,
      ``~/.lithops/config``, ``LITHOPS_CONFIG``, then its defaults).
    * ``backend``, ``storage`` -- shortcuts for ``lithops.backend`` /
      ``lithops.storage`` (e.g. ``"localhost"``, ``"aws_lambda"``, ``"k8s"``).
    * ``runtime`` -- the runtime of the compute backend (an image name, or an
      interpreter for ``localhost``, where the default is this process's
      ``sys.executable`` so that crucial is importable in the functions).
    * ``runtime_memory`` (MB), ``extra_env``, ``include_modules`` -- passed to
      every ``call_async``.
    * ``max_workers`` -- invocations at once; one more is a ``CapacityError``
      (never a silent queue).  Default: Lithops' ``max_workers`` for the
      compute backend, or ``LOCALHOST_WORKERS`` on ``localhost``.
    * ``timeout_grace`` -- seconds past a call's timeout (or Lithops'
      ``execution_timeout``) after which a call Lithops has not reported on
      fails with ``InvocationTimeoutError`` instead of waiting for ever.
    * ``log_level`` -- Lithops' log level; default ``None`` leaves logging alone.
    """

    name = "lithops"

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        backend: str | None = None,
        storage: str | None = None,
        runtime: str | None = None,
        runtime_memory: int | None = None,
        extra_env: dict[str, str] | None = None,
        include_modules: list[str] | None = None,
        max_workers: int | None = None,
        timeout_grace: float = 30.0,
        log_level: str | None = None,
    ) -> None:
        import lithops  # ImportError -> get_backend's ConfigError naming crucial[lithops]
        from lithops.config import default_config
        from lithops.config import load_config as lithops_config

        if max_workers is not None and max_workers < 1:
            raise ConfigError(f"max_workers must be at least 1, not {max_workers}")
        raw: dict[str, Any] = copy.deepcopy(config) if config else lithops_config(log=False)
        settings = raw.setdefault("lithops", {}) or {}
        raw["lithops"] = settings
        if backend is not None:
            settings["backend"] = backend
            settings.pop("mode", None)
        if storage is not None:
            settings["storage"] = storage
        try:
            resolved = default_config(config_data=copy.deepcopy(raw))
        except Exception as exc:
            raise ConfigError(f"the Lithops configuration is not valid: {exc}") from exc
        self.compute = str(resolved["lithops"]["backend"])
        section = raw.setdefault(self.compute, {}) or {}
        raw[self.compute] = section
        if runtime is not None:
            section["runtime"] = runtime
        if self.compute == "localhost":
            section.setdefault("runtime", sys.executable)
            section.setdefault("worker_processes", max_workers or LOCALHOST_WORKERS)
            cap = max_workers or int(section["worker_processes"])
            _check_interpreter(str(section["runtime"]))
        else:
            known = resolved.get(self.compute, {}).get("max_workers")
            cap = max_workers or (int(known) if known else 0)
        self._cap = cap or None
        self.config = raw
        _leave_inherited_session()
        try:
            self._fexec = lithops.FunctionExecutor(config=raw, log_level=log_level)
        except Exception as exc:
            raise ConfigError(f"Lithops could not start a FunctionExecutor for {self.compute!r}: {exc}") from exc
        self._call_kwargs: dict[str, Any] = {}
        if runtime_memory is not None:
            self._call_kwargs["runtime_memory"] = runtime_memory
        if extra_env:
            self._call_kwargs["extra_env"] = dict(extra_env)
        if include_modules is not None:
            self._call_kwargs["include_modules"] = list(include_modules)
        self.timeout_grace = timeout_grace
        self._lock = threading.Lock()  # FunctionExecutor is not thread-safe: one caller at a time
        self._pending: dict[Any, _Call] = {}
        self._finished: list[Any] = []
        self._last_clean = time.monotonic()
        self._wake = threading.Event()
        self._closed = False
        self._fetchers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="crucial-lithops-fetch")
        self._waiter = threading.Thread(target=self._run, name="crucial-lithops-backend", daemon=True)
        self._waiter.start()
        self.stats = {"invocations": 0, "failures": 0}
        _close_before_shutdown(self.close)

    @property
    def max_concurrency(self) -> int | None:
        return self._cap

    def invoke(self, task: bytes, timeout: float | None = None) -> Future[bytes]:
        fut: Future[bytes] = Future()
        fut.set_running_or_notify_cancel()
        lithops_timeout = None if timeout is None else max(1, math.ceil(timeout))
        with self._lock:
            if self._closed:
                raise RuntimeError("the lithops backend is closed")
            if self._cap is not None and len(self._pending) >= self._cap:
                raise CapacityError(
                    f"the lithops backend already runs {self._cap} invocations (its max_workers); "
                    "raise max_workers, or let fewer cloud threads run at once"
                )
            try:
                rf = self._fexec.call_async(run_lithops_task, (task,), timeout=lithops_timeout, **self._call_kwargs)
            except Exception as exc:
                fut.set_exception(InvocationError(f"Lithops could not invoke the function on {self.compute!r}: {exc}"))
                return fut
            limit = lithops_timeout if lithops_timeout is not None else getattr(rf, "execution_timeout", None)
            deadline = None if limit is None else time.monotonic() + float(limit) + self.timeout_grace
            self._pending[rf] = _Call(fut, deadline)
            self.stats["invocations"] += 1
        self._wake.set()
        return fut

    # -- the waiter thread ---------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(0.05)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                calls = [(rf, c) for rf, c in self._pending.items() if not c.fetching]
                waiting = [rf for rf, _ in calls if not _reported(rf)]
                if waiting:
                    self._revive_monitor(waiting)
                self._clean(force=False)
            now = time.monotonic()
            for rf, call in calls:
                if _reported(rf):
                    call.fetching = True
                    self._fetchers.submit(self._fetch, rf, call)
                elif call.deadline is not None and now > call.deadline:
                    self._settle(
                        rf,
                        call,
                        error=InvocationTimeoutError(
                            f"Lithops reported nothing about the function within its timeout and "
                            f"{self.timeout_grace:g} s of grace (backend {self.compute!r}); it may still be running"
                        ),
                    )

    def _revive_monitor(self, waiting: list[Any]) -> None:
        """Lithops' job monitor stops when its futures are done; a later call may need it again."""
        monitor = getattr(self._fexec, "job_monitor", None)
        if monitor is not None and not monitor.is_alive():
            try:
                monitor.start(fs=waiting)
            except Exception:
                pass

    def _fetch(self, rf: Any, call: _Call) -> None:
        try:
            value = rf.result(throw_except=False, internal_storage=self._fexec.internal_storage)
        except BaseException as exc:
            self._settle(rf, call, error=_platform_error(exc, self.compute))  # Lithops' own trouble
            return
        if rf.error:
            info = getattr(rf, "_exception", None)
            cause = info[1] if isinstance(info, tuple) and len(info) > 1 else RuntimeError("unknown failure")
            handler = bool(getattr(rf, "_handler_exception", False))  # Lithops' worker, not the function, failed
            self._settle(rf, call, error=_platform_error(cause, self.compute, handler=handler))
        elif isinstance(value, bytes):
            self._settle(rf, call, value=value)
        else:
            state = getattr(rf, "_state", "?")
            err = InvocationError(
                f"the Lithops function on {self.compute!r} gave no outcome (Lithops state {state}, got {type(value).__name__})"
            )
            self._settle(rf, call, error=err)

    def _settle(self, rf: Any, call: _Call, *, value: bytes | None = None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._pending.pop(rf, None) is None:
                return
            self._finished.append(rf)
            if error is not None:
                self.stats["failures"] += 1
        if error is not None:
            call.future.set_exception(error)
        else:
            assert value is not None
            call.future.set_result(value)

    def _clean(self, force: bool) -> None:
        """Delete the temporary data of finished calls, in batches (holding ``_lock``)."""
        if not self._finished or (not force and len(self._finished) < 100 and time.monotonic() - self._last_clean < 5.0):
            return
        done, self._finished = self._finished, []
        self._last_clean = time.monotonic()
        try:
            self._fexec.clean(fs=done, clean_cloudobjects=False, force=True)
        except Exception:
            pass  # leftovers are temporary data; Lithops cleans again at exit
        gone = {id(rf) for rf in done}
        self._fexec.futures[:] = [f for f in self._fexec.futures if id(f) not in gone]

    def close(self) -> None:
        """Stop waiting, fail the calls still pending, stop Lithops' workers; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = self._pending, {}
            self._finished.extend(pending)
        self._wake.set()
        for call in pending.values():
            if not call.future.done():
                call.future.set_exception(InvocationError("the lithops backend was closed while the function ran"))
        self._fetchers.shutdown(wait=False, cancel_futures=True)
        fexec = self._fexec
        for step in (fexec.job_monitor.stop, fexec.invoker.stop, fexec.compute_handler.clear):
            try:
                step()
            except Exception:
                pass
        with self._lock:
            self._clean(force=True)

    def __repr__(self) -> str:
        return f"<LithopsBackend {self.compute!r}, {len(self._pending)} running>"


def _close_before_shutdown(close: Callable[[], None]) -> None:
    """Run ``close`` when the interpreter starts to shut down, before thread pools refuse work.

    At exit, ``concurrent.futures`` stops every thread pool from taking new
    work (a hook of ``threading``'s shutdown) before ``atexit`` runs.  Lithops'
    job monitor, still polling for a call the program did not wait for (an
    ``sshell`` has its command's output and status before Lithops has the
    call's), then fails to submit its status reads and logs a traceback for
    each, several times.  Closing the backend in a hook of the same kind,
    registered later and so run earlier, stops the monitor first.
    ``atexit`` is the fallback where that hook does not exist.  The hook
    holds the backend weakly: a backend closed and dropped is not kept alive.
    """
    ref = weakref.WeakMethod(close)  # type: ignore[arg-type]

    def hook() -> None:
        method = ref()
        if method is not None:
            method()

    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(hook)
        return
    with contextlib.suppress(RuntimeError):  # the interpreter is already shutting down
        register(hook)


#: what Lithops exports so that processes spawned by a Lithops program join its session
_SESSION_VARS = ("__LITHOPS_SESSION_ID", "__LITHOPS_TOTAL_EXECUTORS")


def _leave_inherited_session() -> None:
    """Start a Lithops session of our own when the one in the environment was inherited.

    Lithops exports its session id and executor count so that a process it
    spawns joins the session, numbering its executors on from the count.  Two
    programs started by one Lithops program (two ``sshell``s run by a Python
    script, a test runner's subprocesses) then give their executors the same
    ids, hence the same storage keys, and read each other's results.  A
    process that has made no executor yet and is not a Lithops worker starts
    a session of its own instead (a fresh random id: no collision possible).
    """
    import lithops.utils

    if os.environ.get("LITHOPS_WORKER") or getattr(lithops.utils, "_SESSION_ID", None) is not None:
        return
    for name in _SESSION_VARS:
        os.environ.pop(name, None)


def _reported(rf: Any) -> bool:
    """Lithops has the call's status (Lithops' own monitor sets these states)."""
    return bool(rf.ready or rf.success or rf.done)


def _platform_error(exc: BaseException, compute: str, handler: bool = False) -> InvocationError:
    """Map a Lithops failure to crucial's: the task itself never raises, so any exception is the platform's."""
    text = f"{type(exc).__name__}: {exc}"
    where = f"the Lithops function on {compute!r}"
    if isinstance(exc, TimeoutError):
        return InvocationTimeoutError(f"{where} timed out ({text})")
    if handler and isinstance(exc, (MemoryError, RuntimeError)):
        return WorkerDiedError(f"{where} died ({text})")
    if isinstance(exc, ImportError):
        return InvocationError(f"{where} failed before running its task ({text}); is crucial installed in the runtime?")
    return InvocationError(f"{where} failed ({text})")


def _check_interpreter(runtime: str) -> None:
    """A localhost runtime that is an interpreter must exist, or Lithops' worker thread dies silently."""
    if os.sep in runtime or runtime.startswith("/"):
        if not (os.path.isfile(runtime) and os.access(runtime, os.X_OK)):
            raise ConfigError(f"the Lithops localhost runtime {runtime!r} is not an executable file")
    elif runtime.lower().startswith("python") and shutil.which(runtime) is None:
        raise ConfigError(f"the Lithops localhost runtime {runtime!r} is not on PATH")
