"""Test helpers: real local clusters (and, in later modules, fault injection
and the linearizability checker).  Never imported by runtime code."""

from ._cluster import LocalCluster

__all__ = ["LocalCluster"]
