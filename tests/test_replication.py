"""Persistent objects: replicated on rf nodes, linearizable across crashes, failover without lost writes.

Real clusters (etcd + node processes on 127.0.0.1, ports picked by the OS),
real signals (kill -9, SIGSTOP/SIGCONT) on real node processes under load
from spawned client processes.  docs/replication.md lists the failure
cases; each has its test here or in test_durability.py.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import crucial
from crucial import protocol as P
from crucial.objects.atomics import AtomicIntState
from crucial.objects.containers import DictState
from crucial.testing import LocalCluster
from crucial.testing.faults import eventually, raw_connection
from crucial.testing.linearizability import History, Operation, check

FAILURE_TIMEOUT = 1.0
INT = "AtomicInt"


@pytest.fixture
def rcluster() -> Iterator[LocalCluster]:
    """Three nodes, rf=2, a 1-second failure timeout: one per test (tests kill its nodes)."""
    with LocalCluster(nodes=3, rf=2, failure_timeout=FAILURE_TIMEOUT) as c:
        yield c


def _client(cluster: LocalCluster, **overrides: Any) -> crucial.Client:
    client = cluster.client(**overrides)
    client.nodes  # noqa: B018 -- fetch the view
    return client


def _view_without(cluster: LocalCluster, address: str, client: crucial.Client) -> None:
    """Wait until the cluster's view no longer holds ``address`` (asked of the other nodes)."""
    others = [a for a in cluster.addresses if a != address]

    def gone() -> bool:
        for a in others:
            try:
                if address not in client.info(a)["nodes"]:
                    return True
            except crucial.CrucialError:
                continue
        return False

    eventually(gone, timeout=30, what=f"a view without {address}")


# -- the basics ----------------------------------------------------------------------------


def test_persistent_object_has_rf_replicas_and_ephemeral_one(rcluster: LocalCluster) -> None:
    client = _client(rcluster)
    keys = [f"p-{uuid.uuid4().hex[:8]}-{i}" for i in range(12)]
    for k in keys:
        client.call(INT, k, "add_and_get", (1,), create=((), {}, (True, None)))
        client.call(INT, "e" + k, "add_and_get", (1,), create=((), {}))
    reports = [client.info(a, objects=100) for a in client.nodes]
    holders = {k: sum(any(o["key"] == k for o in r["listed"]) for r in reports) for k in keys}
    assert set(holders.values()) == {2}, holders
    eph = {k: sum(any(o["key"] == "e" + k for o in r["listed"]) for r in reports) for k in keys}
    assert set(eph.values()) == {1}, eph
    assert sum(r["replication"]["primaries"] for r in reports) == len(keys)
    assert sum(r["replication"]["backups"] for r in reports) == len(keys)


def test_persistent_counter_survives_kill_of_its_primary(rcluster: LocalCluster) -> None:
    crucial_client = _client(rcluster)
    crucial.connect(rcluster.dso, token=rcluster.token)
    try:
        n = crucial.AtomicInt(0, key=f"c-{uuid.uuid4().hex[:8]}", persistent=True)
        for _ in range(50):
            n.add_and_get(1)
        primary = rcluster.owner(INT, n.key)
        rcluster.signal_node(primary, signal.SIGKILL)
        assert n.add_and_get(1) == 51  # waits for the failover, then goes on
        for _ in range(49):
            n.add_and_get(1)
        assert n.get() == 100
        assert rcluster.owner(INT, n.key) != primary
    finally:
        from crucial.client import _default

        _default.reset_clients()
        crucial_client.close()


def test_shared_class_state_is_replicated_even_when_not_deterministic(rcluster: LocalCluster) -> None:
    """User classes replicate their state: a method using randomness leaves every replica the same."""
    crucial.connect(rcluster.dso, token=rcluster.token)
    try:
        dice = Dice(key=f"dice-{uuid.uuid4().hex[:8]}")
        rolls = [dice.roll() for _ in range(20)]
        assert dice.history() == rolls
        rcluster.signal_node(rcluster.owner(dice._type_name, dice.key), signal.SIGKILL)
        assert dice.history() == rolls  # the backup held exactly the primary's state
        dice.roll()
        assert dice.history()[:20] == rolls and len(dice.history()) == 21
    finally:
        from crucial.client import _default

        _default.reset_clients()


