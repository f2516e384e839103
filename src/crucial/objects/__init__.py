"""The library of shared objects, and ``@shared`` for user classes."""

from __future__ import annotations

from . import _dropin, atomics, containers, synchronization
from ._monitor import current_caller, readonly, wait_until
from ._proxy import Proxy, delete
from ._shared import shared
from .atomics import *  # noqa: F403
from .containers import *  # noqa: F403
from .synchronization import *  # noqa: F403

__all__ = [
    "Proxy",
    "builtin_types",
    "current_caller",
    "delete",
    "readonly",
    "shared",
    "wait_until",
    *atomics.__all__,
    *containers.__all__,
    *synchronization.__all__,
]


def builtin_types() -> dict[str, type]:
    """Type name -> node-side class, for every built-in proxy."""
    out: dict[str, type] = {}
    for module in (atomics, containers, synchronization, _dropin):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, Proxy) and "_impl" in obj.__dict__:
                out[obj._type_name] = obj._impl
    return out
