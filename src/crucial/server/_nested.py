"""Calls made by a method running on a node (a proxy stored inside an object).

The calling method's greenlet suspends -- its object stays held -- while the
nested call runs: on this node through its own object table, on another node
through an asyncio client.  The event loop keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

from ..client._async import AsyncClient
from ..exceptions import CallCancelledError, ObjectError
from ..objects._monitor import CallGreenlet, current_caller, suspend
from ._runtime import Invocation
from ._security import node_client_config

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["NodeTransport"]


class NodeTransport:
    """The :class:`~crucial.objects._proxy.Transport` proxies use inside a node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._peers: AsyncClient | None = None

    @property
    def seeds(self) -> tuple[str, ...]:
        assert self.node.view is not None
        return self.node.view.addresses

    def _client(self) -> AsyncClient:
        if self._peers is None:
            self._peers = AsyncClient(self.seeds, node_client_config(self.node, self.seeds))
        return self._peers

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
        node = self.node
        assert node.view is not None and node.table is not None
        me = getcurrent()
        if isinstance(me, CallGreenlet) and me.ref == (type_name, key):
            # it would wait for itself forever: the object is held by this very call
            raise ObjectError(f"a method of {type_name} {key!r} called its own object through a proxy; use self", type_name, key)
        running = node.table.current  # the calling method's invocation: what the nested call prints is its output
        out = running.output if running is not None else None
        table = node.table
        cell = table.cells.get((type_name, key))
        persistent = (cell is not None and cell.repl is not None) or (create is not None and len(create) > 2 and create[2][0])
        if persistent or node.view.primary(type_name, key) != node.node_id:
            # another node's object, or a replicated one: through the node's full call path
            coro_args = (type_name, key, method, args, kwargs)
            return suspend(lambda resume: self._remote(resume, coro_args, create, force, cls, timeout, out))
        if cls is not None and type_name not in table.types:
            table.types[type_name] = cls
        if create is not None or force:
            a, kw = (create[0], create[1]) if create is not None else ((), {})
            cell = table.create(type_name, key, a, kw, force)
        else:
            cell = table.lookup(type_name, key, method)
        if not method:
            return None
        caller = current_caller()

        def start(resume: Any) -> None:
            inv = Invocation(method, args, kwargs, caller, lambda ok, value, tb: resume(ok, value))
            inv.output = out
            try:
                table.submit(cell, inv)
            except Exception as exc:
                resume(False, exc)

        return suspend(start)

    def _remote(
        self, resume: Any, call: tuple[Any, ...], create: Any, force: bool, cls: type | None, timeout: float | None, out: Any
    ) -> None:
        on_output = out.write if out is not None else None
        fut = asyncio.ensure_future(
            self._client().call(
                *call, create=create, force=force, cls=cls, timeout=timeout, on_output=on_output, owner=threading.get_ident()
            )
        )
        fut.add_done_callback(lambda f: _settle(f, resume))

    def delete(self, type_name: str, key: str) -> bool:
        node = self.node
        assert node.view is not None and node.table is not None
        cell = node.table.cells.get((type_name, key))
        if node.view.primary(type_name, key) == node.node_id and (cell is None or cell.repl is None):
            return node.table.delete(type_name, key)

        def start(resume: Any) -> None:
            fut = asyncio.ensure_future(self._client().delete(type_name, key))
            fut.add_done_callback(lambda f: _settle(f, resume))

        return bool(suspend(start))


def _settle(fut: asyncio.Future[Any], resume: Any) -> None:
    """Hand a finished nested call's outcome to the suspended method."""
    if fut.cancelled():  # the node is shutting down
        resume(False, CallCancelledError("the nested call was cancelled"))
        return
    exc = fut.exception()
    resume(exc is None, exc if exc is not None else fut.result())
