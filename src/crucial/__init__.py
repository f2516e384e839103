"""crucial: stateful serverless computing with distributed shared objects.

Shared state lives on DSO nodes; every object is named by a key and its
methods run on the node that owns it, one call at a time::

    import crucial
    hits = crucial.AtomicInt(key="hits")
    hits.increment_and_get()

With no configuration the first use starts an embedded node on this machine.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of a shell verb's start)
if TYPE_CHECKING:  # imported on first use at run time, see __getattr__ below
    from .client import AsyncClient, Client, connect  # noqa: F401
    from .compute import CloudThread, Retry, ServerlessExecutor  # noqa: F401
    from .config import Config, load_config  # noqa: F401
    from .exceptions import *  # noqa: F403
    from .objects import Proxy, current_caller, delete, readonly, shared, wait_until  # noqa: F401
    from .objects.atomics import *  # noqa: F403
    from .objects.containers import *  # noqa: F403
    from .objects.synchronization import *  # noqa: F403

__version__ = "0.1.0"

_COMPUTE = {"CloudThread", "Retry", "ServerlessExecutor"}


def _load() -> None:
    """Import the exceptions, the client and the objects and put their public names here (once).

    ``import crucial`` itself imports nothing: a shell verb (``crucial ipc``,
    a client process per call) starts in milliseconds without the client,
    the object library, threading, typing and the rest, which the first use
    of any name here brings in.
    """
    global _loading
    with _load_lock:  # one thread loads; the others wait for it
        if "__all__" in globals():
            return
        _loading = _thread.get_ident()  # `from . import x` below asks this module for x first: no recursion
        try:
            _import_all()
        finally:
            _loading = 0


_load_lock = _thread.RLock()
_loading = 0  # the thread loading the names, while it does


def _import_all() -> None:
    from . import exceptions
    from .client import Client, connect
    from .config import Config, load_config
    from .objects import Proxy, atomics, containers, current_caller, delete, readonly, shared, synchronization, wait_until

    names = globals()
    names.update(Client=Client, connect=connect, Config=Config, load_config=load_config, Proxy=Proxy)
    names.update(current_caller=current_caller, delete=delete, readonly=readonly, shared=shared, wait_until=wait_until)
    for module in (exceptions, atomics, containers, synchronization):
        names.update({name: getattr(module, name) for name in module.__all__})
    names["__all__"] = [
        "AsyncClient",
        "CloudThread",
        "Retry",
        "ServerlessExecutor",
        "Client",
        "Config",
        "Proxy",
        "connect",
        "current_caller",
        "delete",
        "load_config",
        "readonly",
        "shared",
        "wait_until",
        *exceptions.__all__,
        *atomics.__all__,
        *containers.__all__,
        *synchronization.__all__,
    ]


def __getattr__(name: str) -> object:
    """The client, the objects (and ``__all__``) load on first use; the compute tier and
    asyncio only when asked for: a program that only shares objects, or a shell verb,
    does not pay for them."""
    if name in _COMPUTE:
        from . import compute

        return getattr(compute, name)
    if name == "AsyncClient":
        from .client import AsyncClient

        return AsyncClient
    if name.startswith("_") and name != "__all__":  # private names (and __path__, __file__... asked by tools)
        raise AttributeError(f"module 'crucial' has no attribute {name!r}")
    if name in _submodules():  # crucial.objects and the like: that module alone, as an eager package had it
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    names = globals()
    if "__all__" not in names and _loading != _thread.get_ident():
        _load()
        if name in names:
            return names[name]
    raise AttributeError(f"module 'crucial' has no attribute {name!r}")


_SUBMODULES: frozenset[str] | None = None


def _submodules() -> frozenset[str]:
    global _SUBMODULES
    if _SUBMODULES is None:
        import os

        here = globals()["__path__"][0]
        _SUBMODULES = frozenset(entry.split(".")[0] for entry in os.listdir(here) if not entry.startswith("_"))
    return _SUBMODULES


def __dir__() -> list[str]:
    if "__all__" not in globals():
        _load()
    return sorted(set(globals()) | set(globals()["__all__"]))
