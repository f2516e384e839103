"""A whole cluster stopped cleanly, one node a moment after the others, then restarted: nothing is lost.

Found by ``benchmarks/replication.py`` stopping its durable cluster
(``LocalCluster.stop()``, what Ctrl-C of ``crucial server --nodes 3
--data-dir DIR`` does): a clean stop deleted the node's member key, so the
nodes still running removed it from the view at once; later, a node back
before the others' leases ran out removed them when they did.  Either way a
restarted node found its data dir "stale" and dropped it.  A node that stops
without leaving now keeps its key until its lease runs out, and a key that
vanishes within a restarted node's restart grace gets the grace.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import crucial
from crucial.server._etcd import EtcdProcess
from crucial.testing import LocalCluster

INT = "AtomicInt"
PERSISTENT = ((), {}, (True, None))
FAILURE_TIMEOUT = 3.0


def _node(etcd: EtcdProcess, name: str, data: Path) -> LocalCluster:
    args = ("--etcd", etcd.endpoint, "--cluster", name)
    return LocalCluster(rf=2, data_dir=data, fsync="always", failure_timeout=FAILURE_TIMEOUT, args=args, start_timeout=60)


def _members(client: crucial.Client, node: LocalCluster) -> int:
    return len(client.info(node.addresses[0])["view"]["members"])


@pytest.mark.slow
@pytest.mark.timeout(100)
def test_clean_whole_cluster_stop_then_restart_keeps_every_acknowledged_write(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    name = f"bug-{uuid.uuid4().hex[:8]}"
    with EtcdProcess(tmp_path / "etcd") as etcd:
        nodes = [_node(etcd, name, tmp_path / f"n{i}").start() for i in range(3)]
        try:
            watcher = nodes[2].client()
            deadline = time.monotonic() + 60
            while _members(watcher, nodes[2]) < 3:
                assert time.monotonic() < deadline, "the three nodes did not form one view"
                time.sleep(0.05)
            client = crucial.Client(nodes[2].addresses, nodes[2].config())
            keys = [f"k{i}" for i in range(30)]
            for i, key in enumerate(keys):
                assert client.call(INT, key, "add_and_get", (i + 1,), create=PERSISTENT) == i + 1
            client.close()
            # the whole cluster stops, cleanly, within a fraction of the failure timeout: two nodes first ...
            nodes[0].stop()
            nodes[1].stop()
            stopped = time.monotonic()
            # ... the last one a moment later (at most half a failure timeout; at once if it has dropped them)
            while time.monotonic() < stopped + FAILURE_TIMEOUT / 2 and _members(watcher, nodes[2]) == 3:
                time.sleep(0.02)
            nodes[2].stop()
        finally:
            for node in nodes:
                node.stop()
        capfd.readouterr()
        again = [_node(etcd, name, tmp_path / f"n{i}").start() for i in range(3)]
        try:
            # every node was a member when the cluster stopped: none may find its data stale (docs/replication.md)
            assert "its data is stale" not in capfd.readouterr().err
            client = crucial.Client(again[0].addresses, again[0].config(failover_timeout=10.0))
            got = {}
            for key in keys:
                try:
                    got[key] = client.call(INT, key, "get")
                except crucial.CrucialError as exc:
                    got[key] = type(exc).__name__
                    break  # one is enough (each waits for the failover timeout)
            client.close()
            assert got == {key: i + 1 for i, key in enumerate(keys)}
        finally:
            for node in again:
                node.stop()
