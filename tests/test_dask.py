"""The dask backend on a real ``distributed.LocalCluster`` with worker processes, on loopback.

The Dask workers are started with no ``CRUCIAL_*`` variable, so whatever DSO
a function reaches, it learnt from its task.  Two workers of one thread
each: fewer slots than the cloud threads the barrier tests start.

A worker process serves the cloud threads of one DSO at a time, so no test
here leaves a function running past its end (a timed-out function goes on
in its Dask thread: each test sets the event it waits on).

The generic cloud-thread and executor tests of ``test_compute.py`` and
``test_executor.py`` that do not depend on the local backend run here again,
on this cluster (imported below; ``CRUCIAL_BACKEND=dask`` for this module).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import crucial
from crucial.compute import CloudThread, Retry, ServerlessExecutor, _backend, get_backend
from crucial.testing import LocalCluster
from crucial.testing.faults import closed_port, eventually

distributed = pytest.importorskip("distributed", reason="the dask backend needs crucial[dask]")

from crucial.compute.dask import DaskBackend, run_dask_task  # noqa: E402

# the generic tests, run again on the dask backend (pytest collects what this module holds)
from test_compute import (  # noqa: E402, F401
    test_barrier_of_more_threads_than_cores,
    test_hung_dso_fails_within_the_connect_timeout,
    test_join_timeout_while_waiting_on_an_event,
    test_no_target_returns_none,
    test_platform_failure_is_retried,
    test_platform_failure_without_retry_fails,
    test_start_twice_raises,
    test_subclass_from_a_module_the_workers_cannot_import,
    test_subclass_with_proxies_as_attributes,
    test_sys_exit_in_a_cloud_thread_is_like_in_a_thread,
    test_target_args_kwargs_and_result,
    test_unreachable_dso_fails_fast_in_the_function,
    test_user_errors_are_not_retried_by_default,
    test_user_errors_retried_when_asked,
    test_user_exception_comes_back_as_its_own_class,
)
from test_executor import (  # noqa: E402, F401
    test_context_manager_waits,
    test_executor_retries_platform_failures,
    test_futures_work_with_asyncio,
    test_invoke_all,
    test_map_preserves_order_with_chunks,
    test_map_reraises_the_functions_error,
    test_max_workers_limits_concurrency,
    test_parallel_for_reraises_a_failing_block,
    test_parallel_for_runs_every_index_once,
    test_shutdown_cancel_futures,
    test_shutdown_waits_for_running_tasks,
    test_submit_returns_real_futures,
    test_unpicklable_submit_fails_in_the_caller,
    test_wait_first_completed_and_exceptions,
)

WAIT = 30.0


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    """Two worker processes (a nanny each, which restarts a worker that dies), one thread each."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("CRUCIAL_")]:
            mp.delenv(name)  # the workers inherit this environment: nothing about the DSO in it
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # the scheduler's HTTP server: port 0, loopback
            worker_dashboard_address="127.0.0.1:0",
            silence_logs=50,
        )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def dask_client(dask_cluster: Any) -> Iterator[Any]:
    client = distributed.Client(dask_cluster, set_as_default=False)
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared_dask(dask_client: Any) -> Iterator[DaskBackend]:
    """The process-wide ``dask`` backend for this module (what ``backend="dask"`` finds)."""
    backend = DaskBackend(client=dask_client, worker_wait=60.0)
    key = ("dask", repr([]))
    _backend._shared[key] = backend
    yield backend
    _backend._shared.pop(key, None)
    backend.close()


def _settled(cluster: Any, client: Any) -> bool:
    """Both workers up, and the scheduler lists exactly them (a killed one is gone, its restart is in).

    A nanny whose worker does not come back in time (a loaded machine) closes
    itself and leaves the cluster: ask the cluster for two workers again.
    """
    if len(cluster.workers) < 2:
        cluster.scale(2)
        return False
    nannies = {n.worker_address for n in cluster.workers.values()}
    listed = set(client.scheduler_info(n_workers=-1)["workers"])
    return None not in nannies and len(nannies) == 2 and listed == nannies


@pytest.fixture(autouse=True)
def _on_dask(shared_dask: DaskBackend, dask_cluster: Any, dask_client: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts on two live workers: after a test that killed one, wait for its nanny's restart."""
    monkeypatch.setenv("CRUCIAL_BACKEND", "dask")
    eventually(lambda: _settled(dask_cluster, dask_client), 90, "the Dask workers to be back")
    yield


@pytest.fixture
def new_backend(dask_client: Any) -> Iterator[Callable[..., DaskBackend]]:
    """Private dask backends on the module's cluster (the generic tests count their invocations)."""
    made: list[DaskBackend] = []

    def make(**options: Any) -> DaskBackend:
        backend = DaskBackend(client=dask_client, **({"worker_wait": 60.0} | options))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


# -- functions shipped to the Dask workers ---------------------------------------------


def counted(key: str) -> tuple[int, str | None]:
    """A fresh object inside the function: only the task told this worker where the DSO is."""
    return crucial.AtomicInt(0, key=key).increment_and_get(), os.environ.get("CRUCIAL_TOKEN")


def wait_event(ev: crucial.Event) -> bool:
    return ev.wait(WAIT)


def mark_and_wait(mark: crucial.AtomicInt, ev: crucial.Event) -> bool:
    mark.set(os.getpid())
    return ev.wait(WAIT)


def die(attempts: crucial.AtomicInt) -> None:
    attempts.increment_and_get()
    os._exit(7)


def party(barrier: crucial.Barrier) -> int:
    return barrier.wait(WAIT)


# -- the tests --------------------------------------------------------------------------


def test_backend_by_name_is_the_module_backend(shared_dask: DaskBackend):
    assert get_backend("dask") is shared_dask
    assert get_backend() is shared_dask  # CRUCIAL_BACKEND=dask
    assert shared_dask.address.startswith("tcp://127.0.0.1:")
    assert len(shared_dask.running()) == 2


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalCluster]:
    with LocalCluster(nodes=1, token="engines-secret") as c:
        yield c


