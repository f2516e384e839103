"""The replies a node keeps so that a retried call is answered and not run twice, and when it forgets them.

A reply lives on its object (``cell.dedup``, so that it travels with the
object's state to backups and new owners); this window only decides when it
goes (docs/design.md, "How long a node keeps a reply"):

1. **the client says so**: every call carries ``below``, the client's lowest
   call still open; its replies below that are never asked for again;
2. **the client went quiet**: a client heard of neither by a call nor by a
   replicated record for ``age`` seconds (``age`` to ``2 * age``: one sweep
   every ``age``) cannot retry any more -- a retry comes within its
   ``failover_timeout``, which it announces in its handshake;
3. **the bounds**, oldest first: at most ``window`` replies and
   ``max_bytes`` bytes of them, whatever the clients say.

Pure bookkeeping, no I/O: the node calls :meth:`Replies.heard` for each
call and record and :meth:`Replies.remember` for each reply.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DEDUP_AGE", "DEDUP_BYTES", "Replies"]

log = logging.getLogger("crucial.node")

#: replies kept for replayed calls, at most this many bytes in all
DEDUP_BYTES = 32 * 1024 * 1024
#: seconds of silence after which a client's replies go (4x the default failover_timeout)
DEDUP_AGE = 120.0
#: the longest ``age`` a client's announced failover_timeout can stretch it to
MAX_AGE = 3600.0

Did = tuple[str, int]
Ref = tuple[str, str]


class _Client:
    """What the window knows of one client: its ``below``, its kept calls in the order kept, and
    whether it was heard of since the last sweep."""

    __slots__ = ("below", "calls", "heard")

    def __init__(self) -> None:
        self.below = 0
        self.calls: deque[int] = deque()  # sequence numbers
        self.heard = True


class Replies:
    """The window of kept replies: one order over all of them, and an index by client.

    ``cells`` returns the node's objects by reference (a reply is dropped from
    the object that holds it *now*: the object may have been replaced by a
    newer copy of its state since).
    """

    def __init__(
        self,
        cells: Callable[[], Mapping[Ref, Any]],
        window: int = 100_000,
        max_bytes: int = DEDUP_BYTES,
        age: float = DEDUP_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cells = cells
        self.window = window
        self.max_bytes = max_bytes
        self.age = age
        self._clock = clock
        self._order: OrderedDict[Did, tuple[Ref, int]] = OrderedDict()
        self._clients: dict[str, _Client] = {}
        self.nbytes = 0
        self._swept = clock()
        self._ticks = 0

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, did: Did) -> bool:
        return did in self._order

    @property
    def clients(self) -> int:
        return len(self._clients)

    def describe(self) -> dict[str, Any]:
        """What ``crucial info`` shows of the window."""
        return {"kept": len(self._order), "bytes": self.nbytes, "clients": len(self._clients), "age_s": self.age}

    def below(self, client_id: str) -> int:
        """The highest ``below`` heard from ``client_id`` (0 if none): what a replicated record carries."""
        client = self._clients.get(client_id)
        return client.below if client is not None else 0

    def retries_within(self, seconds: float) -> None:
        """A client announced its ``failover_timeout``: keep quiet clients' replies at least twice that long."""
        wanted = min(2 * seconds, MAX_AGE)
        if wanted > self.age:
            log.info("keeping quiet clients' replies %g s (was %g s): a client retries for %g s", wanted, self.age, seconds)
            self.age = wanted

    def heard(self, client_id: str, below: int) -> None:
        """A call, or a replicated record of one, from ``client_id``: every call of it below ``below`` is over.

        Every 16th call checks whether a sweep is due.
        """
        client = self._hear(client_id)
        if below > client.below:
            client.below = below
            calls = client.calls
            while calls and calls[0] < below:
                self._forget((client_id, calls.popleft()))
        self._ticks += 1
        if self._ticks & 15 == 0 and self._clock() - self._swept >= self.age:
            self.sweep()

    def remember(self, cell: Any, did: Did, kind: int, payload: bytes) -> None:
        """Keep the reply to call ``did`` on its object ``cell`` (unless the client has said that call is over).

        Comes after :meth:`heard` for the same call, which counted the tick.
        """
        client_id, seq = did
        client = self._hear(client_id)
        if seq < client.below:
            return  # its caller has it: nobody will ask again
        if cell.dedup is None:
            cell.dedup = {}
        cell.dedup[did] = (kind, payload)
        order = self._order
        size = len(payload)
        again = order.pop(did, None)  # remembered again (a resent record, a state installed): count it once
        if again is not None:
            self.nbytes -= again[1]
        else:
            client.calls.append(seq)
        order[did] = (cell.ref, size)
        self.nbytes += size
        if len(order) > self.window or self.nbytes > self.max_bytes:
            self._trim()

    def _trim(self) -> None:
        """The bounds: forget the oldest replies until the window is within both."""
        order = self._order
        while order and (len(order) > self.window or self.nbytes > self.max_bytes):
            old = next(iter(order))
            self._forget(old)
            owner = self._clients.get(old[0])
            if owner is not None:  # the oldest reply is its client's oldest kept: drop it there too
                calls = owner.calls
                while calls and (old[0], calls[0]) not in order:
                    calls.popleft()

    def _hear(self, client_id: str) -> _Client:
        """``client_id``'s record, made on its first call or record, and marked heard of for the next sweep."""
        client = self._clients.get(client_id)
        if client is None:
            client = self._clients[client_id] = _Client()
        else:
            client.heard = True
        return client

    def _forget(self, did: Did) -> None:
        entry = self._order.pop(did, None)
        if entry is None:
            return  # gone already (the bounds took it)
        self.nbytes -= entry[1]
        holder = self._cells().get(entry[0])
        if holder is not None and holder.dedup is not None:
            holder.dedup.pop(did, None)

    def sweep(self) -> None:
        """Forget every client not heard of since the last sweep, with its replies."""
        self._swept = self._clock()
        quiet = []
        for client_id, client in self._clients.items():
            if client.heard:
                client.heard = False
            else:
                quiet.append(client_id)
        for client_id in quiet:
            client = self._clients.pop(client_id)
            for seq in client.calls:
                self._forget((client_id, seq))
