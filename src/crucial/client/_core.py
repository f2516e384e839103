"""What both clients share, without I/O: identity, routing, framing, replies.

:class:`~crucial.client.Client` (threads, blocking sockets) and
:class:`~crucial.client.AsyncClient` (asyncio) are thin shells around one
:class:`ClientCore`; neither has a method that returns "a value or a
coroutine".
"""

from __future__ import annotations

import itertools
import pickle
import threading
import time
import uuid
from typing import Any

from .. import protocol as P
from .._placement import View
from ..config import Config
from ..exceptions import (
    AuthenticationError,
    CallInterruptedError,
    ConfigError,
    ConnectError,
    ProtocolError,
    RemoteError,
    RemoteTraceback,
    UnavailableError,
    UnknownTypeError,
)

__all__ = ["Attempts", "ClientCore", "Redirect", "Unavailable", "parse_address"]


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"bad node address {address!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class Redirect(Exception):
    """Internal: the node does not own the object; the view was refreshed.

    ``to`` is set when one object is served elsewhere for a while (it is
    being handed over and still has calls parked where it was): send this
    call there, without changing the view.
    """

    def __init__(self, to: str | None = None, anchored: bool = False) -> None:
        super().__init__(to or "")
        self.to = to
        self.anchored = anchored


class Unavailable(Exception):
    """Internal: the node cannot serve the object right now (a view change); retry shortly."""

    def __init__(self, reason: str, epoch: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.epoch = epoch


class Attempts:
    """Whether, and when, a failed call is sent again (pure; shared by both clients).

    Safe to resend: the call keeps its id, so a node that already applied
    it answers from its de-duplication window instead of applying it twice.

    A node that cannot be reached while *another* node of the view answers
    is being replaced (its lease runs out, a new view follows): the call
    waits for that, up to ``failover_timeout`` seconds, asking another node
    for the view between tries.  When no node answers at all the client
    gives up after ``retries`` tries: there is nobody to fail over to.
    """

    MAX_REDIRECTS = 8
    PAUSES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)

    def __init__(self, core: ClientCore, type_name: str, key: str, cls: type | None) -> None:
        self.core = core
        self.type_name = type_name
        self.key = key
        self.cls = cls
        self.lost = 0
        self.redirects = 0
        self.waits = 0
        self.interrupted: CallInterruptedError | None = None
        self.deadline = 0.0
        self.to: str | None = None  # where the last redirect sent this one call

    def _wait(self) -> float:
        """The pause before the next try, or raise once the failover deadline has passed."""
        now = time.monotonic()
        if not self.deadline:
            self.deadline = now + self.core.config.failover_timeout
        elif now >= self.deadline:
            what = f"{self.type_name} {self.key!r}"
            if self.interrupted is not None:
                raise CallInterruptedError(
                    f"the call on {what} was cut off and no node took over within "
                    f"{self.core.config.failover_timeout:g} s: it may or may not have been applied "
                    f"({self.interrupted})",
                    self.interrupted.address,
                    self.key,
                ) from self.interrupted
            raise UnavailableError(
                f"no node could serve {what} within {self.core.config.failover_timeout:g} s (failover_timeout)"
            )
        pause = self.PAUSES[min(self.waits, len(self.PAUSES) - 1)]
        self.waits += 1
        return min(pause, max(0.0, self.deadline - now))

    def again(self, exc: Exception, address: str, others_answer: bool | None = None) -> float:
        """Seconds to wait before retrying after ``exc``; re-raise it when out of tries.

        ``others_answer`` (for connection failures): whether another node of
        the view answered when asked for the view just now.
        """
        self.to = None
        if isinstance(exc, CallInterruptedError):
            self.interrupted = exc
        if isinstance(exc, ConnectError):
            self.core.anchored(self.type_name, self.key, None)
            self.lost += 1
            if others_answer:
                return self._wait()
            if self.lost > self.core.config.retries:
                raise exc
            return self._wait()
        if isinstance(exc, Unavailable):
            return self._wait()
        if isinstance(exc, Redirect):
            self.redirects += 1
            self.to = exc.to
            self.core.anchored(self.type_name, self.key, exc.to if exc.anchored else None)
            if self.redirects > self.MAX_REDIRECTS:
                return self._wait()  # views changing under us: slow down, until the deadline
            return 0.0
        if isinstance(exc, UnknownTypeError) and self.cls is not None and (address, self.type_name) in self.core.registered:
            self.core.registered.discard((address, self.type_name))  # the node lost it: register again
            return 0.0
        raise exc