def test_functions_learn_the_dso_and_token_from_the_task(secured, key, monkeypatch: pytest.MonkeyPatch):
    from crucial.client import _default

    for name, value in secured.env_vars().items():
        monkeypatch.setenv(name, value)
    client = _default.connect(secured.dso)
    try:
        threads = [CloudThread(target=counted, args=(key,)) for _ in range(4)]
        for t in threads:
            t.start()
        results = [t.result(WAIT) for t in threads]
    finally:
        _default.reset_clients()
        client.close()
    assert sorted(n for n, _ in results) == [1, 2, 3, 4]
    assert {token for _, token in results} == {"engines-secret"}


def test_a_barrier_of_more_parties_than_dask_threads(dso1, key, dask_client, shared_dask):
    slots = sum(w["nthreads"] for w in dask_client.scheduler_info(n_workers=-1)["workers"].values())
    n = 3 * slots
    barrier = crucial.Barrier(n, key=key)
    threads = [CloudThread(target=party, args=(barrier,)) for _ in range(n)]
    for t in threads:
        t.start()
    assert sorted(t.result(WAIT) for t in threads) == list(range(n))
    assert sum(shared_dask.running().values()) == 0


def test_calls_spread_over_the_workers(dso1, key, new_backend):
    backend = new_backend()
    ev = crucial.Event(key=key)
    threads = [CloudThread(target=wait_event, args=(ev,), backend=backend) for _ in range(4)]
    for t in threads:
        t.start()
    assert sorted(backend.running().values()) == [2, 2]  # least loaded per thread
    ev.set()
    assert [t.result(WAIT) for t in threads] == [True] * 4


def test_cap_reached_raises_at_once_and_frees_again(dso1, key, new_backend):
    backend = new_backend(max_workers=2)
    ev = crucial.Event(key=key)
    blocked = [CloudThread(target=wait_event, args=(ev,), backend=backend) for _ in range(2)]
    for t in blocked:
        t.start()
    third = CloudThread(target=abs, args=(-3,), backend=backend)
    with pytest.raises(crucial.CapacityError, match="max_workers"):
        third.start()
    assert third.future is None
    ev.set()
    assert [t.result(WAIT) for t in blocked] == [True, True]
    assert CloudThread(target=abs, args=(-3,), backend=backend).start() is None
    eventually(lambda: sum(backend.running().values()) == 0, WAIT, "the calls to end")


def test_a_function_that_kills_its_worker_fails_once_with_worker_died(dso1, key, new_backend):
    backend = new_backend()
    attempts = crucial.AtomicInt(0, key=key)
    t = CloudThread(target=die, args=(attempts,), backend=backend)
    t.start()
    with pytest.raises(crucial.WorkerDiedError, match=r"Dask worker tcp://127\.0\.0\.1:"):
        t.result(WAIT)
    assert backend.stats["workers_lost"] == 1
    # pinned to the dead worker: Dask did not run it again elsewhere (its own rule would, up to 3 times)
    after = CloudThread(target=abs, args=(-1,), backend=backend)
    after.start()
    assert after.result(WAIT) == 1
    assert attempts.get() == 1


def test_a_worker_killed_from_outside_mid_call(dso1, key, new_backend):
    backend = new_backend()
    mark = crucial.AtomicInt(0, key=key)
    ev = crucial.Event(key=key)
    t = CloudThread(target=mark_and_wait, args=(mark, ev), backend=backend)
    t.start()
    eventually(lambda: mark.get() != 0, WAIT, "the function to start")
    os.kill(mark.get(), signal.SIGKILL)  # the Dask worker process itself
    with pytest.raises(crucial.WorkerDiedError, match="died"):
        t.result(WAIT)
    ev.set()


def test_timeout_cancels_the_task(dso1, key, new_backend):
    backend = new_backend()
    ev = crucial.Event(key=key)
    t = CloudThread(target=wait_event, args=(ev,), backend=backend, timeout=0.3)
    t.start()
    with pytest.raises(crucial.InvocationTimeoutError, match="cannot stop a running task") as info:
        t.result(WAIT)
    assert isinstance(info.value, TimeoutError)
    assert sum(backend.running().values()) == 0
    ev.set()  # the thread it left behind ends


