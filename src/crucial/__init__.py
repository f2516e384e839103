"""crucial: stateful serverless computing with distributed shared objects.

Shared state lives on DSO nodes; every object is named by a key and its
methods run on the node that owns it, one call at a time::

    import crucial
    hits = crucial.AtomicInt(key="hits")
    hits.increment_and_get()

With no configuration the first use starts an embedded node on this machine.
"""

from __future__ import annotations

from .client import AsyncClient, Client, connect
from .config import Config, load_config
from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exc_all
from .objects import *  # noqa: F403
from .objects import __all__ as _obj_all

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "Config", "connect", "load_config", *_exc_all, *_obj_all]
