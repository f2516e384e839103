"""The ray backend's tests proper; ``tests/test_ray.py`` runs this file inside a private network namespace.

Ray binds its servers to every interface and swaps 127.0.0.1 for the host's
address, so it cannot be kept on loopback on a machine with a network: in a
namespace that has only ``lo`` it can.  The DSO nodes, Ray and this test
process all live in that namespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import crucial
from crucial.compute import CloudThread, Retry, ServerlessExecutor
from crucial.testing import LocalCluster

if os.environ.get("CRUCIAL_RAY_NETNS") != "1":
    pytest.skip("run through tests/test_ray.py (inside a private network namespace)", allow_module_level=True)

from crucial.compute.ray import RayBackend

WAIT = 120.0


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalCluster]:
    with LocalCluster(nodes=1, token="ray-secret") as c:
        yield c


@pytest.fixture(scope="module")
def backend(secured) -> Iterator[RayBackend]:
    b = RayBackend(max_workers=32, init_options={"num_cpus": 2, "_temp_dir": os.environ["CRUCIAL_RAY_TMP"]})
    yield b
    b.close()


@pytest.fixture(autouse=True)
def _dso(secured, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from crucial.client import _default

    for name, value in secured.env_vars().items():
        monkeypatch.setenv(name, value)
    client = _default.connect(secured.dso)
    yield
    _default.reset_clients()
    client.close()


def counted(key: str) -> tuple[int, str | None, int]:
    return crucial.AtomicInt(0, key=key).increment_and_get(), os.environ.get("CRUCIAL_TOKEN"), os.getpid()


def party(barrier: crucial.Barrier) -> int:
    return barrier.wait(WAIT)


def wait_event(ev: crucial.Event) -> bool:
    return ev.wait(WAIT)


def die_first(attempts: crucial.AtomicInt) -> int:
    n = attempts.increment_and_get()
    if n == 1:
        os._exit(3)
    return n


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("from ray")


def test_functions_learn_the_dso_and_token_from_the_task(backend):
    threads = [CloudThread(target=counted, args=("ray-count",), backend=backend) for _ in range(4)]
    for t in threads:
        t.start()
    results = [t.result(WAIT) for t in threads]
    assert sorted(n for n, _, _ in results) == [1, 2, 3, 4]
    assert {token for _, token, _ in results} == {"ray-secret"}
    assert os.getpid() not in {pid for _, _, pid in results}


def test_a_barrier_of_more_parties_than_cpus(backend):
    n = 6  # num_cpus=2: the tasks ask for no CPU, so all run
    barrier = crucial.Barrier(n, key="ray-barrier")
    threads = [CloudThread(target=party, args=(barrier,), backend=backend) for _ in range(n)]
    for t in threads:
        t.start()
    assert sorted(t.result(WAIT) for t in threads) == list(range(n))


def test_user_exception_comes_back_as_itself(backend):
    t = CloudThread(target=fail, backend=backend)
    t.start()
    with pytest.raises(Boom, match="from ray") as info:
        t.result(WAIT)
    assert isinstance(info.value.__cause__, crucial.RemoteTraceback)


def test_a_dying_worker_is_worker_died_and_retry_runs_it_again(backend):
    attempts = crucial.AtomicInt(0, key="ray-die")
    t = CloudThread(target=die_first, args=(attempts,), backend=backend)
    t.start()
    with pytest.raises(crucial.WorkerDiedError):
        t.result(WAIT)
    assert attempts.get() == 1  # max_retries=0: Ray did not run it again by itself
    attempts.set(0)
    with ServerlessExecutor(backend, retry=Retry(count=1, backoff=0.01)) as ex:
        assert ex.submit(die_first, attempts).result(WAIT) == 2


def test_a_timeout_stops_the_function(backend):
    ev = crucial.Event(key="ray-timeout")
    t = CloudThread(target=wait_event, args=(ev,), backend=backend, timeout=1.0)
    t.start()
    with pytest.raises(crucial.InvocationTimeoutError, match="stopped its worker"):
        t.result(WAIT)
    assert backend.running == 0


def test_the_cap_is_a_capacity_error(backend):
    small = RayBackend(max_workers=1)  # joins the runtime the module backend started
    ev = crucial.Event(key="ray-cap")
    first = CloudThread(target=wait_event, args=(ev,), backend=small)
    first.start()
    with pytest.raises(crucial.CapacityError, match="max_workers"):
        CloudThread(target=abs, args=(1,), backend=small).start()
    ev.set()
    assert first.result(WAIT) is True
    small.close()  # it did not start Ray: the module's runtime goes on
    t = CloudThread(target=abs, args=(-2,), backend=backend)
    t.start()
    assert t.result(WAIT) == 2
