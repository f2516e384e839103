"""Consistent hashing, as clients see it: the ring lives in :mod:`crucial._placement`,
shared with the nodes (views, epochs and placement are knowledge of both sides)."""

from __future__ import annotations

from .._placement import HashRing, ref_hash

__all__ = ["HashRing", "ref_hash"]
