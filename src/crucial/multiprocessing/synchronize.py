"""``multiprocessing``'s locks, semaphores, events, conditions and barriers, on DSO nodes.

They are :mod:`crucial.threading`'s, with ``multiprocessing``'s argument
conventions: ``acquire(block=True, timeout=None)``, where ``timeout=None``
waits for ever and a timeout without blocking is ignored (``threading``
calls that an error).
"""

from __future__ import annotations

from typing import Any

from .. import threading as _threading

__all__ = ["Barrier", "BoundedSemaphore", "Condition", "Event", "Lock", "RLock", "Semaphore"]


def _lock_timeout(block: bool, timeout: float | None) -> float:
    """multiprocessing's (block, timeout=None) as threading's timeout for a lock (-1: for ever)."""
    if not block or timeout is None:
        return -1
    return max(float(timeout), 0.0)


class Lock(_threading.Lock):
    """``multiprocessing.Lock()``."""

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:  # type: ignore[override]
        return super().acquire(block, _lock_timeout(block, timeout))

    def __repr__(self) -> str:
        return f"<crucial.multiprocessing.Lock key={self.key!r}>"


class RLock(_threading.RLock):
    """``multiprocessing.RLock()``: the owner is the process and thread that acquired it."""

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:  # type: ignore[override]
        return super().acquire(block, _lock_timeout(block, timeout))


class Semaphore(_threading.Semaphore):
    """``multiprocessing.Semaphore(value=1)``, with ``get_value()``."""

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:  # type: ignore[override]
        return super().acquire(block, timeout if block else None)


class BoundedSemaphore(_threading.BoundedSemaphore):
    """``multiprocessing.BoundedSemaphore(value=1)``."""

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:  # type: ignore[override]
        return super().acquire(block, timeout if block else None)


Event = _threading.Event
Barrier = _threading.Barrier


def Condition(lock: Any = None) -> _threading.Condition:
    """``multiprocessing.Condition(lock=None)``: over its own reentrant lock, or over ``lock``."""
    return _threading.Condition(lock)
