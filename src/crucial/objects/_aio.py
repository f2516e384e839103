"""``proxy.aio``: every proxy, awaited from asyncio.

::

    hits = crucial.AtomicInt(key="hits")
    await hits.aio.add_and_get(1)            # one call, on an AsyncClient
    async with crucial.Lock(key="l").aio:    # acquire/release, awaited
        ...
    await barrier.aio.parties                # a property (or a @shared object's attribute): await it

No method is written twice.  A proxy method is a small function of its
arguments that makes one call to its object (``return self._call("put",
item, False, None)``); the view runs that very function with a stand-in
``self`` whose ``_call`` records the call instead of making it, then sends
the recorded call through an :class:`~crucial.client.AsyncClient`.  The few
methods that make several calls or none through ``_call`` have async
versions here (``Condition.wait_for``, ``delete``).

The client is found as a proxy's own is: the proxy's cluster when it came
pickled with one, else this process's default cluster (the configuration,
or the embedded node, started on first use).  One client per event loop
and cluster; it is closed when the loop shuts down its async generators
(``asyncio.run`` does).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import types
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..exceptions import ObjectError
from . import _proxy
from ._proxy import Proxy

__all__ = ["AsyncView", "view"]


class _Planned(Exception):
    """Raised by the stand-in's ``_call``: the one call the method wanted to make."""

    def __init__(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(method)
        self.method, self.args, self.kwargs = method, args, kwargs


class _Planner:
    """``self`` for a proxy method run by the view: records its ``_call``; other names come from the proxy."""

    __slots__ = ("_proxy",)

    def __init__(self, proxy: Proxy) -> None:
        object.__setattr__(self, "_proxy", proxy)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise _Planned(method, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = inspect.getattr_static(type(self._proxy), name, _MISSING)
        if inspect.isfunction(attr):  # another method: it must record too, not call
            return types.MethodType(attr, self)
        if isinstance(attr, property) and attr.fget is not None:
            return attr.fget(self)
        if attr is _MISSING and hasattr(type(self._proxy), "__getattr__"):
            return type(self._proxy).__getattr__(self, name)  # a @shared object's attribute
        return getattr(self._proxy, name)


_MISSING = object()


class AsyncView:
    """The asyncio face of one proxy (``proxy.aio``)."""

    __slots__ = ("_created", "_proxy")

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._created: weakref.WeakSet[Any] = weakref.WeakSet()  # async clients that sent the create arguments

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        attr = inspect.getattr_static(type(self._proxy), name, _MISSING)
        special = _SPECIAL.get(name)
        if special is not None and attr is special[0]:
            return types.MethodType(special[1], self)
        if inspect.isfunction(attr):
            return _bind(self, attr, name)
        if isinstance(attr, (staticmethod, classmethod)):
            raise AttributeError(f"{type(self._proxy).__qualname__}.{name} is not a call to the object")
        if isinstance(attr, property) and attr.fget is not None:
            return self._run(attr.fget, (), {})  # awaitable: ``await barrier.aio.parties``
        if attr is _MISSING and hasattr(type(self._proxy), "__getattr__") and not name.startswith("_"):
            return self._run(lambda planner: planner.__getattr__(name), (), {})  # a @shared object's attribute
        raise AttributeError(f"{type(self._proxy).__qualname__!r} proxy has no method {name!r} to await")

    async def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return fn(_Planner(self._proxy), *args, **kwargs)  # a method that makes no call: its value
        except _Planned as plan:
            return await self._send(plan.method, plan.args, plan.kwargs)

    async def _send(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        proxy = self._proxy
        client = await _client(proxy)
        created = proxy._created_on is not None or client in self._created
        value = await client.call(
            proxy._type_name,
            proxy.key,
            method,
            args,
            kwargs or None,
            create=None if created else proxy._create,
            cls=proxy._user_class,
        )
        self._created.add(client)
        return value

    # -- what does not fit "one call": written out ------------------------------------

    async def _aio_delete(self) -> bool:
        """Delete the object (``proxy.delete()``)."""
        client = await _client(self._proxy)
        return await client.delete(self._proxy._type_name, self._proxy.key)

    async def _aio_wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """``Condition.wait_for``: ``predicate`` (a function or a coroutine function) runs here, after each wake-up."""

        async def check() -> Any:
            result = predicate()
            return await result if inspect.isawaitable(result) else result

        deadline = None if timeout is None else time.monotonic() + timeout
        result = await check()
        while not result:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            await self.__getattr__("wait")(remaining)
            result = await check()
        return result

    async def __aenter__(self) -> Any:
        return await self.__getattr__("acquire")()

    async def __aexit__(self, *exc: object) -> None:
        await self.__getattr__("release")()

    def __repr__(self) -> str:
        return f"<async view of {self._proxy!r}>"


def _specials() -> dict[str, tuple[Any, Callable[..., Any]]]:
    from .synchronization import Condition

    return {"delete": (Proxy.delete, AsyncView._aio_delete), "wait_for": (Condition.wait_for, AsyncView._aio_wait_for)}


def _bind(v: AsyncView, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    async def method(*args: Any, **kwargs: Any) -> Any:
        return await v._run(fn, args, kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = fn.__doc__
    return method


def view(proxy: Proxy) -> AsyncView:
    if _proxy._node_transport is not None:
        raise ObjectError(
            f"{proxy._type_name} {proxy.key!r}: .aio is for programs; inside a method on a node, call the proxy itself",
            proxy._type_name,
            proxy.key,
        )
    v = _views.get(id(proxy))
    if v is None or v._proxy is not proxy:
        v = _views[id(proxy)] = AsyncView(proxy)
        weakref.finalize(proxy, _views.pop, id(proxy), None)
    return v


#: name -> (the proxy method that is not one call, its async version)
_SPECIAL = _specials()

#: id(proxy) -> its view, so that a view remembers which clients created the object
_views: dict[int, AsyncView] = {}

# -- the async client of a loop ---------------------------------------------------------------

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)


async def _client(proxy: Proxy) -> Any:
    """This loop's AsyncClient for the proxy's cluster (configured as the sync client is)."""
    from ..client import _default
    from ..client._async import AsyncClient
    from ..config import load_config

    if proxy._seeds:
        seeds = tuple(proxy._seeds)
        config = None
    else:
        sync = _default._default
        if sync is None:
            sync = await asyncio.to_thread(_default.default_client)  # may start the embedded node
        seeds = sync.seeds
        config = sync.core.config
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    entry = per_loop.get(seeds)
    if entry is None:
        client = AsyncClient(seeds, config or load_config(dso=seeds))
        closer = _close_with_loop(client)
        await closer.__anext__()  # started: the loop finalizes it (closing the client) when it shuts down
        entry = per_loop[seeds] = (client, closer)
    return entry[0]


async def _close_with_loop(client: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()
