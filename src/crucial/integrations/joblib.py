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

**Large inputs travel once, by reference.**  ``loky`` memory-maps the NumPy
arrays larger than ``max_nbytes`` (default ``"1M"``) instead of pickling
them into every batch; this backend does the same through the DSO: while a
batch is pickled, every NumPy array above ``max_nbytes`` (also the arrays
inside sparse matrices, estimators, lists ...) is uploaded once to an
:class:`~crucial.AtomicByteArray` named by its content hash and replaced
by a reference of a few hundred bytes.  A worker resolves the references
when it runs the batch and keeps the arrays (read-only, as loky's memmaps
are) in a per-process cache, so a warm worker fetches each array once.  The
uploaded objects are deleted when the backend terminates (joblib does that
at the end of each ``Parallel`` call).  ``parallel_config(max_nbytes=None)``
pickles everything into the batches, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import sys
import threading
import types
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import cloudpickle
import joblib
from joblib.parallel import ParallelBackendBase

from .. import protocol as P
from ..compute import Retry, ServerlessExecutor
from ..compute._backend import Backend, get_backend
from ..objects.atomics import AtomicByteArray

try:  # adaptive batch sizes, as loky's (private in joblib, but stable since 0.10)
    from joblib._parallel_backends import AutoBatchingMixin as _Batching
except ImportError:  # pragma: no cover
    _Batching = object  # type: ignore[assignment,misc]

__all__ = ["DEFAULT_MAX_NBYTES", "CrucialBackend", "worker_stats"]

#: joblib's default ``max_nbytes`` ("1M"): larger arrays go by reference
DEFAULT_MAX_NBYTES = 1024**2
#: bytes per DSO call when moving an array (well under the 64 MiB frame limit)
CHUNK = 16 * 1024**2
#: bytes of arrays a worker process keeps (least recently used ones go first)
WORKER_CACHE_BYTES = 2 * 1024**3
_KEY_PREFIX = "crucial.joblib"
_REF = "crucial.joblib.array"  # marks our persistent ids


