"""The thread-safe synchronous client: one shared connection per node, read by its callers.

Every thread of a process sends its calls over one connection per node
(:class:`_Shared`), and the threads take turns reading it -- no reader
thread, no hand-off for a lone caller::

    thread A: send ──┐                         ┌── leader: recv, hand B its reply,
    thread B: send ──┼─► one socket ─► node ───┤   read on until A's own arrives
    thread C: send ──┘   (writes coalesced)    └── followers sleep until their reply is handed over

Sends are coalesced: a thread that finds another one writing leaves its
frame for that writer, which sends everything queued in one ``sendall``;
the node answers the frames of one read in one write.  With 50 threads
per process that turns 50 small writes and reads on each side into a few
large ones -- what throughput on a few cores is made of.  A call blocked
in ``barrier.wait()`` holds nothing: its reply comes whenever it comes.

A call with a timeout goes over a connection of the calling thread's own
(:class:`_Conn`, the pool below): when it times out that connection is
closed, which cancels the call on the node.

In a cluster a reader that waits long asks another node for the view now
and then: a node that was paused and replaced never answers, and the calls
waiting on it are resent to the object's new primary
(:class:`~crucial.exceptions.CallInterruptedError` after ``failover_timeout``).
What a call prints on its node arrives as OUTPUT frames before its reply
and is shown here.
"""

from __future__ import annotations

import _thread
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .. import protocol as P
from .._tls import client_context, handshake_hint, wrap_tls
from ..config import Config
from ..exceptions import CallInterruptedError, CallTimeoutError, ConnectError, CrucialError, FrameTooLargeError, UnknownTypeError
from ._core import Attempts, ClientCore, Redirect, Unavailable, parse_address
from ._output import show_frame
from ._spin import Spin, slow, window

__all__ = ["Client"]


_HSIZE = P.HEADER.size
_RECV = P.RECV_SIZE
_MAX_SPINS = 4096  # methods whose polling records a client keeps
_monotonic = time.monotonic
_DONTWAIT = socket.MSG_DONTWAIT
_unpack_header = P.HEADER.unpack_from
_get_ident = threading.get_ident
_Frame, _REPLIES, _FAIL, _WELCOME, _CALL = P.Frame, P.Kind.REPLIES, P.Kind.FAIL, P.Kind.WELCOME, P.Kind.CALL
_OUTPUT = P.Kind.OUTPUT


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
        except OSError as exc:  # reset while sending the hello: a node dying as we connect, failover's case
            self.close()
            raise ConnectError(f"connection to DSO node {address} lost during the handshake: {exc}", address) from exc
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
            data = self.sock.recv(_RECV)
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
    if all(f.kind != _OUTPUT for f in frames):
        return frames
    for f in frames:
        if f.kind == _OUTPUT:
            show_frame(f)
    return [f for f in frames if f.kind != _OUTPUT]


class _Slot:
    """One call waiting on a shared connection: its reply (or the error), and the lock it sleeps on if it must."""

    __slots__ = ("error", "frame", "signalled", "spin", "wake")

    def __init__(self, spin: Spin | None) -> None:
        self.spin = spin  # the called method's polling record (None: never poll)
        self.frame: P.Frame | None = None
        self.error: BaseException | None = None
        self.signalled = False
        self.wake: Any = None  # a held lock, made when the caller first has to sleep; released to wake it


