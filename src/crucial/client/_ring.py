"""Consistent hashing of object references onto nodes.

Pure and deterministic, so every client and every node computes the same
owner for a reference ``(type, key)`` from the same view.  Each node gets
``vnodes`` points on a 64-bit ring; a reference belongs to the first point
clockwise from its hash.  Adding a node moves only the references that land
on its new points (about ``1/(n+1)`` of them).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence

__all__ = ["HashRing", "ref_hash"]

DEFAULT_VNODES = 128


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def ref_hash(type_name: str, key: str) -> int:
    """The ring position of a reference (stable across processes and runs)."""
    return _h(f"{type_name}\x00{key}".encode())


class HashRing:
    """An immutable ring over a set of node names (addresses)."""

    def __init__(self, nodes: Iterable[str], vnodes: int = DEFAULT_VNODES) -> None:
        self.nodes: tuple[str, ...] = tuple(sorted(set(nodes)))
        if not self.nodes:
            raise ValueError("a hash ring needs at least one node")
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, not {vnodes}")
        points = sorted((_h(f"{node}#{i}".encode()), node) for node in self.nodes for i in range(vnodes))
        self._hashes = [p for p, _ in points]
        self._owners = [n for _, n in points]

    def owner(self, type_name: str, key: str) -> str:
        if len(self.nodes) == 1:
            return self.nodes[0]
        i = bisect.bisect_right(self._hashes, ref_hash(type_name, key))
        return self._owners[i % len(self._owners)]

    def owners(self, type_name: str, key: str, n: int) -> Sequence[str]:
        """The first ``n`` distinct nodes clockwise: the replica set of a reference."""
        n = min(n, len(self.nodes))
        if n <= 0:
            return []
        i = bisect.bisect_right(self._hashes, ref_hash(type_name, key))
        found: list[str] = []
        for j in range(len(self._owners)):
            node = self._owners[(i + j) % len(self._owners)]
            if node not in found:
                found.append(node)
                if len(found) == n:
                    break
        return found
