"""The etcd coordinator against real etcd processes: membership, leases, view CAS, watches, failures.

Every test uses its own cluster name, so one etcd serves the session; the
tests that stop, kill or restart etcd start their own.  Waits are deadline
loops that poll etcd, never sleeps; times are measured only as hang guards.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
import requests

from crucial.exceptions import ConfigError, CoordinatorError, StorageError
from crucial.server import _etcd
from crucial.server._coord import Coordinator, parse_endpoints
from crucial.server._etcd import EtcdProcess, find_etcd
from crucial.server._watch import relist_events
from crucial.testing.faults import blackhole, closed_port

HANG_GUARD = 30.0  # seconds: only to fail instead of hanging, never a performance claim


def _etcd_or_skip() -> str:
    try:
        return find_etcd()
    except ConfigError as exc:  # the cluster extra ships etcd on x86-64 Linux only
        pytest.skip(f"no etcd binary here: {exc}")


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdProcess]:
    """One etcd member for the tests that do not break it."""
    _etcd_or_skip()
    with EtcdProcess() as process:
        yield process


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A private etcd member (on ``tmp_path/etcd``) that the test may stop, kill or restart."""
    _etcd_or_skip()
    process = EtcdProcess(tmp_path / "etcd").start()
    yield process
    process.close()


@pytest.fixture
def cluster_name() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def coords(etcd: EtcdProcess, cluster_name: str) -> Iterator[Callable[..., Coordinator]]:
    """Coordinators on the session's etcd, all on this test's cluster name; closed after the test."""
    made: list[Coordinator] = []

    def make(endpoints: Any = None, **options: Any) -> Coordinator:
        options.setdefault("ttl", 1.0)
        c = Coordinator(endpoints or [etcd.endpoint], cluster_name, **options)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def poll(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Ask ``pred`` every 50 ms until it holds; the time it took.  Fails if it does not within ``timeout``."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


# --------------------------------------------------------------------------- a member in another process

_spawn = multiprocessing.get_context("spawn")


def _member(endpoint: str, cluster: str, node_id: str, ttl: float, conn: Connection) -> None:
    """Join, report, then obey the parent: "leave" or "exit".  Reports a lost lease as it happens."""
    coord = Coordinator([endpoint], cluster, ttl=ttl, timeout=5.0)

    def lost() -> None:  # runs on the keep-alive thread, before the lease is granted again
        conn.send(("lost", time.monotonic(), coord.lease_valid_until))

    coord.join(node_id, {"pid": os.getpid()}, on_lease_lost=lost)
    conn.send(("joined", coord.lease_valid_until))
    if conn.recv() == "leave":
        coord.leave()
    coord.close()
    conn.send(("done",))


class Member:
    def __init__(self, endpoint: str, cluster: str, node_id: str, ttl: float) -> None:
        self.conn, child = _spawn.Pipe()
        self.process = _spawn.Process(target=_member, args=(endpoint, cluster, node_id, ttl, child), daemon=True)
        self.process.start()
        child.close()
        self.joined = self.recv("joined")

    def recv(self, kind: str, timeout: float = HANG_GUARD) -> tuple[Any, ...]:
        assert self.conn.poll(timeout), f"the member process sent no {kind!r} within {timeout} s"
        message = self.conn.recv()
        assert message[0] == kind, message
        return tuple(message)

    def signal(self, sig: int) -> None:
        assert self.process.pid is not None
        os.kill(self.process.pid, sig)

    def close(self) -> None:
        if self.process.is_alive():
            self.signal(signal.SIGCONT)
            self.process.kill()
        self.process.join(HANG_GUARD)
        self.conn.close()


@pytest.fixture
def member(etcd: EtcdProcess, cluster_name: str) -> Iterator[Callable[..., Member]]:
    made: list[Member] = []

    def start(node_id: str, ttl: float = 1.0, endpoint: str | None = None) -> Member:
        m = Member(endpoint or etcd.endpoint, cluster_name, node_id, ttl)
        made.append(m)
        return m

    yield start
    for m in made:
        m.close()


# --------------------------------------------------------------------------- a network link we can cut


class Link:
    """A TCP forwarder to ``port``: ``cut()`` drops every byte both ways (a partition: calls hang, they are
    not refused); ``restore()`` closes what was cut and forwards new connections again."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.is_cut = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.sockets.append(client)
                if self.is_cut:
                    continue  # held: the handshake completed, nothing will ever answer
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.is_cut:
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.is_cut = True

    def restore(self) -> None:
        with self.lock:
            dead, self.sockets = self.sockets, []
            self.is_cut = False
        for s in dead:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.server.close()
        self.restore()


@pytest.fixture
def link(etcd: EtcdProcess) -> Iterator[Link]:
    forwarder = Link(etcd.client_port)
    yield forwarder
    forwarder.close()


class Recorder:
    """Collects watch events and availability changes, and waits for them with a deadline."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes | None, int]] = []
        self.changes: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.cond = threading.Condition()

    def __call__(self, name: str, value: bytes | None, revision: int) -> None:
        with self.cond:
            self.events.append((name, value, revision))
            self.cond.notify_all()

    def unavailable(self, error: CoordinatorError) -> None:
        self.changes.put(("unavailable", error))

    def available(self) -> None:
        self.changes.put(("available", None))

    def wait_for(self, pred: Callable[[list[tuple[str, bytes | None, int]]], bool], what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.events), HANG_GUARD), f"{what}; got {self.events}"

    def next_change(self, kind: str) -> Any:
        got, detail = self.changes.get(timeout=HANG_GUARD)
        assert got == kind, (got, detail)
        return detail


