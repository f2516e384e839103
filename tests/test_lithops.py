"""The lithops backend, for real: Lithops' localhost compute backend and storage.

Every invocation is a fresh interpreter started by Lithops (this virtualenv's,
so crucial is importable there), reaching a real DSO cluster over loopback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import as_completed
from pathlib import Path

import pytest

import crucial
from crucial.compute import CloudThread, Retry, ServerlessExecutor, get_backend
from crucial.exceptions import RemoteTraceback
from crucial.testing import LocalCluster
from crucial.testing.faults import eventually

try:
    import lithops  # noqa: F401
except ImportError:  # pragma: no cover - CI installs it through the test extra
    pytest.skip("lithops is not installed (pip install 'crucial[lithops]')", allow_module_level=True)

from crucial.compute.lithops import LithopsBackend

WAIT = 60  # seconds: no test may hang on a lost invocation
LOCALHOST = {"lithops": {"backend": "localhost", "storage": "localhost"}}


@pytest.fixture(scope="module")
def backend() -> Iterator[LithopsBackend]:
    b = LithopsBackend(LOCALHOST, max_workers=16)
    yield b
    b.close()


# -- what the cloud functions do (shipped by value: tests are not importable there) --


def add_many(counter: crucial.Counter, n: int) -> int:
    for _ in range(n):
        counter.increment()
    return os.getpid()


def meet(barrier: crucial.Barrier, counter: crucial.Counter) -> tuple[int, int]:
    counter.increment()
    index = barrier.wait(timeout=WAIT)
    return index, counter.tally()  # every party counted before anyone passed


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise KeyError(message)


def crash() -> None:
    os._exit(3)


def crash_once(attempts: crucial.Counter) -> str:
    if attempts.increment() == 1:
        os._exit(4)
    return "second attempt"


# -- the tests -------------------------------------------------------------------


def test_localhost_runs_this_interpreter(backend: LithopsBackend):
    import sys

    assert backend.compute == "localhost"
    assert backend.config["localhost"]["runtime"] == sys.executable
    assert backend.max_concurrency == 16


def test_cloud_threads_share_a_counter(dso: LocalCluster, key: str, backend: LithopsBackend):
    counter = crucial.Counter(key=key)
    threads = [CloudThread(target=add_many, args=(counter, 25), backend=backend, timeout=WAIT) for _ in range(4)]
    for t in threads:
        t.start()
    pids = [t.result(WAIT) for t in threads]
    assert counter.tally() == 100
    assert os.getpid() not in pids and len(set(pids)) == 4  # a fresh process per invocation
    assert not any(t.is_alive() for t in threads)


def test_a_barrier_holds_every_function_until_all_arrive(dso: LocalCluster, key: str, backend: LithopsBackend):
    parties = 4
    barrier = crucial.Barrier(parties, key=key)
    counter = crucial.Counter(key=key + "-n")
    threads = [CloudThread(target=meet, args=(barrier, counter), backend=backend, timeout=WAIT) for _ in range(parties)]
    for t in threads:
        t.start()
    results = [t.result(WAIT) for t in threads]
    assert sorted(i for i, _ in results) == list(range(parties))
    assert all(seen == parties for _, seen in results)


def test_serverless_executor_on_lithops(dso1: LocalCluster, backend: LithopsBackend):
    with ServerlessExecutor(backend=backend, timeout=WAIT) as ex:
        assert list(ex.map(square, range(10), chunksize=4, timeout=WAIT)) == [x * x for x in range(10)]
        futures = [ex.submit(square, x) for x in range(3)]
        assert sorted(f.result() for f in as_completed(futures, timeout=WAIT)) == [0, 1, 4]
        done = ex.invoke_all([lambda: "a", lambda: "b"], timeout=WAIT)
        assert [f.result() for f in done] == ["a", "b"]


def test_user_exception_comes_back_as_its_type(dso1: LocalCluster, backend: LithopsBackend):
    t = CloudThread(target=fail, args=("missing",), backend=backend, timeout=WAIT)
    t.start()
    with pytest.raises(KeyError, match="missing") as info:
        t.result(WAIT)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in str(info.value.__cause__) and "lithops backend" in str(info.value.__cause__)


def test_a_crashing_function_is_an_invocation_error(dso1: LocalCluster, backend: LithopsBackend):
    t = CloudThread(target=crash, backend=backend, timeout=WAIT)
    started = time.monotonic()
    t.start()
    with pytest.raises(crucial.WorkerDiedError, match="exited with code 3"):
        t.result(WAIT)
    assert time.monotonic() - started < WAIT


def test_a_function_past_its_timeout_is_stopped(dso1: LocalCluster, backend: LithopsBackend):
    t = CloudThread(target=time.sleep, args=(WAIT,), backend=backend, timeout=1)
    started = time.monotonic()
    t.start()
    with pytest.raises(crucial.InvocationTimeoutError, match="maximum time"):
        t.result(WAIT)
    assert time.monotonic() - started < 15


def test_platform_failures_are_retried(dso1: LocalCluster, key: str, backend: LithopsBackend):
    attempts = crucial.Counter(key=key)
    t = CloudThread(target=crash_once, args=(attempts,), backend=backend, timeout=WAIT, retry=Retry(count=2, backoff=0.05))
    t.start()
    assert t.result(WAIT) == "second attempt"
    assert attempts.tally() == 2


def test_past_the_cap_is_a_capacity_error(dso1: LocalCluster, key: str):
    small = LithopsBackend(LOCALHOST, max_workers=1)
    try:
        barrier = crucial.Barrier(2, key=key)
        first = CloudThread(target=barrier.wait, kwargs={"timeout": WAIT}, backend=small, timeout=WAIT)
        first.start()
        with pytest.raises(crucial.CapacityError, match="max_workers"):
            CloudThread(target=square, args=(2,), backend=small).start()
        barrier.wait(timeout=WAIT)  # this process is the second party: the function can end
        assert first.result(WAIT) in (0, 1)
    finally:
        small.close()


def test_chosen_by_name_with_string_options(dso1: LocalCluster):
    b = get_backend("lithops", backend="localhost", storage="localhost")
    assert isinstance(b, LithopsBackend) and b.compute == "localhost"
    t = CloudThread(target=square, args=(7,), backend=b, timeout=WAIT)
    t.start()
    assert t.result(WAIT) == 49


def test_a_bad_runtime_is_a_config_error():
    with pytest.raises(crucial.ConfigError, match="not an executable"):
        LithopsBackend(
            {"lithops": {"backend": "localhost", "storage": "localhost"}, "localhost": {"runtime": "/nonexistent/python"}}
        )
    with pytest.raises(crucial.ConfigError, match="max_workers"):
        LithopsBackend(LOCALHOST, max_workers=0)


def test_close_fails_what_still_runs(dso1: LocalCluster, key: str):
    b = LithopsBackend(LOCALHOST)
    barrier = crucial.Barrier(2, key=key)  # nobody else comes: the function waits until killed
    t = CloudThread(target=barrier.wait, kwargs={"timeout": WAIT}, backend=b, timeout=WAIT)
    t.start()
    eventually(lambda: barrier.n_waiting == 1, timeout=WAIT, what="the function waits at the barrier")
    b.close()
    with pytest.raises(crucial.InvocationError, match="closed"):
        t.result(WAIT)
    with pytest.raises(RuntimeError, match="closed"):
        CloudThread(target=square, args=(1,), backend=b).start()


# -- the stateful examples, their cloud threads on Lithops ------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "expect"),
    [
        ("kmeans", ["--points", "3000", "--threads", "3", "--k", "5", "--check"], r"max centre difference \d\.\d+e-1\d"),
        ("logreg", ["--points", "3000", "--threads", "2", "--iterations", "20"], r"training accuracy \d+\.\d+ %"),
        ("santa", ["--deliveries", "2", "--work-delay", "0.005"], r"invariants OK: True"),
    ],
)
def test_stateful_examples_on_lithops(name: str, args: list[str], expect: str, tmp_path: Path) -> None:
    """``CRUCIAL_BACKEND=lithops python -m crucial.examples.<name>``: nothing else configured (an embedded DSO node)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIAL_", "LITHOPS_"))}
    env["CRUCIAL_BACKEND"] = "lithops"
    proc = subprocess.run(
        [sys.executable, "-m", f"crucial.examples.{name}", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert re.search(expect, proc.stdout), proc.stdout


SIBLING = """
import sys
from crucial.compute import CloudThread, get_backend

if __name__ == "__main__":
    backend = get_backend("lithops", backend="localhost", storage="localhost")
    t = CloudThread(target=str.upper, args=(sys.argv[1],), backend=backend, timeout=60)
    t.start()
    print(t.result(60))
    backend.close()
"""


def test_programs_that_inherit_a_lithops_session_do_not_share_executor_ids(dso1: LocalCluster, tmp_path: Path) -> None:
    """Lithops exports its session to child processes; two sibling programs must still not read each other's results."""
    script = tmp_path / "sibling.py"
    script.write_text(SIBLING)
    env = dict(os.environ, __LITHOPS_SESSION_ID="inherit", __LITHOPS_TOTAL_EXECUTORS="3")  # as a Lithops parent leaves it
    outputs = []
    for word in ("first", "second"):
        proc = subprocess.run([sys.executable, str(script), word], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout.strip().splitlines()[-1])
    assert outputs == ["FIRST", "SECOND"]


UNJOINED = """
import sys, time
import crucial
t = crucial.CloudThread(target=time.sleep, args=(3,), backend="lithops")
t.start()
print("started", flush=True)
"""


def test_a_program_that_exits_with_a_call_running_prints_no_traceback(dso1: LocalCluster, tmp_path: Path) -> None:
    """At exit the backend closes before thread pools refuse work: Lithops' monitor has nothing to complain about.

    (It used to log "cannot schedule new futures after interpreter shutdown"
    with a traceback, several times, for every call still running; `sshell
    --backend lithops` exits as soon as its command's status arrives, which
    is before Lithops has the call's.)
    """
    script = tmp_path / "unjoined.py"
    script.write_text(UNJOINED)
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "started\n", "")
