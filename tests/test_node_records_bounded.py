"""What a node keeps about its peers' restarts stays bounded, and objects lost with a crashed node stay lost.

A node that outlives many restarts of its peers (each restart of a node
without a data dir is a new node id) keeps, per restart: a crash record
(``Node.crashed``, which names the node an absent ephemeral object was lost
with), the time its member key vanished (``Membership._gone_since``), the
ids that left gracefully (``Membership._left``) and notices for epochs it
has not installed (``Handoff._early*``).  Each is pruned by a rule that
keeps what it is read for; these tests check the rules, with a node's own
code fed views and, end to end, with a node of this process in a cluster
whose other nodes are killed with real signals.

The soak (``benchmarks/soak.py``) found the other half: a killed node
removed from the view *before* its restarted self joined -- the join view
then starts a new hand-over, and the crash fell out of the views the
lost-object lookup scanned, so its objects answered ObjectNotFoundError
instead of ObjectLostError (and the joiner, which never saw the crash,
always did).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from crucial._placement import View
from crucial.client import Client
from crucial.exceptions import ObjectLostError, ObjectNotFoundError
from crucial.objects._proxy import set_node_transport
from crucial.server import _node
from crucial.server._membership import Membership
from crucial.server._node import Node
from crucial.testing import LocalCluster
from crucial.testing.faults import eventually

_HERE = "127.0.0.1:9"  # peers' addresses in the in-process tests: nothing listens, notices just wait


@pytest.fixture(autouse=True)
def _no_node_transport_left() -> Iterator[None]:
    """A node started in this process routes every proxy of the process through itself: undo that."""
    yield
    set_node_transport(None)


def _view(epoch: int, *ids: str) -> View:
    return View(epoch, tuple((i, _HERE) for i in ids), rf=2)


def _key_on(view: View, owner: str, after: View | None = None, after_owner: str | None = None) -> str:
    """A Dict key whose primary is ``owner`` in ``view`` (and ``after_owner`` in ``after``)."""
    for i in range(20_000):
        k = f"k{i}"
        if view.primary("Dict", k) == owner and (after is None or after.primary("Dict", k) == after_owner):
            return k
    raise AssertionError("no such key")


def _done(node: Node, epoch: int, sender: str) -> None:
    node.handoff.on_done(pickle.dumps((epoch, sender)))


# -- a node's own code fed views (no peer answers) ---------------------------------------------------------


def test_an_object_lost_before_its_successor_joined_stays_lost_after_the_join() -> None:
    """X crashes and is removed (E1); its restarted self Y joins only then (E2), a new hand-over: the keys X
    led are still reported lost -- on A, which saw the crash, and on Y, told by A's DONE."""
    e0, e1, e2 = _view(5, "A", "B", "X"), _view(6, "A", "B"), _view(7, "A", "B", "Y")
    on_a = _key_on(e0, "X", e2, "A")
    on_y = _key_on(e0, "X", e2, "Y")
    sent: list[tuple[str, bytes]] = []

    async def main() -> tuple[str | None, str | None, str | None]:
        a = Node(node_id="A", blocked_warning=None)
        y = Node(node_id="Y", blocked_warning=None)
        await a.start()
        await y.start()
        try:
            a.set_view(e0)
            a.install_view(e1)
            _done(a, e1.epoch, "B")  # E1's hand-over completes
            assert a.handoff.complete
            real_link = a.repl.link

            def link(other: str) -> Any:
                peer = real_link(other)
                request = peer.request
                peer.request = lambda kind, body, cb: (sent.append((other, body)), request(kind, body, cb))  # type: ignore[method-assign]
                return peer

            a.repl.link = link  # type: ignore[method-assign]
            a.install_view(e2)
            y.set_view(e1, member=False)
            for other, body in sent:
                if other == "Y":
                    y.handoff.on_done(body)
            y.install_view(e2)
            return a._lost_on("Dict", on_a), y._lost_on("Dict", on_y), a._lost_on("Dict", _key_on(e2, "A", e0, "A"))
        finally:
            await a.close()
            await y.close()

    lost_a, lost_y, kept = asyncio.run(main())
    assert lost_a is not None and lost_a.startswith("X "), lost_a
    assert lost_y is not None and lost_y.startswith("X "), "the joiner was not told of the crash before it came"
    assert kept is None  # a key that never lived on X is not found, not lost
    assert [o for o, _ in sent].count("Y") == 1  # the crash records go to the joiner only


