"""Prometheus metrics and /healthz of real nodes, scraped over HTTP (``--metrics-port``)."""

from __future__ import annotations

import asyncio
import bisect
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from crucial.objects._proxy import set_node_transport
from crucial.server import _metrics
from crucial.server._etcd import EtcdProcess
from crucial.server._node import Node, _Connection
from crucial.testing import LocalCluster, unconfigured_env

Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(address: str) -> dict[Sample, float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def healthz(address: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=30) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as err:
        with err:  # it holds the response (and its socket)
            return err.code, err.read().decode().strip()


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


@pytest.fixture(scope="module")
def metered() -> Iterator[LocalCluster]:
    with LocalCluster(metrics=True) as c:
        yield c


def test_a_scrape_shows_calls_latency_bytes_objects_and_waiters(metered: LocalCluster, key: str) -> None:
    (address,) = metered.addresses
    where = metered.metrics_addresses()[address]
    before = scrape(where)
    with metered.client() as client:
        for _ in range(25):
            client.call("AtomicInt", key, "add_and_get", (1,), create=((0,), {}))
        with pytest.raises(ZeroDivisionError):
            client.call("AtomicReference", key, "update_and_get", (lambda v: 1 / 0,), create=((0,), {}))
        client.call("Barrier", key, "get_parties", create=((2,), {}))
        waiter = threading.Thread(target=client.call, args=("Barrier", key, "wait"))
        waiter.start()
        try:
            deadline = time.monotonic() + 30
            while scrape(where)[("crucial_parked_waiters", ())] != 1:
                assert time.monotonic() < deadline, "the barrier's waiter never showed as parked"
                time.sleep(0.05)
            after = scrape(where)
        finally:
            client.call("Barrier", key, "wait")
            waiter.join(30)

    def moved(name: str, **kw: str) -> float:
        return after.get((name, labels(**kw)), 0.0) - before.get((name, labels(**kw)), 0.0)

    add = {"type": "AtomicInt", "method": "add_and_get"}
    assert moved("crucial_calls_total", result="ok", **add) == 25
    assert moved("crucial_call_duration_seconds_count", **add) == 25
    assert moved("crucial_call_duration_seconds_bucket", le="+Inf", **add) == 25
    assert 0 < moved("crucial_call_duration_seconds_sum", **add) < 25 * 5
    assert moved("crucial_calls_total", type="AtomicReference", method="update_and_get", result="error") == 1
    assert moved("crucial_received_bytes_total", role="client") > 25 * 20
    assert moved("crucial_sent_bytes_total", role="client") > 25 * 13
    assert moved("crucial_node_calls_total") >= 28
    assert after[("crucial_objects", labels(type="AtomicInt", persistent="false"))] >= 1
    # this client's two threads share one connection to the node (client/_sync.py): the gauge counts sockets
    assert moved("crucial_connections", role="client") == 1
    assert after[("crucial_serving", ())] == 1 and after[("crucial_view_epoch", ())] >= 1
    assert after[("process_resident_memory_bytes", ())] > 10 * 2**20


def test_calls_that_print_are_counted(metered: LocalCluster, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    # what a call prints goes ahead of its reply with the call's request id (OUTPUT frames): that frame
    # used to close the call's measurement, so that neither it nor the reply counted anywhere
    where = metered.metrics_addresses()[metered.addresses[0]]
    before = scrape(where)
    with metered.client() as client:
        client.call("AtomicReference", key, "get", create=((0,), {}))
        for _ in range(5):  # the fast path (a built-in method that never waits)
            client.call("AtomicReference", key, "update_and_get", (lambda v: print("printed on the node") or v + 1,))
        with pytest.raises(ZeroDivisionError):
            client.call("AtomicReference", key, "update_and_get", (lambda v: print("about to fail") or 1 / 0,))
    after = scrape(where)
    assert capsys.readouterr().out.count("printed on the node") == 5  # the OUTPUT frames did reach the caller

    def moved(name: str, **kw: str) -> float:
        return after.get((name, labels(**kw)), 0.0) - before.get((name, labels(**kw)), 0.0)

    update = {"type": "AtomicReference", "method": "update_and_get"}
    assert moved("crucial_calls_total", result="ok", **update) == 5
    assert moved("crucial_calls_total", result="error", **update) == 1
    assert moved("crucial_call_duration_seconds_count", **update) == 6


def test_more_calls_than_a_fold_are_all_counted(metered: LocalCluster, key: str) -> None:
    where = metered.metrics_addresses()[metered.addresses[0]]
    before = scrape(where)
    calls = 2 * _metrics.FOLD + 3  # OK replies' latencies wait in a list that is folded every FOLD or so
    with metered.client() as client:
        client.call("AtomicInt", key, "get", create=((0,), {}))
        for _ in range(calls):
            client.call("AtomicInt", key, "increment_and_get")
    after = scrape(where)

    def moved(name: str, **kw: str) -> float:
        return after.get((name, labels(**kw)), 0.0) - before.get((name, labels(**kw)), 0.0)

    increment = {"type": "AtomicInt", "method": "increment_and_get"}
    assert moved("crucial_calls_total", result="ok", **increment) == calls
    assert moved("crucial_call_duration_seconds_count", **increment) == calls
    assert moved("crucial_call_duration_seconds_bucket", le="+Inf", **increment) == calls
    assert 0 < moved("crucial_call_duration_seconds_sum", **increment) < calls * 5


def test_folded_and_pending_latencies_make_one_histogram() -> None:
    """What a scrape shows is what bucketing each latency at once would show, whenever folds came."""
    series = _metrics._Series()
    latencies = [*_metrics.BUCKETS, 0.0, 3e-5, 1e-4 + 1e-12, 7.0, 99.0] * 40  # bounds exactly: Prometheus' "le"
    buckets = [0] * (len(_metrics.BUCKETS) + 1)
    for i, latency in enumerate(latencies):
        series.pending.append(latency)
        buckets[bisect.bisect_left(_metrics.BUCKETS, latency)] += 1
        if i % 97 == 0:
            series.fold()
    assert series.pending and series.results[0]  # some folded, some pending
    counts, total, results = _metrics._counted(series.copy())
    assert counts == buckets and results == [len(latencies), 0, 0, 0, 0]
    assert total == pytest.approx(sum(latencies))
    series.fold()
    assert not series.pending and _metrics._counted(series.copy())[:1] == (buckets,)


def test_healthz_of_a_lone_node_and_unknown_paths(metered: LocalCluster) -> None:
    where = metered.metrics_addresses()[metered.addresses[0]]
    assert healthz(where) == (200, "serving: a lone node (view 1)")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{where}/nothing", timeout=30)
    with err.value:
        assert err.value.code == 404 and b"/metrics" in err.value.read()


def test_status_lists_the_hottest_keys(metered: LocalCluster, key: str) -> None:
    with metered.client() as client:
        for i in range(1600):  # about one call in 16 is counted: ~100 samples of the hot key
            client.call("AtomicInt", key + ("-hot" if i % 4 else f"-cold{i}"), "add_and_get", (1,), create=((0,), {}))
    env = metered.env_vars()
    r = subprocess.run(
        [sys.executable, "-m", "crucial.cli", "status", "--json"],
        env=unconfigured_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    hottest = json.loads(r.stdout)["hot_keys"][0]
    assert (hottest["type"], hottest["key"], hottest["node"]) == ("AtomicInt", key + "-hot", metered.addresses[0])
    assert 600 < hottest["calls"] < 2400  # 1,200 calls, estimated from a sample
    r = subprocess.run(
        [sys.executable, "-m", "crucial.cli", "status"], env=unconfigured_env(env), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "hottest keys" in r.stdout and f"AtomicInt '{key}-hot'" in r.stdout, r.stderr
    assert "metrics http://" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "crucial.cli", "info"], env=unconfigured_env(env), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and f"metrics http://{metered.metrics_addresses()[metered.addresses[0]]}/metrics" in r.stdout


@pytest.mark.slow
def test_a_cluster_reports_replication_and_views(key: str) -> None:
    with LocalCluster(nodes=2, rf=2, metrics=True) as cluster:
        where = cluster.metrics_addresses()
        with cluster.client() as client:
            for i in range(10):
                client.call("AtomicInt", f"{key}-{i}", "add_and_get", (1,), create=((0,), {}, (True, 2)))
            for _ in range(2):  # sequential reads (READ frames, answered by any replica): counted too
                for i in range(10):
                    assert client.call("AtomicInt", f"{key}-{i}", "get", read_any=True) == 1
        samples = {a: scrape(m) for a, m in where.items()}
        reads = [s.get(("crucial_calls_total", labels(type="AtomicInt", method="get", result="ok")), 0) for s in samples.values()]
        assert sum(reads) == 20, reads
        for address, s in samples.items():
            assert healthz(where[address])[0] == 200
            assert s[("crucial_view_epoch", ())] >= 1 and s[("crucial_view_members", ())] == 2
            assert s[("crucial_objects", labels(type="AtomicInt", persistent="true"))] == 10  # rf=2 on 2 nodes
            assert s[("crucial_lease_remaining_seconds", ())] > 0
            assert s[("crucial_handoff_complete", ())] == 1
        assert sum(s[("crucial_replication_records_sent_total", ())] for s in samples.values()) >= 10
        assert sum(s[("crucial_replication_records_applied_total", ())] for s in samples.values()) >= 10
        assert all(s[("crucial_connections", labels(role="peer"))] >= 1 for s in samples.values())
        assert sum(s[("crucial_received_bytes_total", labels(role="peer"))] for s in samples.values()) > 0


@pytest.mark.slow
def test_healthz_turns_503_when_the_lease_cannot_be_proved_and_200_when_it_can(tmp_path: Path) -> None:
    etcd = EtcdProcess(tmp_path / "etcd").start()
    try:
        with LocalCluster(args=("--etcd", etcd.endpoint, "--failure-timeout", "1"), metrics=True) as cluster:
            where = cluster.metrics_addresses()[cluster.addresses[0]]
            assert healthz(where)[0] == 200
            etcd.kill()
            _, reason = _until(where, 503)
            assert "cannot prove its membership lease" in reason
            assert scrape(where)[("crucial_serving", ())] == 0
            etcd.start()  # on its data: the lease and the view are still there
            _, reason = _until(where, 200)
            assert reason.startswith("serving view")
    finally:
        etcd.stop()


def _until(where: str, code: int, timeout: float = 60.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        got = healthz(where)
        if got[0] == code:
            return got
        assert time.monotonic() < deadline, f"/healthz stayed {got} instead of turning {code}"
        time.sleep(0.1)


def test_without_metrics_nothing_is_counted_per_call(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        assert client.info()["metrics"] is None

    async def main() -> type:
        node = Node()
        await node.start()
        try:
            _, writer = await asyncio.open_connection(*node.address.rsplit(":", 1))
            while not node.connections:
                await asyncio.sleep(0.01)
            writer.close()
            return type(next(iter(node.connections)))
        finally:
            await node.close()

    try:
        assert asyncio.run(main()) is _Connection  # the plain class: no byte counting, no timing
    finally:
        set_node_transport(None)  # the node routed this process's proxies through itself


def test_a_fixed_metrics_port_with_several_nodes_is_refused() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "crucial.cli", "server", "--nodes", "2", "--metrics-port", "9100"],
        stdin=subprocess.DEVNULL,
        env=unconfigured_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "--metrics-port" in r.stderr


def test_a_metrics_port_in_use_is_named(metered: LocalCluster) -> None:
    taken = metered.metrics_addresses()[metered.addresses[0]].rsplit(":", 1)[1]
    r = subprocess.run(
        [sys.executable, "-m", "crucial.cli", "server", "--metrics-port", taken, "--watch-stdin"],
        stdin=subprocess.DEVNULL,
        env=unconfigured_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and f"cannot serve metrics on 127.0.0.1:{taken}" in r.stderr
