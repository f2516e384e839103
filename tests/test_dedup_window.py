"""How long a node keeps a call's reply (docs/design.md, "How long a node keeps a reply").

The window's rules as pure logic (a fake clock), the client's ``below``
under threads, then real nodes: a busy client leaves a handful of replies,
on the primary and on its backup, instead of one per call it ever made.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from typing import Any

import pytest

from crucial import protocol as P
from crucial.client import Client
from crucial.config import Config
from crucial.server._replies import Replies
from crucial.testing import LocalCluster, raw_connection
from crucial.testing.faults import owner_address


class FakeCell:
    def __init__(self, key: str = "k") -> None:
        self.ref = ("AtomicInt", key)
        self.dedup: dict[tuple[str, int], tuple[int, bytes]] | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def window(cell: FakeCell, clock: Clock | None = None, **kw: Any) -> Replies:
    return Replies(lambda: {cell.ref: cell}, clock=clock or Clock(), **kw)


def test_replies_below_the_clients_mark_go() -> None:
    cell = FakeCell()
    w = window(cell)
    for seq in range(1, 6):
        w.heard("a", 1)
        w.remember(cell, ("a", seq), P.Kind.OK, b"r%d" % seq)
    w.remember(cell, ("b", 1), P.Kind.OK, b"other client")
    assert len(w) == 6
    w.heard("a", 4)  # calls 1-3 of a returned: nobody asks for them again
    assert sorted(cell.dedup or {}) == [("a", 4), ("a", 5), ("b", 1)]
    assert len(w) == 3 and w.nbytes == len(b"r4") + len(b"r5") + len(b"other client")
    w.heard("a", 2)  # an older mark (a record that came late) takes nothing back
    assert ("a", 4) in w and w.below("a") == 4


def test_a_reply_its_client_already_has_is_not_kept() -> None:
    cell = FakeCell()
    w = window(cell)
    w.heard("a", 10)
    w.remember(cell, ("a", 5), P.Kind.OK, b"late")  # e.g. a backup's record that arrives after the mark
    w.remember(cell, ("a", 10), P.Kind.OK, b"open")
    assert ("a", 5) not in w and ("a", 10) in w and sorted(cell.dedup or {}) == [("a", 10)]


def test_quiet_clients_go_after_one_to_two_ages_and_talking_ones_stay() -> None:
    cell, clock = FakeCell(), Clock()
    w = window(cell, clock, age=120.0)
    w.remember(cell, ("quiet", 1), P.Kind.OK, b"q")
    w.remember(cell, ("busy", 1), P.Kind.OK, b"b")

    def talk(seconds: float) -> None:  # "busy" calls (below stays 1: its call 1 is still open)
        for _ in range(int(seconds)):
            clock.now += 1
            for _ in range(4):
                w.heard("busy", 1)

    talk(121)  # first sweep: both were heard since the start
    assert ("quiet", 1) in w
    talk(121)  # second sweep: "quiet" said nothing for a whole age
    assert ("quiet", 1) not in w and ("quiet", 1) not in (cell.dedup or {}) and w.clients == 1
    assert ("busy", 1) in w


def test_the_bounds_still_hold_and_leave_no_stale_index() -> None:
    cell = FakeCell()
    w = window(cell, window=3)
    for seq in range(1, 101):  # a client that never says which calls are over (below 0)
        w.remember(cell, ("old", seq), P.Kind.OK, b"x")
    assert [s for _, s in sorted(cell.dedup or {})] == [98, 99, 100] and len(w) == 3
    assert len(w._clients["old"].calls) == 3


def test_bytes_bound() -> None:
    cell = FakeCell()
    w = window(cell, max_bytes=10)
    for seq in range(1, 5):
        w.remember(cell, ("c", seq), P.Kind.OK, b"1234")
    assert len(w) == 2 and w.nbytes == 8


def test_a_client_that_retries_longer_stretches_the_age() -> None:
    w = window(FakeCell(), age=120.0)
    w.retries_within(10.0)
    assert w.age == 120.0
    w.retries_within(300.0)
    assert w.age == 600.0


def test_below_is_the_lowest_open_call_under_threads() -> None:
    client = Client(("127.0.0.1:1",), Config())  # no node needed: nothing is sent
    core = client.core
    errors: list[str] = []
    start = threading.Barrier(8)

    def calls() -> None:
        start.wait()
        for _ in range(2000):
            seq, below = core.open_call()
            if not below <= seq or below not in core._open:
                errors.append(f"seq {seq} below {below}")
            core.close_call(seq)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert core._open == {}
    slow, _ = core.open_call()  # one call stays open: later calls say so
    for _ in range(5):
        seq, below = core.open_call()
        core.close_call(seq)
        assert below == slow
    core.close_call(slow)
    assert core.open_call()[1] == seq + 1


def test_a_call_that_raises_is_over() -> None:
    client = Client(("127.0.0.1:1",), Config(connect_timeout=0.5, failover_timeout=0.5, retries=0))
    with pytest.raises(Exception):  # noqa: B017 -- nobody listens there: whatever the client raises
        client.call("AtomicInt", "k", "get")
    assert client.core._open == {}


# --------------------------------------------------------------------------- real nodes


def kept(cluster: LocalCluster, address: str) -> int:
    with cluster.client() as c:
        return int(c.info(address)["replies"]["kept"])


def test_a_busy_client_leaves_a_handful_of_replies(cluster: LocalCluster, key: str) -> None:
    with cluster.client() as client:
        before = kept(cluster, cluster.addresses[0])
        for _ in range(500):
            client.call("AtomicInt", key, "increment_and_get", create=((0,), {}))
        assert client.call("AtomicInt", key, "get") == 500
        assert kept(cluster, cluster.addresses[0]) - before <= 2  # was one per call: 501


def test_backups_forget_the_same_replies() -> None:
    with LocalCluster(nodes=2, rf=2) as cluster, cluster.client() as client:
        for _ in range(300):
            client.call("AtomicInt", "p", "increment_and_get", create=((0,), {}, (True, 2)))
        for address in cluster.addresses:  # the primary and its backup
            assert kept(cluster, address) <= 3, cluster.client().info(address)["replies"]


def test_a_retry_within_the_mark_is_still_answered_once(any_cluster: LocalCluster, key: str) -> None:
    """The retry of an open call carries the same ``below`` (its own number): its reply is still there."""
    address = owner_address(any_cluster.addresses, "AtomicInt", key)
    client_id = uuid.uuid4().hex
    first = P.CallRequest(7, "AtomicInt", key, "increment_and_get", (), None, ((0,), {}), False, 0, 7)
    later = P.CallRequest(8, "AtomicInt", key, "increment_and_get", (), None, None, False, 0, 7)  # 7 still open
    with raw_connection(address, client_id=client_id) as conn:
        assert pickle.loads(conn.call(first).body) == 1
        assert pickle.loads(conn.call(later).body) == 2
        assert pickle.loads(conn.call(first).body) == 1  # answered from the window, not run again
        done = P.CallRequest(9, "AtomicInt", key, "get", (), None, None, False, 0, 9)  # 7 and 8 are over
        assert pickle.loads(conn.call(done).body) == 2


def test_a_client_announces_how_long_it_retries() -> None:
    with LocalCluster(nodes=1) as cluster:
        with cluster.client() as default:
            assert default.info()["replies"]["age_s"] == 120.0  # 4x the default failover_timeout
        with cluster.client(failover_timeout=300.0) as patient:
            patient.ping()
            assert patient.info()["replies"]["age_s"] == 600.0


def test_a_read_keeps_no_reply_and_a_retry_of_it_reads_again() -> None:
    """A read's retry may run again (it answers what holds then, within the call's time): nothing to keep."""
    with LocalCluster(nodes=1) as cluster:
        address, client_id = cluster.addresses[0], uuid.uuid4().hex
        write = P.CallRequest(1, "AtomicInt", "r", "increment_and_get", (), None, ((0,), {}), False, 0, 1)
        read = P.CallRequest(2, "AtomicInt", "r", "get", (), None, None, False, 0, 1)  # 1 still open
        with raw_connection(address, client_id=client_id) as conn:
            assert pickle.loads(conn.call(write).body) == 1
            assert kept(cluster, address) == 1
            assert pickle.loads(conn.call(read).body) == 1
            assert kept(cluster, address) == 1  # the write's only
            again = P.CallRequest(3, "AtomicInt", "r", "increment_and_get", (), None, None, False, 0, 1)
            assert pickle.loads(conn.call(again).body) == 2
            assert pickle.loads(conn.call(read).body) == 2  # the retried read runs again: the value now
            assert pickle.loads(conn.call(write).body) == 1  # the retried write does not