class _Result:
    """A future with ``get(timeout)``, as joblib < 1.4's ``apply_async`` callers expect."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future

    def get(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)


# ============================================================================ caller side: uploads


class _Uploads:
    """The arrays one backend has put in the DSO: each uploaded once, all deleted by :meth:`clear`.

    Lookups go by object identity first (a forest ships the same ``X`` in
    every batch: hash it once per ``Parallel`` call), then by content hash
    (equal arrays share one upload).  The arrays seen are kept alive until
    :meth:`clear`, so an ``id`` is never reused meanwhile.
    """

    def __init__(self, max_nbytes: int | None) -> None:
        self.max_nbytes = max_nbytes
        self.prefix = f"{_KEY_PREFIX}/{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()  # joblib dispatches from its callback threads too
        self._by_id: dict[int, tuple[Any, tuple[Any, ...]]] = {}
        self._by_digest: dict[str, tuple[Any, ...]] = {}
        self.stats = {"uploads": 0, "uploaded_bytes": 0, "references": 0, "tasks": 0, "task_bytes_max": 0}
        self.history: list[str] = []  # every key uploaded, also after clear(): what to check is gone

    def active(self) -> bool:
        """Whether batches need looking into: a threshold is set and NumPy is in use (no array otherwise)."""
        return self.max_nbytes is not None and "numpy" in sys.modules

    def reference(self, array: Any) -> tuple[Any, ...]:
        """The small stand-in for ``array``, uploading it on first sight."""
        with self._lock:
            self.stats["references"] += 1
            seen = self._by_id.get(id(array))
            if seen is not None and seen[0] is array:
                return seen[1]
            header, raw = _split(array)
            digest = hashlib.blake2b(header, digest_size=16)
            digest.update(raw)
            ref = self._by_digest.get(digest.hexdigest())
            if ref is None:
                ref = self._upload(digest.hexdigest(), header, raw)
            self._by_id[id(array)] = (array, ref)
            return ref

    def _upload(self, digest: str, header: bytes, raw: memoryview) -> tuple[Any, ...]:
        key = f"{self.prefix}/{digest}"
        target = AtomicByteArray(raw.nbytes, key=key)  # created by the first write, with its full size
        for start in range(0, raw.nbytes, CHUNK):
            target.write(start, bytes(raw[start : start + CHUNK]))
        ref = (_REF, digest, key, raw.nbytes, header)
        self._by_digest[digest] = ref
        self.history.append(key)
        self.stats["uploads"] += 1
        self.stats["uploaded_bytes"] += raw.nbytes
        return ref

    def clear(self) -> None:
        """Delete every uploaded object (best effort: the DSO may be gone already)."""
        with self._lock:
            keys = [ref[2] for ref in self._by_digest.values()]
            self._by_id.clear()
            self._by_digest.clear()
        for key in keys:
            with contextlib.suppress(Exception):
                AtomicByteArray.attach(key).delete()


def _split(array: Any) -> tuple[bytes, memoryview]:
    """``array`` as a small pickle header and its raw buffer (protocol 5, no copy when contiguous)."""
    np = sys.modules["numpy"]
    if type(array) is not np.ndarray:
        array = array.view(np.ndarray)  # a memmap arrives as a plain (read-only) array, like loky's
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(array, protocol=5, buffer_callback=buffers.append)
    if len(buffers) != 1:  # pragma: no cover - numpy always hands out a contiguous array's buffer
        return header, memoryview(b"")
    return header, buffers[0].raw()


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with the large arrays swapped for references (``persistent_id``)."""

    def __init__(self, file: io.BytesIO, uploads: _Uploads) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        np = sys.modules["numpy"]
        self._uploads = uploads
        self._arrays = (np.ndarray, np.memmap)
        self._limit = uploads.max_nbytes if uploads.max_nbytes is not None else sys.maxsize

    def persistent_id(self, obj: Any) -> Any:
        """Called for every object pickled: keep it cheap for the ones that are not large arrays."""
        if type(obj) in self._arrays and obj.nbytes > self._limit and not obj.dtype.hasobject:
            return self._uploads.reference(obj)
        return None


class _ByReference:
    """A joblib batch that pickles as :class:`_Deferred`: its large arrays replaced by references.

    The task encoding (``crucial.compute._task``) pickles the whole task
    with cloudpickle; this object's ``__reduce__`` is the hook: it pickles
    the batch itself with :class:`_Pickler` and travels as those bytes.
    """

    def __init__(self, batch: Callable[[], Any], uploads: _Uploads) -> None:
        self.batch = batch
        self.uploads = uploads

    def __call__(self) -> Any:
        return self.batch()

    def __len__(self) -> int:
        return len(self.batch)  # type: ignore[arg-type]

    def __reduce__(self) -> tuple[Any, ...]:
        buf = io.BytesIO()
        with P.by_value(_code_of(self.batch)):
            _Pickler(buf, self.uploads).dump(self.batch)
        payload = buf.getvalue()
        with self.uploads._lock:
            self.uploads.stats["tasks"] += 1
            self.uploads.stats["task_bytes_max"] = max(self.uploads.stats["task_bytes_max"], len(payload))
        return (_Deferred, (payload,))


def _code_of(batch: Any) -> Iterator[Any]:
    """The functions and classes of a batch's calls whose code may have to travel by value."""
    for item in getattr(batch, "items", ()):
        if not (isinstance(item, tuple) and len(item) == 3):
            continue
        func, args, kwargs = item
        for obj in (func, type(func), getattr(func, "function", None), *args, *kwargs.values()):
            if isinstance(obj, (types.FunctionType, type)):
                yield obj


# ============================================================================ worker side: resolving references