def test_crash_records_and_early_notices_stay_bounded_over_many_restarts() -> None:
    """20 restarts of one peer (a new id each time): the newest LOST_RECORDS crashes are kept, nothing more;
    notices for epochs that were skipped go when a later epoch is installed."""

    async def main() -> Node:
        a = Node(node_id="A", blocked_warning=None)
        await a.start()
        a.set_view(_view(1, "A", "B", "X0"))
        epoch = 1
        for n in range(20):
            a.handoff.on_done(pickle.dumps((epoch + 1, "B")))  # early: for a view not installed yet
            a.handoff.on_done(pickle.dumps((epoch + 2, "B")))
            a.handoff.on_ready(pickle.dumps((epoch + 2, "B")))
            epoch += 2  # epoch + 1 skipped (installed elsewhere, never here)
            a.install_view(_view(epoch, "A", "B"))  # X{n} crashed
            _done(a, epoch, "B")
            epoch += 1
            a.install_view(_view(epoch, "A", "B", f"X{n + 1}"))  # restarted: a new node id
            _done(a, epoch, "B")
            _done(a, epoch, f"X{n + 1}")
        return a

    async def run() -> tuple[Node, dict[str, Any]]:
        a = await main()
        try:
            h = a.handoff
            return a, {"early": dict(h._early), "ready": dict(h._early_ready), "pins": dict(h._early_pins)}
        finally:
            await a.close()

    a, early = asyncio.run(run())
    assert sorted(a.crashed) == sorted(f"X{n}" for n in range(20 - _node.LOST_RECORDS, 20))
    assert early == {"early": {}, "ready": {}, "pins": {}}


def test_membership_keeps_only_gone_members_of_the_view_and_leaves_being_installed() -> None:
    async def main() -> tuple[dict[str, float], set[str], dict[str, float], set[str], bool]:
        node = Node(node_id="A", blocked_warning=None)
        await node.start()
        try:
            m = node.membership = Membership(node, [], "c", 1.0, 2)
            node.set_view(_view(1, "A", "B", "X"))
            m._event("members/X", b"{}", 1)
            m._event("members/Z", b"{}", 2)  # a joiner that never made it into a view
            m._event("members/X", None, 3)
            m._event("members/Z", None, 4)
            m._install(_view(2, "A", "B"))  # X crashed: its entry has served
            gone = dict(m._gone_since)
            crashed = "X" in node.crashed
            m._install(View(3, (("A", _HERE), ("B", _HERE), ("W", _HERE)), rf=2, leaving=("W",)))
            m._install(_view(4, "A", "B"))  # W left
            left = set(m._left)
            m._install(_view(5, "A", "B", "W"))  # back with the same id (a data dir)
            m.restart_grace = 0.0  # Z's grace is over: its view never came
            m._install(_view(6, "A", "B"))  # and W crashed
            m._closing = True
            return gone, left, dict(m._gone_since), set(m._left), crashed and "W" in node.crashed
        finally:
            await node.close()

    gone, left, gone_later, left_later, crashed = asyncio.run(main())
    assert set(gone) == {"Z"}  # Z may still be in a view being agreed: kept for restart_grace
    assert left == {"W"} and left_later == set()
    assert gone_later == {}
    assert crashed, "a node that left once and crashed after coming back was not recorded as crashed"


# -- end to end: a node of this process in a cluster whose other nodes are killed -------------------------


