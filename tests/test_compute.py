"""Cloud threads on real worker processes (the ``local`` backend) sharing real DSO nodes.

Every function below is defined in this module, so it travels by value to
the workers.  Functions that wait do so on DSO objects with a timeout, so a
failing test never leaves a worker blocked forever.
"""

from __future__ import annotations

import importlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import crucial
from crucial.compute import CloudThread, Retry, get_backend
from crucial.compute.local import LocalBackend
from crucial.testing import unconfigured_env
from crucial.testing.faults import blackhole, closed_port, eventually

WAIT = 30.0  # the longest any function or join waits: a broken test fails, it does not hang


# -- fixtures ----------------------------------------------------------------------


# -- functions shipped to the workers -------------------------------------------------


def add(a: int, b: int = 0, *, c: int = 0) -> int:
    return a + b + c


def square(x: int) -> int:
    return x * x


def pid() -> int:
    return os.getpid()


def wait_event(ev: crucial.Event) -> bool:
    return ev.wait(WAIT)


def barrier_party(barrier: crucial.Barrier) -> int:
    return barrier.wait(WAIT)


class Boom(Exception):
    """A user exception from this module: it must come back as itself."""


def fail(message: str) -> None:
    raise Boom(message)


def raise_key_error() -> int:
    empty: dict[str, int] = {}
    return empty["missing"]


def die(how: str, mark: crucial.AtomicInt) -> None:
    mark.set(os.getpid())
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def exit_on_first_attempt(attempts: crucial.AtomicInt) -> int:
    n = attempts.increment_and_get()
    if n == 1:
        os._exit(3)
    return n


def raise_until(attempts: crucial.AtomicInt, succeed_at: int) -> int:
    n = attempts.increment_and_get()
    if n < succeed_at:
        raise Boom(f"attempt {n}")
    return n


def mutate(box: list[int]) -> int:
    box.append(99)
    return len(box)


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


def call_unreachable(address: str) -> Any:
    client = crucial.Client([address], crucial.Config(connect_timeout=1))
    try:
        return client.call("AtomicInt", "nowhere", "get", create=((0,), {}))
    finally:
        client.close()


class Adder(CloudThread):
    """A subclass overriding run(): its proxies travel as attributes."""

    def __init__(self, counter: crucial.AtomicInt, seen: crucial.Set, n: int) -> None:
        super().__init__()
        self.counter = counter
        self.seen = seen
        self.n = n

    def run(self) -> int:
        for _ in range(self.n):
            self.counter.increment_and_get()
        self.seen.add(self.name)
        return self.n


def _started(thread: CloudThread) -> CloudThread:
    thread.start()
    return thread


# -- CloudThread ---------------------------------------------------------------------


def test_target_args_kwargs_and_result(dso1):
    t = CloudThread(target=add, args=(1, 2), kwargs={"c": 4}, name="adder")
    assert not t.is_alive() and t.future is None
    t.start()
    t.join(WAIT)
    assert not t.is_alive()
    assert t.result() == 7 and t.exception() is None
    assert t.name == "adder" and "stopped" in repr(t)
    assert CloudThread().name != CloudThread().name  # default names are distinct


def test_runs_in_another_process(dso1):
    t = _started(CloudThread(target=pid))
    assert t.result(WAIT) != os.getpid()


def test_no_target_returns_none(dso1):
    assert _started(CloudThread()).result(WAIT) is None


def test_subclass_with_proxies_as_attributes(dso, key):
    counter = crucial.AtomicInt(0, key=key)
    seen = crucial.Set(key=key)
    threads = [Adder(counter, seen, 25) for _ in range(4)]
    for t in threads:
        t.start()
    assert [t.result(WAIT) for t in threads] == [25] * 4
    assert counter.get() == 100
    assert seen.to_set() == {t.name for t in threads}


