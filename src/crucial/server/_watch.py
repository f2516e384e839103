"""Watching a cluster's keys in etcd: list, then follow every change, across breaks and compactions.

::

    watch(callback) ── list the prefix at revision R ── deliver every key (oldest first)
         │
         └─ thread: ┌─► history after `last` still there?  no ─► re-list, deliver the difference
                    │   POST /v3/watch {start_revision: last+1}  ── etcd says "created"
                    │   events ── callback(name, value | None, revision), last = revision
                    └── stream dropped, or idle `timeout` s (a hung etcd looks idle) ── reconnect

    cannot list or create a watch within `timeout`  ──►  Coordinator.on_unavailable(error)

etcd3gw's ``Watcher`` swallows errors, ignores compaction and never times
out, so the stream is read here, through etcd3gw's session and URLs.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import requests
from etcd3gw.client import Etcd3Client

from ..exceptions import CoordinatorError

if TYPE_CHECKING:
    from ._coord import Coordinator

__all__ = ["PrefixWatch", "WatchCallback", "b64", "prefix_end", "relist_events"]

log = logging.getLogger(__name__)

#: ``callback(name, value, revision)``: ``value`` is None when ``name`` was deleted
WatchCallback = Callable[[str, bytes | None, int], object]


def relist_events(
    known: dict[str, int], current: dict[str, tuple[bytes, int]], revision: int
) -> list[tuple[str, bytes | None, int]]:
    """What a watcher that last saw ``known`` (name -> mod_revision) must deliver to reach ``current``.

    Used after the history it needed was compacted away: changed and new
    keys at their mod_revision (oldest first), then the deleted ones at
    ``revision`` (the revision of the listing; their own is lost).
    """
    puts = [(name, value, rev) for name, (value, rev) in current.items() if known.get(name) != rev]
    puts.sort(key=lambda e: e[2])
    deletes: list[tuple[str, bytes | None, int]] = [(name, None, revision) for name in sorted(known) if name not in current]
    return [*puts, *deletes]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class PrefixWatch:
    """One watch thread: list, deliver, stream from the next revision, resume or re-list after a break."""

    def __init__(self, coord: Coordinator, callback: WatchCallback) -> None:
        self.coord = coord
        self.callback = callback
        self.known: dict[str, int] = {}  # name -> mod_revision last delivered
        self.last = 0  # every event up to this revision has been delivered
        self._stop = threading.Event()
        self._response: requests.Response | None = None
        self._pending = self._relist()
        self._thread = threading.Thread(target=self._run, name=f"crucial-etcd-watch-{coord.cluster}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float) -> None:
        """Stop the thread (a blocked read is woken by shutting its socket down); wait for it until ``deadline``."""
        self._stop.set()
        response = self._response
        if response is not None:
            _abort(response)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def _relist(self) -> list[tuple[str, bytes | None, int]]:
        prefix = self.coord.prefix
        current, revision = self.coord._range(prefix, prefix_end(prefix), "list the cluster's keys for the watch")
        events = relist_events(self.known, current, revision)
        self.last = revision  # the listing is the state at this revision
        return events

    def _deliver(self, name: str, value: bytes | None, revision: int) -> None:
        if value is None:
            self.known.pop(name, None)
        else:
            self.known[name] = revision
        self.coord._notify(self.callback, name, value, revision)

    def _run(self) -> None:
        for event in self._pending:
            self._deliver(*event)
        self._pending = []
        pause = 0.05
        while not self._stop.is_set():
            try:
                self._follow()
            except CoordinatorError as exc:
                if self._stop.is_set() or self.coord._closed:
                    return
                self.coord._outage("watch", exc)
                self._stop.wait(pause)
                pause = min(pause * 2, 1.0)
                continue
            pause = 0.05

    def _compacted(self) -> bool:
        """Whether etcd still has the history after ``last`` (a read at that revision fails once compacted)."""
        prefix = self.coord.prefix
        try:
            self.coord._range(prefix, prefix_end(prefix), "check the watch's history", revision=self.last, count_only=True)
        except CoordinatorError as exc:
            text = str(exc)
            if "compacted" in text or "future revision" in text:  # compacted, or etcd's data was replaced
                return True
            raise
        return False

    def _follow(self) -> None:
        """One watch stream: return when it ends or idles ``timeout`` s; raise CoordinatorError if none can start."""
        coord = self.coord
        if self._compacted():
            for event in self._relist():
                self._deliver(*event)
        ep = coord.endpoints[coord._current]
        client = Etcd3Client(ep.host, ep.port, ep.protocol, api_path="/v3/", session=coord._session)
        prefix = coord.prefix
        create: dict[str, Any] = {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "start_revision": self.last + 1}
        try:
            response = coord._session.post(
                client.get_url("/watch"),
                json={"create_request": create},
                stream=True,
                timeout=(coord._attempt_timeout, coord.timeout),
            )
        except requests.RequestException as exc:
            coord._current = (coord._current + 1) % len(coord.endpoints)
            raise CoordinatorError(f"cannot watch the cluster's keys: etcd at {ep.url}: {exc}") from exc
        self._response = response
        try:
            if self._stop.is_set():
                return
            if response.status_code != 200:
                raise CoordinatorError(f"cannot watch the cluster's keys: etcd at {ep.url} answered {response.status_code}")
            lines = _lines(response)
            try:
                first = next(lines, None)
            except (requests.RequestException, ValueError) as exc:
                raise CoordinatorError(
                    f"cannot watch the cluster's keys: etcd at {ep.url} did not confirm the watch: {exc}"
                ) from exc
            if first is None or not first.get("result", {}).get("created"):
                raise CoordinatorError(f"cannot watch the cluster's keys: etcd at {ep.url} answered {first!r}")
            coord._outage("watch", None)
            self._stream(lines, first)
        except (requests.RequestException, ValueError) as exc:  # a read timeout on an idle stream, a dropped one: reconnect
            log.debug("etcd watch stream on %s ended: %s", ep.url, exc)
        finally:
            self._response = None
            response.close()

    def _stream(self, lines: Iterator[dict[str, Any]], first: dict[str, Any]) -> None:
        prefix_len = len(self.coord.prefix)
        for message in _chain(first, lines):
            if self._stop.is_set():
                return
            result = message.get("result")
            if result is None:
                raise CoordinatorError(f"the watch on etcd failed: {message.get('error', message)!r}")
            if result.get("canceled"):
                if not result.get("compact_revision"):
                    raise CoordinatorError(f"etcd cancelled the watch: {result.get('cancel_reason', result)!r}")
                for event in self._relist():  # raced with a compaction after the check in _follow
                    self._deliver(*event)
                return
            for event in result.get("events", ()):
                kv = event["kv"]
                name = base64.b64decode(kv["key"])[prefix_len:].decode(errors="replace")
                revision = int(kv["mod_revision"])
                value = None if event.get("type") == "DELETE" else base64.b64decode(kv.get("value", ""))
                self._deliver(name, value, revision)
                self.last = max(self.last, revision)


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _lines(response: requests.Response) -> Iterator[dict[str, Any]]:
    """The gateway's stream: one JSON message per line, whatever the HTTP chunking."""
    buffer = b""
    for chunk in response.iter_content(chunk_size=None):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


def _abort(response: requests.Response) -> None:
    """Wake a thread blocked reading ``response`` (closing the socket from another thread would not)."""
    try:
        sock = response.raw.connection.sock  # type: ignore[union-attr]
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):
        pass
