"""``multiprocessing``'s queues on DSO nodes: ``Queue``, ``JoinableQueue``, ``SimpleQueue``.

They raise ``queue.Empty``/``queue.Full`` (the stdlib's, as
``multiprocessing``'s do).  There is no feeder thread and no pipe, so
``close()``, ``join_thread()`` and ``cancel_join_thread()`` have nothing to
do; an item put is on the node when ``put`` returns.
"""

from __future__ import annotations

from typing import Any

from .. import queue as _queue

__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]


class _NoFeeder:
    def close(self) -> None:
        """Nothing to close: items go to the node when ``put`` returns."""

    def join_thread(self) -> None:
        """No feeder thread to join."""

    def cancel_join_thread(self) -> None:
        """No feeder thread to abandon."""


class Queue(_NoFeeder, _queue.Queue):
    """``multiprocessing.Queue(maxsize=0)``."""


class JoinableQueue(_NoFeeder, _queue.Queue):
    """``multiprocessing.JoinableQueue(maxsize=0)``: with ``task_done()`` and ``join()``."""


class SimpleQueue(_queue.SimpleQueue):
    """``multiprocessing.SimpleQueue()``: ``get``, ``put``, ``empty``, ``close``."""

    def put(self, obj: Any) -> None:  # type: ignore[override]
        super().put(obj)

    def get(self) -> Any:  # type: ignore[override]
        return super().get()

    def close(self) -> None:
        """Nothing to close."""
