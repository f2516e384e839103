"""A DSO node: an asyncio server that hosts objects and runs their methods.

::

    client ──frames──► _Connection.data_received ──► FrameDecoder
                                │
                 HELLO ─────────┤ (token checked before anything is unpickled)
                 CALL ──► dedup window ──► owner check ──► ObjectTable.submit
                                │                              │ (greenlet per call)
                 reply ◄────────┴──────── on_done ◄────────────┘

All object logic lives in :mod:`._runtime`; this module only moves bytes,
keeps per-connection state and turns failures into replies.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import hmac
import ipaddress
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .. import protocol as P
from ..client._ring import HashRing
from ..exceptions import (
    AuthenticationError,
    CallCancelledError,
    ConfigError,
    CrucialError,
    ObjectError,
    ProtocolError,
    RemoteError,
    SerializationError,
)
from ..objects import builtin_types
from ..objects._monitor import Caller
from ..objects._proxy import set_node_transport
from ._nested import NodeTransport
from ._runtime import Invocation, ObjectTable, blocked_report

__all__ = ["Node", "is_loopback"]

log = logging.getLogger("crucial.node")

#: replies kept for replayed calls, at most this many bytes in all (and
#: ``dedup_window`` entries): a retry comes within seconds, not hours.
DEDUP_BYTES = 32 * 1024 * 1024
#: seconds one call may hold the node's thread before the node logs which call it is
BLOCKED_WARNING = 5.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reachable(host: str) -> str:
    """The name others should use for a node bound to ``host``.

    A wildcard bind (0.0.0.0, ::) is not an address anyone can connect to:
    advertise this machine's name instead (``--advertise`` overrides it)."""
    if host in ("0.0.0.0", "::", ""):
        return socket.getfqdn()
    return host


class View:
    """The membership a node serves under: an epoch and the node addresses."""

    def __init__(self, epoch: int, nodes: list[str]) -> None:
        self.epoch = epoch
        self.nodes = nodes
        self.ring = HashRing(nodes)

    def as_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "nodes": self.nodes}