# --------------------------------------------------------------------------- finding and running etcd


def test_find_etcd_names_a_crucial_etcd_that_does_not_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-etcd")
    monkeypatch.setenv("CRUCIAL_ETCD", missing)
    with pytest.raises(ConfigError, match="no-such-etcd") as info:
        find_etcd()
    assert "CRUCIAL_ETCD" in str(info.value)


def test_find_etcd_says_how_to_get_one_when_there_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CRUCIAL_ETCD", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_etcd, "_distro_etcd", lambda: None)
    monkeypatch.setattr(_etcd, "_FALLBACK", str(tmp_path / "etcd"))
    with pytest.raises(ConfigError) as info:
        find_etcd()
    message = str(info.value)
    assert "crucial[cluster]" in message and "apt install etcd-server" in message and "--etcd URL" in message


def test_crucial_etcd_wins_when_it_names_a_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _etcd_or_skip()
    monkeypatch.setenv("CRUCIAL_ETCD", binary)
    assert find_etcd() == binary


def test_etcd_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    binary = _etcd_or_skip()
    process = EtcdProcess(tmp_path, binary=binary, extra_args=["--no-such-flag=1"], start_timeout=HANG_GUARD)
    with pytest.raises(CoordinatorError, match="no-such-flag"):
        process.start()
    assert not process.running()


def test_a_binary_that_is_not_etcd_is_a_config_error(tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("not a program")
    with pytest.raises(ConfigError, match="cannot run etcd"):
        EtcdProcess(tmp_path / "data", binary=str(fake)).start()


def test_an_unusable_data_dir_is_a_storage_error(tmp_path: Path) -> None:
    binary = _etcd_or_skip()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError) as info:
        EtcdProcess(blocker, binary=binary).start()
    assert info.value.path == str(blocker)


def test_endpoints_are_parsed_and_bad_ones_named() -> None:
    eps = parse_endpoints("http://127.0.0.1:2379, 10.0.0.2:2380")
    assert [(e.url, e.host, e.port) for e in eps] == [
        ("http://127.0.0.1:2379", "127.0.0.1", 2379),
        ("http://10.0.0.2:2380", "10.0.0.2", 2380),
    ]
    for bad in ("ftp://h:1", "http://h", "http://h:port", ""):
        with pytest.raises(ConfigError, match="endpoint"):
            parse_endpoints(bad)
    with pytest.raises(ConfigError, match="ttl"):
        Coordinator(["http://127.0.0.1:1"], ttl=0.5)
    with pytest.raises(ConfigError, match="cluster"):
        Coordinator(["http://127.0.0.1:1"], "a/b")


def test_relist_delivers_changes_then_deletions() -> None:
    known = {"view": 5, "members/a": 6, "members/b": 7}
    current = {"view": (b"v2", 12), "members/b": (b"b", 7), "members/c": (b"c", 10)}
    assert relist_events(known, current, 15) == [
        ("members/c", b"c", 10),
        ("view", b"v2", 12),
        ("members/a", None, 15),
    ]


# --------------------------------------------------------------------------- membership


def test_members_appear_on_join_and_disappear_on_leave(coords: Callable[..., Coordinator]) -> None:
    a, observer = coords(), coords()
    assert observer.members() == {}
    assert a.lease_valid_until == float("-inf")
    a.join("n1", {"address": "127.0.0.1:1"})
    assert a.lease_valid_until > time.monotonic()
    assert observer.members() == {"n1": {"address": "127.0.0.1:1"}}
    a.join("n1", {"address": "127.0.0.1:2"})  # joining again updates the info
    assert observer.members() == {"n1": {"address": "127.0.0.1:2"}}
    with pytest.raises(ValueError, match="n1"):
        a.join("n2", {})
    a.leave()
    assert observer.members() == {}
    assert a.lease_valid_until == float("-inf")


