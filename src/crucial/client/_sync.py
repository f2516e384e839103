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
import weakref
from typing import Any

from .. import protocol as P
from ..config import Config
from ..exceptions import CallTimeoutError, ConnectError, FrameTooLargeError, UnknownTypeError
from ._core import Attempts, ClientCore, Redirect, parse_address
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

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node addresses of the current view (asks a node if none was seen yet)."""
        if self.core.epoch == 0:
            self._roundtrip(self.core.seeds[0], P.Kind.VIEW, b"")
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

    def _roundtrip(self, address: str, kind: int, body: bytes, timeout: float | None = None) -> P.Frame:
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
                frame = conn.read(req_id, timeout)
        except TimeoutError as exc:
            conn.close()
            raise CallTimeoutError(f"no reply from DSO node {address} within {timeout} s") from exc
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

    # -- calls -----------------------------------------------------------------

    def call(
        self,
        type_name: str,
        key: str,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        create: tuple[tuple[Any, ...], dict[str, Any]] | None = None,
        force: bool = False,
        cls: type | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call ``method`` on object ``(type_name, key)`` and return its result.

        ``create`` creates the object with those arguments when it is absent;
        ``cls`` is the user class to register with a node that lacks it.
        """
        core = self.core
        call = P.CallRequest(core.next_seq(), type_name, key, method, args, kwargs, create, force, threading.get_ident())
        body = P.encode_call(call)
        timeout = timeout if timeout is not None else core.config.call_timeout
        attempts: Attempts | None = None  # made on the first failure only: the hot path has none
        while True:
            address = core.route(type_name, key)
            try:
                if cls is not None and (address, type_name) not in core.registered:
                    self._register(address, type_name, cls)
                return core.result(self._roundtrip(address, P.Kind.CALL, body, timeout), address)
            except (ConnectError, Redirect, UnknownTypeError) as exc:
                if isinstance(exc, ConnectError):
                    self._drop(address)  # its other pooled connections are suspect too
                if attempts is None:
                    attempts = Attempts(core, type_name, key, cls)
                attempts.again(exc, address)

    def _register(self, address: str, type_name: str, cls: type) -> None:
        from ._core import dumps_class

        frame = self._roundtrip(address, P.Kind.REGISTER, dumps_class(type_name, cls))
        self.core.result(frame, address)
        self.core.registered.add((address, type_name))

    def delete(self, type_name: str, key: str) -> bool:
        """Delete one object; ``True`` if it existed."""
        while True:
            address = self.core.route(type_name, key)
            frame = self._roundtrip(address, P.Kind.DELETE, P.dumps((type_name, key)))
            try:
                return bool(self.core.result(frame, address))
            except Redirect:
                continue

    def ping(self, address: str | None = None) -> None:
        address = address or self.core.seeds[0]
        self.core.result(self._roundtrip(address, P.Kind.PING, b""), address)

    def info(self, address: str | None = None, objects: int = 0) -> dict[str, Any]:
        """One node's statistics and its first ``objects`` objects (by type and key): what ``crucial info`` prints."""
        address = address or self.core.seeds[0]
        frame = self._roundtrip(address, P.Kind.INFO, P.dumps({"objects": objects}))
        return dict(self.core.result(frame, address))

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
