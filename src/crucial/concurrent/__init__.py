"""``from crucial import concurrent``: ``concurrent.futures`` whose pools run cloud functions."""

from . import futures

__all__ = ["futures"]
