"""The thread-safe synchronous client: a pool of blocking sockets per node.

A call checks a connection out of its node's pool, writes one frame and
reads until the reply with its request id arrives, then checks the
connection back in.  One call per connection at a time keeps the hot path
on the caller's thread (no hand-off to a reader thread); concurrency comes
from the pool, which grows as threads need it.  A call blocked in
``barrier.wait()`` therefore holds one connection and nothing else.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from typing import Any

from .. import protocol as P
from .._tls import client_context, handshake_hint, wrap_tls
from ..config import Config
from ..exceptions import CallInterruptedError, CallTimeoutError, ConnectError, CrucialError, FrameTooLargeError, UnknownTypeError
from ._core import Attempts, ClientCore, Redirect, Unavailable, parse_address
from ._output import show_frame

__all__ = ["Client"]


_HSIZE = P.HEADER.size


class _ThreadConns:
    """One thread's own connections, closed when the thread ends."""

    def __init__(self) -> None:
        self.conns: dict[str, _Conn] = {}
        weakref.finalize(self, _close_all, self.conns)


def _close_all(conns: dict[str, _Conn]) -> None:
    for conn in conns.values():
        conn.close()


class _Conn:
    __slots__ = ("__weakref__", "address", "decoder", "frames", "sock", "timeout")

    def __init__(self, core: ClientCore, address: str) -> None:
        self.address = address
        host, port = parse_address(address)
        timeout = core.config.connect_timeout
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ConnectError(f"cannot connect to DSO node {address}: {exc}", address) from exc
        tls = client_context(core.config)
        if tls is not None:
            self.sock = wrap_tls(tls, self.sock, host, address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = P.FrameDecoder(core.config.max_frame_size, P.Kind.FROM_NODE)
        self.frames: list[P.Frame] = []
        self.timeout: float | None = timeout
        try:
            self.sock.sendall(core.hello())
            core.welcome(self.read(0, timeout), address)
        except TimeoutError as exc:  # it accepted but never answered: a hung node
            self.close()
            raise ConnectError(f"DSO node {address} did not answer the handshake within {timeout} s", address) from exc
        except ConnectError as exc:  # closed without a word: TLS on one side only, or a client cert missing
            self.close()
            raise ConnectError(f"{exc} {handshake_hint(tls)}", address) from exc
        except BaseException:
            self.close()
            raise
        self.sock.settimeout(None)
        self.timeout = None

    def read(self, req_id: int, timeout: float | None) -> P.Frame:
        """Read until the reply to ``req_id`` (or a FAIL) arrives."""
        if timeout != self.timeout:  # settimeout is a syscall: only when it changes
            self.sock.settimeout(timeout)
            self.timeout = timeout
        if not self.frames and not self.decoder.buffered:
            # the common case: nothing pending, and the reply arrives as one whole frame
            data = self._recv()
            if len(data) >= _HSIZE:
                length, kind, rid = P.HEADER.unpack_from(data)
                whole = len(data) == _HSIZE + length and length <= self.decoder.max_frame_size
                if whole and (rid == req_id or kind == P.Kind.FAIL) and kind in P.Kind.REPLIES:
                    return P.Frame(kind, rid, data[_HSIZE:])
            self.frames.extend(_printed(self.decoder.feed(data)))
        while True:
            for i, f in enumerate(self.frames):
                if f.req_id == req_id or f.kind == P.Kind.FAIL:
                    del self.frames[i]
                    return f
            self.frames.extend(_printed(self.decoder.feed(self._recv())))

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectError(f"connection to DSO node {self.address} lost: {exc}", self.address) from exc
        if not data:
            raise ConnectError(f"DSO node {self.address} closed the connection", self.address)
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _printed(frames: list[P.Frame]) -> list[P.Frame]:
    """``frames`` without the OUTPUT ones, which are shown here: what the call printed on its node."""
    if all(f.kind != P.Kind.OUTPUT for f in frames):
        return frames
    for f in frames:
        if f.kind == P.Kind.OUTPUT:
            show_frame(f)
    return [f for f in frames if f.kind != P.Kind.OUTPUT]


_live: weakref.WeakSet[Client] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for client in list(_live):
        client._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class Client:
    """Synchronous, thread-safe DSO client.

    ``Client(["127.0.0.1:7000"])`` connects lazily; any one node's address is
    enough, the others are learnt from its view.  ``close()`` is idempotent.
    """

    def __init__(self, seeds: tuple[str, ...] | list[str] | str, config: Config | None = None) -> None:
        if isinstance(seeds, str):
            seeds = tuple(a for a in seeds.split(",") if a)
        self.core = ClientCore(config or Config(), tuple(seeds))
        self._pools: dict[str, list[_Conn]] = {}  # idle connections beyond one per thread
        self._lock = threading.Lock()
        self._local = threading.local()  # .held: the calling thread's own connections
        self._all: weakref.WeakSet[_Conn] = weakref.WeakSet()
        self._closed = False
        _live.add(self)

    def _after_fork(self) -> None:
        """In a forked child: own identity, no inherited sockets (they are the parent's)."""
        self.core.new_identity()
        self._lock = threading.Lock()
        self._pools = {}  # dropped, not closed: closing is harmless but the parent owns them
        self._local = threading.local()
        self._all = weakref.WeakSet()

    @property
    def seeds(self) -> tuple[str, ...]:
        return self.core.seeds

    def refresh(self) -> tuple[str, ...]:
        """Ask the cluster for its current view now; returns the node addresses."""
        self.core.epoch = 0
        return self.nodes

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node addresses of the current view (asks a node if none was seen yet)."""
        if self.core.epoch == 0:
            for i, seed in enumerate(self.core.seeds):  # the first seed that answers
                try:
                    self._roundtrip(seed, P.Kind.VIEW, b"")
                    break
                except ConnectError:
                    if i == len(self.core.seeds) - 1:
                        raise
        return self.core.nodes

    # -- pool ------------------------------------------------------------------

    def _checkout(self, address: str) -> _Conn:
        if self._closed:
            raise ConnectError("client is closed", address)
        mine = getattr(self._local, "held", None)
        if mine is not None:
            conn = mine.conns.pop(address, None)
            if conn is not None:  # this thread's own connection: no lock on the hot path
                return conn
        with self._lock:
            pool = self._pools.get(address)
            if pool:
                return pool.pop()
        conn = _Conn(self.core, address)
        self._all.add(conn)
        return conn

    def _checkin(self, conn: _Conn) -> None:
        if not self._closed:
            mine = getattr(self._local, "held", None)
            if mine is None:
                mine = self._local.held = _ThreadConns()
            if conn.address not in mine.conns:
                mine.conns[conn.address] = conn
                return
            with self._lock:
                pool = self._pools.setdefault(conn.address, [])
                if len(pool) < self.core.config.pool_size:
                    pool.append(conn)
                    return
        conn.close()

    def _drop(self, address: str) -> None:
        with self._lock:
            pool = self._pools.pop(address, [])
        for conn in pool:
            conn.close()

    def _roundtrip(
        self, address: str, kind: int, body: bytes, timeout: float | None = None, key: tuple[str, str] | None = None
    ) -> P.Frame:
        """Send one request and read its reply.

        ``key``: the object a call is for.  While its reply is awaited, every
        couple of failure timeouts another node is asked for the view: if this
        node is no longer a member (it was paused, and replaced), the wait
        ends with CallInterruptedError and the call is resent to the primary.
        """
        limit = self.core.config.max_frame_size
        if len(body) > limit:  # the node would refuse it from the header: say so without sending
            raise FrameTooLargeError(len(body), limit)
        conn = self._checkout(address)
        req_id = self.core.next_req()
        try:
            try:
                conn.sock.sendall(P.encode_frame(kind, req_id, body))
            except OSError as exc:
                # the node may have refused the frame and closed: its FAIL says why
                lost = ConnectError(f"connection to DSO node {address} lost: {exc}", address)
                try:
                    frame = conn.read(req_id, 1.0)
                except (TimeoutError, ConnectError):
                    raise lost from exc
                if frame.kind != P.Kind.FAIL:
                    raise lost from exc
            else:
                frame = self._await_reply(conn, req_id, address, timeout, key)
        except TimeoutError as exc:
            conn.close()
            raise CallTimeoutError(f"no reply from DSO node {address} within {timeout} s") from exc
        except ConnectError as exc:
            conn.close()
            if kind != P.Kind.CALL or isinstance(exc, CallInterruptedError):
                raise
            raise CallInterruptedError(
                f"connection to DSO node {address} lost after the call was sent: {exc}", address, key[1] if key else None
            ) from exc
        except BaseException:
            conn.close()
            raise
        if frame.kind == P.Kind.FAIL:
            conn.close()
        else:
            self._checkin(conn)
        if frame.kind == P.Kind.WELCOME:
            self.core.welcome(frame, address)
        return frame

    def _await_reply(self, conn: _Conn, req_id: int, address: str, timeout: float | None, key: tuple[str, str] | None) -> P.Frame:
        if key is None or len(self.core.nodes) < 2:
            return conn.read(req_id, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            slice_ = 2 * self.core.failure_timeout
            if deadline is not None:
                slice_ = min(slice_, deadline - time.monotonic())
                if slice_ <= 0:
                    raise TimeoutError()
            try:
                return conn.read(req_id, slice_)
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            # a long wait: is this node still a member? (a paused one never answers; one that is alive
            # answers for itself, even for an object it handed over meanwhile: calls parked there end there)
            self._ask_view(address)
            if address not in self.core.nodes:
                raise CallInterruptedError(
                    f"DSO node {address} stopped answering and was replaced; the call may or may not have been applied",
                    address,
                    key[1],
                )

    def _ask_view(self, failed: str) -> bool:
        """Ask the other nodes for the view; True if one answered."""
        for other in self.core.others(failed):
            try:
                self._roundtrip(other, P.Kind.VIEW, b"", timeout=self.core.config.connect_timeout)
                return True
            except (CrucialError, OSError):
                continue
        return False

    # -- calls -----------------------------------------------------------------

    def call(
        self,
        type_name: str,
        key: str,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        create: tuple[Any, ...] | None = None,
        force: bool = False,
        cls: type | None = None,
        timeout: float | None = None,
        read_any: bool = False,
    ) -> Any:
        """Call ``method`` on object ``(type_name, key)`` and return its result.

        ``create`` creates the object with those arguments when it is absent;
        ``cls`` is the user class to register with a node that lacks it.
        ``read_any``: the method changes nothing and any replica may answer
        (sequential reads); a replica that cannot sends the call on to the primary.
        """
        core = self.core
        call = P.CallRequest(core.next_seq(), type_name, key, method, args, kwargs, create, force, threading.get_ident())
        body = P.encode_call(call)
        timeout = timeout if timeout is not None else core.config.call_timeout
        if read_any and core.view is not None and len(core.view.placed) > 1:
            address = core.read_target(type_name, key)
            try:
                frame = self._roundtrip(address, P.Kind.READ, body, timeout)
                if frame.kind != P.Kind.REDIRECT:
                    return core.result(frame, address)
            except (ConnectError, Unavailable):
                pass  # the primary will do
        attempts: Attempts | None = None  # made on the first failure only: the hot path has none
        ref = (type_name, key)
        while True:
            address = core.target(type_name, key, attempts)
            try:
                if cls is not None and (address, type_name) not in core.registered:
                    self._register(address, type_name, cls)
                return core.result(self._roundtrip(address, P.Kind.CALL, body, timeout, ref), address)
            except (ConnectError, Redirect, Unavailable, UnknownTypeError) as exc:
                if attempts is None:
                    attempts = Attempts(core, type_name, key, cls)
                others = None
                if isinstance(exc, ConnectError):
                    self._drop(address)  # its other pooled connections are suspect too
                    others = self._ask_view(address)
                elif isinstance(exc, Unavailable):
                    if attempts.waits % 4 == 3:  # now and then: maybe the view moved on
                        self._ask_view(address)
                pause = attempts.again(exc, address, others)
                if pause:
                    time.sleep(pause)

    def _register(self, address: str, type_name: str, cls: type) -> None:
        from ._core import dumps_class

        frame = self._roundtrip(address, P.Kind.REGISTER, dumps_class(type_name, cls))
        self.core.result(frame, address)
        self.core.registered.add((address, type_name))

    def delete(self, type_name: str, key: str) -> bool:
        """Delete one object; ``True`` if it existed."""
        attempts = Attempts(self.core, type_name, key, None)
        while True:
            address = self.core.target(type_name, key, attempts)
            try:
                frame = self._roundtrip(address, P.Kind.DELETE, P.dumps((type_name, key)))
                return bool(self.core.result(frame, address))
            except (ConnectError, Redirect, Unavailable) as exc:
                others = self._ask_view(address) if isinstance(exc, ConnectError) else None
                pause = attempts.again(exc, address, others)
                if pause:
                    time.sleep(pause)

    def ping(self, address: str | None = None) -> None:
        address = address or self.core.seeds[0]
        self.core.result(self._roundtrip(address, P.Kind.PING, b""), address)

    def info(self, address: str | None = None, objects: int = 0) -> dict[str, Any]:
        """One node's statistics and its first ``objects`` objects (by type and key): what ``crucial info`` prints."""
        address = address or self.core.seeds[0]
        frame = self._roundtrip(address, P.Kind.INFO, P.dumps({"objects": objects}))
        return dict(self.core.result(frame, address))

    def leave(self, address: str, timeout: float | None = None) -> bool:
        """Ask the node at ``address`` to hand its objects over and leave the cluster; True once it was let go."""
        return bool(self.core.result(self._roundtrip(address, P.Kind.LEAVE, b"", timeout), address))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pools = {}
            conns = list(self._all)
        for conn in conns:  # pooled ones and every thread's own
            conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<crucial.Client seeds={','.join(self.core.seeds)}>"
