"""DSO clients: :class:`Client` for threads, :class:`AsyncClient` for asyncio."""

from ._async import AsyncClient
from ._default import connect, default_client, get_client, start_embedded, stop_embedded
from ._ring import HashRing
from ._sync import Client

__all__ = ["AsyncClient", "Client", "HashRing", "connect", "default_client", "get_client", "start_embedded", "stop_embedded"]
