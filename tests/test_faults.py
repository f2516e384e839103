"""Faults: clients that die mid-call, nodes that are gone or hung, lost replies.

Real node processes and real client processes (spawned, then SIGKILLed);
every wait has a deadline, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import crucial
from crucial import protocol as P
from crucial.client import Client
from crucial.testing import LocalCluster, raw_connection, run_in_process
from crucial.testing.faults import blackhole, closed_port, eventually, owner_address

WAIT = 20.0


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# --------------------------------------------------------------------------- dying clients


def wait_on_barrier(key: str, parties: int) -> int:
    return crucial.Barrier(parties, key=key).wait()  # blocks until killed


def hold_forever(kind: str, key: str) -> None:
    lock = crucial.Semaphore(1, key=key) if kind == "Semaphore" else getattr(crucial, kind)(key=key)
    assert lock.acquire(timeout=WAIT)
    crucial.Event(key=key + "-held").set()
    crucial.Event(key=key + "-never").wait()  # blocks until killed


def test_killed_barrier_party_breaks_the_barrier(cluster: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = cluster.client()
    child = run_in_process(wait_on_barrier, key, 3, env=cluster.env_vars())
    try:
        eventually(lambda: client.call("Barrier", key, "n_waiting", create=((3,), {})) == 1, what="child waiting")
        t, out = in_thread(lambda: client.call("Barrier", key, "wait", (WAIT,)))
        eventually(lambda: client.call("Barrier", key, "n_waiting") == 2, what="both waiting")
        child.kill()
        t.join(WAIT)
        assert not t.is_alive()
    finally:
        child.close()
    assert isinstance(out[0], crucial.BrokenBarrierError), out
    assert isinstance(out[0], threading.BrokenBarrierError)
    assert client.call("Barrier", key, "is_broken") is True
    with pytest.raises(crucial.BrokenBarrierError):  # later parties do not wait forever either
        client.call("Barrier", key, "wait", (WAIT,))


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_killed_holder_releases_the_lock(cluster: LocalCluster, key: str, kind: str) -> None:
    client = cluster.client()
    child = run_in_process(hold_forever, kind, key, env=cluster.env_vars())
    try:
        assert client.call("Event", key + "-held", "wait", (WAIT,), create=((), {})) is True
        assert client.call(kind, key, "acquire", (False,)) is False  # really held by the child
        child.kill()
    finally:
        child.close()
    t0 = time.monotonic()
    assert client.call(kind, key, "acquire", (True, 10)) is True
    assert time.monotonic() - t0 < 10
    client.call(kind, key, "release")


def test_killed_holder_keeps_semaphore_permits(cluster: LocalCluster, key: str) -> None:
    """Documented: a semaphore has no owner, so a dead client's permit is not given back."""
    client = cluster.client()
    with run_in_process(hold_forever, "Semaphore", key, env=cluster.env_vars()) as child:
        assert client.call("Event", key + "-held", "wait", (WAIT,), create=((), {})) is True
        child.kill()
    assert client.call("Semaphore", key, "acquire", (True, 0.3)) is False
    assert client.call("Semaphore", key, "get_value") == 0


WAITERS: dict[str, tuple[tuple[Any, ...], str, tuple[Any, ...]]] = {
    "Barrier": ((2,), "wait", ()),
    "Event": ((), "wait", ()),
    "CountDownLatch": ((1,), "wait", ()),
    "SharedFuture": ((), "get", ()),
    "Exchanger": ((), "exchange", ("x",)),
    "Semaphore": ((0,), "acquire", ()),
}


@pytest.mark.parametrize("type_name", list(WAITERS))
def test_delete_wakes_waiters(any_cluster: LocalCluster, key: str, type_name: str) -> None:
    """One multiplexed connection orders the frames: the wait is parked on the node before the delete."""
    create, method, args = WAITERS[type_name]

    async def main() -> tuple[BaseException | None, bool]:
        async with crucial.AsyncClient(any_cluster.addresses, any_cluster.config()) as client:
            await client.call(type_name, key, "", create=(create, {}))
            waiter = asyncio.ensure_future(client.call(type_name, key, method, args))
            deleted = await client.delete(type_name, key)
            done, _ = await asyncio.wait([waiter], timeout=WAIT)
            assert done, "the waiter was not woken by the delete"
            return waiter.exception(), deleted

    error, deleted = asyncio.run(main())
    assert deleted is True
    assert isinstance(error, crucial.ObjectNotFoundError), error
    assert key in str(error) and error.key == key and "deleted" in str(error)
    with pytest.raises(crucial.ObjectNotFoundError, match=key):
        any_cluster.client().call(type_name, key, method, args)


