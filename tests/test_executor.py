"""``ServerlessExecutor`` on real worker processes (the ``local`` backend) and real DSO nodes."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import logging
import threading
from typing import Any

import pytest

import crucial
from crucial.compute import Retry, ServerlessExecutor
from crucial.testing.faults import eventually

WAIT = 30.0  # the longest any function or result waits: a broken test fails, it does not hang


# -- functions shipped to the workers -------------------------------------------------


def square(x: int) -> int:
    return x * x


def wait_then(ev: crucial.Event, value: Any) -> Any:
    if not ev.wait(WAIT):
        raise TimeoutError("the test never set the event")
    return value


def record(seen: crucial.Dict, i: int) -> None:
    seen.merge(i, 1)


def gated(running: crucial.AtomicInt, peaks: crucial.List, go: crucial.Event) -> int:
    n = running.increment_and_get()
    peaks.append(n)
    try:
        go.wait(WAIT)
    finally:
        running.decrement_and_get()
    return n


def exit_on_first_attempt(attempts: crucial.AtomicInt) -> int:
    import os

    n = attempts.increment_and_get()
    if n == 1:
        os._exit(3)
    return n


class Boom(Exception):
    pass


def fail(message: Any) -> None:
    raise Boom(message)


# -- the Executor interface ------------------------------------------------------------


def test_submit_returns_real_futures(dso1):
    with ServerlessExecutor() as ex:
        fs = [ex.submit(square, i) for i in range(8)]
        assert all(isinstance(f, cf.Future) for f in fs)
        done, not_done = cf.wait(fs, timeout=WAIT)
        assert not not_done and len(done) == 8
        assert [f.result() for f in fs] == [i * i for i in range(8)]
        fs = [ex.submit(square, i) for i in range(8)]
        assert sorted(f.result() for f in cf.as_completed(fs, timeout=WAIT)) == [i * i for i in range(8)]


def test_futures_work_with_asyncio(dso1):
    async def main(ex: ServerlessExecutor) -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(ex.submit(square, i)) for i in range(6))), WAIT)

    with ServerlessExecutor() as ex:
        assert asyncio.run(main(ex)) == [i * i for i in range(6)]


def test_wait_first_completed_and_exceptions(dso1, key):
    ev = crucial.Event(key=key)
    with ServerlessExecutor() as ex:
        slow = ex.submit(wait_then, ev, "slow")
        bad = ex.submit(fail, "early")
        done, pending = cf.wait([slow, bad], timeout=WAIT, return_when=cf.FIRST_EXCEPTION)
        assert done == {bad} and pending == {slow}
        error = bad.exception()
        assert isinstance(error, Boom)
        assert isinstance(error.__cause__, crucial.RemoteTraceback)
        ev.set()
        assert slow.result(WAIT) == "slow"


def test_map_preserves_order_with_chunks(dso1, new_backend):
    backend = new_backend()
    with ServerlessExecutor(backend) as ex:
        assert list(ex.map(square, range(20), chunksize=3)) == [i * i for i in range(20)]
        assert backend.stats["invocations"] == 7  # ceil(20 / 3): a chunk travels in one invocation
        assert list(ex.map(pow, [2, 3, 4], [5, 2], timeout=WAIT)) == [32, 9]  # stops at the shortest
        assert list(ex.map(square, [])) == []
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(square, range(3), chunksize=0)


def test_map_timeout(dso1, key):
    ev = crucial.Event(key=key)
    with ServerlessExecutor() as ex:
        results = ex.map(functools.partial(wait_then, ev), range(3), timeout=0.3)
        with pytest.raises(TimeoutError):
            next(results)
        ev.set()


def test_map_reraises_the_functions_error(dso1):
    with ServerlessExecutor() as ex:
        results = ex.map(fail, ["one"])
        with pytest.raises(Boom, match="one"):
            list(results)


def test_shutdown_waits_for_running_tasks(dso1, key):
    ev = crucial.Event(key=key)
    ex = ServerlessExecutor()
    fs = [ex.submit(wait_then, ev, i) for i in range(3)]
    stopper = threading.Thread(target=ex.shutdown)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # waiting for the three functions
    ev.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert [f.result(0) for f in fs] == [0, 1, 2]


def test_shutdown_cancel_futures(dso1, key):
    ev = crucial.Event(key=key)
    ex = ServerlessExecutor(max_workers=1)
    running = ex.submit(wait_then, ev, "ran")
    queued = [ex.submit(square, i) for i in range(4)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    ev.set()
    assert running.result(WAIT) == "ran"
    ex.shutdown()  # again, and waits: nothing left


def test_cancel_a_queued_future(dso1, key):
    ev = crucial.Event(key=key)
    with ServerlessExecutor(max_workers=1) as ex:
        first = ex.submit(wait_then, ev, 1)
        second = ex.submit(square, 2)
        third = ex.submit(square, 3)
        assert second.cancel() and not first.cancel()
        ev.set()
        assert first.result(WAIT) == 1 and third.result(WAIT) == 9
    assert second.cancelled()


def test_submit_after_shutdown(dso1):
    ex = ServerlessExecutor()
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 2)


def test_context_manager_waits(dso1, key):
    ev = crucial.Event(key=key)
    with ServerlessExecutor() as ex:
        fs = [ex.submit(wait_then, ev, i) for i in range(2)]
        ev.set()
    assert all(f.done() for f in fs)
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_unpicklable_submit_fails_in_the_caller(new_backend):
    backend = new_backend()
    with ServerlessExecutor(backend) as ex:
        with pytest.raises(crucial.SerializationError, match="square"):
            ex.submit(square, threading.Lock())
    assert backend.stats["invocations"] == 0


def test_bad_max_workers():
    with pytest.raises(crucial.ConfigError):
        ServerlessExecutor(max_workers=0)


# -- beyond the Executor interface ------------------------------------------------------


def test_invoke_all(dso1, key):
    counter = crucial.AtomicInt(0, key=key)
    with ServerlessExecutor() as ex:
        fs = ex.invoke_all([functools.partial(counter.add_and_get, 10**i) for i in range(4)])
        assert all(f.done() for f in fs)
        assert all(isinstance(f.result(), int) for f in fs)
    assert counter.get() == 1111


def test_invoke_all_timeout(dso1, key):
    ev = crucial.Event(key=key)
    with ServerlessExecutor() as ex:
        with pytest.raises(TimeoutError):
            ex.invoke_all([functools.partial(wait_then, ev, 1)], timeout=0.2)
        ev.set()


@pytest.mark.parametrize(("start", "stop", "workers"), [(3, 23, 4), (0, 3, 10), (0, 101, 7)])
def test_parallel_for_runs_every_index_once(dso, key, new_backend, start, stop, workers):
    backend = new_backend()
    seen = crucial.Dict(key=key)
    with ServerlessExecutor(backend) as ex:
        total = ex.parallel_for(functools.partial(record, seen), start, stop, workers=workers, finalizer=seen.copy)
    assert total == {i: 1 for i in range(start, stop)}
    # a static split: one invocation per non-empty block
    assert backend.stats["invocations"] == min(workers, stop - start)


def test_parallel_for_empty_range_and_no_finalizer(dso1, key):
    seen = crucial.Dict(key=key)
    with ServerlessExecutor() as ex:
        assert ex.parallel_for(functools.partial(record, seen), 5, 5, workers=3, finalizer=lambda: "done") == "done"
        assert ex.parallel_for(functools.partial(record, seen), 0, 2, workers=2) is None
    assert seen.copy() == {0: 1, 1: 1}


def test_parallel_for_bad_input(dso1):
    with ServerlessExecutor() as ex:
        with pytest.raises(ValueError, match="workers"):
            ex.parallel_for(square, 0, 10, workers=0)
        with pytest.raises(ValueError, match="below start"):
            ex.parallel_for(square, 10, 0, workers=2)


def test_parallel_for_reraises_a_failing_block(dso1):
    with ServerlessExecutor() as ex:
        with pytest.raises(Boom):
            ex.parallel_for(fail, 0, 4, workers=2)


def test_max_workers_limits_concurrency(dso, key):
    running = crucial.AtomicInt(0, key=key)
    peaks = crucial.List(key=key)
    go = crucial.Event(key=key)
    with ServerlessExecutor(max_workers=3) as ex:
        fs = [ex.submit(gated, running, peaks, go) for _ in range(7)]
        eventually(lambda: running.get() == 3, WAIT, "three tasks running")
        assert sum(f.running() for f in fs) == 3  # the others wait in the executor's queue
        assert sum(not f.running() and not f.done() for f in fs) == 4
        go.set()
        done, _ = cf.wait(fs, timeout=WAIT)
    assert len(done) == 7
    assert max(peaks.to_list()) == 3 and len(peaks.to_list()) == 7


def test_executor_retries_platform_failures(dso1, key, new_backend):
    attempts = crucial.AtomicInt(0, key=key)
    with ServerlessExecutor(new_backend(), retry=Retry(count=1, backoff=0.01)) as ex:
        assert ex.submit(exit_on_first_attempt, attempts).result(WAIT) == 2
    assert attempts.get() == 2


def test_executor_timeout(dso1, key, new_backend):
    ev = crucial.Event(key=key)
    with ServerlessExecutor(new_backend(), timeout=0.3) as ex:
        with pytest.raises(crucial.InvocationTimeoutError):
            ex.submit(wait_then, ev, 1).result(WAIT)
        assert ex.submit(square, 4).result(WAIT) == 16


def test_progress_bar(dso1, capsys):
    with ServerlessExecutor(progress=True) as ex:
        assert list(ex.map(square, range(4), chunksize=2)) == [0, 1, 4, 9]
        assert ex.parallel_for(square, 0, 4, workers=2, finalizer=lambda: 1) == 1
    assert "square" in capsys.readouterr().err


def test_queued_tasks_fail_cleanly_when_the_backend_closes(dso1, key, new_backend, caplog):
    """Many queued tasks and a backend that refuses them all: each fails, none hangs, no recursion."""
    backend = new_backend()
    ev = crucial.Event(key=key)
    ex = ServerlessExecutor(backend, max_workers=1)
    first = ex.submit(wait_then, ev, 0)
    queued = [ex.submit(square, i) for i in range(1500)]
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        backend.close()  # the running task dies; each queued one is refused as it starts
        with pytest.raises(crucial.WorkerDiedError):
            first.result(WAIT)
        _, not_done = cf.wait(queued, timeout=WAIT)
    assert not not_done, f"{len(not_done)} tasks never finished"
    assert all(isinstance(f.exception(), RuntimeError) for f in queued)
    assert "exception calling callback" not in caplog.text
    ex.shutdown()
