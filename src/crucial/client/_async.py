"""The asyncio client: one multiplexed connection per node.

Many calls share a connection; each waits on a future keyed by its request
id and replies are matched as they come, in any order.  Use it from a
single event loop; it shares :class:`ClientCore` with the thread client.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from typing import Any

from .. import protocol as P
from .._tls import client_context, describe_tls_failure, handshake_hint
from ..config import Config
from ..exceptions import (
    CallInterruptedError,
    CallTimeoutError,
    ConnectError,
    CrucialError,
    ProtocolError,
    TLSError,
    UnknownTypeError,
)
from ._core import Attempts, ClientCore, Redirect, Unavailable, dumps_class, parse_address
from ._output import show

#: where what a call printed on its node goes: (stream, text)
OnOutput = Callable[[int, str], None]

__all__ = ["AsyncClient"]


class _AsyncConn(asyncio.Protocol):
    def __init__(self, core: ClientCore, address: str) -> None:
        self.core = core
        self.address = address
        self.decoder = P.FrameDecoder(core.config.max_frame_size, P.Kind.FROM_NODE)
        self.waiters: dict[int, asyncio.Future[P.Frame]] = {}
        self.outputs: dict[int, OnOutput] = {}  # request id -> where its OUTPUT goes (default: show)
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self._fail_all(exc)
            assert self.transport is not None
            self.transport.close()
            return
        for f in frames:
            if f.kind == P.Kind.OUTPUT:  # what the call printed on the node, before its reply
                try:
                    stream, text = P.decode_output(f.body)
                except ProtocolError:
                    continue
                self.outputs.get(f.req_id, show)(stream, text)
                continue
            if f.kind == P.Kind.FAIL and f.req_id not in self.waiters:
                for waiter in self.waiters.values():  # connection-level failure: everyone gets it
                    if not waiter.done():
                        waiter.set_result(f)
                self.waiters.clear()
                continue
            fut = self.waiters.pop(f.req_id, None)
            if fut is not None and not fut.done():
                fut.set_result(f)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(ConnectError(f"connection to DSO node {self.address} lost: {exc or 'closed'}", self.address))

    def _fail_all(self, exc: BaseException) -> None:
        self.lost = exc
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(exc)
        self.waiters.clear()

    async def request(self, kind: int, req_id: int, body: bytes, on_output: OnOutput | None = None) -> P.Frame:
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise ConnectError(f"connection to DSO node {self.address} is closed", self.address)
        fut: asyncio.Future[P.Frame] = asyncio.get_running_loop().create_future()
        self.waiters[req_id] = fut
        if on_output is not None:
            self.outputs[req_id] = on_output
        self.transport.write(P.encode_frame(kind, req_id, body))
        try:
            return await fut
        finally:
            self.waiters.pop(req_id, None)
            self.outputs.pop(req_id, None)


class AsyncClient:
    """The asyncio twin of :class:`~crucial.client.Client` (same arguments)."""

    def __init__(self, seeds: tuple[str, ...] | list[str] | str, config: Config | None = None) -> None:
        if isinstance(seeds, str):
            seeds = tuple(a for a in seeds.split(",") if a)
        self.core = ClientCore(config or Config(), tuple(seeds))
        self._conns: dict[str, _AsyncConn] = {}
        self._connecting: dict[str, asyncio.Future[_AsyncConn]] = {}
        self._closed = False

    @property
    def seeds(self) -> tuple[str, ...]:
        return self.core.seeds

    async def _conn(self, address: str) -> _AsyncConn:
        conn = self._conns.get(address)
        if conn is not None and conn.lost is None:
            return conn
        if self._closed:
            raise ConnectError("client is closed", address)
        pending = self._connecting.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_AsyncConn] = loop.create_future()
        self._connecting[address] = fut
        try:
            conn = await self._open(address)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._connecting.pop(address, None)
        fut.set_result(conn)
        self._conns[address] = conn
        return conn

    async def _open(self, address: str) -> _AsyncConn:
        host, port = parse_address(address)
        loop = asyncio.get_running_loop()
        timeout = self.core.config.connect_timeout
        tls = client_context(self.core.config)
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _AsyncConn(self.core, address), host, port), timeout
            )
        except (TimeoutError, OSError) as exc:
            raise ConnectError(f"cannot connect to DSO node {address}: {exc or 'timed out'}", address) from exc
        if tls is not None:  # start_tls rather than create_connection(ssl=): a failed handshake's socket is closed here
            try:
                conn.transport = await loop.start_tls(transport, conn, tls, server_hostname=host, ssl_handshake_timeout=timeout)
            except ssl.SSLError as exc:
                transport.close()
                raise TLSError(describe_tls_failure(exc, address), address) from exc
            except (TimeoutError, OSError) as exc:
                transport.close()
                raise ConnectError(f"TLS handshake with DSO node {address} failed: {exc or 'timed out'}", address) from exc
        try:
            assert conn.transport is not None
            fut: asyncio.Future[P.Frame] = loop.create_future()
            conn.waiters[0] = fut
            conn.transport.write(self.core.hello())
            frame = await asyncio.wait_for(fut, timeout)
            self.core.welcome(frame, address)
        except BaseException as exc:
            assert conn.transport is not None
            conn.transport.close()
            if isinstance(exc, asyncio.TimeoutError):
                raise ConnectError(f"DSO node {address} did not answer the handshake within {timeout} s", address) from exc
            if type(exc) is ConnectError:  # closed without a word: TLS on one side only, or a client cert missing
                raise ConnectError(f"{exc} {handshake_hint(tls)}", address) from exc
            raise
        return conn

    async def _roundtrip(
        self, address: str, kind: int, body: bytes, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> P.Frame:
        conn = await self._conn(address)
        try:
            return await asyncio.wait_for(conn.request(kind, self.core.next_req(), body, on_output), timeout)
        except TimeoutError as exc:
            raise CallTimeoutError(f"no reply from DSO node {address} within {timeout} s") from exc
        except ConnectError as exc:
            if kind != P.Kind.CALL or isinstance(exc, CallInterruptedError):
                raise
            raise CallInterruptedError(f"connection to DSO node {address} lost after the call was sent: {exc}", address) from exc

    async def _ask_view(self, failed: str) -> bool:
        """Ask the other nodes for the view; True if one answered."""
        for other in self.core.others(failed):
            try:
                frame = await self._roundtrip(other, P.Kind.VIEW, b"", timeout=self.core.config.connect_timeout)
                self.core.welcome(frame, other)
                return True
            except (CrucialError, OSError):
                continue
        return False

    async def call(
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
        on_output: OnOutput | None = None,
        owner: int | None = None,
    ) -> Any:
        """Same contract as :meth:`crucial.client.Client.call`.

        What the call prints on its node goes to this process's
        ``sys.stdout``/``sys.stderr``, or to ``on_output(stream, text)``.
        The caller, for objects with an owner (``RLock``, ``Condition``), is
        the asyncio task -- tasks are to a loop what threads are to a
        process -- unless ``owner`` says otherwise.
        """
        core = self.core
        if owner is None:
            task = asyncio.current_task()
            owner = id(task) if task is not None else threading.get_ident()
        seq, below = core.open_call()
        try:
            body = P.encode_call(P.CallRequest(seq, type_name, key, method, args, kwargs, create, force, owner, below))
            return await self._call(body, type_name, key, cls, timeout, on_output)
        finally:
            core.close_call(seq)

    async def _call(self, body: bytes, type_name: str, key: str, cls: type | None, timeout: float | None, on_output: Any) -> Any:
        """:meth:`call` with its body made: send it (again, to another node) until a node answers it."""
        core = self.core
        timeout = timeout if timeout is not None else core.config.call_timeout
        attempts = Attempts(core, type_name, key, cls)
        while True:
            address = core.target(type_name, key, attempts)
            try:
                if cls is not None and (address, type_name) not in core.registered:
                    frame = await self._roundtrip(address, P.Kind.REGISTER, dumps_class(type_name, cls))
                    core.result(frame, address)
                    core.registered.add((address, type_name))
                return core.result(await self._roundtrip(address, P.Kind.CALL, body, timeout, on_output), address)
            except (ConnectError, Redirect, Unavailable, UnknownTypeError) as exc:
                others = await self._ask_view(address) if isinstance(exc, ConnectError) else None
                pause = attempts.again(exc, address, others)
                if pause:
                    await asyncio.sleep(pause)

    async def delete(self, type_name: str, key: str) -> bool:
        attempts = Attempts(self.core, type_name, key, None)
        while True:
            address = self.core.target(type_name, key, attempts)
            try:
                frame = await self._roundtrip(address, P.Kind.DELETE, P.dumps((type_name, key)))
                return bool(self.core.result(frame, address))
            except (ConnectError, Redirect, Unavailable) as exc:
                others = await self._ask_view(address) if isinstance(exc, ConnectError) else None
                pause = attempts.again(exc, address, others)
                if pause:
                    await asyncio.sleep(pause)

    async def info(self, address: str | None = None, objects: int = 0) -> dict[str, Any]:
        """One node's statistics (see :meth:`crucial.client.Client.info`)."""
        address = address or self.core.seeds[0]
        frame = await self._roundtrip(address, P.Kind.INFO, P.dumps({"objects": objects}))
        return dict(self.core.result(frame, address))

    async def aclose(self) -> None:
        self._closed = True
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            if conn.transport is not None:
                if conn.transport.get_extra_info("sslcontext") is not None:
                    conn.transport.abort()  # no TLS close_notify exchange: the socket is closed now, not after the loop ends
                else:
                    conn.transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
