"""crucial: stateful serverless computing with distributed shared objects.

Shared state lives on DSO nodes; every object is named by a key and its
methods run on the node that owns it, one call at a time::

    import crucial
    hits = crucial.AtomicInt(key="hits")
    hits.increment_and_get()

With no configuration the first use starts an embedded node on this machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .client import Client, connect
from .config import Config, load_config
from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exc_all
from .objects import Proxy, current_caller, delete, readonly, shared, wait_until
from .objects.atomics import *  # noqa: F403
from .objects.atomics import __all__ as _atomics_all
from .objects.containers import *  # noqa: F403
from .objects.containers import __all__ as _containers_all
from .objects.synchronization import *  # noqa: F403
from .objects.synchronization import __all__ as _sync_all

if TYPE_CHECKING:  # imported lazily at run time, see __getattr__ below
    from .client import AsyncClient
    from .compute import CloudThread, Retry, ServerlessExecutor

__version__ = "0.1.0"

__all__ = [
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
    *_exc_all,
    *_atomics_all,
    *_containers_all,
    *_sync_all,
]


_COMPUTE = {"CloudThread", "Retry", "ServerlessExecutor"}


def __getattr__(name: str) -> object:
    """The compute tier and asyncio are imported on first use: a program that only
    shares objects, or a shell verb, does not pay for them."""
    if name in _COMPUTE:
        from . import compute

        return getattr(compute, name)
    if name == "AsyncClient":
        from .client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'crucial' has no attribute {name!r}")