class _Witness:
    """A clustered node on an event loop in a thread of this process: its records can be looked at."""

    def __init__(self, cluster: LocalCluster, info: dict[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.node: Node | None = None
        ready = threading.Event()
        self.failed: list[BaseException] = []

        async def run() -> None:
            try:
                node = Node("127.0.0.1", 0, token=cluster.token, blocked_warning=None)
                node.membership = Membership(node, list(info["etcd"]), str(info["name"]), float(info["failure_timeout"]), 2)
                await node.start()
                await node.membership.start()
                self.node = node
            except BaseException as exc:
                self.failed.append(exc)
            finally:
                ready.set()

        self.thread = threading.Thread(target=self._main, args=(run,), daemon=True)
        self.thread.start()
        ready.wait(60)
        if self.failed:
            raise self.failed[0]
        assert self.node is not None

    def _main(self, run: Any) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(run())
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def look(self, fn: Any) -> Any:
        """``fn(node)`` on the node's loop (its records change there)."""

        async def call() -> Any:
            return fn(self.node)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)

    def close(self) -> None:
        async def stop() -> None:
            assert self.node is not None
            await self.node.close()
            self.node.membership.close(leave=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def _settled_view(client: Client, accept: Any, timeout: float = 90.0) -> View:
    seen: list[View] = []

    def ok() -> bool:
        client.refresh()
        view = client.core.view
        assert view is not None
        seen[:] = [view]
        if not accept(view) or view.leaving:
            return False
        for address in view.addresses:
            try:
                rep = client.info(address)
            except Exception:
                return False
            if rep["epoch"] != view.epoch or not rep["replication"]["handoff_complete"]:
                return False
        return True

    eventually(ok, timeout=timeout, what="a settled view")
    return seen[0]


def _ephemeral_on(client: Client, view: View, owner: str, tag: str, n: int = 1) -> list[str]:
    keys = [k for k in (f"{tag}-{i}" for i in range(5000)) if view.primary("Dict", k) == owner][:n]
    for k in keys:
        client.call("Dict", k, "put", ("x", 1), create=((), {}))
    return keys


def _assert_lost(client: Client, keys: list[str], node_id: str) -> None:
    for k in keys:
        with pytest.raises(ObjectNotFoundError) as err:
            client.call("Dict", k, "get", ("x",))
        assert isinstance(err.value, ObjectLostError), f"{k} (lived on {node_id}): {err.value!r}"


@pytest.mark.slow
def test_records_stay_bounded_over_kills_and_lost_objects_stay_lost() -> None:
    """Five kill -9 of one peer (its supervisor starts it again, a new node id each time): the witness's
    records stay bounded, and every ephemeral object that lived on a killed node is still reported lost."""
    with LocalCluster(nodes=3, rf=2, failure_timeout=1.0, token="t") as cluster, cluster.client(failover_timeout=60) as client:
        info = client.info(cluster.addresses[0])["cluster"]
        witness = _Witness(cluster, info)
        try:
            me = witness.look(lambda n: n.node_id)
            view = _settled_view(client, lambda v: me in v and len(v.ids) == 4)
            lost: list[tuple[list[str], str]] = []
            peer = cluster.addresses[2]
            for round_ in range(5):
                victim = view.node_at(peer)
                assert victim is not None
                keys = _ephemeral_on(client, view, victim, f"r{round_}", n=3)
                pid = int(client.info(peer)["pid"])
                if round_ % 2:  # removed before its restarted self joins (what the soak hit)
                    os.kill(pid, signal.SIGSTOP)
                    _settled_view(client, lambda v, x=victim: x not in v and len(v.ids) == 3)
                os.kill(pid, signal.SIGKILL)
                view = _settled_view(client, lambda v, x=victim: x not in v and len(v.ids) == 4)
                peer = next(a for a in view.addresses if a not in cluster.addresses[:2] and view.node_at(a) != me)
                lost.append((keys, victim))
                for old_keys, old_victim in lost:
                    _assert_lost(client, old_keys, old_victim)
            records = witness.look(
                lambda n: {
                    "crashed": sorted(n.crashed),
                    "left": set(n.membership._left),
                    "gone": set(n.membership._gone_since),
                    "view": set(n.view.ids),
                    "epoch": n.view.epoch,
                    "early": [*n.handoff._early, *n.handoff._early_ready, *n.handoff._early_pins],
                }
            )
        finally:
            witness.close()
    assert records["crashed"] == sorted(v for _, v in lost)  # 5 <= LOST_RECORDS: every one kept
    assert len(records["crashed"]) <= _node.LOST_RECORDS
    assert records["left"] == set()
    assert records["gone"] <= records["view"], records
    assert all(e > records["epoch"] for e in records["early"]), records


@pytest.mark.slow
def test_an_object_lost_before_its_restarted_node_joined_is_reported_lost() -> None:
    """The soak's sequence: a node is removed (SIGSTOP past its lease) before its restarted self (kill -9,
    the supervisor starts it again: a new node id) joins.  The join is a new hand-over; every ephemeral
    object of the killed node -- now placed on a survivor or on the joiner -- is still reported lost."""
    with LocalCluster(nodes=3, rf=2, failure_timeout=1.0) as cluster, cluster.client(failover_timeout=60) as client:
        before = _settled_view(client, lambda v: len(v.ids) == 3)
        victim = before.node_at(cluster.addresses[2])
        assert victim is not None
        keys = _ephemeral_on(client, before, victim, "lost", n=40)
        pid = int(client.info(cluster.addresses[2])["pid"])
        os.kill(pid, signal.SIGSTOP)
        _settled_view(client, lambda v: victim not in v and len(v.ids) == 2)
        os.kill(pid, signal.SIGKILL)
        after = _settled_view(client, lambda v: victim not in v and len(v.ids) == 3)
        joiner = next(i for i in after.ids if i not in before)
        assert any(after.primary("Dict", k) == joiner for k in keys), "no key placed on the joiner: use more keys"
        assert any(after.primary("Dict", k) != joiner for k in keys), "no key placed on a survivor: use more keys"
        _assert_lost(client, keys, victim)
