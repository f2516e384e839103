"""``proxy.aio``: every proxy awaited from asyncio, found as the sync proxy's client is (issue 14, item 5)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import crucial
from crucial.testing import unconfigured_env


@crucial.shared
class Account:
    def __init__(self, balance: int = 0) -> None:
        self.balance = balance

    def deposit(self, n: int) -> int:
        self.balance += n
        return self.balance


def test_atomics_and_containers(dso) -> None:
    async def main() -> None:
        n = crucial.AtomicInt(5)
        assert await n.aio.add_and_get(2) == 7
        assert await n.aio.compare_and_set(7, 1) is True
        d = crucial.Dict()
        await d.aio.merge_all({"a": 1, "b": 2})
        assert await d.aio.merge("a", 10) == 11
        assert sorted(await d.aio.items()) == [("a", 11), ("b", 2)]
        q = crucial.Queue(2)
        await q.aio.put_nowait("x")
        assert await q.aio.get() == "x"
        assert await q.aio.maxsize == 2  # a property: await it
        assert n.get() == 1  # the same object as the sync proxy's
        for p in (n, d, q):
            assert await p.aio.delete() is True

    asyncio.run(main())


def test_waiting_calls_run_concurrently(dso) -> None:
    async def main() -> list[int]:
        barrier = crucial.Barrier(5)
        indexes = await asyncio.gather(*(barrier.aio.wait(timeout=30) for _ in range(5)))
        assert await barrier.aio.parties == 5
        await barrier.aio.delete()
        return sorted(indexes)

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_locks_are_async_context_managers(dso1) -> None:
    async def main() -> None:
        lock = crucial.Lock()
        async with lock.aio:
            assert await lock.aio.locked()
            assert lock.locked()
        assert not await lock.aio.locked()
        cond = crucial.Condition()
        flag = crucial.AtomicBool()

        async def waiter() -> bool:
            async with cond.aio:
                return bool(await cond.aio.wait_for(flag.get, timeout=30))

        async def setter() -> None:
            async with cond.aio:
                flag.set(True)
                await cond.aio.notify_all()

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        await setter()
        assert await task is True

    asyncio.run(main())


def test_shared_classes_methods_and_attributes(dso1) -> None:
    async def main() -> None:
        acc = Account(10)
        assert await acc.aio.deposit(5) == 15
        assert await acc.aio.balance == 15
        with pytest.raises(AttributeError, match="withdraw"):
            await acc.aio.withdraw  # not a method of the class: read as an attribute, on the node
        with pytest.raises(AttributeError, match="no method 'nope' to await"):
            _ = crucial.AtomicInt().aio.nope
        await acc.aio.delete()

    asyncio.run(main())


def test_errors_come_back_as_themselves(dso1) -> None:
    async def main() -> None:
        q = crucial.Queue()
        import queue

        with pytest.raises(queue.Empty):
            await q.aio.get(timeout=0.01)
        lock = crucial.Lock()
        with pytest.raises(RuntimeError, match="release unlocked lock"):
            await lock.aio.release()

    asyncio.run(main())


def test_embedded_default_needs_no_address(tmp_path: Path) -> None:
    """The same configuration as the sync proxies: nothing set starts the embedded node."""
    script = tmp_path / "prog.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, crucial

            async def main():
                hits = crucial.Counter(key="hits")
                await asyncio.gather(*(hits.aio.increment() for _ in range(20)))
                print("tally", await hits.aio.tally(), hits.tally())

            asyncio.run(main())
            asyncio.run(main())   # a second loop gets its own client
            """
        )
    )
    command = [sys.executable, "-W", "error", str(script)]
    done = subprocess.run(command, env=unconfigured_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["tally 20 20", "tally 40 40"]
    assert done.stderr == ""  # no unclosed transport when the loops end
