"""DSO clients: :class:`Client` for threads, :class:`AsyncClient` for asyncio."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._default import connect, default_client, get_client, start_embedded, stop_embedded
from ._ring import HashRing
from ._sync import Client

if TYPE_CHECKING:
    from ._async import AsyncClient

__all__ = ["AsyncClient", "Client", "HashRing", "connect", "default_client", "get_client", "start_embedded", "stop_embedded"]


def __getattr__(name: str) -> object:
    """asyncio costs ~40 ms to import: programs (and shell verbs) that never use it do not pay."""
    if name == "AsyncClient":
        from ._async import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'crucial.client' has no attribute {name!r}")
