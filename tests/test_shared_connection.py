"""Threads share one connection per node (client/_sync.py ``_Shared``): every call gets its own reply.

The threads take turns reading the shared socket; these tests make many
threads call, block and wake at once, and break the connection under them.
"""

from __future__ import annotations

import signal
import threading
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
