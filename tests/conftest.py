"""Fixtures: real node processes on free ports, and clients bound to them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crucial.client import _default
from crucial.compute.local import LocalBackend
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


def _as_default(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    for k, v in cluster.env_vars().items():
        monkeypatch.setenv(k, v)
    client = _default.connect(cluster.dso)
    yield cluster
    _default.reset_clients()
    client.close()


@pytest.fixture
def dso(any_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    """Make ``any_cluster`` the default for proxies created in this test."""
    yield from _as_default(any_cluster, monkeypatch)


@pytest.fixture
def dso1(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    """The one-node cluster as this test's default (``dso`` runs on one and three nodes)."""
    yield from _as_default(cluster, monkeypatch)


@pytest.fixture
def sshell_env(cluster: LocalCluster, tmp_path: Path) -> dict[str, str]:
    """The environment of an sshell pointed at the session's node, with a private cache and shared dir."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIAL_", "SSHELL_"))}
    e.update(cluster.env_vars())
    e["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # a stray per-user node would land here, not in ~
    e["CRUCIAL_SHARED_DIR"] = str(tmp_path / "shared")
    return e


@pytest.fixture
def new_backend() -> Iterator[Callable[..., LocalBackend]]:
    """Private local backends (to count invocations, or to break); closed after the test."""
    made: list[LocalBackend] = []

    def make(**options: Any) -> LocalBackend:
        backend = LocalBackend(**options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def key() -> str:
    """A fresh object key, so tests sharing a node never collide."""
    return f"k-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _no_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests name their cluster; a stray default must not start an embedded node."""
    if "CRUCIAL_DSO" not in os.environ:
        monkeypatch.setenv("CRUCIAL_DSO", "127.0.0.1:9")  # discard port: fails fast, never hangs
