"""Connections between nodes: replication records, hand-overs, view notices.

::

    primary ──PeerLink──► backup's port (HELLO with "peer": node id)
       │  REPLICATE batch 1 ─►
       │  REPLICATE batch 2 ─►          a backup answers its batches in order;
       │  ◄─ OK [acks of batch 1]        a lost connection is re-opened and
       │  ◄─ OK [acks of batch 2]        every unanswered request resent, in order

A link never gives up on its own: its owner closes it when the peer leaves
the view.  Resending is safe because a replica recognises a record it
already holds (same version) and acknowledges it again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import protocol as P
from ..client._core import parse_address
from ..exceptions import ConnectError, ProtocolError

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["PeerLink"]

log = logging.getLogger("crucial.node")

#: a reply handler: called with the reply frame, or with None when the link was closed for good
OnReply = Callable[[P.Frame | None], None]


class _Request:
    __slots__ = ("body", "kind", "on_reply", "req_id")

    def __init__(self, kind: int, body: bytes, on_reply: OnReply, req_id: int) -> None:
        self.kind = kind
        self.body = body
        self.on_reply = on_reply
        self.req_id = req_id


class _Proto(asyncio.Protocol):
    def __init__(self, link: PeerLink) -> None:
        self.link = link
        self.decoder = P.FrameDecoder(link.node.max_frame_size, P.Kind.REPLIES)
        self.transport: asyncio.Transport | None = None
        self.welcomed: asyncio.Future[P.Frame] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            log.warning("peer %s sent a bad frame: %s", self.link.address, exc)
            assert self.transport is not None
            self.transport.close()
            return
        for f in frames:
            if not self.welcomed.done():
                self.welcomed.set_result(f)
                continue
            self.link._reply(self, f)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectError(f"peer {self.link.address} closed: {exc}", self.link.address))
            self.welcomed.exception()
        self.link._lost(self)


class PeerLink:
    """An ordered, resending request channel from this node to one other node."""

    RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)

    def __init__(self, node: Node, peer_id: str, address: str) -> None:
        self.node = node
        self.peer_id = peer_id
        self.address = address
        self.registered: set[str] = set()  # user types this peer was sent
        # sent or to send, unanswered, in request order
        self._queue: collections.OrderedDict[int, _Request] = collections.OrderedDict()
        self._proto: _Proto | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._failures = 0
        self._next_req = 1

    def request(self, kind: int, body: bytes, on_reply: OnReply) -> None:
        """Send (now or after reconnecting) and call ``on_reply`` with the answer, in order."""
        if self._closed:
            on_reply(None)
            return
        req = _Request(kind, body, on_reply, self._next_req)
        self._next_req += 1
        self._queue[req.req_id] = req
        proto = self._proto
        if proto is not None and proto.transport is not None and not proto.transport.is_closing():
            self._write(proto, req)
        else:
            self._ensure_connecting()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def _write(self, proto: _Proto, req: _Request) -> None:
        assert proto.transport is not None
        proto.transport.write(P.encode_frame(req.kind, req.req_id, req.body))

    def _ensure_connecting(self) -> None:
        if self._connecting is None and not self._closed:
            self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                try:
                    host, port = parse_address(self.address)
                    tls = self.node.tls
                    secure: dict[str, Any] = {} if tls is None else {"ssl": tls.peer_context(), "server_hostname": host}
                    _, proto = await asyncio.wait_for(loop.create_connection(lambda: _Proto(self), host, port, **secure), 5.0)
                    assert proto.transport is not None
                    proto.transport.write(P.encode_frame(P.Kind.HELLO, 0, self.node.peer_hello()))
                    welcome = await asyncio.wait_for(proto.welcomed, 5.0)
                    if welcome.kind != P.Kind.WELCOME:
                        raise ConnectError(f"peer {self.address} refused the handshake (kind {welcome.kind})", self.address)
                except (OSError, TimeoutError, ConnectError) as exc:
                    delay = self.RETRY_DELAYS[min(self._failures, len(self.RETRY_DELAYS) - 1)]
                    self._failures += 1
                    if self._failures in (1, 20):
                        log.info("cannot reach peer %s (%s): retrying", self.address, exc)
                    await asyncio.sleep(delay)
                    continue
                if self._closed:
                    assert proto.transport is not None
                    proto.transport.close()
                    return
                self._failures = 0
                self._proto = proto
                self.registered.clear()  # a restarted peer forgot them: they are resent as needed
                for req in self._queue.values():  # everything unanswered, in order
                    self._write(proto, req)
                return
        finally:
            self._connecting = None

    def _reply(self, proto: _Proto, frame: P.Frame) -> None:
        if proto is not self._proto:
            return
        if frame.kind == P.Kind.FAIL:
            log.warning("peer %s failed a request: %s", self.address, frame.body[:200])
            assert proto.transport is not None
            proto.transport.close()
            return
        req = self._queue.pop(frame.req_id, None)
        if req is None:
            log.warning("peer %s answered an unknown request %d", self.address, frame.req_id)
            return
        req.on_reply(frame)

    def _lost(self, proto: _Proto) -> None:
        if proto is self._proto:
            self._proto = None
            if self._queue and not self._closed:
                self._ensure_connecting()

    def close(self) -> None:
        """The peer left the view: drop the link; unanswered requests get ``None``."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
        queue, self._queue = self._queue, collections.OrderedDict()
        for req in queue.values():
            req.on_reply(None)

    def __repr__(self) -> str:
        return f"<PeerLink {self.peer_id}@{self.address} backlog={len(self._queue)}>"


def reply_value(frame: P.Frame | None, address: str) -> Any:
    """The OK payload of a peer's reply; raise ConnectError for a closed link, ProtocolError otherwise."""
    if frame is None:
        raise ConnectError(f"link to {address} closed", address)
    if frame.kind == P.Kind.OK:
        return P.loads(frame.body, what=f"reply from peer {address}")
    raise ProtocolError(f"peer {address} answered with frame kind {frame.kind}")
