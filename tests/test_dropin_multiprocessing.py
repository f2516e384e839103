"""``crucial.multiprocessing``: ``multiprocessing``'s API on cloud functions and DSO objects."""

from __future__ import annotations

import os
import queue as std_queue
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import crucial.multiprocessing as mp
from crucial.testing import unconfigured_env


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def boom(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def test_pool_maps(dso1) -> None:
    with mp.Pool(3) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert list(pool.imap(square, range(5))) == [0, 1, 4, 9, 16]
        assert sorted(pool.imap_unordered(square, range(5), chunksize=2)) == [0, 1, 4, 9, 16]
        assert pool.apply(add, (2, 3)) == 5
        assert pool.map(square, []) == []
        chunks = pool.timeline.calls
    assert len(chunks) >= 3 and all(c.status == "done" and c.worker for c in chunks)


def test_pool_async_results_and_callbacks(dso1) -> None:
    got: list[Any] = []
    errors: list[BaseException] = []
    with mp.Pool(2) as pool:
        res = pool.apply_async(add, (1, 2), callback=got.append)
        assert res.get(timeout=60) == 3 and res.ready() and res.successful()
        bad = pool.apply_async(boom, (3,), error_callback=errors.append)
        bad.wait(60)
        assert bad.ready() and not bad.successful()
        with pytest.raises(ValueError, match="three"):
            bad.get()
        many = pool.map_async(square, range(4), callback=got.append)
        assert many.get(60) == [0, 1, 4, 9]
        slow = pool.apply_async(time.sleep, (2,))
        with pytest.raises(mp.TimeoutError):
            slow.get(timeout=0.01)
        with pytest.raises(ValueError, match="not ready"):
            slow.successful()
        with pytest.raises(ValueError, match="three"):
            pool.map(boom, range(5))
    assert got == [3, [0, 1, 4, 9]] and [type(e) for e in errors] == [ValueError]


def test_pool_lifecycle(dso1) -> None:
    pool = mp.Pool(2)
    res = pool.map_async(square, range(6))
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    pool.close()
    with pytest.raises(ValueError, match="not running"):
        pool.apply_async(square, (1,))
    pool.join()
    assert res.ready() and res.get() == [x * x for x in range(6)]
    pool.terminate()
    with pytest.raises(ValueError, match="Number of processes"):
        mp.Pool(0)


def test_pool_initializer_runs_in_the_workers(dso1) -> None:
    with mp.Pool(2, initializer=os.environ.__setitem__, initargs=("CRUCIAL_TEST_INIT", "yes")) as pool:
        assert pool.map(os.environ.get, ["CRUCIAL_TEST_INIT"] * 3) == ["yes"] * 3
        assert pool.apply(os.environ.get, ("CRUCIAL_TEST_INIT",)) == "yes"


def _exit_with(code: Any) -> None:
    raise SystemExit(code)


def _named(q: Any) -> None:
    q.put(mp.current_process().name)


def test_process_exit_codes_and_names(dso1) -> None:
    ok = mp.Process(target=square, args=(2,))
    assert ok.exitcode is None and ok.pid is None and "initial" in repr(ok)
    ok.start()
    ok.join()
    assert ok.exitcode == 0 and isinstance(ok.pid, int)
    fails = mp.Process(target=boom, args=(3,), name="failing")
    fails.start()
    fails.join()
    assert fails.exitcode == 1
    exits = mp.Process(target=_exit_with, args=(7,))
    exits.start()
    exits.join()
    assert exits.exitcode == 7
    q = mp.Queue()
    named = mp.Process(target=_named, args=(q,), name="worker-x")
    named.start()
    assert q.get(timeout=60) == "worker-x"
    assert mp.current_process().name == "MainProcess"


def test_a_failing_process_prints_its_traceback(cluster, tmp_path: Path) -> None:
    """As multiprocessing's child does, on its stderr (the program's, on the local backend)."""
    script = tmp_path / "prog.py"
    script.write_text(
        "from crucial.multiprocessing import Process\n"
        "def f():\n    raise ValueError('child failed')\n"
        "p = Process(target=f)\np.start()\np.join()\nprint('exitcode', p.exitcode)\n"
    )
    env = unconfigured_env(cluster.env_vars())
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "exitcode 1\n"
    assert done.stderr.startswith("Process Process-1:\nTraceback") and "ValueError: child failed" in done.stderr


def _sleep_on(ev: Any) -> None:
    ev.wait(60)


def test_terminate_stops_waiting(dso1) -> None:
    ev = mp.Event()
    p = mp.Process(target=_sleep_on, args=(ev,), daemon=True)
    p.start()
    assert p.is_alive() and p in mp.active_children()
    with pytest.raises(ValueError, match="still running"):
        p.close()
    p.terminate()
    p.join(60)
    assert not p.is_alive() and p.exitcode == -15
    p.close()
    ev.set()


def _fill(q: Any, jq: Any, sq: Any) -> None:
    q.put("q")
    jq.put("jq")
    sq.put("sq")


def test_queues(dso1) -> None:
    q, jq, sq = mp.Queue(), mp.JoinableQueue(), mp.SimpleQueue()
    p = mp.Process(target=_fill, args=(q, jq, sq))
    p.start()
    assert (q.get(timeout=60), jq.get(timeout=60), sq.get()) == ("q", "jq", "sq")
    jq.task_done()
    jq.join()
    p.join()
    with pytest.raises(std_queue.Empty):
        q.get(timeout=0.01)
    bounded = mp.Queue(1)
    bounded.put(1)
    with pytest.raises(std_queue.Full):
        bounded.put(2, block=False)
    for x in (q, jq, bounded):
        x.close()
        x.join_thread()
    assert sq.empty()


def _echo(conn: Any) -> None:
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        conn.send(("echo", msg))


def test_pipe_duplex_and_eof(dso1) -> None:
    parent, child = mp.Pipe()
    p = mp.Process(target=_echo, args=(child,))
    p.start()
    parent.send([1, 2])
    assert parent.recv() == ("echo", [1, 2])
    assert not parent.poll(0.01)
    parent.send_bytes(b"raw", 1)
    assert parent.recv() == ("echo", b"aw")
    parent.close()  # the child's recv sees EOF and it ends
    p.join(60)
    assert p.exitcode == 0
    with pytest.raises(OSError, match="closed"):
        parent.send(1)
    reader, writer = mp.Pipe(duplex=False)
    writer.send_bytes(b"bytes")
    assert reader.poll(10) and reader.recv_bytes() == b"bytes"
    with pytest.raises(OSError, match="read-only"):
        reader.send(1)
    writer.close()
    with pytest.raises(EOFError):
        reader.recv()


def _bump(v: Any, a: Any, n: int) -> None:
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    with a.get_lock():  # a[i] = a[i] * 2 reads and writes apart: without the lock two processes can race (stdlib too)
        for i in range(len(a)):
            a[i] = a[i] * 2


def test_value_and_array(dso1) -> None:
    v = mp.Value("i", 0)
    a = mp.Array("d", [1.0, 2.5])
    procs = [mp.Process(target=_bump, args=(v, a, 5)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert v.value == 15  # atomic under the lock
    assert a[:] == [8.0, 20.0] and len(a) == 2 and list(a) == [8.0, 20.0]
    v.value = 2**32 + 5  # as a c_int holds it
    assert v.value == 5
    with pytest.raises(TypeError):
        v.value = "x"
    with pytest.raises(IndexError):
        a[2]
    with pytest.raises(ValueError, match="same size"):
        a[0:2] = [1.0]
    raw = mp.RawArray("i", 3)
    assert raw[:] == [0, 0, 0]
    with pytest.raises(AttributeError):
        mp.RawValue("i").get_lock()
    with pytest.raises(TypeError, match="typecode"):
        mp.Value("z")


def _use_manager(d: Any, lst: Any, ns: Any, q: Any) -> None:
    d["k"] = 1
    lst.append("x")
    ns.x = 10
    q.put(ns.y)


def test_manager(dso1) -> None:
    with mp.Manager() as manager:
        d, lst, ns, q = manager.dict(a=0), manager.list([1]), manager.Namespace(y=5), manager.Queue()
        p = mp.Process(target=_use_manager, args=(d, lst, ns, q))
        p.start()
        p.join()
        assert str(d) == "{'a': 0, 'k': 1}" and str(lst) == "[1, 'x']"
        assert (ns.x, ns.y, q.get(timeout=60)) == (10, 5, 5)
        assert repr(ns) == "Namespace(y=5, x=10)"
        with pytest.raises(AttributeError):
            _ = ns.missing
        del ns.x
        assert not hasattr(ns, "x")
        value = manager.Value("d", 1.5)
        assert value.value == 1.5


def test_module_level_names() -> None:
    assert mp.cpu_count() == os.cpu_count()
    assert mp.get_context() is mp and mp.get_start_method() == "crucial"
    mp.set_start_method("spawn")  # accepted, ignored
    mp.freeze_support()
    with pytest.raises(AttributeError, match=r"docs/porting\.md"):
        _ = mp.shared_memory


def test_pool_plot(dso1, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with mp.Pool(2) as pool:
        pool.map(square, range(8), chunksize=1)
        png = pool.plot(str(tmp_path / "pool.png"))
    data = Path(png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
