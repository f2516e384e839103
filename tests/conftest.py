"""Fixtures: real node processes on free ports, and clients bound to them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from crucial.client import _default
from crucial.testing import LocalCluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """One node for the whole session (objects are isolated by unique keys)."""
    with LocalCluster(nodes=1) as c:
        yield c


@pytest.fixture(scope="session")
def cluster3() -> Iterator[LocalCluster]:
    """Three node processes, objects spread by consistent hashing."""
    with LocalCluster(nodes=3) as c:
        yield c


@pytest.fixture(params=["one_node", "three_nodes"])
def any_cluster(request: pytest.FixtureRequest) -> LocalCluster:
    return request.getfixturevalue("cluster" if request.param == "one_node" else "cluster3")


@pytest.fixture
def dso(any_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    """Make ``any_cluster`` the default for proxies created in this test."""
    for k, v in any_cluster.env_vars().items():
        monkeypatch.setenv(k, v)
    client = _default.connect(any_cluster.dso)
    yield any_cluster
    _default.reset_clients()
    client.close()


@pytest.fixture
def key() -> str:
    """A fresh object key, so tests sharing a node never collide."""
    return f"k-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _no_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests name their cluster; a stray default must not start an embedded node."""
    if "CRUCIAL_DSO" not in os.environ:
        monkeypatch.setenv("CRUCIAL_DSO", "127.0.0.1:9")  # discard port: fails fast, never hangs
