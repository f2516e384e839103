"""One BLAS thread per worker thread, for the NumPy examples (k-means, logistic regression).

Pure standard library plus threadpoolctl when it is there (scikit-learn
brings it), so the single-machine originals use it unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["one_blas_thread"]

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit: Any = None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread while an example's thread computes: each thread is one core's worth of work.

    OpenBLAS otherwise starts a thread per core in every thread (or worker
    process) that multiplies matrices; with two such threads on two cores
    the spinning BLAS threads oversubscribe the cores and a product of a
    few thousand rows runs tens of times slower.  scikit-learn limits BLAS
    the same way inside its own parallel loops.  The limit is per process,
    so it is counted: the first thread in sets it, the last one out restores
    it.  Without threadpoolctl (a dependency of scikit-learn) nothing is
    changed: set ``OPENBLAS_NUM_THREADS=1`` in the environment instead.
    """
    global _blas_users, _blas_limit
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with _blas_lock:
        if _blas_users == 0:
            _blas_limit = threadpool_limits(1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None
