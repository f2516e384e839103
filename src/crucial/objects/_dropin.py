"""The shared types behind the drop-in modules that the library's own types do not cover.

``crucial.queue``'s ``LifoQueue`` and ``PriorityQueue`` (``queue.Queue``
with another order), the condition variable that lets
``crucial.threading.Condition(lock)`` wait on a lock it does not own, and
the two ends of a ``crucial.multiprocessing.Pipe``.  Node-side states are
plain Python, as everywhere: their waits are
:func:`~crucial.objects._monitor.wait_until`.
"""

from __future__ import annotations

import heapq
import inspect
from collections import deque
from typing import Any

from ._monitor import current_caller, wait_until, waits
from ._proxy import Proxy
from .containers import Queue, QueueState

__all__ = ["ConditionVar", "LifoQueue", "OnNode", "PipeEnds", "PriorityQueue"]


# --------------------------------------------------------------------------- queues in other orders


class LifoQueueState(QueueState):
    """``queue.LifoQueue``: the last item put is the first got."""

    def _get(self) -> Any:
        return self.items.pop()


class PriorityQueueState(QueueState):
    """``queue.PriorityQueue``: the smallest item first (a heap, as the stdlib's)."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.items: list[Any] = []  # type: ignore[assignment]

    def _put(self, item: Any) -> None:
        heapq.heappush(self.items, item)

    def _get(self) -> Any:
        return heapq.heappop(self.items)


class LifoQueue(Queue):
    """``queue.LifoQueue`` shared by processes (the methods of :class:`~crucial.Queue`)."""

    _impl = LifoQueueState


class PriorityQueue(Queue):
    """``queue.PriorityQueue`` shared by processes: items must compare on the node, as in the stdlib."""

    _impl = PriorityQueueState


# --------------------------------------------------------------------------- a condition over another object's lock


class ConditionVarState:
    """The waiting half of a condition whose lock is another shared object.

    A waiter takes a ticket *while it holds the lock*, releases the lock,
    then waits for its ticket: a ``notify`` (made holding the lock) after the
    release finds the ticket, so no wake-up is lost -- ``threading.Condition``
    does the same with a lock per waiter.
    """

    def __init__(self) -> None:
        self.tickets: dict[int, list[Any]] = {}  # ticket -> [notified, client id], oldest first
        self.next = 0

    def enqueue(self) -> int:
        self.next += 1
        self.tickets[self.next] = [False, current_caller().client_id]
        return self.next

    @waits
    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        entry = self.tickets.get(ticket)
        if entry is None:
            raise ValueError(f"unknown ticket {ticket}")
        try:
            return wait_until(lambda: bool(entry[0]), timeout)
        finally:
            self.tickets.pop(ticket, None)

    def notify(self, n: int = 1) -> int:
        """Wake up to ``n`` waiters, oldest first; returns how many."""
        woken = 0
        for entry in self.tickets.values():
            if woken >= n:
                break
            if not entry[0]:
                entry[0] = True
                woken += 1
        return woken

    def notify_all(self) -> int:
        return self.notify(len(self.tickets))

    def waiting(self) -> int:
        return sum(1 for entry in self.tickets.values() if not entry[0])

    def _crucial_client_gone(self, client_id: str) -> None:
        for ticket in [t for t, entry in self.tickets.items() if entry[1] == client_id]:
            del self.tickets[ticket]  # a vanished waiter must not swallow a notify


class ConditionVar(Proxy):
    """Proxy of :class:`ConditionVarState` (``crucial.threading.Condition(lock)`` is made of one)."""

    _impl = ConditionVarState

    def __init__(self, *, key: str | None = None, force_new: bool = False) -> None:
        super().__init__(key=key, force_new=force_new)

    def enqueue(self) -> int:
        return self._call("enqueue")

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        return self._call("wait", ticket, timeout)

    def notify(self, n: int = 1) -> int:
        return self._call("notify", n)

    def notify_all(self) -> int:
        return self._call("notify_all")

    def waiting(self) -> int:
        return self._call("waiting")


# --------------------------------------------------------------------------- the two ends of a pipe


class PipeState:
    """Two ends, 0 and 1; what one end sends the other receives, in order.  Closing an end is its EOF."""

    def __init__(self) -> None:
        self.buffers: tuple[deque[Any], deque[Any]] = (deque(), deque())  # messages waiting for end 0, end 1
        self.closed = [False, False]

    def _end(self, end: Any) -> int:
        if end not in (0, 1):
            raise ValueError(f"a pipe has ends 0 and 1, not {end!r}")
        if self.closed[end]:
            raise OSError("handle is closed")
        return int(end)

    def send(self, end: int, obj: Any) -> None:
        end = self._end(end)
        if self.closed[1 - end]:
            raise BrokenPipeError("the other end of the pipe is closed")
        self.buffers[1 - end].append(obj)

    @waits
    def recv(self, end: int, timeout: float | None = None) -> Any:
        end = self._end(end)
        mine, other = self.buffers[end], 1 - end
        if not wait_until(lambda: bool(mine) or self.closed[other], timeout):
            raise TimeoutError("nothing received")
        if mine:
            return mine.popleft()
        raise EOFError("the other end of the pipe was closed")

    @waits
    def poll(self, end: int, timeout: float | None = 0) -> bool:
        end = self._end(end)
        mine, other = self.buffers[end], 1 - end
        return wait_until(lambda: bool(mine) or self.closed[other], timeout)

    def close(self, end: int) -> None:
        if end in (0, 1):
            self.closed[end] = True
            self.buffers[end].clear()


class PipeEnds(Proxy):
    """Proxy of :class:`PipeState` (``crucial.multiprocessing.Pipe`` hands out its two ends)."""

    _impl = PipeState

    def __init__(self, *, key: str | None = None, force_new: bool = False) -> None:
        super().__init__(key=key, force_new=force_new)

    def send(self, end: int, obj: Any) -> None:
        self._call("send", end, obj)

    def recv(self, end: int, timeout: float | None = None) -> Any:
        return self._call("recv", end, timeout)

    def poll(self, end: int, timeout: float | None = 0) -> bool:
        return self._call("poll", end, timeout)

    def close(self, end: int) -> None:
        self._call("close", end)


# --------------------------------------------------------------------------- made on a node: a monitor


class OnNode(type):
    """Metaclass of the drop-in primitives: made on a DSO node, they are the node's monitors.

    A class written for threads makes its ``Lock`` or ``Condition`` in
    ``__init__``; made ``@crucial.shared`` with ``crucial.threading``
    imported, that ``__init__`` runs on a node, where a proxy would call
    another object while holding its own (and wait there, holding it).  The
    primitive is then the node twin that ``threading``'s would have become
    (:mod:`._threadlike`).  Unpickling a proxy never comes here
    (``cls.__new__``), so proxies passed to a node stay proxies.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        from . import _proxy

        if _proxy._node_transport is not None:
            return cls._on_node(*args, **kwargs)  # type: ignore[attr-defined]
        return super().__call__(*args, **kwargs)

    @property
    def __signature__(cls) -> inspect.Signature:
        """The constructor's signature (``inspect`` would otherwise show ``__call__``'s ``*args, **kwargs``)."""
        init = inspect.signature(cls.__init__)  # type: ignore[misc]
        return init.replace(parameters=list(init.parameters.values())[1:])
