"""``crucial.AsyncClient`` against real nodes: one multiplexed connection per node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import crucial
from crucial.testing import LocalCluster
from crucial.testing.faults import blackhole, closed_port

INT = crucial.AtomicInt._type_name
BARRIER = crucial.Barrier._type_name


@crucial.shared
class Notes:
    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []

    def add(self, line: str) -> int:
        self.lines.append(line)
        return len(self.lines)

    def text(self) -> str:
        return "\n".join([self.title, *self.lines])

    def fail(self) -> None:
        raise LookupError(f"nothing in {self.title}")


def _client(cluster: LocalCluster, **overrides: Any) -> crucial.AsyncClient:
    return crucial.AsyncClient(cluster.addresses, cluster.config(**overrides))


@pytest.fixture
def dead_address() -> Iterator[str]:
    with closed_port() as address:
        yield address


@pytest.fixture
def silent_address() -> Iterator[str]:
    with blackhole() as address:
        yield address


def test_calls(any_cluster: LocalCluster, key: str) -> None:
    async def main() -> None:
        async with _client(any_cluster) as client:
            assert await client.call(INT, key, "add_and_get", (5,), create=((10,), {})) == 15
            assert await client.call(INT, key, "get") == 15
            assert await client.call(INT, key, "compare_and_set", (15,), {"update": 1}) is True
            with pytest.raises(crucial.ObjectNotFoundError):
                await client.call(INT, f"{key}-absent", "get")
            assert await client.delete(INT, key) is True
            assert await client.delete(INT, key) is False

    asyncio.run(main())


def test_many_concurrent_calls_share_one_connection(cluster: LocalCluster, key: str) -> None:
    async def main() -> None:
        async with _client(cluster) as client:
            await client.call(INT, key, "get", create=((), {}))
            results = await asyncio.gather(*(client.call(INT, key, "increment_and_get") for _ in range(200)))
            assert sorted(results) == list(range(1, 201))  # each increment applied exactly once
            assert await client.call(INT, key, "get") == 200
            assert len(client._conns) == 1  # all of them multiplexed on one connection

    asyncio.run(main())


def test_concurrent_calls_over_three_nodes(cluster3: LocalCluster, key: str) -> None:
    async def main() -> None:
        async with crucial.AsyncClient([cluster3.addresses[0]], cluster3.config()) as client:
            keys = [f"{key}-{i}" for i in range(30)]
            got = await asyncio.gather(*(client.call(INT, k, "add_and_get", (i,), create=((), {})) for i, k in enumerate(keys)))
            assert got == list(range(30))
            assert set(client.core.nodes) == set(cluster3.addresses)  # learnt from one seed
            assert {client.core.route(INT, k) for k in keys} == set(cluster3.addresses)

    asyncio.run(main())


def test_replies_come_out_of_order(any_cluster: LocalCluster, key: str) -> None:
    async def main() -> None:
        async with _client(any_cluster) as client:
            await client.call(BARRIER, key, "get_parties", create=((2,), {}))
            finished: list[str] = []

            async def tagged(tag: str, method: str) -> Any:
                value = await client.call(BARRIER, key, method, timeout=30)
                finished.append(tag)
                return value

            blocked = asyncio.ensure_future(tagged("blocked wait", "wait"))
            await asyncio.sleep(0)  # let it send its request: the wait goes out first
            # sent after the wait, on the same connection, yet answered before it
            assert await tagged("fast", "n_waiting") == 1
            assert finished == ["fast"]
            assert not blocked.done()
            second = await tagged("second wait", "wait")
            assert sorted([second, await blocked]) == [0, 1]
            assert finished[0] == "fast"

    asyncio.run(main())


def test_user_class_registration(cluster: LocalCluster, key: str) -> None:
    @crucial.shared
    class Fresh:  # never sent to a node before this test
        def __init__(self, n: int) -> None:
            self.n = n

        def double(self) -> int:
            self.n *= 2
            return self.n

    async def main() -> None:
        async with _client(cluster) as client:
            with pytest.raises(crucial.UnknownTypeError):  # the node cannot know it yet
                await client.call(Fresh._type_name, key, "double", create=((3,), {}))
            call = client.call(Fresh._type_name, key, "double", create=((3,), {}), cls=Fresh._user_class)
            assert await call == 6
            assert await client.call(Fresh._type_name, key, "double") == 12  # registered: no cls needed now
            cls = Notes._user_class
            assert await client.call(Notes._type_name, key, "add", ("a",), create=(("t",), {}), cls=cls) == 1
            assert await client.call(Notes._type_name, key, "text", cls=cls) == "t\na"
            with pytest.raises(LookupError, match="nothing in t") as info:
                await client.call(Notes._type_name, key, "fail", cls=cls)
            assert isinstance(info.value.__cause__, crucial.RemoteTraceback)

    asyncio.run(main())


def test_async_and_sync_clients_see_the_same_objects(cluster: LocalCluster, key: str) -> None:
    async def main() -> None:
        async with _client(cluster) as client:
            await client.call(INT, key, "add_and_get", (7,), create=((), {}))

    asyncio.run(main())
    sync = cluster.client()
    assert sync.call(INT, key, "get") == 7


def test_connect_error_to_a_dead_address(dead_address: str) -> None:
    async def main() -> None:
        client = crucial.AsyncClient([dead_address], crucial.Config(connect_timeout=2))
        t0 = time.monotonic()
        with pytest.raises(crucial.ConnectError) as info:
            await client.call(INT, "k", "get")
        assert isinstance(info.value, ConnectionError)
        assert time.monotonic() - t0 < 10
        await client.aclose()

    asyncio.run(main())


def test_node_that_never_answers_the_handshake(silent_address: str) -> None:
    async def main() -> None:
        client = crucial.AsyncClient([silent_address], crucial.Config(connect_timeout=0.3, retries=0))
        with pytest.raises(crucial.ConnectError, match="handshake"):
            await client.call(INT, "k", "get")
        await client.aclose()

    asyncio.run(main())


def test_sync_node_that_never_answers_the_handshake(silent_address: str) -> None:
    client = crucial.Client([silent_address], crucial.Config(connect_timeout=0.3, retries=0))
    try:
        with pytest.raises(crucial.ConnectError, match="handshake"):
            client.call(INT, "k", "get")
    finally:
        client.close()


def test_aclose_is_idempotent(cluster: LocalCluster, key: str) -> None:
    async def main() -> None:
        client = _client(cluster)
        assert await client.call(INT, key, "increment_and_get", create=((), {})) == 1
        await client.aclose()
        await client.aclose()
        with pytest.raises(crucial.ConnectError, match="closed"):
            await client.call(INT, key, "get")
        async with _client(cluster) as other:  # the object outlives the client
            assert await other.call(INT, key, "get") == 1
        await other.aclose()

    asyncio.run(main())
