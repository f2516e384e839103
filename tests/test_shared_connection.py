"""Threads share one connection per node (client/_sync.py ``_Shared``): every call gets its own reply.

The threads take turns reading the shared socket; these tests make many
threads call, block and wake at once, and break the connection under them.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

import crucial
from crucial.client import Client
from crucial.exceptions import ConnectError
from crucial.testing import LocalCluster

WAIT = 60


def run_threads(n: int, body: Any) -> list[Any]:
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            results[i] = body(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a call never got its reply"
    return results


def test_threads_calling_waiting_and_waking_all_get_their_replies(any_cluster: LocalCluster, key: str) -> None:
    parties, rounds, increments = 12, 5, 60
    with Client(any_cluster.dso, any_cluster.config()) as client:

        def body(i: int) -> list[int]:
            seen = []
            for r in range(rounds):
                for _ in range(increments):
                    client.call("Counter", f"{key}-c", "increment", (1,), create=((0,), {}))
                seen.append(client.call("Barrier", f"{key}-b", "wait", (WAIT,), create=((parties, None, None), {})))
                seen.append(client.call("Counter", f"{key}-mine-{i}", "increment", (r,), create=((0,), {})))
            return seen

        results = run_threads(parties, body)
        for i, seen in enumerate(results):
            assert not isinstance(seen, BaseException), seen
            ranks, mine = seen[0::2], seen[1::2]
            assert mine == [sum(range(r + 1)) for r in range(rounds)], i  # each thread's own counter, in order
            assert all(0 <= rank < parties for rank in ranks)
        for r in range(rounds):  # each crossing handed out every index once
            assert sorted(seen[2 * r] for seen in results) == list(range(parties))
        assert client.call("Counter", f"{key}-c", "tally") == parties * rounds * increments
        assert set(client._shared) <= set(client.nodes)  # one connection per node, whatever the threads
        assert not list(client._all), "no thread opened a connection of its own"


def test_a_blocked_call_holds_up_no_other_thread(dso1: LocalCluster, key: str) -> None:
    event = crucial.Event(key=f"{key}-e")
    waiters = threading.Thread(target=lambda: run_threads(4, lambda i: event.wait(WAIT)), daemon=True)
    waiters.start()
    counter = crucial.Counter(key=f"{key}-c")
    results = run_threads(8, lambda i: [counter.increment() for _ in range(50)])
    assert sorted(x for r in results for x in r) == list(range(1, 401))
    assert event.set() is None
    waiters.join(WAIT)
    assert not waiters.is_alive()


def test_a_node_that_dies_fails_every_waiting_call(key: str) -> None:
    with LocalCluster(nodes=1) as cluster:
        with Client(cluster.dso, cluster.config(retries=0)) as client:
            client.call("Event", key, "", create=((), {}))
            started = threading.Barrier(7)

            def body(i: int) -> Any:
                started.wait(WAIT)
                return client.call("Event", key, "wait", (None,))

            box: list[Any] = []
            runner = threading.Thread(target=lambda: box.append(run_threads(6, body)), daemon=True)
            runner.start()
            started.wait(WAIT)
            assert client.call("Event", key, "is_set") is False  # (the waits are on their way, or parked)
            cluster.kill(signal.SIGKILL)
            runner.join(WAIT)
            assert not runner.is_alive()
            assert all(isinstance(r, ConnectError) for r in box[0]), box
            with pytest.raises(ConnectError):  # and the next call says so too, at once
                client.call("Event", key, "is_set")


def test_a_call_with_a_timeout_goes_over_a_connection_of_its_own(dso1: LocalCluster, key: str) -> None:
    client = crucial.client._default.default_client()
    assert client.call("Counter", key, "increment", (1,), create=((0,), {}), timeout=WAIT) == 1
    assert any(c.address == dso1.dso for c in client._all)
    assert client.call("Counter", key, "increment", (1,)) == 2


def _open_connections(probe: Client, address: str, at_most: int | None = None) -> int:
    """The node's open connections; with ``at_most``: once they are that few (a closed socket's end reaches
    the node a moment later), or how many are still open after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        n = int(probe.info(address)["connections"])
        if at_most is None or n <= at_most or time.monotonic() > deadline:
            return n
        time.sleep(0.01)


def test_a_client_dropped_unclosed_closes_its_connections(key: str) -> None:
    # its finalizer closes them; a shared connection held the client strongly, through the finalizer's
    # own arguments, so it was never finalized: its sockets stayed open on every node it had called
    with LocalCluster(nodes=1, token="t") as cluster:
        address = cluster.addresses[0]
        probe = cluster.client()
        before = _open_connections(probe, address)
        for i in range(5):
            dropped = Client(cluster.addresses, cluster.config())
            dropped.call("AtomicInt", key, "add_and_get", (1,), create=((0,), {}))
            assert _open_connections(probe, address) == before + 1
            del dropped  # no close(): nothing else refers to it
            assert _open_connections(probe, address, at_most=before) == before, f"round {i}: the dropped client's is open"


def bump(key: str) -> int:
    return int(crucial.AtomicInt(0, key=key).add_and_get(1))


def test_a_worker_pointed_at_new_addresses_leaves_no_connection_open(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # found by the soak: a compute worker drops its clients whenever a task names other node addresses (every
    # view change of a cluster whose restarted nodes come back on new ports); each dropped client's connection
    # stayed open on every node -- one more per worker per restart, for ever
    from crucial.client import _default
    from crucial.compute._task import decode_outcome, encode_task, run_task

    with LocalCluster(nodes=1, token="t") as cluster:
        address = cluster.addresses[0]
        probe = cluster.client()
        monkeypatch.setenv("CRUCIAL_DSO", "")  # run_task points this process at the task's cluster: undone after
        monkeypatch.setenv("CRUCIAL_TOKEN", "")
        before = _open_connections(probe, address)
        try:
            for i in range(1, 7):
                dso = (address,) * (1 + i % 2)  # another address list each time, as after a view change
                assert decode_outcome(run_task(encode_task(bump, (key,), {}, dso, "t")), "worker") == i
                assert _open_connections(probe, address, at_most=before + 1) == before + 1, f"task {i}: connections left open"
        finally:
            _default.reset_clients()