@crucial.shared(persistent=True)
class Dice:
    def __init__(self) -> None:
        self.rolls: list[float] = []

    def roll(self) -> float:
        self.rolls.append(random.random())
        return self.rolls[-1]

    def history(self) -> list[float]:
        return list(self.rolls)


# -- kill -9 of any one node under load ------------------------------------------------------


COUNTERS = 3
WORKERS = 8


_ready: Any = None


def _init_worker(barrier: Any) -> None:
    global _ready
    _ready = barrier


def _load_worker(args: tuple[str, tuple[str, ...], str | None, str, int, float]) -> list[Operation]:
    """One client process: increments, puts and gets on persistent objects for ``seconds``."""
    name, dso, token, prefix, seed, seconds = args
    client = crucial.Client(dso, crucial.Config(dso=dso, token=token, failover_timeout=20.0))
    for a in client.nodes:
        client.ping(a)
    _ready.wait(timeout=60)  # everyone connected: the test may start killing
    history = History(process=name)
    rnd = random.Random(seed)
    objs = [(INT, f"{prefix}-n{i}") for i in range(COUNTERS)] + [("Dict", f"{prefix}-d")]
    create = {INT: ((), {}, (True, None)), "Dict": ((), {}, (True, None))}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        type_name, key = rnd.choice(objs)
        if type_name == INT:
            method, args_ = ("increment_and_get", ()) if rnd.random() < 0.7 else ("get", ())
        else:
            method, args_ = ("put", (f"{name}-{i}", i)) if rnd.random() < 0.6 else ("get", (f"{name}-{rnd.randint(1, i)}",))
        handle = history.invoke((type_name, key), method, args_)
        try:
            result = client.call(type_name, key, method, args_, create=create[type_name])
        except (crucial.CallInterruptedError, crucial.UnavailableError):
            continue  # outcome unknown: stays pending in the history
        except Exception as exc:
            history.fail(handle, exc)
            continue
        history.ok(handle, result)
    client.close()
    return history.operations()


@pytest.mark.parametrize("victim", ["primary", "backup"])
def test_kill_any_node_under_load(rcluster: LocalCluster, victim: str) -> None:
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    client = _client(rcluster)
    for i in range(COUNTERS):
        client.call(INT, f"{prefix}-n{i}", "get", create=((), {}, (True, None)))
    client.call("Dict", f"{prefix}-d", "len", create=((), {}, (True, None)))
    primary = rcluster.owner(INT, f"{prefix}-n0")
    target = primary
    if victim == "backup":
        target = next(a for a in rcluster.addresses if a != primary and _holds(client, a, f"{prefix}-n0"))
    ctx = multiprocessing.get_context("spawn")
    seconds = 4.0
    ready = ctx.Barrier(WORKERS + 1)
    with ctx.Pool(WORKERS, initializer=_init_worker, initargs=(ready,)) as pool:
        tasks = [(f"p{i}", rcluster.addresses, rcluster.token, prefix, 1000 + i, seconds) for i in range(WORKERS)]
        result = pool.map_async(_load_worker, tasks, chunksize=1)
        ready.wait(timeout=60)
        # kill once the workers are calling: the counters move
        eventually(lambda: sum(client.call(INT, f"{prefix}-n{i}", "get") for i in range(COUNTERS)) > 100, timeout=30)
        killed_at = time.monotonic()
        rcluster.signal_node(target, signal.SIGKILL)
        parts = result.get(timeout=120)
    history = History.merge(*parts)
    ops = history.operations()
    done_after = [o for o in ops if o.response is not None and o.invoke / 1e9 > killed_at]
    assert done_after, "no call completed after the kill"
    errors = [o for o in ops if o.error is not None]
    assert not errors, errors[:5]
    # no acknowledged write lost: every counter holds its acknowledged increments (and maybe some pending ones)
    for i in range(COUNTERS):
        key = f"{prefix}-n{i}"
        mine = [o for o in ops if o.obj == (INT, key) and o.method == "increment_and_get"]
        acked = sum(1 for o in mine if not o.pending)
        value = client.call(INT, key, "get")
        assert acked <= value <= len(mine), (key, acked, value, len(mine))
    puts = [o for o in ops if o.method == "put" and not o.pending]
    stored = client.call("Dict", f"{prefix}-d", "items")
    stored = dict(stored)
    assert all(stored.get(o.args[0]) == o.args[1] for o in puts)
    verdict = check(ops, {INT: AtomicIntState, "Dict": DictState}, timeout=120)
    assert verdict.ok, verdict.explanation