# --------------------------------------------------------------------------- nodes that are gone


def test_closed_port_is_a_connect_error() -> None:
    with closed_port() as address:
        with Client([address], crucial.Config(dso=(address,), connect_timeout=2.0)) as client:
            t0 = time.monotonic()
            with pytest.raises(crucial.ConnectError, match=address) as info:
                client.call("AtomicInt", "k", "get", create=((0,), {}))
            assert time.monotonic() - t0 < 2.0 + 1.0
    assert info.value.address == address and isinstance(info.value, ConnectionError)


def test_killed_cluster_is_a_connect_error(key: str) -> None:
    cluster = LocalCluster().start()
    try:
        client = cluster.client(connect_timeout=2.0)
        assert client.call("AtomicInt", key, "increment_and_get", create=((0,), {})) == 1
        cluster.kill()
        t0 = time.monotonic()
        with pytest.raises(crucial.ConnectError, match=cluster.addresses[0]):
            client.call("AtomicInt", key, "increment_and_get")
        assert time.monotonic() - t0 < 2.0 + 1.0
    finally:
        cluster.stop()


def test_hung_node_async_client_gives_up(key: str) -> None:
    with blackhole() as address:

        async def main() -> None:
            config = crucial.Config(dso=(address,), connect_timeout=0.5, retries=0)
            async with crucial.AsyncClient([address], config) as client:
                await client.call("AtomicInt", key, "get", create=((0,), {}))

        t0 = time.monotonic()
        with pytest.raises(crucial.ConnectError, match=address):
            asyncio.run(main())
        assert time.monotonic() - t0 < 0.5 + 1.5


def test_hung_node_sync_client_gives_up(key: str) -> None:
    with blackhole() as address:
        with Client([address], crucial.Config(dso=(address,), connect_timeout=0.5, retries=0)) as client:
            t0 = time.monotonic()
            with pytest.raises(crucial.ConnectError, match=address):
                client.call("AtomicInt", key, "get", create=((0,), {}))
            assert time.monotonic() - t0 < 0.5 + 1.5


# --------------------------------------------------------------------------- retried calls


def test_retried_call_is_applied_once(any_cluster: LocalCluster, key: str) -> None:
    """The same CALL (client id + seq) on two connections: applied once, both get the same reply."""
    address = owner_address(any_cluster.addresses, "AtomicInt", key)
    client_id = uuid.uuid4().hex
    call = P.CallRequest(17, "AtomicInt", key, "increment_and_get", (), None, ((100,), {}))
    with raw_connection(address, client_id=client_id) as first:
        reply1 = first.call(call)
    with raw_connection(address, client_id=client_id) as second:  # the "lost" connection is gone: retry
        reply2 = second.call(call)
        again = second.call(call)  # and once more on the same connection
        fresh = second.call(P.CallRequest(18, "AtomicInt", key, "increment_and_get", ()))
    assert reply1.kind == reply2.kind == again.kind == P.Kind.OK
    assert pickle.loads(reply1.body) == pickle.loads(reply2.body) == pickle.loads(again.body) == 101
    assert pickle.loads(fresh.body) == 102  # a new seq is a new call
    with raw_connection(address) as other:  # same seq from another client id is another call
        assert pickle.loads(other.call(call).body) == 103
    assert any_cluster.client().call("AtomicInt", key, "get") == 103


def test_retry_of_a_blocked_call_survives_the_lost_connection(cluster: LocalCluster, key: str) -> None:
    address = cluster.addresses[0]
    client_id = uuid.uuid4().hex
    call = P.CallRequest(5, "Event", key, "wait", (WAIT,), None, ((), {}))
    first = raw_connection(address, client_id=client_id)
    second = raw_connection(address, client_id=client_id)
    try:
        first.send(P.Kind.CALL, 1, P.encode_call(call))
        eventually(lambda: cluster.client().call("Event", key, "is_set", create=((), {})) is False)
        second.send(P.Kind.CALL, 1, P.encode_call(call))  # the retry joins the running call
        second.send(P.Kind.PING, 2)
        assert second.recv_frame().req_id == 2  # the node has seen the retry
        first.close()  # the original connection is lost
        cluster.client().call("Event", key, "set")
        reply = second.recv_frame()
        assert reply.kind == P.Kind.OK and pickle.loads(reply.body) is True
    finally:
        first.close()
        second.close()
