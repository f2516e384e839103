"""``import crucial.multiprocessing as multiprocessing``: ``multiprocessing`` on cloud functions and DSO objects.

::

    from crucial.multiprocessing import Pool, Process, Queue   # the line that changes

    def f(x):
        return x * x

    if __name__ == "__main__":
        with Pool(5) as p:
            print(p.map(f, [1, 2, 3]))

What ``multiprocessing`` runs in a child process runs as a cloud function
(:class:`Process`, :class:`~.pool.Pool`); what it shares through pipes,
shared memory or a manager's server lives on DSO nodes (``Queue``,
``JoinableQueue``, ``SimpleQueue``, ``Pipe``, ``Value``, ``Array``, the
locks, ``Event``, ``Condition``, ``Barrier``, ``Manager()``'s ``dict``,
``list``, ``Namespace`` and ``Queue``).  All of them pickle as references,
so a process given one -- as an argument or a global of its function --
shares it.  The ``if __name__ == "__main__":`` guard is not needed (workers
do not import the main script) but does no harm.  Differences:
``docs/porting.md``.
"""

from __future__ import annotations

import os
from multiprocessing import AuthenticationError, BufferTooShort, ProcessError, TimeoutError
from types import ModuleType
from typing import Any

from .connection import Pipe
from .managers import SyncManager
from .pool import Pool
from .process import Process, active_children, current_process, parent_process
from .queues import JoinableQueue, Queue, SimpleQueue
from .sharedctypes import Array, RawArray, RawValue, Value
from .synchronize import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "TimeoutError",
    "Value",
    "active_children",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_context",
    "get_start_method",
    "parent_process",
    "set_start_method",
]


def cpu_count() -> int:
    """This machine's cores, as ``multiprocessing.cpu_count()`` (programs size their pools with it)."""
    n = os.cpu_count()
    if n is None:
        raise NotImplementedError("cannot determine number of cpus")
    return n


def Manager() -> SyncManager:
    """A manager whose objects live on the DSO nodes (no server process to start)."""
    return SyncManager()


def freeze_support() -> None:
    """Nothing to do: no child process runs the main script."""


def set_start_method(method: str | None, force: bool = False) -> None:
    """Accepted and ignored: cloud functions are started by their backend."""


def get_start_method(allow_none: bool = False) -> str:
    return "crucial"


def get_context(method: str | None = None) -> ModuleType:
    """This module: it has the API of a ``multiprocessing`` context."""
    import sys

    return sys.modules[__name__]


def __getattr__(name: str) -> Any:
    raise AttributeError(
        f"module 'crucial.multiprocessing' has no attribute {name!r} (see docs/porting.md for what the drop-in modules cover)"
    )