def test_close_without_leave_keeps_the_member_until_its_lease_expires(coords: Callable[..., Coordinator]) -> None:
    a, observer = coords(ttl=1.0), coords()
    a.join("n1", {})
    a.close()
    a.close()  # idempotent
    assert "n1" in observer.members()  # no goodbye: only the lease can remove it
    poll(lambda: "n1" not in observer.members(), 10.0, "n1 gone after its lease expired")
    with pytest.raises(CoordinatorError, match="closed"):
        a.read_view()


def test_killed_member_disappears_after_its_ttl(member: Callable[..., Member], coords: Callable[..., Coordinator]) -> None:
    ttl = 1.0
    observer = coords()
    m = member("victim", ttl=ttl)
    assert "victim" in observer.members()
    m.signal(signal.SIGKILL)
    poll(lambda: "victim" not in observer.members(), 10 * ttl, "a kill -9'ed member disappears")


def test_member_paused_past_its_ttl_was_fenced_and_rejoins(
    member: Callable[..., Member], coords: Callable[..., Coordinator]
) -> None:
    ttl = 1.0
    observer = coords()
    m = member("sleeper", ttl=ttl)
    m.signal(signal.SIGSTOP)
    poll(lambda: "sleeper" not in observer.members(), 10 * ttl, "a paused member's lease expires")
    gone_at = time.monotonic()  # CLOCK_MONOTONIC is one clock for every process of this machine
    m.signal(signal.SIGCONT)
    _, woke_at, valid_until = m.recv("lost")
    assert valid_until < woke_at  # it could not prove its membership when it woke
    assert valid_until <= gone_at  # and it stopped believing in it before anyone saw it gone
    poll(lambda: "sleeper" in observer.members(), 10 * ttl, "the member rejoins after losing its lease")


def test_partitioned_member_is_fenced_before_it_is_removed(link: Link, coords: Callable[..., Coordinator]) -> None:
    """A node cut off from etcd (calls hang, nothing refused) stops trusting its lease before the others drop it."""
    rec = Recorder()
    lost = threading.Event()
    node = coords([link.endpoint], ttl=1.0, timeout=1.0, on_unavailable=rec.unavailable, on_available=rec.available)
    observer = coords()
    node.join("cut", {}, on_lease_lost=lost.set)
    link.cut()
    error = rec.next_change("unavailable")
    assert link.endpoint in str(error)
    poll(lambda: "cut" not in observer.members(), 10.0, "the cut-off member's lease expires")
    gone_at = time.monotonic()
    assert node.lease_valid_until <= gone_at
    assert not node.available
    link.restore()
    rec.next_change("available")
    assert lost.wait(HANG_GUARD)
    poll(lambda: "cut" in observer.members(), 10.0, "the member rejoins once etcd is reachable")
    poll(lambda: node.lease_valid_until > time.monotonic(), 10.0, "its new lease is valid")


# --------------------------------------------------------------------------- views and metadata


def test_propose_view_is_a_compare_and_swap(coords: Callable[..., Coordinator]) -> None:
    c = coords()
    assert c.read_view() == (None, 0)
    assert c.propose_view({"epoch": 1, "members": ["a"]}, 0)
    assert not c.propose_view({"epoch": 1, "members": ["b"]}, 0)  # 0: only if there is no view yet
    view, rev = c.read_view()
    assert view == {"epoch": 1, "members": ["a"]} and rev > 0
    assert not c.propose_view({"epoch": 2}, rev - 1)
    assert c.propose_view({"epoch": 2}, rev)
    assert not c.propose_view({"epoch": 3}, rev)  # the same revision cannot win twice
    assert c.read_view()[0] == {"epoch": 2}


def test_a_view_that_removes_a_node_fails_once_its_member_key_is_back(coords: Callable[..., Coordinator]) -> None:
    """The removal's compare-and-swap also checks the removed node's key is absent (fencing after a lost lease)."""
    proposer, member = coords(), coords()
    assert proposer.propose_view({"epoch": 1}, 0)
    _, rev = proposer.read_view()
    member.join("back", {"address": "x"})
    assert not proposer.propose_view({"epoch": 2}, rev, absent=["back"])  # it is live: the removal must not pass
    member.leave()
    assert proposer.propose_view({"epoch": 2}, rev, absent=["back"])
    assert proposer.read_view()[0] == {"epoch": 2}