class ClientCore:
    """Identity, the current view and the encode/decode rules of a client."""

    MAX_ANCHORS = 100_000

    def __init__(self, config: Config, seeds: tuple[str, ...]) -> None:
        if not seeds:
            raise ConfigError("no DSO node address given")
        for a in seeds:
            parse_address(a)
        self.config = config
        self.seeds = tuple(seeds)
        self.new_identity()
        self._req = itertools.count(1)
        self._lock = threading.Lock()
        self.epoch = 0
        self.view: View | None = None
        self.nodes: tuple[str, ...] = self.seeds
        self.anchors: dict[tuple[str, str], str] = {}  # anchored objects' addresses, learnt from redirects
        self.registered: set[tuple[str, str]] = set()

    # -- identity and framing ------------------------------------------------

    def new_identity(self) -> None:
        """A fresh client id and call sequence (at start, and in a forked child:
        two processes with one id would have their calls de-duplicated
        against each other)."""
        self.client_id = uuid.uuid4().hex
        self._seq = itertools.count(1)
        self._open: dict[int, None] = {}  # calls that may still be sent, in sequence order
        self._seq_lock = threading.Lock()

    def open_call(self) -> tuple[int, int]:
        """A new call's sequence number, and the lowest one still open (``below``).

        Every call below ``below`` has returned or raised and is never sent
        again, so nodes may forget its reply (docs/design.md, "How long a
        node keeps a reply").  Taking the number and entering it under one
        lock keeps ``_open`` in sequence order, so its first key is the lowest;
        :meth:`close_call` when the call is over, whatever its outcome.
        """
        with self._seq_lock:
            seq = next(self._seq)
            self._open[seq] = None
        return seq, next(iter(self._open))

    def close_call(self, seq: int) -> None:
        self._open.pop(seq, None)

    def next_req(self) -> int:
        return next(self._req)

    def hello(self) -> bytes:
        hello = {"version": P.PROTOCOL_VERSION, "token": self.config.token, "client_id": self.client_id}
        body = P.encode_json(hello | {"failover_timeout": self.config.failover_timeout})  # how long our retries may come
        return P.encode_frame(P.Kind.HELLO, 0, body)

    def call_frame(self, req_id: int, call: P.CallRequest) -> bytes:
        return P.encode_frame(P.Kind.CALL, req_id, P.encode_call(call))

    def register_frame(self, req_id: int, type_name: str, cls: type) -> bytes:
        return P.encode_frame(P.Kind.REGISTER, req_id, dumps_class(type_name, cls))

    # -- views and routing -------------------------------------------------------

    def target(self, type_name: str, key: str, attempts: Attempts | None) -> str:
        """Where a call goes: where the last redirect said, else where the object was anchored, else its primary."""
        if attempts is not None and attempts.to is not None:
            return attempts.to
        if self.anchors:
            where = self.anchors.get((type_name, key))
            if where is not None:
                return where
        return self.route(type_name, key)

    def anchored(self, type_name: str, key: str, address: str | None) -> None:
        """Remember where an anchored object lives (``None``: forget it -- it moved or its node is gone)."""
        ref = (type_name, key)
        if address is None:
            self.anchors.pop(ref, None)
            return
        if len(self.anchors) >= self.MAX_ANCHORS:
            self.anchors.pop(next(iter(self.anchors)))
        self.anchors[ref] = address

    def read_target(self, type_name: str, key: str) -> str:
        """The replica that answers this client's sequential reads of an object: always the same
        one (per client), so that one client never sees an object's state go back."""
        view = self.view
        assert view is not None
        replicas = view.replicas(type_name, key)
        return view.address(replicas[hash(self.client_id) % len(replicas)])

    def route(self, type_name: str, key: str) -> str:
        view = self.view
        if view is None:  # before any node told us the view: any node redirects
            return self.seeds[0]
        return view.primary_address(type_name, key)

    @property
    def failure_timeout(self) -> float:
        return self.view.failure_timeout if self.view is not None else 3.0

    def update_view(self, data: dict[str, Any]) -> None:
        view = View.from_json(data)  # ProtocolError when malformed
        with self._lock:
            if view.epoch >= self.epoch:
                self.epoch = view.epoch
                self.view = view
                self.nodes = view.addresses

    def welcome(self, frame: P.Frame, address: str) -> None:
        if frame.kind == P.Kind.FAIL:
            self.raise_fail(frame, address)
        if frame.kind != P.Kind.WELCOME:
            raise ProtocolError(f"node {address} answered the handshake with frame kind {frame.kind}")
        info = P.decode_json(frame.body, "WELCOME")
        self.update_view(info.get("view") or {})

    def others(self, address: str) -> list[str]:
        """Nodes to ask for the view when ``address`` does not answer: the view's others, then the seeds."""
        seen = [a for a in self.nodes if a != address]
        return seen + [a for a in self.seeds if a != address and a not in seen]

    # -- replies ----------------------------------------------------------------

    def result(self, frame: P.Frame, address: str) -> Any:
        """The value of a reply, or raise what it carries."""
        kind = frame.kind
        if kind == P.Kind.OK:
            try:  # the hot path: no message made for an error that does not happen
                return pickle.loads(frame.body)
            except Exception:
                return P.loads(frame.body, what=f"reply from {address}")  # raises SerializationError, naming the node
        if kind == P.Kind.ERROR:
            try:
                exc, tb = pickle.loads(frame.body)
            except Exception as err:  # it pickled on the node but cannot be rebuilt here
                raise RemoteError(type(err).__name__, f"an error from node {address} could not be unpickled: {err}") from None
            if not isinstance(exc, BaseException):
                raise ProtocolError(f"node {address} sent a non-exception error: {exc!r}")
            if tb:
                exc.__cause__ = RemoteTraceback(f'\n"""\n(on node {address})\n{tb}"""')
            raise exc
        if kind == P.Kind.REDIRECT:
            info = P.decode_json(frame.body, "REDIRECT")
            if info.get("view"):
                self.update_view(info["view"])
            to = info.get("to")
            if not isinstance(to, str):
                raise Redirect(None)
            raise Redirect(to, bool(info.get("anchored")))
        if kind == P.Kind.UNAVAILABLE:
            info = P.decode_json(frame.body, "UNAVAILABLE")
            epoch = info.get("epoch", 0)
            raise Unavailable(str(info.get("reason", "")), epoch if isinstance(epoch, int) else 0)
        if kind == P.Kind.FAIL:
            self.raise_fail(frame, address)
        raise ProtocolError(f"node {address} sent unexpected frame kind {kind}")

    def raise_fail(self, frame: P.Frame, address: str) -> None:
        info = P.decode_json(frame.body, "FAIL")
        message = f"node {address}: {info.get('message')}"
        if info.get("code") == "auth":
            raise AuthenticationError(message)
        raise ProtocolError(message)


def dumps_class(type_name: str, cls: type) -> bytes:
    """Pickle a user class *by value* when nodes cannot import its module.

    Classes from installed distributions (site-packages, the stdlib, crucial
    itself) still travel by reference: nodes have those.
    """
    return P.dumps((type_name, cls), what=f"shared class {type_name}", code=(cls,))
