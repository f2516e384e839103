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
import uuid
from typing import Any

from .. import protocol as P
from ..config import Config
from ..exceptions import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    ProtocolError,
    RemoteError,
    RemoteTraceback,
    UnknownTypeError,
)
from ._ring import HashRing

__all__ = ["Attempts", "ClientCore", "Redirect", "parse_address"]


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"bad node address {address!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class Redirect(Exception):
    """Internal: the node does not own the object; the view was refreshed."""


class Attempts:
    """Whether a failed call may be sent again (pure; shared by both clients).

    Safe to resend: the call keeps its id, so a node that already applied
    it answers from its de-duplication window instead of applying it twice.
    """

    MAX_REDIRECTS = 8

    def __init__(self, core: ClientCore, type_name: str, key: str, cls: type | None) -> None:
        self.core = core
        self.type_name = type_name
        self.key = key
        self.cls = cls
        self.lost = 0
        self.redirects = 0

    def again(self, exc: Exception, address: str) -> None:
        """Return to retry after ``exc``; re-raise it when out of tries."""
        if isinstance(exc, ConnectError):
            self.lost += 1
            if self.lost > self.core.config.retries:
                raise exc
        elif isinstance(exc, Redirect):
            self.redirects += 1
            if self.redirects > self.MAX_REDIRECTS:
                raise ProtocolError(f"object {self.type_name} {self.key!r} keeps moving between nodes") from None
        elif isinstance(exc, UnknownTypeError) and self.cls is not None and (address, self.type_name) in self.core.registered:
            self.core.registered.discard((address, self.type_name))  # the node lost it: register again
        else:
            raise exc


class ClientCore:
    """Identity, the current view and the encode/decode rules of a client."""

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
        self.nodes: tuple[str, ...] = self.seeds
        self.ring = HashRing(self.nodes)
        self.registered: set[tuple[str, str]] = set()

    # -- identity and framing ------------------------------------------------

    def new_identity(self) -> None:
        """A fresh client id and call sequence (at start, and in a forked child:
        two processes with one id would have their calls de-duplicated
        against each other)."""
        self.client_id = uuid.uuid4().hex
        self._seq = itertools.count(1)

    def next_seq(self) -> int:
        return next(self._seq)

    def next_req(self) -> int:
        return next(self._req)

    def hello(self) -> bytes:
        body = P.encode_json({"version": P.PROTOCOL_VERSION, "token": self.config.token, "client_id": self.client_id})
        return P.encode_frame(P.Kind.HELLO, 0, body)

    def call_frame(self, req_id: int, call: P.CallRequest) -> bytes:
        return P.encode_frame(P.Kind.CALL, req_id, P.encode_call(call))

    def register_frame(self, req_id: int, type_name: str, cls: type) -> bytes:
        return P.encode_frame(P.Kind.REGISTER, req_id, dumps_class(type_name, cls))

    # -- views and routing -------------------------------------------------------

    def route(self, type_name: str, key: str) -> str:
        return self.ring.owner(type_name, key)

    def update_view(self, view: dict[str, Any]) -> None:
        epoch, nodes = view.get("epoch"), view.get("nodes")
        if not isinstance(epoch, int) or not isinstance(nodes, list) or not nodes:
            raise ProtocolError(f"malformed view {view!r}")
        with self._lock:
            if epoch >= self.epoch:
                self.epoch = epoch
                self.nodes = tuple(nodes)
                self.ring = HashRing(self.nodes)

    def welcome(self, frame: P.Frame, address: str) -> None:
        if frame.kind == P.Kind.FAIL:
            self.raise_fail(frame, address)
        if frame.kind != P.Kind.WELCOME:
            raise ProtocolError(f"node {address} answered the handshake with frame kind {frame.kind}")
        info = P.decode_json(frame.body, "WELCOME")
        self.update_view(info.get("view") or {})

    # -- replies ----------------------------------------------------------------

    def result(self, frame: P.Frame, address: str) -> Any:
        """The value of a reply, or raise what it carries."""
        kind = frame.kind
        if kind == P.Kind.OK:
            return P.loads(frame.body, what=f"reply from {address}")
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
            self.update_view(P.decode_json(frame.body, "REDIRECT").get("view") or {})
            raise Redirect()
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