def test_racing_proposers_one_winner_per_revision(coords: Callable[..., Coordinator]) -> None:
    rounds = 15
    proposers = [coords(), coords()]
    start = threading.Barrier(2, timeout=HANG_GUARD)
    outcomes: list[list[tuple[int, bool, dict[str, Any] | None]]] = [[], []]

    def propose(i: int) -> None:
        c = proposers[i]
        for r in range(rounds):
            view, rev = c.read_view()
            epoch = 0 if view is None else view["epoch"]
            assert epoch == r  # both start each round from the same view
            start.wait()
            won = c.propose_view({"epoch": epoch + 1, "by": i}, rev)
            after, _ = c.read_view()
            outcomes[i].append((r, won, after))
            start.wait()

    threads = [threading.Thread(target=propose, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD * 2)
    assert not any(t.is_alive() for t in threads)
    for r in range(rounds):
        (_, won0, after0), (_, won1, after1) = outcomes[0][r], outcomes[1][r]
        assert won0 != won1, f"round {r}: exactly one proposer wins"
        winner = 0 if won0 else 1
        assert after0 == after1 == {"epoch": r + 1, "by": winner}  # the loser sees the winner's view


def test_small_metadata_get_put_cas_delete(coords: Callable[..., Coordinator]) -> None:
    c = coords()
    assert c.get("anchors/k1") is None and c.read("anchors/k1") == (None, 0)
    assert c.cas("anchors/k1", b"node-a", 0)
    assert not c.cas("anchors/k1", b"node-b", 0)
    value, rev = c.read("anchors/k1")
    assert value == b"node-a"
    assert c.cas("anchors/k1", b"node-b", rev)
    c.put("anchors/k2", "é".encode())
    c.put("other", b"x")
    assert c.get_prefix("anchors/") == {"anchors/k1": b"node-b", "anchors/k2": "é".encode()}
    assert c.delete("anchors/k1") and not c.delete("anchors/k1")
    assert c.get("anchors/k1") is None


def test_clusters_do_not_see_each_other(etcd: EtcdProcess) -> None:
    with Coordinator([etcd.endpoint], "iso-a-" + uuid.uuid4().hex[:6]) as a:
        with Coordinator([etcd.endpoint], "iso-b-" + uuid.uuid4().hex[:6]) as b:
            a.propose_view({"epoch": 1}, 0)
            a.join("n", {})
            assert b.read_view() == (None, 0) and b.members() == {}
            a.leave()


# --------------------------------------------------------------------------- watch


def test_watch_delivers_views_and_members_in_revision_order(coords: Callable[..., Coordinator]) -> None:
    writer, watcher, other = coords(), coords(), coords()
    writer.propose_view({"epoch": 1}, 0)
    rec = Recorder()
    watcher.watch(rec)  # the current state first
    rec.wait_for(lambda ev: len(ev) >= 1, "the existing view")
    _, rev = writer.read_view()
    other.join("n2", {"a": 1})
    writer.propose_view({"epoch": 2}, rev)
    writer.put("anchors/x", b"n2")
    other.leave()
    writer.delete("anchors/x")
    expected = [
        ("view", b'{"epoch":1}'),
        ("members/n2", b'{"a":1}'),
        ("view", b'{"epoch":2}'),
        ("anchors/x", b"n2"),
        ("members/n2", None),
        ("anchors/x", None),
    ]
    rec.wait_for(lambda ev: len(ev) >= len(expected), "every change")
    assert [(n, v) for n, v, _ in rec.events] == expected
    revisions = [r for _, _, r in rec.events]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)


def test_watch_relists_after_the_history_it_missed_was_compacted(
    link: Link, etcd: EtcdProcess, coords: Callable[..., Coordinator]
) -> None:
    writer = coords()
    writer.put("a", b"1")
    writer.put("b", b"1")
    rec = Recorder()
    watcher = coords([link.endpoint], timeout=1.0)
    watcher.watch(rec)
    rec.wait_for(lambda ev: len(ev) == 2, "the initial state")
    link.cut()  # the watcher misses everything from here
    writer.delete("a")
    writer.put("b", b"2")
    writer.put("c", b"1")
    writer.put("c", b"2")
    _, rev = writer.read("c")
    requests.post(
        etcd.endpoint + "/v3/kv/compaction", json={"revision": rev, "physical": True}, timeout=HANG_GUARD
    ).raise_for_status()
    link.restore()
    rec.wait_for(lambda ev: len(ev) >= 5, "the difference after the compaction")
    after = rec.events[2:]
    assert [(n, v) for n, v, _ in after] == [("b", b"2"), ("c", b"2"), ("a", None)]
    assert after[2][2] >= rev  # a delete whose own revision was compacted away comes at the listing's
    revisions = [r for _, _, r in rec.events]
    assert revisions == sorted(revisions)
    writer.put("d", b"1")  # and it follows new changes again
    rec.wait_for(lambda ev: ev[-1][:2] == ("d", b"1"), "the next change")