class _Shared:
    """A connection to one node shared by every thread of the process (see the module docstring).

    A lone caller takes the lock three times per call (send, then lead
    the reading, then take its reply) and reads its reply straight off the
    socket, as a connection of its own would; only callers that find
    another thread writing or reading leave their frame to it or sleep.
    """

    def __init__(
        self, core: ClientCore, address: str, still_member: Callable[[], bool] | None = None, spin_window: float = 0.0
    ) -> None:
        self.conn = _Conn(core, address)  # connects and shakes hands
        self.core = core
        self.still_member = still_member  # asks another node: is ours still in the view?
        self._patience: float | None = None  # the socket timeout of a read, in a cluster
        self.address = address
        self.sock = self.conn.sock
        self.decoder = self.conn.decoder
        # how long a lone caller polls for its reply (the client's _spin window); not over TLS, whose records
        # a raw read would split
        self._window = spin_window if type(self.sock) is socket.socket else 0.0
        self._lock = _thread.allocate_lock()
        self._waiting: dict[int, _Slot] = {}
        self._outbox: list[bytes] = []
        self._writing = False
        self._reading = False
        self._broken: BaseException | None = None

    def roundtrip(self, req_id: int, data: bytes, spin: Spin | None = None) -> P.Frame:
        """Send a frame and return the reply with its request id (or a FAIL); ConnectError if the connection breaks.

        ``spin``: the called method's record of whether polling for its reply pays (:mod:`._spin`).
        """
        slot = _Slot(spin)
        lock = self._lock
        with lock:
            if self._broken is not None:
                raise self._broken
            self._waiting[req_id] = slot
            write = not self._writing
            if write:
                self._writing = True
            else:
                self._outbox.append(data)  # the thread writing now sends it with its next sendall
        leader = False
        try:
            if write:
                leader = self._write(data, slot)
            while True:
                if leader:
                    self._read(slot)
                with lock:
                    if slot.frame is not None:
                        return slot.frame
                    if slot.error is not None:
                        raise slot.error
                    leader = not self._reading
                    if leader:
                        self._reading = True
                    else:
                        slot.signalled = False
                        if slot.wake is None:
                            slot.wake = _thread.allocate_lock()
                            slot.wake.acquire()
                if not leader:
                    slot.wake.acquire()  # until our reply is handed over, the connection breaks, or the reader leaves
        finally:
            if self._waiting.get(req_id) is slot:
                with lock:
                    if self._waiting.get(req_id) is slot:
                        del self._waiting[req_id]

    def _write(self, data: bytes, mine: _Slot) -> bool:
        """Send ``data`` and whatever other threads queued meanwhile; then lead the reading if it is needed and free.

        (Our reply may have been read by another thread already, while we were still sending.)
        """
        lock = self._lock
        try:
            while True:
                self.sock.sendall(data)
                with lock:
                    if not self._outbox:
                        self._writing = False
                        break
                    data = b"".join(self._outbox)
                    self._outbox.clear()
        except OSError:  # the node closed the connection: the reader sees why (its FAIL, or the end of the stream)
            pass
        with lock:  # take the reading if ours has not come and nobody reads
            if self._reading or mine.frame is not None or mine.error is not None:
                return False
            self._reading = True
            return True

    def _read(self, mine: _Slot) -> None:
        """As the leader: one recv, every reply in it handed over; then let a follower lead if ours came."""
        decoder = self.decoder
        try:
            patience = 2 * self.core.failure_timeout if self.still_member is not None and len(self.core.nodes) > 1 else None
            if patience != self._patience:
                self.sock.settimeout(patience)
                self._patience = patience
            try:
                data = None
                spin = mine.spin
                if spin is not None and self._window and len(self._waiting) == 1 and spin.wanted():
                    data = self._poll()
                    if data is None:
                        spin.miss()
                    else:
                        spin.hit()
                if data is None:
                    data = self.sock.recv(_RECV)
            except TimeoutError:
                # a long wait: is the node still a member? A paused one never answers; one that is alive
                # answers for itself (even for an object it handed over meanwhile: calls parked there end there)
                if self.still_member is not None and not self.still_member():
                    raise CallInterruptedError(
                        f"DSO node {self.address} stopped answering and was replaced; "
                        "a call waiting on it may or may not have been applied",
                        self.address,
                    ) from None
                with self._lock:
                    self._reading = False
                    self._next_leader()
                return
            except OSError as exc:
                raise ConnectError(f"connection to DSO node {self.address} lost: {exc}", self.address) from exc
            if not data:
                raise ConnectError(f"DSO node {self.address} closed the connection", self.address)
            frame = None
            if not decoder.buffer and len(data) >= _HSIZE:  # the common case: one whole frame
                length, kind, rid = _unpack_header(data)
                if len(data) == _HSIZE + length and length <= decoder.max_frame_size and kind in _REPLIES:
                    frame = _Frame(kind, rid, data[_HSIZE:])
            frames = [frame] if frame is not None else _printed(decoder.feed(data))
        except BaseException as exc:  # the connection broke (or this thread was interrupted)
            with self._lock:
                self._reading = False
                if isinstance(exc, (ConnectError, P.ProtocolError)):  # CallInterruptedError is a ConnectError
                    lost = exc if isinstance(exc, ConnectError) else ConnectError(f"DSO node {self.address}: {exc}", self.address)
                    self._break(lost)
                else:  # KeyboardInterrupt and friends: another thread takes over the reading
                    self._next_leader()
            raise
        with self._lock:
            self._reading = False
            waiting = self._waiting
            for frame in frames:
                if frame.kind == _FAIL:  # the node refused something and closes: every call hears why
                    for other in waiting.values():
                        other.frame = other.frame or frame
                    self._break(ConnectError(f"DSO node {self.address} closed the connection", self.address))
                    break
                slot = waiting.pop(frame.req_id, None)
                if slot is not None and slot.frame is None:
                    slot.frame = frame
                    if slot is not mine:
                        self._signal(slot)
            if mine.frame is not None and waiting:
                self._next_leader()

    def _poll(self) -> bytes | None:
        """What the node sent within the spin window, polling the socket; None if nothing came."""
        sock = self.sock
        fd = sock.fileno()
        nonblocking = self._patience is not None  # a socket with a timeout is non-blocking underneath
        end = _monotonic() + self._window
        while True:
            try:
                return os.read(fd, _RECV) if nonblocking else sock.recv(_RECV, _DONTWAIT)
            except BlockingIOError:
                if _monotonic() >= end:
                    return None

    def _signal(self, slot: _Slot) -> None:
        if slot.wake is not None and not slot.signalled:
            slot.signalled = True
            slot.wake.release()

    def _next_leader(self) -> None:
        """Wake one thread still waiting, so that someone reads (with the lock held)."""
        for slot in self._waiting.values():
            if slot.frame is None and slot.error is None and slot.wake is not None:
                self._signal(slot)
                return

    def _break(self, error: BaseException) -> None:
        """The connection is unusable: fail every waiting call (with the lock held)."""
        self._broken = error
        for slot in self._waiting.values():
            if slot.frame is None:
                slot.error = error
            self._signal(slot)

    def close(self) -> None:
        with self._lock:
            if self._broken is None:
                self._broken = ConnectError(f"connection to DSO node {self.address} closed", self.address)
                for slot in self._waiting.values():
                    if slot.frame is None:
                        slot.error = self._broken
                    self._signal(slot)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv (close alone does not)
        except OSError:
            pass
        self.conn.close()