def _holds(client: crucial.Client, address: str, key: str) -> bool:
    listed = client.info(address, objects=10_000)["listed"]
    return any(o["key"] == key for o in listed)


# -- a paused primary never answers ------------------------------------------------------------


def test_paused_primary_never_answers(rcluster: LocalCluster) -> None:
    key = f"pause-{uuid.uuid4().hex[:8]}"
    client = _client(rcluster)
    assert client.call(INT, key, "add_and_get", (1,), create=((), {}, (True, None))) == 1
    primary = rcluster.owner(INT, key)
    pid = rcluster.pids()[primary]
    stale = raw_connection(primary, token=rcluster.token)  # a client that still believes in the old view
    acked = 1
    os.kill(pid, signal.SIGSTOP)
    try:
        _view_without(rcluster, primary, client)
        for _ in range(20):  # the new primary takes the writes meanwhile
            client.call(INT, key, "add_and_get", (1,))
            acked += 1
        # a write sent to the paused primary, waiting in its socket when it wakes up
        req = stale.next_req()
        stale.send(P.Kind.CALL, req, P.encode_call(P.CallRequest(1, INT, key, "add_and_get", (1000,))))
    finally:
        os.kill(pid, signal.SIGCONT)
    reply = stale.recv_frame()
    assert reply.kind in (P.Kind.UNAVAILABLE, P.Kind.REDIRECT), reply
    stale.close()
    assert client.call(INT, key, "get") == acked  # nothing lost, nothing applied by the deposed node


# -- a retried call across a failover ------------------------------------------------------------


def test_retry_across_failover_applies_once(rcluster: LocalCluster) -> None:
    key = f"retry-{uuid.uuid4().hex[:8]}"
    client = _client(rcluster)
    client.call(INT, key, "get", create=((), {}, (True, None)))
    old = rcluster.owner(INT, key)
    client_id = uuid.uuid4().hex
    call = P.CallRequest(7, INT, key, "add_and_get", (5,))
    with raw_connection(old, client_id=client_id, token=rcluster.token) as first:
        reply = first.call(call)
    assert reply.kind == P.Kind.OK and P.loads(reply.body) == 5
    rcluster.signal_node(old, signal.SIGKILL)
    _view_without(rcluster, old, client)
    eventually(lambda: rcluster.owner(INT, key) != old, timeout=30, what="a new primary")

    def resend() -> P.Frame:
        new = rcluster.owner(INT, key)
        with raw_connection(new, client_id=client_id, token=rcluster.token) as second:
            return second.call(call)  # the same client id and call seq: a retry

    again = resend()
    while again.kind in (P.Kind.UNAVAILABLE, P.Kind.REDIRECT):  # the new primary may still be syncing
        time.sleep(0.05)
        again = resend()
    assert again.kind == P.Kind.OK and P.loads(again.body) == 5  # answered from the replicated reply
    assert client.call(INT, key, "get") == 5  # applied once


# -- what cannot be replicated, and bad input ------------------------------------------------------


