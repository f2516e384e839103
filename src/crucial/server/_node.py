"""A DSO node: an asyncio server that hosts objects and runs their methods.

::

    client ──frames──► _Connection.data_received ──► FrameDecoder
                                │
                 HELLO ─────────┤ (token checked before anything is unpickled)
                 CALL ──► gate (view, lease) ──► dedup ──► ObjectTable.submit
                                │                              │ (greenlet per call)
                 reply ◄────────┴─── on_done ◄─────────────────┘
                                         │ persistent object:
                                         └──► Replicator: backups + data dir, reply when all acked
    peer ──REPLICATE/HANDOFF/DONE/READY──► Replicator / Handoff

All object logic lives in :mod:`._runtime`, replication in :mod:`._replica`
and view changes in :mod:`._handoff`; this module moves bytes, keeps
per-connection state, guards who may be served, and turns failures into
replies.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import ipaddress
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .. import protocol as P
from .._placement import ANCHOR, View
from .._tls import HANDSHAKE_TIMEOUT
from ..exceptions import (
    AuthenticationError,
    CallCancelledError,
    ConfigError,
    CrucialError,
    ObjectCreationError,
    ObjectError,
    ObjectLostError,
    ObjectNotFoundError,
    ProtocolError,
    RemoteError,
    SerializationError,
)
from ..objects import builtin_types
from ..objects._monitor import Caller, has_waiting_methods, is_readonly
from ..objects._proxy import set_node_transport
from ..objects._threadlike import monitors
from ._anchors import Anchors, AnchorState
from ._handoff import Crash, Handoff, may_gain
from ._nested import NodeTransport
from ._output import CallOutput
from ._replica import Replicator
from ._replies import DEDUP_AGE, Replies
from ._runtime import Cell, Invocation, ObjectTable, blocked_report
from ._security import NodeTLS, Tokens
from ._state import Options

__all__ = ["Node", "is_loopback"]

log = logging.getLogger("crucial.node")

#: seconds one call may hold the node's thread before the node logs which call it is
BLOCKED_WARNING = 5.0

#: how many removals by a crash a node remembers, to answer ObjectLostError for the objects lost with them
LOST_RECORDS = 8

Did = tuple[str, int]
Ref = tuple[str, str]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reachable(host: str) -> str:
    """The address others should use for a node bound to ``host``.

    A wildcard bind (0.0.0.0, ::) is not an address anyone can connect to,
    and this machine's name often resolves to 127.0.0.1 (``/etc/hosts``), which
    no remote function reaches: advertise the machine's primary address -- the
    one of the interface its default route leaves by -- else a non-loopback
    address its name resolves to, else loopback (nothing else exists).
    ``--advertise`` overrides all of this.
    """
    if host not in ("0.0.0.0", "::", ""):
        return host
    family, probe = (socket.AF_INET6, "2001:db8::1") if host == "::" else (socket.AF_INET, "192.0.2.1")
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))  # UDP: only picks the route, sends nothing (the probe is a documentation address)
            if not is_loopback(address := str(s.getsockname()[0])):
                return address
    except OSError:  # no route
        pass
    try:
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM):
            if not is_loopback(str(sockaddr[0])):
                return str(sockaddr[0])
    except OSError:
        pass
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def _has_port(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(sep) and port.isdigit() and bool(host) and not host.endswith(":")


def unreplicable_types(types: dict[str, type]) -> frozenset[str]:
    """Built-in types with a method that waits: synchronization objects, never replicated."""
    return frozenset(name for name, cls in types.items() if has_waiting_methods(cls))


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
        dedup_age: float = DEDUP_AGE,
        advertise: str | None = None,
        blocked_warning: float | None = BLOCKED_WARNING,
        node_id: str | None = None,
        store: Any = None,
        rf: int = 1,
        token_file: str | None = None,
        tls: NodeTLS | None = None,
        insecure_no_tls: bool = False,
    ) -> None:
        self.tokens = Tokens(token, token_file)
        if not is_loopback(host) and not self.tokens.required:
            raise ConfigError(
                f"refusing to listen on {host!r} without a token: nodes run pickled code, "
                "so off-loopback they must authenticate clients (pass --token or CRUCIAL_TOKEN)"
            )
        if not is_loopback(host) and tls is None and not insecure_no_tls:
            raise ConfigError(
                f"refusing to listen on {host!r} without TLS: the token and every call would cross the network "
                "in clear text (pass --tls-cert and --tls-key, or --insecure-no-tls on a network you trust; "
                "see docs/security.md)"
            )
        self.host = host
        self.advertise = advertise
        self.port = port
        self.token = token
        self.tls = tls
        self.metrics: Any = None  # a server._metrics.NodeMetrics (--metrics-port); None: no per-call work
        self.max_frame_size = max_frame_size
        self.store = store
        self.node_id = node_id or (store.node_id if store is not None else uuid.uuid4().hex[:12])
        self.rf = rf
        self.address = ""
        self.view: View | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self.table: ObjectTable | None = None
        self.builtin_names: frozenset[str] = frozenset()
        self._unreplicable: frozenset[str] = frozenset()
        self.class_bytes: dict[str, bytes] = {}  # user classes as registered (sent on to peers)
        # replies kept for retried calls: on their objects (cell.dedup); this decides when they go
        self.replies = Replies(self._cells, dedup_window, age=dedup_age)
        self._inflight: dict[Did, list[tuple[_Connection, int]]] = {}
        self._clients: dict[str, int] = {}  # client id -> open connections
        self.connections: set[_Connection] = set()
        self.stats = {"calls": 0, "errors": 0, "protocol_errors": 0, "connections": 0, "refused": 0}
        self.blocked_warning = blocked_warning
        self._started = time.monotonic()
        self._watchdog_stop = threading.Event()
        self.repl = Replicator(self)
        self.handoff = Handoff(self)
        self.anchors = Anchors(self)
        # membership: None for a lone node (its view never changes); else a server._membership.Membership
        self.membership: Any = None
        self.newest_epoch = 0  # the highest epoch heard of (a peer that is ahead deposes us)
        #: nodes removed without leaving -> their address and the views an object may have lived on them in
        #: (the views since the last complete hand-over when they went); only the LOST_RECORDS most recent
        #: removals are kept (by the epoch that removed them): they name the owner of a lost object (_lost_on)
        self.crashed: dict[str, Crash] = {}
        self._redirect = b""
        self.on_view: list[Callable[[View], None]] = []
        # set by whoever runs the node: start leaving the cluster, then call back with True when let go
        self.on_leave: Callable[[Callable[[bool], None]], None] | None = None

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> str:
        loop = self.loop = asyncio.get_running_loop()
        types = builtin_types()
        types[ANCHOR] = AnchorState  # directory entries of anchored placement: replicated like built-ins
        self.builtin_names = frozenset(types)
        self._unreplicable = unreplicable_types(types)
        self.table = ObjectTable(dict(types), loop.call_later, loop.call_soon, inline=frozenset(types))
        conn_class = _Connection if self.metrics is None else self.metrics.connection_class(_Connection)
        secure: dict[str, Any] = {}
        if self.tls is not None:
            secure = {"ssl": self.tls.server_context(), "ssl_handshake_timeout": HANDSHAKE_TIMEOUT}
        self._server = await loop.create_server(lambda: conn_class(self), self.host, self.port, **secure)
        sock = self._server.sockets[0]
        host, port = sock.getsockname()[:2]
        self.port = port
        advertised = self.advertise or _reachable(host)
        # --advertise HOST, or HOST:PORT when clients reach the node through another port (NAT, a Service)
        self.address = advertised if _has_port(advertised) else f"{advertised}:{port}"
        epoch = 1
        if self.store is not None:
            self._load_store()
            # a lone node's epochs must not go back across restarts: versions are (epoch, n)
            epoch = int(self.store.get_meta("epoch") or b"0") + 1
            self.store.set_meta("epoch", str(epoch).encode())
        if self.view is None:
            self.set_view(View.single(self.node_id, self.address, epoch=epoch, rf=self.rf))
        # proxies used inside methods on this node call through the node itself
        set_node_transport(NodeTransport(self))
        if self.blocked_warning:
            threading.Thread(target=self._watchdog, name="crucial-node-watchdog", daemon=True).start()
        return self.address

    def _load_store(self) -> None:
        """Rebuild the persistent objects of the data dir (their last state, then their calls)."""
        assert self.table is not None
        for type_name, body in self.store.types().items():
            try:
                _, cls = P.loads(body, what=f"shared class {type_name} in {self.store.path}")
            except CrucialError as exc:
                log.error("%s", exc)
                continue
            self.table.types[type_name] = cls
            self.class_bytes[type_name] = body
        loaded = 0
        for (type_name, key), records in self.store.load().items():
            for record in records:
                self.repl.apply(record)
            loaded += (type_name, key) in self.table.cells
        if loaded:
            log.info("loaded %d persistent objects from %s", loaded, self.store.path)

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

    @property
    def lease_valid_until(self) -> float:
        """Fencing: a node in a cluster serves nothing once it cannot prove its membership lease."""
        membership = self.membership
        return math.inf if membership is None else membership.lease_valid_until  # type: ignore[no-any-return]

    def set_view(self, view: View, member: bool = True) -> None:
        """Take ``view`` as the first view (no hand-over: nothing was served before)."""
        if member and self.node_id not in view:
            raise ConfigError(f"view {view.ids} does not include this node {self.node_id}")
        self.view = view
        self.newest_epoch = max(self.newest_epoch, view.epoch)
        self._redirect = P.encode_json({"view": view.as_json()})

    def install_view(self, view: View) -> None:
        """A newer agreed view: hand objects over, re-check every replica set (event-loop thread)."""
        prev = self.view
        assert prev is not None
        if view.epoch <= prev.epoch:
            return
        # the views an object of a node crashed now may have lived on it in: those since the last complete
        # hand-over (Handoff.since as start() is about to make it)
        handoff = self.handoff
        lived_in = (*(handoff.since if not handoff.complete else ()), prev)
        self.remember_crashed(
            [
                Crash(node_id, address, view.epoch, lived_in)
                for node_id, address in prev.members
                if node_id not in view and not self.membership_left(node_id)
            ]
        )
        self.repl.flush()  # records of this view's calls go out stamped with its epoch
        self.view = view
        self.newest_epoch = max(self.newest_epoch, view.epoch)
        self._redirect = P.encode_json({"view": view.as_json()})
        self.repl.drop_links(view.ids)
        if self.node_id in view:
            handoff.start(prev, view)
        else:
            handoff.forget_early(view.epoch)
        log.info("view %d: %d nodes %s (rf %d)", view.epoch, len(view.ids), ",".join(view.ids), view.rf)
        for fn in list(self.on_view):
            fn(view)

    def discard_data(self, why: str) -> None:
        """Forget every object (a node out of the view holds stale copies: serving them would lose writes)."""
        assert self.table is not None
        cells = list(self.table.cells.items())
        if cells:
            log.warning("dropping %d objects: %s", len(cells), why)
        for (type_name, key), cell in cells:
            if cell.repl is not None:
                self.repl.step_down(cell)
            self.table.delete(type_name, key)
        if self.store is not None:
            for type_name, key in self.store.load():
                self.store.delete(type_name, key)
        self.handoff.retired.clear()

    def membership_left(self, node_id: str) -> bool:
        return self.membership is not None and self.membership.left_gracefully(node_id)

    def handoff_complete(self, epoch: int) -> None:
        if self.membership is not None and not self.handoff.pinned:
            self.membership.settled(epoch)
        if not self.repl._sync:
            self.handoff.ready_notice()

    def object_ready(self, cell: Cell) -> None:
        if self.handoff.complete and not self.repl._sync:
            self.handoff.ready_notice()

    def deposed(self, epoch: int) -> None:
        """A peer is in a newer view: serve nothing until we have installed it."""
        if epoch > self.newest_epoch:
            log.warning("epoch %d exists (we hold %d): not serving until we catch up", epoch, self.view.epoch if self.view else 0)
            self.newest_epoch = epoch
            if self.membership is not None:
                self.membership.refresh()

    def behind(self, epoch: int) -> None:
        self.deposed(epoch)

    def lease_ok(self) -> bool:
        return time.monotonic() < self.lease_valid_until

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
        self.repl.close()

    # -- who may be served here ------------------------------------------------------

    def gate(self, ref: Ref, cell: Cell | None) -> tuple[int, bytes] | None:
        """None when this node serves ``ref`` now; else the reply that sends the caller elsewhere or back later."""
        view = self.view
        assert view is not None
        if time.monotonic() >= self.lease_valid_until:
            return P.Kind.UNAVAILABLE, _unavailable("this node cannot prove its membership (lease)", view.epoch)
        if self.newest_epoch > view.epoch:
            return P.Kind.UNAVAILABLE, _unavailable("this node is catching up with a newer view", view.epoch)
        if cell is not None and cell.placed == view.epoch:
            return None  # checked already in this view: no hashing on the hot path
        if view.primary(*ref) != self.node_id:
            if ref in self.handoff.pinned or ref in self.anchors.here:
                return None  # handed over but calls are parked on it here, or placed here (anchored)
            return P.Kind.REDIRECT, self._redirect
        if self.handoff.pinned_at:
            to = self.handoff.pinned_at.get(ref)
            if to is not None:
                return P.Kind.REDIRECT, P.encode_json({"to": to})
        if not self.handoff.complete:
            assert self.table is not None
            if cell is None and may_gain(self.node_id, self.handoff.since, ref):
                return P.Kind.UNAVAILABLE, _unavailable("objects are being handed over", view.epoch)
        if cell is not None and self.handoff.complete:
            cell.placed = view.epoch
        return None

    # -- dispatch (called by connections) ---------------------------------------

    def handle_call(self, conn: _Connection, req_id: int, body: bytes) -> None:
        self.stats["calls"] += 1
        call = P.decode_call(body)  # ProtocolError / SerializationError handled by caller
        if self.metrics is not None:
            self.metrics.call(conn, req_id, call)
        ref = (call.type_name, call.key)
        table = self.table
        assert table is not None
        cell = table.cells.get(ref)
        if self.membership is not None:
            refusal = self.gate(ref, cell)
            if refusal is not None:
                self.stats["refused"] += 1
                conn.send(refusal[0], req_id, refusal[1])
                return
        did = (conn.client_id, call.seq)
        if call.seq:
            self.replies.heard(conn.client_id, call.below)
            waiting = self._inflight.get(did)
            if waiting is not None:  # a retry of a call still running (or replicating): answer both
                waiting.append((conn, req_id))
                return
            if cell is not None and cell.dedup is not None:
                cached = cell.dedup.get(did)
                if cached is not None and (cell.repl is None or cell.repl.ready):
                    conn.send(cached[0], req_id, cached[1])
                    return
        if cell is None and self.view.placement == "anchored" and ref[0] != ANCHOR:  # type: ignore[union-attr]
            try:
                if self.anchors.route(conn, req_id, call):
                    return
            except CrucialError as exc:
                self.reply_now([(conn, req_id)], *self.error_reply(exc), None)
                return
        if cell is not None and cell.repl is not None and not cell.repl.ready:
            self.stats["refused"] += 1
            conn.send(P.Kind.UNAVAILABLE, req_id, _unavailable("its replicas are being synchronised", self.view.epoch))  # type: ignore[union-attr]
            return
        targets = [(conn, req_id)]
        out = CallOutput(targets)  # what the call prints, sent to targets before the reply
        existed = cell is not None
        try:
            if call.create is not None or call.force:
                cell = self._create(call, cell)
            else:
                cell = self._lookup(call, cell)
        except CrucialError as exc:
            self.reply_now(targets, *self.error_reply(exc), None)
            return
        persistent = cell.repl is not None
        # a read of a persistent object changes nothing: no record, no disk; it is answered after the
        # writes before it are acknowledged, so it never shows a write that one failure could lose
        reads = existed and not call.force and is_readonly(type(cell.obj), call.method)
        reading = persistent and reads
        # a read's retry may simply run again (it answers what holds then, still within the call's time):
        # only a call that changes something keeps its reply for retries
        seq = call.seq
        keep = seq and not reads
        if not persistent and call.method:
            # the fast path: a built-in method that never waits runs now, and is answered now (no retry of
            # it can come in between, so it needs no in-flight entry)
            try:
                done = table.run_now(cell, call.method, call.args, call.kwargs, Caller(conn.client_id, call.owner), out)
            except CrucialError as exc:
                self.reply_now(targets, *self.error_reply(exc), None)
                return
            if done is not None:
                kind, payload = _encode_result(*done, call)
                out.flush()
                if keep and (done[0] or not isinstance(done[1], CallCancelledError)):
                    self.replies.remember(cell, did, kind, payload)
                conn.send(kind, req_id, payload)
                table.ran(cell)
                return
        if seq:
            self._inflight[did] = targets

        def on_done(ok: bool, value: Any, tb: str) -> None:
            kind, payload = _encode_result(ok, value, tb, call)
            out.flush()  # what it printed goes first (a replicated call's reply comes later still)
            if seq and not ok and isinstance(value, CallCancelledError):
                # a cancelled call was not applied: a retry must run it again
                self.reply_now(targets, kind, payload, did)
                return
            if reading:
                self.repl.read_done(cell, kind, payload, targets, did if seq else None)
                return
            if keep:
                self.replies.remember(cell, did, kind, payload)
            if persistent:
                self.repl.commit(cell, body, did if seq else None, kind, payload, targets)
            else:
                self.reply_now(targets, kind, payload, did if seq else None)

        if not call.method:  # create only
            on_done(True, None, "")
            return
        inv = Invocation(call.method, call.args, call.kwargs, Caller(conn.client_id, call.owner), on_done)
        inv.output = out
        conn.pending[req_id] = (inv, did)
        try:
            table.submit(cell, inv)
        except CrucialError as exc:
            conn.pending.pop(req_id, None)
            self._inflight.pop(did, None)
            self.reply_now(targets, *self.error_reply(exc), None)

    def handle_read(self, conn: _Connection, req_id: int, body: bytes) -> None:
        """A read-only call that any replica may answer (``proxy.sequential()``): served from this
        node's copy without replication, or sent back to the primary (REDIRECT) when this node
        cannot answer it -- it holds no copy, is not serving, or the method may change something."""
        self.stats["calls"] += 1
        self.stats["reads"] = self.stats.get("reads", 0) + 1
        call = P.decode_call(body)
        if self.metrics is not None:  # counted and timed like any call; a REDIRECT counts as one
            self.metrics.call(conn, req_id, call)
        ref = (call.type_name, call.key)
        view = self.view
        assert view is not None and self.table is not None
        cell = self.table.cells.get(ref)
        if (
            cell is None
            or (cell.repl is None and view.ring.owner(*ref) != self.node_id)
            or cell.waiters
            or time.monotonic() >= self.lease_valid_until
            or self.newest_epoch > view.epoch
            or ref in self.handoff.pinned
            or not is_readonly(type(cell.obj), call.method)
        ):
            conn.send(P.Kind.REDIRECT, req_id, self._redirect)
            return
        try:
            value = getattr(cell.obj, call.method)(*call.args, **(call.kwargs or {}))
        except Exception as exc:  # the method's own error is its reply
            kind, payload = _encode_result(False, exc, "", call)
        else:
            kind, payload = _encode_result(True, value, "", call)
        conn.send(kind, req_id, payload)

    def _create(self, call: P.CallRequest, cell: Cell | None) -> Cell:
        table = self.table
        assert table is not None and self.view is not None
        args, kwargs = call.create[:2] if call.create is not None else ((), {})
        options = Options(*call.create[2]) if call.create is not None and len(call.create) > 2 else Options()
        if options.persistent:
            self._check_replicable(call.type_name, call.key, options)
        fresh = cell is None or call.force
        cell = table.create(call.type_name, call.key, args, kwargs, call.force)
        if fresh:
            if options.persistent:
                found = monitors(cell.obj)
                if found:
                    table.delete(call.type_name, call.key)
                    raise ConfigError(
                        f"{call.type_name} {call.key!r} cannot be persistent: it holds {', '.join(found)}, and "
                        "synchronization objects are not replicated (their waiters live on one node); keep it "
                        "ephemeral, or move the state that must survive into a persistent object of its own"
                    )
                self.repl.make_persistent(cell, options)
        elif options.persistent != (cell.repl is not None) and call.create is not None and len(call.create) > 2:
            held = "a persistent" if cell.repl is not None else "an ephemeral"
            raise ObjectCreationError(
                f"{call.type_name} {call.key!r} exists as {held} object; "
                f"attach to it with persistent={cell.repl is not None}, or delete it first",
                call.type_name,
                call.key,
            )
        return cell

    def _check_replicable(self, type_name: str, key: str, options: Options) -> None:
        assert self.view is not None
        if type_name in self._unreplicable:
            raise ConfigError(
                f"{type_name} {key!r} cannot be persistent: synchronization objects are not replicated "
                "(their waiters live on one node; the seed's footnote 3). Keep it ephemeral"
            )
        if options.rf is not None and options.rf > len(self.view.ids):
            raise ConfigError(f"{type_name} {key!r}: rf={options.rf} is larger than the cluster ({len(self.view.ids)} nodes)")

    def _lookup(self, call: P.CallRequest, cell: Cell | None) -> Cell:
        if cell is not None:
            return cell
        table = self.table
        assert table is not None
        try:
            return table.lookup(call.type_name, call.key, call.method)
        except ObjectNotFoundError as exc:
            lost = self._lost_on(call.type_name, call.key)
            if lost is not None:
                raise ObjectLostError(
                    f"{call.type_name} {call.key!r} was lost: it lived on node {lost}, which crashed "
                    "(ephemeral objects live on one node; create it with persistent=True to replicate it)",
                    call.type_name,
                    call.key,
                    lost,
                ) from exc
            raise

    def _lost_on(self, type_name: str, key: str) -> str | None:
        """The crashed node an absent object lived on, if one did: its primary in one of the views since the
        hand-over that completed last before that node was removed (a crashed node's successor may have
        joined before it was removed: the view just before the removal names the successor, the one before
        it the crashed node).  Kept per crash, not per node: a later view change -- the successor joining
        after the removal, say -- must not turn the loss into ObjectNotFoundError (found by the soak)."""
        for crash in sorted(self.crashed.values(), key=lambda c: -c.removed_in):
            if any(view.primary(type_name, key) == crash.node_id for view in reversed(crash.views)):
                return f"{crash.node_id} ({crash.address})"
        return None

    def remember_crashed(self, crashes: list[Crash]) -> None:
        """Record nodes removed without leaving (here, or as a peer's DONE told a joiner); keep the newest."""
        for crash in crashes:
            known = self.crashed.get(crash.node_id)
            if known is None or known.removed_in < crash.removed_in:
                self.crashed[crash.node_id] = crash
        if len(self.crashed) > LOST_RECORDS:
            newest = sorted(self.crashed.values(), key=lambda c: -c.removed_in)[:LOST_RECORDS]
            self.crashed = {c.node_id: c for c in newest}

    def reply_now(self, targets: list[tuple[Any, int]], kind: int, payload: bytes, did: Did | None) -> None:
        if did is not None:
            self._inflight.pop(did, None)
        for c, rid in targets:
            c.pending.pop(rid, None)
            c.send(kind, rid, payload)

    def refuse(self, targets: list[tuple[Any, int]], did: Did | None) -> None:
        """Calls that ran here but will not be acknowledged here (we stopped being their primary)."""
        assert self.view is not None
        self.reply_now(targets, P.Kind.UNAVAILABLE, _unavailable("the object moved", self.view.epoch), did)

    def error_reply(self, exc: BaseException) -> tuple[int, bytes]:
        self.stats["errors"] += 1
        try:
            return P.Kind.ERROR, P.dumps((exc, ""))
        except SerializationError:
            return P.Kind.ERROR, P.dumps((RemoteError(type(exc).__name__, str(exc)), ""))

    def hand_over(self, conn: _Connection, inv: Invocation, did: Did) -> bool:
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

    def remember(self, cell: Cell, did: Did, kind: int, payload: bytes) -> None:
        """Keep a reply for replays, on its object (the window decides how long: _replies)."""
        self.replies.remember(cell, did, kind, payload)

    def _cells(self) -> dict[Ref, Cell]:
        return self.table.cells if self.table is not None else {}

    def user_classes(self) -> dict[type, str]:
        assert self.table is not None
        return {cls: name for name, cls in self.table.types.items() if name not in self.builtin_names}

    def handle_register(self, conn: _Connection, req_id: int, body: bytes) -> None:
        type_name, cls = _pair(P.loads(body, what="shared class"), "REGISTER")
        if not isinstance(type_name, str) or not isinstance(cls, type):
            raise ProtocolError("malformed REGISTER: expected (name, class)")
        assert self.table is not None
        self.table.types[type_name] = cls
        if self.class_bytes.get(type_name) != body:
            self.class_bytes[type_name] = body
            if self.store is not None:
                self.store.save_type(type_name, body)
        conn.send(P.Kind.OK, req_id, P.dumps(True))

    def handle_delete(self, conn: _Connection, req_id: int, body: bytes) -> None:
        type_name, key = _pair(P.loads(body, what="delete"), "DELETE")
        ref = (str(type_name), str(key))
        if self.membership is not None:
            refusal = self.gate(ref, None)
            if refusal is not None:
                conn.send(refusal[0], req_id, refusal[1])
                return
        assert self.table is not None
        cell = self.table.cells.get(ref)
        if cell is None or cell.repl is None:
            conn.send(P.Kind.OK, req_id, P.dumps(self.table.delete(*ref)))
            return
        self.table.delete(*ref)
        self.repl.commit_delete(cell, [(conn, req_id)])

    def handle_leave(self, conn: _Connection, req_id: int) -> None:
        """Hand everything over and leave; the reply comes once the cluster let this node go."""
        if self.membership is None:
            raise ConfigError(f"node {self.address} is a lone node (no cluster to leave): stop it instead")
        if self.on_leave is None:
            raise ConfigError(f"node {self.address} cannot leave from here")
        self.on_leave(lambda ok: conn.send(P.Kind.OK, req_id, P.dumps(ok)))

    def handle_info(self, conn: _Connection, req_id: int, body: bytes) -> None:
        options = P.loads(body, what="info")
        limit = options.get("objects", 0) if isinstance(options, dict) else None
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ProtocolError('malformed INFO: expected {"objects": N} with N >= 0')
        conn.send(P.Kind.OK, req_id, P.dumps(self.info(limit)))

    def info(self, objects: int = 0) -> dict[str, Any]:
        """What ``crucial info`` shows: who this node is, its counters, its view, its first ``objects`` objects."""
        assert self.table is not None and self.view is not None
        cells = self.table.cells
        listed = heapq.nsmallest(objects, cells) if objects else []
        view = self.view
        primaries = backups = lag = 0
        for ref, cell in cells.items():
            if cell.repl is None:
                continue
            if view.ring.owner(*ref) == self.node_id:
                primaries += 1
                lag += len(cell.repl.pending)
            else:
                backups += 1
        return {
            "address": self.address,
            "node_id": self.node_id,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "epoch": view.epoch,
            "nodes": list(view.addresses),
            "view": view.as_json(),
            "connections": len(self.connections),
            "clients": len(self._clients),
            "replies": self.replies.describe(),
            "stats": dict(self.stats),
            "objects": len(cells),
            "types": dict(collections.Counter(type_name for type_name, _ in cells)),
            "cluster": self.membership.describe() if self.membership is not None else None,
            "metrics": self.metrics.info() if self.metrics is not None else None,
            "tls": self.tls is not None,
            "replication": {
                "primaries": primaries,
                "backups": backups,
                "pending": lag,  # calls run here, waiting for their backups' acknowledgements
                "peer_backlog": {n: link.backlog for n, link in self.repl.links.items()},
                "retired": len(self.handoff.retired),
                "handoff_complete": self.handoff.complete,
                "data_dir": str(self.store.path) if self.store is not None else None,
                **self.repl.stats,
                **self.handoff.stats,
            },
            "listed": [
                {
                    "type": t,
                    "key": k,
                    "queued": len(cells[(t, k)].queue),
                    "waiting": len(cells[(t, k)].waiters),
                    "persistent": cells[(t, k)].repl is not None,
                }
                for t, k in listed
            ],
        }

    def welcome(self) -> bytes:
        assert self.view is not None
        return P.encode_json(
            {"version": P.PROTOCOL_VERSION, "node_id": self.node_id, "address": self.address, "view": self.view.as_json()}
        )

    def peer_hello(self) -> bytes:
        token = self.tokens.current
        return P.encode_json(
            {"version": P.PROTOCOL_VERSION, "token": token, "client_id": f"peer-{self.node_id}", "peer": self.node_id}
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

    def handle_peer(self, conn: _Connection, kind: int, req_id: int, body: bytes) -> None:
        if kind == P.Kind.REPLICATE:
            self.repl.on_replicate(conn, req_id, body)
            return
        if kind == P.Kind.HANDOFF:
            self.handoff.on_handoff(body)
        elif kind == P.Kind.DONE:
            self.handoff.on_done(body)
        elif kind == P.Kind.READY:
            self.handoff.on_ready(body)
        elif kind == P.Kind.ANCHOR:
            self.anchors.on_anchor(body)
        conn.send(P.Kind.OK, req_id, P.dumps(None))


def _unavailable(reason: str, epoch: int) -> bytes:
    return P.encode_json({"reason": reason, "epoch": epoch})


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
    """One client (or peer node) connection: handshake, then requests until it closes."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.decoder = P.FrameDecoder(node.max_frame_size, P.Kind.REQUESTS)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client_id = ""
        self.peer: str | None = None  # the node id, when the other side is a node
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
                elif kind in P.Kind.PEER_REQUESTS:
                    if self.peer is None:
                        self.fail("kind", f"frame kind {kind} is for nodes only", frame.req_id)
                    else:
                        node.handle_peer(self, kind, frame.req_id, frame.body)
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
                elif kind == P.Kind.READ:
                    node.handle_read(self, frame.req_id, frame.body)
                elif kind == P.Kind.LEAVE:
                    node.handle_leave(self, frame.req_id)
                else:
                    self.fail("kind", f"unexpected frame kind {kind} after handshake", frame.req_id)
            except AuthenticationError as exc:
                self.fail("auth", str(exc), frame.req_id)
            except (ProtocolError, SerializationError, ObjectError, ConfigError) as exc:
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
        if not self.node.tokens.accepts(hello.get("token")):
            raise AuthenticationError("wrong or missing token")
        client_id = hello.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise ProtocolError("HELLO lacks a client_id")
        peer = hello.get("peer")
        if peer is not None and not isinstance(peer, str):
            raise ProtocolError("HELLO: peer must be a node id")
        self.peer = peer
        self.client_id = client_id
        retries = hello.get("failover_timeout")  # how long this client may retry a call: keep its replies longer
        if isinstance(retries, (int, float)) and not isinstance(retries, bool) and 0 < retries < math.inf:
            self.node.replies.retries_within(retries)
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