def _close_shared(shared: dict[str, _Shared]) -> None:
    for conn in list(shared.values()):
        conn.close()


def _asker(client: Client, address: str) -> Callable[[], bool]:
    """``client._still_member(address)`` for a shared connection, holding the client weakly.

    The client's finalizer keeps its shared connections alive (it closes
    them): a connection that held the client strongly kept every client
    dropped unclosed -- and its sockets -- alive for ever (a compute worker
    drops its clients whenever the cluster's addresses change).
    """
    ref = weakref.ref(client)

    def still_member() -> bool:
        alive = ref()
        return alive is None or alive._still_member(address)

    return still_member


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
        self._shared: dict[str, _Shared] = {}  # the connection every thread shares, per node
        self._spin_window = window(self.core.config.spin_us)
        self._spin_slow = slow(self._spin_window)
        self._spins: dict[tuple[str, str], Spin] = {}  # (type, method) -> whether polling for its replies pays
        self._finalizer = weakref.finalize(self, _close_shared, self._shared)  # a client dropped unclosed
        self._closed = False
        _live.add(self)

    def _after_fork(self) -> None:
        """In a forked child: own identity, no inherited sockets (they are the parent's)."""
        self.core.new_identity()
        self._lock = threading.Lock()
        self._pools = {}  # dropped, not closed: closing is harmless but the parent owns them
        self._local = threading.local()
        self._all = weakref.WeakSet()
        self._finalizer.detach()  # the parent's sockets: never shut them down from here
        self._shared = {}
        self._finalizer = weakref.finalize(self, _close_shared, self._shared)

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
            shared = self._shared.pop(address, None)
        for conn in pool:
            conn.close()
        if shared is not None:
            shared.close()

    def _forget(self, address: str, shared: _Shared) -> None:
        """A broken shared connection: the next call opens a new one."""
        with self._lock:
            if self._shared.get(address) is shared:
                del self._shared[address]
        shared.close()

    def _shared_conn(self, address: str) -> _Shared:
        shared = self._shared.get(address)
        if shared is None:
            with self._lock:
                if self._closed:
                    raise ConnectError("client is closed", address)
                shared = self._shared.get(address)
            if shared is None:
                made = _Shared(self.core, address, _asker(self, address), self._spin_window)  # connects: not under the lock
                with self._lock:
                    shared = self._shared.setdefault(address, made)
                if shared is not made:
                    made.close()
        return shared

    def _roundtrip(
        self,
        address: str,
        kind: int,
        body: bytes,
        timeout: float | None = None,
        key: tuple[str, str] | None = None,
        spin: Spin | None = None,
    ) -> P.Frame:
        """Send one request and read its reply.

        A call (``key``: its object) cut off after it was sent raises
        CallInterruptedError: it may or may not have been applied.
        """
        core = self.core
        limit = core.config.max_frame_size
        if len(body) > limit:  # the node would refuse it from the header: say so without sending
            raise FrameTooLargeError(len(body), limit)
        if timeout is None:  # the common case: the connection every thread shares
            shared = self._shared.get(address) or self._shared_conn(address)
            req_id = core.next_req()
            try:
                frame = shared.roundtrip(req_id, P.encode_frame(kind, req_id, body), spin)
            except ConnectError as exc:
                self._forget(address, shared)
                if kind != _CALL or isinstance(exc, CallInterruptedError):
                    raise
                raise CallInterruptedError(
                    f"connection to DSO node {address} lost after the call was sent: {exc}", address, key[1] if key else None
                ) from exc
            if frame.kind == _FAIL:  # the node closes it
                self._forget(address, shared)
            elif frame.kind == _WELCOME:
                core.welcome(frame, address)
            return frame
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
            if kind != _CALL or isinstance(exc, CallInterruptedError):
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
        """Read a reply on a thread's own connection; in a cluster, check now and then that its node is a member."""
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
            if not self._still_member(address):
                raise CallInterruptedError(
                    f"DSO node {address} stopped answering and was replaced; the call may or may not have been applied",
                    address,
                    key[1],
                )

    def _still_member(self, address: str) -> bool:
        """Whether ``address`` is in the view another node gives (a node that cannot say is given the benefit)."""
        if not self._ask_view(address):
            return True
        return address in self.core.nodes

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
        seq, below = core.open_call()
        spin = None
        if self._spin_window:
            spin = self._spins.get((type_name, method))
            if spin is None:
                if len(self._spins) >= _MAX_SPINS:
                    self._spins.clear()
                spin = self._spins[(type_name, method)] = Spin()
            start = _monotonic()
        try:
            body = P.encode_call_fields(seq, type_name, key, method, args, kwargs, create, force, _get_ident(), below)
            return self._call(body, type_name, key, cls, timeout, read_any, spin)
        finally:
            core.close_call(seq)
            if spin is not None and _monotonic() - start > self._spin_slow:
                spin.miss()  # a call that waits (a barrier, a lock): polling would not have found its reply

    def _call(
        self,
        body: bytes,
        type_name: str,
        key: str,
        cls: type | None,
        timeout: float | None,
        read_any: bool,
        spin: Spin | None = None,
    ) -> Any:
        """:meth:`call` with its body made: send it (again, to another node) until a node answers it."""
        core = self.core
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
        while True:
            address = core.target(type_name, key, attempts)
            try:
                if cls is not None and (address, type_name) not in core.registered:
                    self._register(address, type_name, cls)
                return core.result(self._roundtrip(address, _CALL, body, timeout, (type_name, key), spin), address)
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
            shared = list(self._shared.values())
            self._shared.clear()
        for conn in conns:  # pooled ones and every thread's own
            conn.close()
        for one in shared:
            one.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<crucial.Client seeds={','.join(self.core.seeds)}>"
