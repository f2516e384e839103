"""DSO nodes: the asyncio server, its object table, and the process launcher."""

from ._main import ServerOptions, run_nodes
from ._node import Node

__all__ = ["Node", "ServerOptions", "run_nodes"]