def test_watch_resumes_after_etcd_restarts_and_etcd_keeps_the_view(own_etcd: EtcdProcess) -> None:
    name = "restart-" + uuid.uuid4().hex[:6]
    rec = Recorder()
    with Coordinator([own_etcd.endpoint], name, ttl=1.0, timeout=2.0, on_unavailable=rec.unavailable) as c:
        assert c.propose_view({"epoch": 1}, 0)
        c.watch(rec)
        rec.wait_for(lambda ev: len(ev) == 1, "the first view")
        port = own_etcd.client_port
        own_etcd.stop()
        own_etcd.start()  # the same data dir, the same ports when still free
        if own_etcd.client_port == port:  # the watch reconnects by itself and misses nothing
            _, rev = c.read_view()
            assert c.propose_view({"epoch": 2}, rev)
            rec.wait_for(lambda ev: ev[-1][1] == b'{"epoch":2}', "the view written after the restart")
        own_etcd.kill()  # a crash: etcd had fsynced every acknowledged write
        again = EtcdProcess(own_etcd.data_dir).start()  # on new ports
        try:
            with Coordinator([again.endpoint], name) as fresh:
                view, _ = fresh.read_view()
                assert view is not None and view["epoch"] == (2 if own_etcd.client_port == port else 1)
        finally:
            again.stop()


# --------------------------------------------------------------------------- etcd failures


def test_killed_etcd_fails_calls_within_the_timeout_and_the_watch_reports_it(own_etcd: EtcdProcess) -> None:
    rec = Recorder()
    timeout = 1.0
    node = Coordinator([own_etcd.endpoint], "dead", ttl=1.0, timeout=timeout)
    watcher = Coordinator([own_etcd.endpoint], "dead", timeout=timeout, on_unavailable=rec.unavailable)
    with node, watcher:
        node.join("n", {})
        watcher.watch(rec)
        _, rev = node.read_view()
        own_etcd.kill()
        for call in (node.read_view, lambda: node.propose_view({"epoch": 1}, rev), node.members):
            started = time.monotonic()
            with pytest.raises(CoordinatorError, match=own_etcd.endpoint):
                call()
            assert time.monotonic() - started < timeout + HANG_GUARD
        error = rec.next_change("unavailable")  # from the watch: this coordinator has not joined
        assert own_etcd.endpoint in str(error) and "watch" in str(error)
        poll(lambda: node.lease_valid_until < time.monotonic(), 10.0, "the lease can no longer be proven valid")
        poll(lambda: not node.available, 10.0, "the keep-alive reports etcd unavailable")


def test_hung_or_absent_endpoints_time_out_and_failover_reaches_a_live_one(etcd: EtcdProcess, cluster_name: str) -> None:
    with blackhole() as hung, closed_port() as refused:
        with Coordinator([hung], cluster_name, timeout=1.0) as c:
            started = time.monotonic()
            with pytest.raises(CoordinatorError, match="no answer"):
                c.read_view()
            assert time.monotonic() - started < 1.0 + HANG_GUARD
            with pytest.raises(CoordinatorError, match="may or may not have been applied"):
                c.propose_view({"epoch": 1}, 0)  # sent, never answered: nobody can know
        with Coordinator([refused, etcd.endpoint], cluster_name, timeout=5.0) as c:
            assert c.propose_view({"epoch": 1}, 0)  # refused connections are retried on the next member
            assert c.read_view()[0] == {"epoch": 1}
        with Coordinator([hung, etcd.endpoint], cluster_name, timeout=2.0) as c:  # 1 s per attempt
            assert c.read_view()[0] == {"epoch": 1}  # a read may go elsewhere after a hung member
            c.join("n", {})
            assert "n" in c.members()
            c.leave()


def test_the_supervisors_etcd_leaves_no_data_dir_behind(tmp_path: Path) -> None:
    """`crucial server --nodes N` starts etcd in a temporary dir (125 MB of preallocated log): gone at exit."""
    from crucial.testing import LocalCluster

    with LocalCluster(nodes=2, env={"TMPDIR": str(tmp_path)}) as cluster:
        assert len(cluster.addresses) == 2
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("crucial-etcd-")], "etcd's dir is elsewhere"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("crucial-etcd-")]