class _Deferred:
    """The batch as it arrives in a worker: unpickled -- and its arrays fetched -- only when run.

    By then the task has pointed this process at the caller's DSO (the
    task's own unpickling happens before that).
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __call__(self) -> Any:
        batch = _Unpickler(io.BytesIO(self.payload)).load()
        return batch()


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == _REF:
            return _CACHE.get(pid[1], pid[2], pid[3], pid[4])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


class _WorkerCache:
    """The arrays this process has fetched, by content hash, least recently used dropped first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._arrays: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the inline backend runs batches in the caller's threads
        self.fetches: dict[str, int] = {}

    def get(self, digest: str, key: str, size: int, header: bytes) -> Any:
        with self._lock:
            hit = self._arrays.get(digest)
            if hit is not None:
                self._arrays.move_to_end(digest)
                return hit[0]
            array = pickle.loads(header, buffers=[_fetch(key, size)])
            self.fetches[digest] = self.fetches.get(digest, 0) + 1
            self._keep(digest, array, size)
            return array

    def _keep(self, digest: str, array: Any, size: int) -> None:
        if size > self.limit:
            return
        self._arrays[digest] = (array, size)
        self._bytes += size
        while self._bytes > self.limit:
            _, (_, dropped) = self._arrays.popitem(last=False)
            self._bytes -= dropped


def _fetch(key: str, size: int) -> memoryview:
    """The raw bytes of an uploaded array, read in chunks into one read-only buffer."""
    source = AtomicByteArray.attach(key)
    buf = bytearray(size)
    for start in range(0, size, CHUNK):
        stop = min(start + CHUNK, size)
        buf[start:stop] = source.read(start, stop)
    return memoryview(buf).toreadonly()  # arrays built on it are read-only, as loky's memmaps


_CACHE = _WorkerCache(WORKER_CACHE_BYTES)


def worker_stats() -> dict[str, Any]:
    """This process's cache: how often each array (by content hash) was fetched, and what is held."""
    with _CACHE._lock:
        return {"fetches": dict(_CACHE.fetches), "cached": len(_CACHE._arrays), "cached_bytes": _CACHE._bytes, "pid": os.getpid()}


# ============================================================================ the backend


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
        self.uploads = _Uploads(DEFAULT_MAX_NBYTES)

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
        """Called by each ``Parallel`` call; ``max_nbytes`` comes from ``parallel_config`` (joblib's default "1M")."""
        n = self.effective_n_jobs(n_jobs)
        self.parallel = parallel
        if "max_nbytes" in kwargs:
            self.uploads.max_nbytes = _nbytes(kwargs["max_nbytes"])
        if self._executor is None:
            self._executor = ServerlessExecutor(self.compute, max_workers=n, retry=self.retry, timeout=self.timeout)
        return n

    def terminate(self) -> None:
        """End of a ``Parallel`` call: stop the executor and delete the uploaded arrays."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.uploads.clear()
        reset = getattr(super(), "reset_batch_stats", None)
        if reset is not None:
            reset()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        n = self._executor._max if self._executor is not None else 1
        self.terminate()
        if ensure_ready:
            self.configure(n_jobs=n, parallel=getattr(self, "parallel", None), max_nbytes=self.uploads.max_nbytes)

    # -- tasks ---------------------------------------------------------------------------

    def submit(self, func: Callable[[], Any], callback: Callable[[Any], Any] | None = None) -> Future[Any]:
        if self._executor is None:
            self.configure(n_jobs=self._cap())
        assert self._executor is not None
        task = _ByReference(func, self.uploads) if self.uploads.active() else func
        future = self._executor.submit(task)
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


def _nbytes(value: int | str | None) -> int | None:
    """``max_nbytes`` as joblib spells it: bytes, a string such as ``"1M"``, or None (never by reference)."""
    if isinstance(value, str):
        from joblib.disk import memstr_to_bytes

        return int(memstr_to_bytes(value))
    return value


joblib.register_parallel_backend("crucial", CrucialBackend)
