"""Persistent objects on disk: restarts, a whole cluster killed, and data dirs that cannot be used.

The store itself (group commit, fsync modes, locks, damaged files) is tested
in test_store.py; here real nodes use it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

import crucial
from crucial.testing import LocalCluster, unconfigured_env
from crucial.testing.faults import eventually

INT = "AtomicInt"
PERSISTENT = ((), {}, (True, None))


def test_lone_node_keeps_persistent_objects_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with LocalCluster(data_dir=data) as first:
        client = first.client()
        for _ in range(7):
            client.call(INT, "kept", "increment_and_get", create=PERSISTENT)
        client.call("Dict", "model", "update", ({"w": [1.5, 2.5], "it": 3},), create=PERSISTENT)
        client.call(INT, "gone", "add_and_get", (5,), create=((), {}))
    with LocalCluster(data_dir=data) as second:
        client = second.client()
        assert client.call(INT, "kept", "get") == 7
        assert dict(client.call("Dict", "model", "items")) == {"w": [1.5, 2.5], "it": 3}
        with pytest.raises(crucial.ObjectNotFoundError):
            client.call(INT, "gone", "get")  # ephemeral: it lived in memory only
        assert client.call(INT, "kept", "increment_and_get") == 8


def test_deleted_persistent_object_stays_deleted(tmp_path: Path) -> None:
    with LocalCluster(data_dir=tmp_path) as first:
        client = first.client()
        client.call(INT, "d", "add_and_get", (3,), create=PERSISTENT)
        assert client.delete(INT, "d") is True
    with LocalCluster(data_dir=tmp_path) as second:
        with pytest.raises(crucial.ObjectNotFoundError):
            second.client().call(INT, "d", "get")


def _kill_everything(cluster: LocalCluster) -> None:
    """kill -9 of every node and of the supervisor (and so of its etcd): nothing runs any cleanup."""
    pids = cluster.pids()
    assert cluster.proc is not None
    supervisor = cluster.proc.pid
    os.kill(supervisor, signal.SIGSTOP)  # it must not restart the nodes we kill
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    os.kill(supervisor, signal.SIGKILL)
    cluster.proc.wait(timeout=30)
    for pid in pids.values():
        eventually(lambda pid=pid: not _alive(pid), timeout=30, what=f"node {pid} gone")
    cluster.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie: dead, waiting for a parent that is gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_full_restart_recovers_acknowledged_writes(tmp_path: Path) -> None:
    """kill -9 of every node while writers run, with --fsync always: every acknowledged write comes back."""
    acked: dict[str, int] = {}
    puts: dict[str, int] = {}
    prefix = uuid.uuid4().hex[:6]
    cluster = LocalCluster(nodes=3, rf=2, data_dir=tmp_path, fsync="always", failure_timeout=1.0).start()
    stop = threading.Event()

    def writer(i: int) -> None:
        client = crucial.Client(cluster.addresses, cluster.config(failover_timeout=2.0))
        key = f"{prefix}-c{i}"
        n = 0
        while not stop.is_set():
            try:
                n = client.call(INT, key, "increment_and_get", create=PERSISTENT)
                client.call("Dict", f"{prefix}-d", "put", (f"{i}-{n}", n), create=PERSISTENT)
            except crucial.CrucialError:
                return  # the cluster is gone
            acked[key] = n
            puts[f"{i}-{n}"] = n
        client.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    eventually(lambda: sum(acked.values()) >= 200, timeout=60, what="writes")
    _kill_everything(cluster)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) == 4
    with LocalCluster(nodes=3, rf=2, data_dir=tmp_path, fsync="always", failure_timeout=1.0) as again:
        client = again.client()
        for key, n in acked.items():
            value = client.call(INT, key, "get")
            assert value >= n, (key, value, n)
        stored = dict(client.call("Dict", f"{prefix}-d", "items"))
        missing = {k: v for k, v in puts.items() if stored.get(k) != v}
        assert not missing


def test_restarted_node_returns_with_its_objects(tmp_path: Path) -> None:
    """A node killed and restarted (by its supervisor) on its data dir rejoins as itself."""
    with LocalCluster(nodes=3, rf=2, data_dir=tmp_path, failure_timeout=3.0) as cluster:
        client = cluster.client()
        keys = [f"r-{i}" for i in range(20)]
        for k in keys:
            client.call(INT, k, "add_and_get", (int(k[2:]),), create=PERSISTENT)
        victim = cluster.addresses[0]
        ids_before = {r["node_id"] for r in (client.info(a) for a in client.nodes)}
        cluster.signal_node(victim, signal.SIGKILL)
        eventually(lambda: _members(client) == ids_before and len(client.nodes) == 3 and victim not in client.nodes, 60)
        for k in keys:
            assert client.call(INT, k, "get") == int(k[2:])


def _members(client: crucial.Client) -> set[str]:
    ids = set()
    for a in list(client.nodes):
        try:
            ids |= {node_id for node_id, _ in client.info(a)["view"]["members"]}
            client.core.update_view(client.info(a)["view"])
        except crucial.CrucialError:
            continue
    return ids


def _server(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crucial.server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=unconfigured_env(),
    )


def test_two_nodes_on_one_data_dir_is_an_error(tmp_path: Path) -> None:
    with LocalCluster(data_dir=tmp_path):
        out = _server("--data-dir", str(tmp_path))
    assert out.returncode != 0
    assert "DataDirLockedError" in out.stderr or "locked" in out.stderr
    assert str(tmp_path) in out.stderr


def test_corrupt_data_dir_is_named(tmp_path: Path) -> None:
    with LocalCluster(data_dir=tmp_path) as c:
        c.client().call(INT, "x", "add_and_get", (1,), create=PERSISTENT)
    db = next(p for p in tmp_path.iterdir() if p.suffix == ".db" or p.name.endswith(".sqlite"))
    data = bytearray(db.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 512] = os.urandom(512)
    db.write_bytes(bytes(data))
    out = _server("--data-dir", str(tmp_path))
    assert out.returncode != 0
    assert str(db) in out.stderr or str(tmp_path) in out.stderr, out.stderr


def test_data_dir_under_a_file_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = _server("--data-dir", str(blocker / "data"))
    assert out.returncode != 0
    assert str(blocker) in out.stderr, out.stderr
