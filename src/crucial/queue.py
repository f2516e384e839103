"""``import crucial.queue as queue``: the ``queue`` module, on DSO objects.

``Queue``, ``LifoQueue``, ``PriorityQueue`` and ``SimpleQueue`` with the
stdlib's signatures, shared by every cloud thread (or process) given one:
``get``/``put`` wait on the node, ``task_done``/``join`` count across all of
them, and ``Empty``/``Full`` *are* the stdlib's exceptions, so ``except
queue.Empty`` catches them whichever module raised.  Made on a DSO node (in
a ``@crucial.shared`` class's ``__init__``) a queue is a node-local one
whose waits are monitors.  Differences: ``docs/porting.md``.
"""

from __future__ import annotations

import queue as _queue
from queue import Empty, Full
from typing import Any

from .objects import _threadlike
from .objects._dropin import LifoQueue as _LifoQueue
from .objects._dropin import OnNode
from .objects._dropin import PriorityQueue as _PriorityQueue
from .objects._proxy import Proxy
from .objects.containers import Queue as _Queue
from .objects.containers import QueueState

__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]


def _adopted(kind: type) -> Any:
    def make(maxsize: int = 0) -> Any:
        return _threadlike.adopt(kind(maxsize))  # its lock and conditions become the node's monitors

    return make


class Queue(_Queue, metaclass=OnNode):
    """``queue.Queue(maxsize=0)`` shared by cloud threads: FIFO."""

    _on_node = staticmethod(_adopted(_queue.Queue))

    def join(self) -> None:  # type: ignore[override]
        """Wait until every item put has been marked ``task_done()`` (on the node); ``queue.Queue.join``'s signature."""
        self._call("join", None)


class LifoQueue(_LifoQueue, metaclass=OnNode):
    """``queue.LifoQueue(maxsize=0)`` shared by cloud threads: the last item put comes out first."""

    _on_node = staticmethod(_adopted(_queue.LifoQueue))
    join = Queue.join  # type: ignore[assignment]


class PriorityQueue(_PriorityQueue, metaclass=OnNode):
    """``queue.PriorityQueue(maxsize=0)`` shared by cloud threads: the smallest item first (items compare on the node)."""

    _on_node = staticmethod(_adopted(_queue.PriorityQueue))
    join = Queue.join  # type: ignore[assignment]


class SimpleQueue(Proxy, metaclass=OnNode):
    """``queue.SimpleQueue()`` shared by cloud threads: unbounded FIFO, no ``task_done``."""

    _impl = QueueState
    _type_name = "Queue"  # the node's unbounded queue; keys of drop-in objects are their own
    _on_node = staticmethod(_threadlike.NodeSimpleQueue)

    def __init__(self, *, key: str | None = None, force_new: bool = False) -> None:
        super().__init__(0, key=key, force_new=force_new)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._call("put", item)  # never blocks: ``block`` and ``timeout`` are ignored, as in the stdlib

    def put_nowait(self, item: Any) -> None:
        self._call("put", item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._call("get", block, timeout)

    def get_nowait(self) -> Any:
        return self._call("get", False, None)

    def empty(self) -> bool:
        return self._call("empty")

    def qsize(self) -> int:
        return self._call("qsize")