class Node:
    """One node. ``await start()`` binds; ``await serve_forever()`` runs it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        max_frame_size: int = P.DEFAULT_MAX_FRAME_SIZE,
        dedup_window: int = 100_000,
        advertise: str | None = None,
        blocked_warning: float | None = BLOCKED_WARNING,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ConfigError(
                f"refusing to listen on {host!r} without a token: nodes run pickled code, "
                "so off-loopback they must authenticate clients (pass --token or CRUCIAL_TOKEN)"
            )
        self.host = host
        self.advertise = advertise
        self.port = port
        self.token = token
        self.max_frame_size = max_frame_size
        self.node_id = uuid.uuid4().hex[:12]
        self.address = ""
        self.view: View | None = None
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.table: ObjectTable | None = None
        self._dedup: OrderedDict[tuple[str, int], tuple[int, bytes]] = OrderedDict()
        self._dedup_window = dedup_window
        self._dedup_bytes = 0
        self._inflight: dict[tuple[str, int], list[tuple[_Connection, int]]] = {}
        self._clients: dict[str, int] = {}  # client id -> open connections
        self.connections: set[_Connection] = set()
        self.stats = {"calls": 0, "errors": 0, "protocol_errors": 0, "connections": 0}
        self.blocked_warning = blocked_warning
        self._started = time.monotonic()
        self._watchdog_stop = threading.Event()

    async def start(self) -> str:
        loop = self._loop = asyncio.get_running_loop()
        types = builtin_types()
        self.table = ObjectTable(dict(types), loop.call_later, loop.call_soon, inline=frozenset(types))
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port)
        sock = self._server.sockets[0]
        host, port = sock.getsockname()[:2]
        self.port = port
        self.address = f"{self.advertise or _reachable(host)}:{port}"
        if self.view is None:
            self.view = View(1, [self.address])
        # proxies used inside methods on this node call through the node itself
        set_node_transport(NodeTransport(self))
        if self.blocked_warning:
            threading.Thread(target=self._watchdog, name="crucial-node-watchdog", daemon=True).start()
        return self.address

    def _watchdog(self) -> None:
        """Log, while it lasts, a call that holds the node's thread too long (once per call).

        A call is stuck when two looks at the table, ``blocked_warning``
        seconds apart, see it running and no step taken in between.
        """
        assert self.blocked_warning and self.table is not None
        table, seen, reported = self.table, None, False
        while not self._watchdog_stop.wait(min(1.0, self.blocked_warning / 2)):
            inv, steps = table.current, table.steps
            if inv is None or inv.cell is None:
                seen = None
                continue
            if seen is None or seen[0] is not inv or seen[1] != steps:
                seen, reported = (inv, steps, time.monotonic()), False
                continue
            message = (
                None if reported else blocked_report((seen[2], inv.cell.ref, inv.method), time.monotonic(), self.blocked_warning)
            )
            if message is not None:
                log.warning("%s", message)
                reported = True

    def set_view(self, epoch: int, nodes: list[str]) -> None:
        if self.address and self.address not in nodes:
            raise ConfigError(f"view {nodes} does not include this node {self.address}")
        self.view = View(epoch, sorted(nodes))

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        self._watchdog_stop.set()
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.transport.close()
            await self._server.wait_closed()
            self._server = None

    # -- dispatch (called by connections) ---------------------------------------

    def handle_call(self, conn: _Connection, req_id: int, body: bytes) -> None:
        self.stats["calls"] += 1
        call = P.decode_call(body)  # ProtocolError / SerializationError handled by caller
        did = (conn.client_id, call.seq)
        if call.seq:
            cached = self._dedup.get(did)
            if cached is not None:
                conn.send(cached[0], req_id, cached[1])
                return
            waiting = self._inflight.get(did)
            if waiting is not None:  # a retry of a call still running: answer both
                waiting.append((conn, req_id))
                return
        view = self.view
        assert view is not None and self.table is not None
        if len(view.nodes) > 1 and view.ring.owner(call.type_name, call.key) != self.address:
            conn.send(P.Kind.REDIRECT, req_id, P.encode_json({"view": view.as_json()}))
            return
        targets = [(conn, req_id)]
        if call.seq:
            self._inflight[did] = targets

        def on_done(ok: bool, value: Any, tb: str) -> None:
            kind, payload = _encode_result(ok, value, tb, call)
            if call.seq:
                self._inflight.pop(did, None)
                # a cancelled call was not applied: a retry must run it again
                if ok or not isinstance(value, CallCancelledError):
                    self._remember(did, kind, payload)
            for c, rid in targets:
                c.pending.pop(rid, None)
                c.send(kind, rid, payload)

        table = self.table
        try:
            if call.create is not None or call.force:
                args, kwargs = call.create if call.create is not None else ((), {})
                cell = table.create(call.type_name, call.key, args, kwargs, call.force)
            else:
                cell = table.lookup(call.type_name, call.key, call.method)
            if not call.method:  # create only
                on_done(True, None, "")
                return
            inv = Invocation(call.method, call.args, call.kwargs, Caller(conn.client_id, call.owner), on_done)
            conn.pending[req_id] = (inv, did)
            table.submit(cell, inv)
        except CrucialError as exc:
            conn.pending.pop(req_id, None)
            on_done(False, exc, "")

    def hand_over(self, conn: _Connection, inv: Invocation, did: tuple[str, int]) -> bool:
        """``conn`` closed while running ``inv``: if a retry of that call waits
        on another connection, that one takes it over and it is not cancelled."""
        targets = self._inflight.get(did)
        if not targets:
            return False
        targets[:] = [(c, rid) for c, rid in targets if c is not conn and not c.closed]
        if not targets:
            return False
        heir, rid = targets[0]
        heir.pending[rid] = (inv, did)
        return True

    def _remember(self, did: tuple[str, int], kind: int, payload: bytes) -> None:
        """Keep a reply for replays, within both the count and the byte budget."""
        dedup = self._dedup
        dedup[did] = (kind, payload)
        self._dedup_bytes += len(payload)
        while len(dedup) > self._dedup_window or self._dedup_bytes > DEDUP_BYTES:
            _, (_, old) = dedup.popitem(last=False)
            self._dedup_bytes -= len(old)

    def handle_register(self, conn: _Connection, req_id: int, body: bytes) -> None:
        type_name, cls = _pair(P.loads(body, what="shared class"), "REGISTER")
        if not isinstance(type_name, str) or not isinstance(cls, type):
            raise ProtocolError("malformed REGISTER: expected (name, class)")
        assert self.table is not None
        self.table.types[type_name] = cls
        conn.send(P.Kind.OK, req_id, P.dumps(True))

    def handle_delete(self, conn: _Connection, req_id: int, body: bytes) -> None:
        type_name, key = _pair(P.loads(body, what="delete"), "DELETE")
        assert self.table is not None
        conn.send(P.Kind.OK, req_id, P.dumps(self.table.delete(str(type_name), str(key))))

    def handle_info(self, conn: _Connection, req_id: int, body: bytes) -> None:
        options = P.loads(body, what="info")
        limit = options.get("objects", 0) if isinstance(options, dict) else None
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ProtocolError('malformed INFO: expected {"objects": N} with N >= 0')
        conn.send(P.Kind.OK, req_id, P.dumps(self.info(limit)))

    def info(self, objects: int = 0) -> dict[str, Any]:
        """What ``crucial info`` shows: who this node is, its counters, and its first ``objects`` objects."""
        assert self.table is not None and self.view is not None
        cells = self.table.cells
        listed = heapq.nsmallest(objects, cells) if objects else []
        return {
            "address": self.address,
            "node_id": self.node_id,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "epoch": self.view.epoch,
            "nodes": list(self.view.nodes),
            "connections": len(self.connections),
            "clients": len(self._clients),
            "stats": dict(self.stats),
            "objects": len(cells),
            "types": dict(collections.Counter(type_name for type_name, _ in cells)),
            "listed": [
                {"type": t, "key": k, "queued": len(cells[(t, k)].queue), "waiting": len(cells[(t, k)].waiters)}
                for t, k in listed
            ],
        }

    def welcome(self) -> bytes:
        assert self.view is not None
        return P.encode_json(
            {"version": P.PROTOCOL_VERSION, "node_id": self.node_id, "address": self.address, "view": self.view.as_json()}
        )

    def client_opened(self, client_id: str) -> None:
        self._clients[client_id] = self._clients.get(client_id, 0) + 1

    def client_closed(self, client_id: str) -> None:
        n = self._clients.get(client_id, 0) - 1
        if n > 0:
            self._clients[client_id] = n
            return
        self._clients.pop(client_id, None)
        if self.table is not None:
            self.table.client_gone(client_id)


def _pair(value: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise ProtocolError(f"malformed {what}: expected a pair")
    return value[0], value[1]


def _encode_result(ok: bool, value: Any, tb: str, call: P.CallRequest) -> tuple[int, bytes]:
    if ok:
        try:
            return P.Kind.OK, P.dumps(value)
        except SerializationError as exc:
            what = f"result of {call.type_name}.{call.method} (key {call.key!r})"
            value, tb = SerializationError(f"{what} cannot be pickled: {exc.__cause__}"), ""
    try:
        return P.Kind.ERROR, P.dumps((value, tb))
    except SerializationError:
        return P.Kind.ERROR, P.dumps((RemoteError(type(value).__name__, str(value)), tb))


class _Connection(asyncio.Protocol):
    """One client connection: handshake, then requests until it closes."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.decoder = P.FrameDecoder(node.max_frame_size, P.Kind.REQUESTS)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client_id = ""
        self.authenticated = False
        # request id -> (running call, its dedup id): cancelled if we vanish
        self.pending: dict[int, tuple[Invocation, tuple[str, int]]] = {}
        self.closed = False
        # replies to the frames of the read being handled, written together when it is done: a client
        # that sends many calls at once (threads sharing a connection) gets them in one write
        self.batch: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.node.connections.add(self)
        self.node.stats["connections"] += 1

    def send(self, kind: int, req_id: int, body: bytes) -> None:
        if self.closed:
            return
        if self.batch is not None:  # answering frames of this very read: one write at its end
            self.batch.append(P.encode_frame(kind, req_id, body))
        else:
            self.transport.write(P.encode_frame(kind, req_id, body))

    def flush(self) -> None:
        """Write the replies gathered while handling one read, in one go."""
        batch, self.batch = self.batch, None
        if batch and not self.closed:
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def fail(self, code: str, message: str, req_id: int = 0) -> None:
        """Tell the peer what was wrong, then drop this connection only."""
        self.node.stats["protocol_errors"] += 1
        log.info("closing connection from %s: %s", self.client_id or "?", message)
        self.send(P.Kind.FAIL, req_id, P.encode_json({"code": code, "message": message}))
        self.flush()
        self.transport.close()
        self.closed = True

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self.fail("frame", str(exc))
            return
        if len(frames) > 1:
            self.batch = []
            try:
                self._handle(frames)
            finally:
                self.flush()
        else:
            self._handle(frames)

    def _handle(self, frames: list[P.Frame]) -> None:
        node = self.node
        for frame in frames:
            if self.closed:
                return
            kind = frame.kind
            try:
                if not self.authenticated:
                    self._hello(frame)
                elif kind == P.Kind.CALL:
                    node.handle_call(self, frame.req_id, frame.body)
                elif kind == P.Kind.REGISTER:
                    node.handle_register(self, frame.req_id, frame.body)
                elif kind == P.Kind.DELETE:
                    node.handle_delete(self, frame.req_id, frame.body)
                elif kind == P.Kind.VIEW:
                    self.send(P.Kind.WELCOME, frame.req_id, node.welcome())
                elif kind == P.Kind.PING:
                    self.send(P.Kind.OK, frame.req_id, P.dumps(None))
                elif kind == P.Kind.INFO:
                    node.handle_info(self, frame.req_id, frame.body)
                else:
                    self.fail("kind", f"unexpected frame kind {kind} after handshake", frame.req_id)
            except AuthenticationError as exc:
                self.fail("auth", str(exc), frame.req_id)
            except (ProtocolError, SerializationError, ObjectError) as exc:
                # a body that does not decode: answer this request, keep the connection
                if isinstance(exc, ProtocolError) and not self.authenticated:
                    self.fail("handshake", str(exc), frame.req_id)
                else:
                    node.stats["errors"] += 1
                    self.send(P.Kind.ERROR, frame.req_id, P.dumps((exc, "")))
            except Exception as exc:  # a bug of ours must cost one request, not the connection
                log.exception("error handling frame kind %d", kind)
                node.stats["errors"] += 1
                self.send(P.Kind.ERROR, frame.req_id, P.dumps((RemoteError(type(exc).__name__, str(exc)), "")))

    def _hello(self, frame: P.Frame) -> None:
        if frame.kind != P.Kind.HELLO:
            raise ProtocolError(f"expected HELLO, got frame kind {frame.kind}")
        hello = P.decode_json(frame.body, "HELLO")
        if hello.get("version") != P.PROTOCOL_VERSION:
            raise ProtocolError(f"protocol version {hello.get('version')!r} not supported (node speaks {P.PROTOCOL_VERSION})")
        token = self.node.token
        if token is not None:
            given = hello.get("token")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
                raise AuthenticationError("wrong or missing token")
        client_id = hello.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise ProtocolError("HELLO lacks a client_id")
        self.client_id = client_id
        self.authenticated = True
        self.node.client_opened(client_id)
        self.send(P.Kind.WELCOME, frame.req_id, self.node.welcome())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        node = self.node
        node.connections.discard(self)
        if node.table is not None:
            for inv, did in list(self.pending.values()):
                if not node.hand_over(self, inv, did):
                    node.table.cancel(inv)
        self.pending.clear()
        if self.authenticated:
            node.client_closed(self.client_id)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (it roughly halves per-call overhead)."""
    if os.environ.get("CRUCIAL_NO_UVLOOP"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