def test_executor_timeout_then_more_work(dso1, key, new_backend):
    backend = new_backend()
    ev = crucial.Event(key=key)
    with ServerlessExecutor(backend, timeout=0.3) as ex:
        with pytest.raises(crucial.InvocationTimeoutError):
            ex.submit(wait_event, ev).result(WAIT)
        assert ex.submit(abs, -4).result(WAIT) == 4
    ev.set()


def test_close_fails_running_and_queued_tasks(dso1, key, new_backend):
    backend = new_backend()
    ev = crucial.Event(key=key)
    ex = ServerlessExecutor(backend, max_workers=1)
    first = ex.submit(wait_event, ev)
    queued = [ex.submit(abs, -i) for i in range(200)]
    backend.close()  # the running task fails; each queued one is refused as it starts
    with pytest.raises(crucial.WorkerDiedError, match="closed"):
        first.result(WAIT)
    for fut in queued:
        with pytest.raises(RuntimeError, match="closed"):
            fut.result(WAIT)
    ev.set()
    ex.shutdown()


def test_retry_after_a_dead_worker(dso1, key, new_backend):
    backend = new_backend()
    attempts = crucial.AtomicInt(0, key=key)
    with ServerlessExecutor(backend, retry=Retry(count=1, backoff=0.01)) as ex:
        fut = ex.submit(die, attempts)
        with pytest.raises(crucial.WorkerDiedError):
            fut.result(WAIT)
    assert attempts.get() == 2  # the first attempt and one retry, no more


def test_a_cluster_without_workers_is_a_capacity_error(dso1):
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as empty:
        backend = DaskBackend(empty.scheduler_address, worker_wait=0.5)
        try:
            with pytest.raises(crucial.CapacityError, match="no workers"):
                CloudThread(target=abs, args=(1,), backend=backend).start()
        finally:
            backend.close()


def test_the_scheduler_from_the_environment(dso1, dask_cluster, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRUCIAL_DASK_SCHEDULER", dask_cluster.scheduler_address)
    backend = DaskBackend(worker_wait=60.0)
    try:
        assert backend.address == dask_cluster.scheduler_address
        t = CloudThread(target=abs, args=(-5,), backend=backend)
        t.start()
        assert t.result(WAIT) == 5
    finally:
        backend.close()


def test_the_users_client_is_used_and_left_open(dso1, dask_cluster):
    with distributed.Client(dask_cluster) as client:  # the process's default client
        backend = DaskBackend()
        assert backend.client is client
        t = CloudThread(target=abs, args=(-6,), backend=backend)
        t.start()
        assert t.result(WAIT) == 6
        backend.close()
        assert client.status == "running"
        assert client.submit(abs, -7).result(WAIT) == 7


def test_no_scheduler_configured_is_a_config_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CRUCIAL_DASK_SCHEDULER", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    import dask

    with dask.config.set({"scheduler-address": None}):
        with pytest.raises(crucial.ConfigError, match="CRUCIAL_DASK_SCHEDULER"):
            DaskBackend()


def test_an_unreachable_scheduler_is_a_connect_error():
    with closed_port() as address:
        with pytest.raises(crucial.ConnectError, match=address):
            DaskBackend(f"tcp://{address}", connect_timeout=2)


def test_bad_max_workers_is_a_config_error(dask_client):
    with pytest.raises(crucial.ConfigError, match="max_workers"):
        DaskBackend(client=dask_client, max_workers=0)


def test_closed_backend_refuses(dask_client):
    backend = DaskBackend(client=dask_client)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        CloudThread(target=abs, args=(1,), backend=backend).start()


def test_a_worker_serves_one_dso_at_a_time(dso1, key, monkeypatch: pytest.MonkeyPatch):
    """Two programs with different DSOs on one worker process: the second is refused, not repointed."""
    import pickle

    from crucial.compute import _task

    ev = crucial.Event(key=key)
    first: list[bytes] = []

    def hold() -> None:  # run_dask_task as a Dask worker thread would, in a child-free way
        task = _task.encode_task(ev.wait, (WAIT,), {}, dso1.dso, dso1.env_vars().get("CRUCIAL_TOKEN"))
        first.append(run_dask_task(task, ",".join(dso1.dso)))

    monkeypatch.setenv("CRUCIAL_DSO", ",".join(dso1.dso))  # run_task points this process where it already points
    holder = threading.Thread(target=hold)
    holder.start()
    from crucial.compute import dask as dask_backend

    eventually(lambda: dask_backend._tenant_running == 1, WAIT, "the first task to run")
    other = _task.encode_task(abs, (-1,), {}, ("127.0.0.1:9",), None)
    refused = _task.Outcome(*pickle.loads(run_dask_task(other, "127.0.0.1:9")))  # a plain tuple on the wire
    ev.set()
    holder.join(WAIT)
    assert not refused.ok and isinstance(refused.value, crucial.InvocationError)
    assert "another DSO" in str(refused.value)
    assert _task.Outcome(*pickle.loads(first[0])).value is True
