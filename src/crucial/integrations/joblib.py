"""A joblib backend whose tasks are cloud functions: ``backend="crucial"``.

::

    import crucial.integrations.joblib  # registers the backend
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    with joblib.parallel_config(backend="crucial"):
        RandomForestClassifier(n_estimators=200, n_jobs=-1).fit(X, y)

Each joblib batch (a picklable callable) is submitted to a
:class:`~crucial.compute.ServerlessExecutor` on the configured compute
backend (``compute=``, default: the process default, ``local``).  Options go
through ``parallel_config``: ``parallel_config(backend="crucial",
compute="inline", max_workers=8)``.

Inputs are pickled into each batch, as with ``loky`` (no passing by
reference yet).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import joblib
from joblib.parallel import ParallelBackendBase

from ..compute import Retry, ServerlessExecutor
from ..compute._backend import Backend, get_backend

try:  # adaptive batch sizes, as loky's (private in joblib, but stable since 0.10)
    from joblib._parallel_backends import AutoBatchingMixin as _Batching
except ImportError:  # pragma: no cover
    _Batching = object  # type: ignore[assignment,misc]

__all__ = ["CrucialBackend"]


class _Result:
    """A future with ``get(timeout)``, as joblib < 1.4's ``apply_async`` callers expect."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future

    def get(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)


class CrucialBackend(_Batching, ParallelBackendBase):  # type: ignore[misc,valid-type]
    """``CrucialBackend(compute=None, *, max_workers=None, retry=None, timeout=None)``: joblib on cloud threads."""

    supports_retrieve_callback = True
    default_n_jobs = 1

    def __init__(
        self,
        compute: str | Backend | None = None,
        *,
        max_workers: int | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **backend_kwargs)
        self.compute = compute
        self.max_workers = max_workers
        self.retry = retry
        self.timeout = timeout
        self._executor: ServerlessExecutor | None = None

    # -- sizing ------------------------------------------------------------------------

    def _cap(self) -> int:
        if self.max_workers is not None:
            return self.max_workers
        return get_backend(self.compute).max_concurrency or os.cpu_count() or 1

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return self.default_n_jobs
        if n_jobs < 0:
            return max(self._cap() + 1 + n_jobs, 1)
        return n_jobs

    # -- lifecycle -----------------------------------------------------------------------

    def configure(
        self, n_jobs: int | None = 1, parallel: Any = None, prefer: str | None = None, require: str | None = None, **kwargs: Any
    ) -> int:
        n = self.effective_n_jobs(n_jobs)
        self.parallel = parallel
        if self._executor is None:
            self._executor = ServerlessExecutor(self.compute, max_workers=n, retry=self.retry, timeout=self.timeout)
        return n

    def terminate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        reset = getattr(super(), "reset_batch_stats", None)
        if reset is not None:
            reset()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        n = self._executor._max if self._executor is not None else 1
        self.terminate()
        if ensure_ready:
            self.configure(n_jobs=n, parallel=getattr(self, "parallel", None))

    # -- tasks ---------------------------------------------------------------------------

    def submit(self, func: Callable[[], Any], callback: Callable[[Any], Any] | None = None) -> Future[Any]:
        if self._executor is None:
            self.configure(n_jobs=self._cap())
        assert self._executor is not None
        future = self._executor.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def apply_async(self, func: Callable[[], Any], callback: Callable[[Any], Any] | None = None) -> _Result:
        """joblib < 1.4 calls this; the callback gets the future, as from ``submit``."""
        return _Result(self.submit(func, callback))

    def retrieve_result_callback(self, out: Any) -> Any:
        future = out.future if isinstance(out, _Result) else out
        return future.result()

    def retrieve_result(self, out: Any, timeout: float | None = None) -> Any:
        future = out.future if isinstance(out, _Result) else out
        return future.result(timeout)


joblib.register_parallel_backend("crucial", CrucialBackend)