def test_subclass_from_a_module_the_workers_cannot_import(dso1, key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A user's own module (no FaaS image has it): its CloudThread subclass must travel by value."""
    name = f"user_threads_{key.replace('-', '_')}"
    source = tmp_path / f"{name}.py"
    source.write_text(
        textwrap.dedent(
            """
            import crucial

            class Doubler(crucial.CloudThread):
                def __init__(self, x):
                    super().__init__()
                    self.x = x

                def run(self):
                    return 2 * self.x
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)  # removed again after the test
    source.unlink()  # neither a warm worker nor a fresh one can import it now
    t = _started(module.Doubler(21))
    assert t.result(WAIT) == 42


def test_builtin_exception_comes_back_with_remote_traceback(dso1):
    t = _started(CloudThread(target=raise_key_error))
    t.join(WAIT)
    assert not t.is_alive()
    with pytest.raises(KeyError, match="missing") as info:
        t.result()
    cause = info.value.__cause__
    assert isinstance(cause, crucial.RemoteTraceback)
    assert "raise_key_error" in str(cause) and "local backend" in str(cause)
    assert isinstance(t.exception(), KeyError)


def test_user_exception_comes_back_as_its_own_class(dso1):
    t = _started(CloudThread(target=fail, args=("kaput",)))
    with pytest.raises(Boom, match="kaput") as info:
        t.result(WAIT)
    assert type(info.value) is Boom
    assert isinstance(info.value.__cause__, crucial.RemoteTraceback)
    assert "in fail" in str(info.value.__cause__)


def test_join_timeout_while_waiting_on_an_event(dso1, key):
    ev = crucial.Event(key=key)
    t = _started(CloudThread(target=wait_event, args=(ev,)))
    began = time.monotonic()
    t.join(0.3)
    assert time.monotonic() - began >= 0.29
    assert t.is_alive() and "started" in repr(t)
    ev.set()
    t.join(WAIT)
    assert not t.is_alive()
    assert t.result() is True


def test_barrier_of_more_threads_than_cores(dso, key):
    n = 12
    assert n > (os.cpu_count() or 1)
    barrier = crucial.Barrier(n, key=key)
    threads = [_started(CloudThread(target=barrier_party, args=(barrier,))) for _ in range(n)]
    assert sorted(t.result(WAIT) for t in threads) == list(range(n))


def test_start_twice_raises(dso1):
    t = _started(CloudThread(target=add, args=(1,)))
    with pytest.raises(RuntimeError, match="started once"):
        t.start()
    assert t.result(WAIT) == 1


def test_join_or_result_before_start_raises():
    t = CloudThread(target=add, args=(1,))
    with pytest.raises(RuntimeError, match="before it is started"):
        t.join()
    with pytest.raises(RuntimeError, match="not started"):
        t.result()
    assert not t.is_alive() and "initial" in repr(t)


def test_unpicklable_args_fail_at_start_and_nothing_runs(new_backend):
    backend = new_backend()
    t = CloudThread(target=add, args=(threading.Lock(),), backend=backend)
    with pytest.raises(crucial.SerializationError, match="add"):
        t.start()
    assert t.future is None and not t.is_alive()
    assert backend.stats["invocations"] == 0 and backend.size == 0


def test_unpicklable_target_fails_at_start_and_nothing_runs(new_backend):
    backend = new_backend()
    lock = threading.Lock()

    def holds_a_lock() -> bool:
        return lock.locked()

    with pytest.raises(crucial.SerializationError, match="holds_a_lock"):
        CloudThread(target=holds_a_lock, backend=backend).start()
    assert backend.stats["invocations"] == 0 and backend.size == 0


def test_unknown_backend_on_a_thread():
    with pytest.raises(crucial.ConfigError, match="dask, inline, lithops, local, ray"):
        CloudThread(target=add, args=(1,), backend="nope").start()


# -- backends ----------------------------------------------------------------------


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(crucial.ConfigError, match=r"'nope'.*known backends: dask, inline, lithops, local, ray"):
        get_backend("nope")
    with pytest.raises(crucial.ConfigError, match="dask, inline, lithops, local, ray"):
        crucial.ServerlessExecutor("nope")


def test_missing_lithops_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    from crucial.compute import _backend

    monkeypatch.setattr(_backend, "_shared", {})
    monkeypatch.setitem(sys.modules, "lithops", None)  # "not installed"
    monkeypatch.delitem(sys.modules, "crucial.compute.lithops", raising=False)
    with pytest.raises(crucial.ConfigError, match=r"crucial\[lithops\]"):
        get_backend("lithops")


def test_get_backend_shares_one_instance_per_name_and_options():
    assert get_backend("local") is get_backend("local")
    backend = get_backend("inline")
    assert get_backend(backend) is backend


def test_inline_runs_in_the_callers_process_through_pickling(dso1):
    box = [1, 2]
    t = _started(CloudThread(target=mutate, args=(box,), backend="inline"))
    assert t.result(WAIT) == 3
    assert box == [1, 2]  # the function got a copy: it went through pickling
    assert _started(CloudThread(target=pid, backend="inline")).result(WAIT) == os.getpid()
    with pytest.raises(Boom, match="inline") as info:
        _started(CloudThread(target=fail, args=("inline",), backend="inline")).result(WAIT)
    assert isinstance(info.value.__cause__, crucial.RemoteTraceback)


def test_inline_unpicklable_arg_fails_at_start():
    with pytest.raises(crucial.SerializationError):
        CloudThread(target=add, args=(threading.Lock(),), backend="inline").start()


def test_inline_shares_the_dso(dso1, key):
    counter = crucial.AtomicInt(0, key=key)
    with crucial.ServerlessExecutor("inline") as ex:
        ex.parallel_for(lambda i: counter.add_and_get(i), 0, 10, workers=3)
    assert counter.get() == 45


# -- local backend faults ------------------------------------------------------------


@pytest.mark.parametrize(("how", "says"), [("kill", "killed by signal 9"), ("exit", "exited with code 3")])
def test_worker_dying_mid_call(dso1, key, new_backend, how, says):
    backend = new_backend()
    mark = crucial.AtomicInt(0, key=key)
    t = _started(CloudThread(target=die, args=(how, mark), backend=backend))
    with pytest.raises(crucial.WorkerDiedError, match=says) as info:
        t.result(WAIT)
    dead = mark.get()
    assert dead and f"pid {dead}" in str(info.value)
    assert isinstance(info.value, crucial.InvocationError)
    # the pool replaces it: the next invocation runs on a fresh worker
    fresh = _started(CloudThread(target=pid, backend=backend)).result(WAIT)
    assert fresh != dead
    assert backend.stats["workers_died"] == 1
    eventually(lambda: backend.size == 1, WAIT, "only the fresh worker remains")


def test_cap_reached_raises_at_once(dso1, key, new_backend):
    backend = new_backend(max_workers=2)
    ev = crucial.Event(key=key)
    blocked = [_started(CloudThread(target=wait_event, args=(ev,), backend=backend)) for _ in range(2)]
    eventually(lambda: backend.size == 2, WAIT, "two busy workers")
    third = CloudThread(target=add, args=(3,), backend=backend)
    began = time.monotonic()
    with pytest.raises(crucial.CapacityError, match="max_workers"):
        third.start()
    assert time.monotonic() - began < 5
    assert third.future is None
    ev.set()
    assert [t.result(WAIT) for t in blocked] == [True, True]
    assert _started(CloudThread(target=add, args=(3,), backend=backend)).result(WAIT) == 3  # capacity is back


def test_per_call_timeout(dso1, key, new_backend):
    backend = new_backend()
    ev = crucial.Event(key=key)
    t = _started(CloudThread(target=wait_event, args=(ev,), backend=backend, timeout=0.3))
    with pytest.raises(crucial.InvocationTimeoutError) as info:
        t.result(WAIT)
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, crucial.InvocationError)
    assert not t.is_alive()
    assert _started(CloudThread(target=add, args=(5,), backend=backend)).result(WAIT) == 5


def scheduling_policy() -> int:
    return os.sched_getscheduler(0)


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_workers_are_batch_scheduled(dso1, new_backend):
    """Waking a worker must not preempt the program that starts it (docs/benchmarks.md, Cloud threads)."""
    backend = new_backend()
    assert _started(CloudThread(target=scheduling_policy, backend=backend)).result(WAIT) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) != os.SCHED_BATCH  # the program's own policy is left alone


def test_a_raising_callback_does_not_stop_the_monitor(dso1, new_backend, caplog: pytest.LogCaptureFixture):
    """invoke_then's callback runs in the monitor thread: its error is logged, and replies keep coming."""
    from crucial.compute._invoke import prepare

    backend = new_backend()
    heard = threading.Event()

    def bad(data: bytes | None, error: BaseException | None) -> None:
        heard.set()
        raise RuntimeError("a broken callback")

    backend.invoke_then(prepare(add, (1,), {}), None, bad)
    assert heard.wait(WAIT)
    assert _started(CloudThread(target=add, args=(2,), backend=backend)).result(WAIT) == 2
    assert "a broken callback" in caplog.text


def test_a_refused_start_leaves_the_thread_unstarted_and_untimed(dso1, key, new_backend):
    """A start the backend refuses at once: no Future, no wait at exit, and the timeline shows it never ran."""
    backend = new_backend(max_workers=1)
    ev = crucial.Event(key=key)
    busy = _started(CloudThread(target=wait_event, args=(ev,), backend=backend))
    eventually(lambda: backend.size == 1, WAIT, "one busy worker")
    refused = CloudThread(target=add, args=(3,), backend=backend)
    with pytest.raises(crucial.CapacityError):
        refused.start()
    assert refused.future is None and not refused.is_alive()
    assert refused._call is not None and refused._call.started is None and refused._call.attempts == 0
    assert refused not in crucial.compute.thread.alive()
    ev.set()
    assert busy.result(WAIT) is True


def test_idle_workers_are_reaped(dso1, key, new_backend):
    backend = new_backend(idle_timeout=0.2)
    barrier = crucial.Barrier(2, key=key)
    threads = [_started(CloudThread(target=barrier_party, args=(barrier,), backend=backend)) for _ in range(2)]
    assert sorted(t.result(WAIT) for t in threads) == [0, 1]
    assert backend.stats["workers_started"] == 2
    eventually(lambda: backend.size == 0, WAIT, "idle workers reaped")
    assert backend.stats["workers_reaped"] == 2
    assert _started(CloudThread(target=add, args=(1,), backend=backend)).result(WAIT) == 1


def test_reaping_forked_workers_holds_up_no_reply(dso1, key, new_backend):
    """A forked worker holds copies of its siblings' pipes, so closing one never ends it: it is stopped.

    Before, the monitor thread waited 5 s for each reaped worker to see the end of
    its pipe, holding up every reply of the pool meanwhile (sshell's pipelines,
    which fork their workers, took 5 s more per run).
    """
    backend = new_backend(idle_timeout=0, start_method="fork")
    barrier = crucial.Barrier(3, key=key)
    threads = [_started(CloudThread(target=barrier_party, args=(barrier,), backend=backend)) for _ in range(3)]
    assert sorted(t.result(WAIT) for t in threads) == [0, 1, 2]
    eventually(lambda: backend.stats["workers_reaped"] == 3, WAIT, "three idle workers reaped")
    # three reaped workers held the monitor 15 s before: this reply would have waited behind them
    assert _started(CloudThread(target=add, args=(1,), backend=backend)).result(4.0) == 1


def test_bad_local_backend_options():
    with pytest.raises(crucial.ConfigError, match="max_workers"):
        LocalBackend(max_workers=0)


def test_negative_idle_timeout_is_refused():
    with pytest.raises(crucial.ConfigError, match="idle_timeout"):
        LocalBackend(idle_timeout=-1).close()


def test_zero_idle_timeout_does_not_spin(new_backend, monkeypatch: pytest.MonkeyPatch):
    polls = itertools.count()
    backend = new_backend(idle_timeout=0)
    real_select = backend._sel.select

    def counted_select(*args: Any, **kwargs: Any) -> Any:
        next(polls)
        return real_select(*args, **kwargs)

    monkeypatch.setattr(backend._sel, "select", counted_select)  # the monitor thread's poll
    assert _started(CloudThread(target=add, args=(1,), backend=backend)).result(WAIT) == 1
    eventually(lambda: backend.size == 0, WAIT, "the worker reaped at once")
    before = next(polls)
    threading.Event().wait(0.5)  # a measuring window, not synchronisation: an idle backend has nothing to do
    assert next(polls) - before < 20, "the idle backend's monitor thread spins"


def test_closed_backend_refuses_at_start(new_backend):
    backend = new_backend()
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        CloudThread(target=add, args=(1,), backend=backend).start()


# -- retries ---------------------------------------------------------------------------


def test_platform_failure_is_retried(dso1, key, new_backend):
    backend = new_backend()
    attempts = crucial.AtomicInt(0, key=key)
    t = _started(CloudThread(target=exit_on_first_attempt, args=(attempts,), backend=backend, retry=Retry(2, 0.01)))
    assert t.result(WAIT) == 2
    assert attempts.get() == 2


def test_platform_failure_without_retry_fails(dso1, key, new_backend):
    backend = new_backend()
    attempts = crucial.AtomicInt(0, key=key)
    with pytest.raises(crucial.WorkerDiedError):
        _started(CloudThread(target=exit_on_first_attempt, args=(attempts,), backend=backend)).result(WAIT)
    assert attempts.get() == 1


def test_user_errors_are_not_retried_by_default(dso1, key, new_backend):
    attempts = crucial.AtomicInt(0, key=key)
    t = CloudThread(target=raise_until, args=(attempts, 2), backend=new_backend(), retry=Retry(count=2, backoff=0.01))
    with pytest.raises(Boom, match="attempt 1"):
        _started(t).result(WAIT)
    assert attempts.get() == 1


def test_user_errors_retried_when_asked(dso1, key, new_backend):
    backend = new_backend()
    attempts = crucial.AtomicInt(0, key=key)
    retry = Retry(count=2, backoff=0.01, user_errors=True)
    assert _started(CloudThread(target=raise_until, args=(attempts, 3), backend=backend, retry=retry)).result(WAIT) == 3
    assert attempts.get() == 3
    # count=2 means three attempts in all, then the last error
    attempts.set(0)
    with pytest.raises(Boom, match="attempt 3"):
        _started(CloudThread(target=raise_until, args=(attempts, 10), backend=backend, retry=retry)).result(WAIT)
    assert attempts.get() == 3


def test_retry_pauses_grow_and_are_capped():
    r = Retry(count=5, backoff=0.1, factor=2.0, max_backoff=0.3)
    assert [r.pause(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.3]


# -- a DSO the function cannot reach ----------------------------------------------------


def test_unreachable_dso_fails_fast_in_the_function(dso1):
    with closed_port() as address:
        t = _started(CloudThread(target=call_unreachable, args=(address,)))
        t.join(WAIT)
        assert not t.is_alive(), "the function hung on an unreachable DSO"
        with pytest.raises(crucial.ConnectError, match=address):
            t.result()


def test_hung_dso_fails_within_the_connect_timeout(dso1):
    with blackhole() as address:
        began = time.monotonic()
        t = _started(CloudThread(target=call_unreachable, args=(address,)))
        t.join(WAIT)
        assert not t.is_alive(), "the function hung on a DSO that never answers"
        with pytest.raises(crucial.ConnectError):
            t.result()
        assert time.monotonic() - began < 10


# -- a user's script -------------------------------------------------------------------


def test_script_without_main_guard(dso1, tmp_path: Path):
    """Workers get the code by value: they do not import the user's script (unlike multiprocessing's)."""
    script = tmp_path / "pi.py"
    script.write_text(
        textwrap.dedent(
            """
            import crucial

            def work(x):
                return 2 * x

            t = crucial.CloudThread(target=work, args=(21,))
            t.start()
            print("result", t.result(30))
            """
        )
    )
    env = {**os.environ, **dso1.env_vars()}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "result 42" in done.stdout


def test_other_forkserver_processes_still_import_the_main_script(dso1, tmp_path: Path):
    """Only our workers skip the main script: a user's own forkserver pool, sharing the fork server, still imports it."""
    script = tmp_path / "both.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            import crucial

            def work(x):
                return 2 * x

            if __name__ == "__main__":
                t = crucial.CloudThread(target=work, args=(21,))  # starts the fork server, with our preload
                t.start()
                print("cloud", t.result(30))
                with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
                    print("pool", list(pool.map(work, [1, 2])))  # work pickled by reference: needs __mp_main__
            """
        )
    )
    env = {**os.environ, **dso1.env_vars()}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cloud 42" in done.stdout and "pool [2, 4]" in done.stdout


def _exit_with(code: object) -> None:
    raise SystemExit(code)


def test_sys_exit_in_a_cloud_thread_is_like_in_a_thread(dso) -> None:
    # threading.Thread ends quietly on exit(0); another code must not end the caller
    ok = crucial.CloudThread(target=_exit_with, args=(0,))
    ok.start()
    assert ok.result(60) is None
    bad = crucial.CloudThread(target=_exit_with, args=(3,))
    bad.start()
    with pytest.raises(crucial.InvocationError, match=r"sys.exit\(3\)"):
        bad.result(60)


def _wait_for_event(key: str) -> bool:
    return crucial.Event(key=key).wait(60)


def test_inline_backend_honours_the_timeout(dso, key) -> None:
    t = crucial.CloudThread(target=_wait_for_event, args=(key,), backend="inline", timeout=0.2)
    t.start()
    with pytest.raises(crucial.InvocationTimeoutError):
        t.result(30)
    crucial.Event(key=key).set()  # let the thread it left behind end


def test_unknown_start_method_is_a_config_error() -> None:
    with pytest.raises(crucial.ConfigError, match="start_method"):
        LocalBackend(start_method="nope")


SCRIPT_WITH_SHARED_CLASS = """
import crucial

@crucial.shared
class Box:
    def __init__(self):
        self.v = 0
    def set(self, v):
        self.v = v
    def get(self):
        return self.v

box = Box(key="box")

def work():
    box.set(41)

if __name__ == "__main__":
    t = crucial.CloudThread(target=work)
    t.start()
    t.result(60)
    print("box", box.get())
"""


def test_script_function_holding_a_shared_proxy(tmp_path) -> None:
    # the task ships __main__ by value, and so does the proxy's class inside it: nested
    # by-value pickling once deadlocked start() on its own lock
    script = tmp_path / "job.py"
    script.write_text(SCRIPT_WITH_SHARED_CLASS)
    env = unconfigured_env()
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("box 41")