def test_synchronization_objects_cannot_be_persistent(rcluster: LocalCluster) -> None:
    crucial.connect(rcluster.dso, token=rcluster.token)
    try:
        for make in (
            lambda: crucial.Barrier(2, key="b", persistent=True),
            lambda: crucial.Lock(key="l", persistent=True),
            lambda: crucial.Semaphore(1, key="s", persistent=True),
            lambda: crucial.Queue(key="q", persistent=True),
        ):
            with pytest.raises(crucial.ConfigError, match="not replicated"):
                make()
        with pytest.raises(crucial.ConfigError, match="holds ready"):
            Gate(key=f"g-{uuid.uuid4().hex[:6]}", persistent=True).open()
        assert Gate(key=f"g-{uuid.uuid4().hex[:6]}").open() is None  # ephemeral: fine
        with pytest.raises(crucial.ConfigError, match="rf=5 is larger than the cluster"):
            crucial.AtomicInt(key=f"rf5-{uuid.uuid4().hex[:6]}", rf=5).get()
        with pytest.raises(crucial.ConfigError, match="needs persistent=True"):
            crucial.AtomicInt(key="x", rf=2, persistent=False)
    finally:
        from crucial.client import _default

        _default.reset_clients()


@crucial.shared
class Gate:
    def __init__(self) -> None:
        self.ready = threading.Condition()

    def open(self) -> None:
        with self.ready:
            self.ready.notify_all()


def test_attaching_with_the_other_persistence_is_an_error(rcluster: LocalCluster) -> None:
    client = _client(rcluster)
    key = f"mix-{uuid.uuid4().hex[:8]}"
    client.call(INT, key, "get", create=((), {}))
    with pytest.raises(crucial.ObjectCreationError, match="exists as an ephemeral object"):
        client.call(INT, key, "get", create=((), {}, (True, None)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rf", "2"], "larger than the cluster"),
        (["--nodes", "2", "--rf", "3"], "larger than the cluster (2 nodes)"),
        (["--fsync", "sometimes"], "'sometimes' is not one of"),
        (["--failure-timeout", "0.2"], "0.2"),
    ],
)
def test_bad_server_options_are_named(args: list[str], message: str) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "crucial.server", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


# -- degradable reads -------------------------------------------------------------------------


@crucial.shared(persistent=True)
class Model:
    def __init__(self) -> None:
        self.version = 0

    def train(self) -> int:
        self.version += 1
        return self.version

    @crucial.readonly
    def current(self) -> int:
        return self.version


def test_sequential_reads_are_served_by_every_replica_and_never_miss_an_acknowledged_write() -> None:
    with LocalCluster(nodes=3, rf=3, failure_timeout=FAILURE_TIMEOUT) as cluster:
        crucial.connect(cluster.dso, token=cluster.token)
        try:
            key = f"seq-{uuid.uuid4().hex[:6]}"
            writer = crucial.AtomicInt(0, key=key, persistent=True)
            writer.get()
            acked: list[tuple[int, int]] = []  # (when the write returned, its value)
            stop = threading.Event()

            def write() -> None:
                while not stop.is_set():
                    value = writer.increment_and_get()
                    acked.append((time.monotonic_ns(), value))

            reads: dict[int, list[tuple[int, int, int]]] = {}

            def read(i: int) -> None:
                c = crucial.Client(cluster.addresses, cluster.config())  # each reader its own client: its own replica
                mine = reads.setdefault(i, [])
                while not stop.is_set():
                    start = time.monotonic_ns()
                    value = c.call(INT, key, "get", read_any=True)
                    mine.append((start, time.monotonic_ns(), value))
                c.close()

            threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(i,)) for i in range(6)]
            for t in threads:
                t.start()
            eventually(lambda: len(acked) > 300, timeout=60, what="writes")
            stop.set()
            for t in threads:
                t.join(timeout=60)
            served = [cluster.client().info(a)["stats"].get("reads", 0) for a in cluster.addresses]
            assert sum(1 for n in served if n) >= 2, served  # reads spread over replicas, not only the primary
            for mine in reads.values():
                assert len(mine) > 10
                assert [v for _, _, v in mine] == sorted(v for _, _, v in mine)  # one reader never goes back
                for start, _, value in mine:
                    before = [v for t, v in acked if t < start]
                    assert value >= (before[-1] if before else 0)  # never misses a write acknowledged before it began
            model = Model(key=f"m-{uuid.uuid4().hex[:6]}")
            for _ in range(5):
                model.train()
            assert model.sequential().current() == 5
            assert model.sequential().train() == 6  # a method that writes still goes to the primary
        finally:
            from crucial.client import _default

            _default.reset_clients()
