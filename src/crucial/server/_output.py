"""What code running on a node prints goes back to the caller of the call that printed it.

::

    method on the node ── print() ──► sys.stdout (a _Router) ──► table.current.output (CallOutput)
                                                                      │ flushed once the step ends,
                                                                      ▼ and before the reply
    caller ◄── OUTPUT frames (stream, text) for its request id ── conn.send ── ... then OK/ERROR

A node runs every call on its one event-loop thread, interleaving them as
greenlets, so "the call running now" is the table's ``current`` invocation:
the router asks it at each write.  A nested call on the same node shares its
parent's :class:`CallOutput`; one on another node forwards what it receives
into it (:mod:`._nested`).  Output written outside a call (a constructor run
when a call creates its object, a thread of the node) goes to the node's own
stdout/stderr.

Nothing can grow without bound: a call holds at most :data:`MAX_PENDING`
characters not yet sent (the rest is dropped and counted, and the caller is
told how much), and what was written in one step is sent as soon as the
event loop runs again -- a long wait does not hold back what was printed
before it.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import protocol as P

__all__ = ["MAX_PENDING", "CallOutput", "detach_stdout", "install"]

#: characters of output one call may hold unsent; more is dropped (and counted)
MAX_PENDING = 1 << 20


class _Target(Protocol):
    def send(self, kind: int, req_id: int, body: bytes) -> None: ...


class CallOutput:
    """What one call printed, on its way to whoever waits for the call's reply.

    ``targets`` is the call's list of ``(connection, request id)``, shared
    with the node: a retry that takes the call over is in it.
    """

    __slots__ = ("_dropped", "_parts", "_pending", "_scheduled", "targets")

    def __init__(self, targets: Sequence[tuple[_Target, int]]) -> None:
        self.targets = targets
        self._parts: list[tuple[int, list[str]]] = []  # (stream, its pieces): consecutive writes to one stream together
        self._pending = 0
        self._dropped = 0
        self._scheduled = False

    def write(self, stream: int, text: str) -> None:
        if not text:
            return
        room = 0 if self._dropped else MAX_PENDING - self._pending  # once dropping, until the next flush
        if len(text) > room:
            self._dropped += len(text) - room
            text = text[:room]
            if not text:
                return
        if self._parts and self._parts[-1][0] == stream:
            self._parts[-1][1].append(text)
            self._pending += len(text)
        else:
            self._parts.append((stream, [text]))
            self._pending += len(text)
        if not self._scheduled and _call_soon is not None:
            self._scheduled = True
            _call_soon(self.flush)  # once this step yields to the loop

    def flush(self) -> None:
        """Send what is pending (before the reply, and after each step that wrote)."""
        self._scheduled = False
        if self._dropped:
            note = f"\n[crucial: {self._dropped} characters of output were dropped: at most {MAX_PENDING} wait to be sent]\n"
            self._parts.append((P.STDERR, [note]))
            self._dropped = 0
        if not self._parts:
            return
        parts, self._parts, self._pending = self._parts, [], 0
        for stream, pieces in parts:
            body = P.encode_output(stream, "".join(pieces))
            for conn, req_id in self.targets:
                conn.send(P.Kind.OUTPUT, req_id, body)


class _Router(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a node: a write goes to the running call's output, else to ``fallback``."""

    def __init__(self, stream: int, fallback: Any, table: Any, loop_thread: int) -> None:
        super().__init__()
        self._stream = stream
        self._fallback = fallback
        self._table = table
        self._loop_thread = loop_thread

    def write(self, s: str) -> int:
        inv = self._table.current if threading.get_ident() == self._loop_thread else None
        out = getattr(inv, "output", None)
        if out is not None:
            out.write(self._stream, s)
        else:
            try:
                self._fallback.write(s)
            except (OSError, ValueError):  # nobody reads it any more: never fail a call over it
                pass
        return len(s)

    def flush(self) -> None:
        try:
            self._fallback.flush()
        except (OSError, ValueError):
            pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._fallback, "encoding", "utf-8"))

    def fileno(self) -> int:
        return int(self._fallback.fileno())

    @property
    def buffer(self) -> Any:
        """The node's own binary stream: bytes written there are not a call's output."""
        return self._fallback.buffer


_call_soon: Callable[[Callable[[], None]], Any] | None = None


def install(table: Any, call_soon: Callable[[Callable[[], None]], Any]) -> None:
    """Route this process's ``sys.stdout``/``sys.stderr`` to the calls of ``table`` (a node process, once).

    ``call_soon`` is the event loop's: what a step wrote is sent when the
    loop runs again.  Must be called on the loop's thread.
    """
    global _call_soon
    _call_soon = call_soon
    me = threading.get_ident()
    sys.stdout = _Router(P.STDOUT, sys.__stdout__ if sys.stdout is None else sys.stdout, table, me)
    sys.stderr = _Router(P.STDERR, sys.__stderr__ if sys.stderr is None else sys.stderr, table, me)


def detach_stdout() -> None:
    """After announcing its address on a pipe, stop writing to that pipe: point stdout at stderr.

    A parent that starts a node (the embedded node, ``LocalCluster``, a
    supervisor, the serverless shell's per-user node) reads the address line
    and no more: a node that went on writing there would block once the
    pipe's buffer filled (or fail once the parent closed it).  Its stderr is
    the parent's own (a log file for the shell's node), read by someone.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(1).st_mode):
            return
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()
        os.dup2(2, 1)
    except OSError:
        pass
