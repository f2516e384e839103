"""Failures the soak (benchmarks/soak.py) found, each reduced to a test of its own.

They were in the node's hand-over logic (server/_handoff.py, server/_node.py)
and were kept as strict xfails until fixed: a node whose hand-over of one view
never completed (the key's sync source had crashed) now counts every view since
its last complete hand-over -- ``Handoff.since`` -- both to know that an absent
key may still come (``may_gain``) and to name the crashed node an absent
ephemeral object was lost with (``Node._lost_on``).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import time
from collections.abc import Iterator

import pytest

from crucial import protocol as P
from crucial._placement import View
from crucial.client import Client
from crucial.exceptions import ObjectLostError, ObjectNotFoundError
from crucial.objects._proxy import set_node_transport
from crucial.server._node import Node
from crucial.testing import LocalCluster

KEYS = 200


def _wait_view(client: Client, accept, timeout: float = 60.0) -> View:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        client.refresh()
        view = client.core.view
        assert view is not None
        if accept(view):
            return view
        assert time.monotonic() < deadline, f"no such view within {timeout} s (last: {view.as_json()})"
        time.sleep(0.05)


def _join_before_removal(cluster: LocalCluster, client: Client, key: str) -> tuple[View, View, list[str]]:
    """Kill a node X; its restarted self Y (a new node id) joins before X's lease runs out.

    Returns the view before, the view with Y and still X, and the keys whose
    primary was X and became Y.
    """
    keys = [f"{key}-{i}" for i in range(KEYS)]
    for k in keys:
        client.call("Dict", k, "put", ("x", 1), create=((), {}))
    before = _wait_view(client, lambda v: len(v.ids) == 3)
    x = before.primary("Dict", keys[0])
    os.kill(int(client.info(before.address(x))["pid"]), signal.SIGKILL)
    # the supervisor starts it again at once, as a new node: a view with 4 members (X not yet removed)
    joined = _wait_view(client, lambda v: len(v.ids) == 4 and x in v)
    y = next(n for n in joined.ids if n not in before)
    moved = [k for k in keys if before.primary("Dict", k) == x and joined.primary("Dict", k) == y]
    assert moved, "no key moved from the killed node to its successor; use more keys"
    _wait_view(client, lambda v: x not in v and y in v)  # X's lease ran out
    return before, joined, moved


# -- the hand-over gap, without a network: a node's own code fed the views it would install ----------------

_HERE = "127.0.0.1:9"  # peers' addresses: nothing listens there, the DONE notices just wait
E0 = View(5, (("X", _HERE), ("A", _HERE), ("B", _HERE)), rf=2)
E1 = View(6, (("X", _HERE), ("A", _HERE), ("B", _HERE), ("Y", _HERE)), rf=2)  # Y (X restarted) joined: X not removed yet
E2 = View(7, (("A", _HERE), ("B", _HERE), ("Y", _HERE)), rf=2)  # X's lease ran out


def _moved_to_y(n: int = 2000) -> str:
    """A key whose primary was X and is Y from E1 on."""
    return next(k for k in (f"k{i}" for i in range(n)) if E0.primary("Dict", k) == "X" and E1.primary("Dict", k) == "Y")


@pytest.fixture(autouse=True)
def _no_node_transport_left() -> Iterator[None]:
    """A node started in this process routes every proxy of the process through itself: undo that."""
    yield
    set_node_transport(None)


async def _y_after(views: list[View]) -> Node:
    """Node Y, started, which saw E0 (not a member), then installed ``views``; no peer ever answers it."""
    node = Node(node_id="Y", blocked_warning=None)
    await node.start()
    node.set_view(E0, member=False)
    for view in views:
        node.install_view(view)
    return node


def test_a_key_whose_hand_over_never_came_is_not_served_in_the_next_view() -> None:
    key = _moved_to_y()

    async def main() -> tuple[object, object, bool]:
        node = await _y_after([E1])
        try:
            assert node.table is not None
            ref = ("Dict", key)
            in_e1 = node.gate(ref, node.table.cells.get(ref))  # waiting for X's hand-over (and X's DONE: never)
            node.install_view(E2)
            return in_e1, node.gate(ref, node.table.cells.get(ref)), node.handoff.complete
        finally:
            await node.close()

    in_e1, in_e2, complete = asyncio.run(main())
    assert in_e1 is not None and in_e1[0] == P.Kind.UNAVAILABLE
    assert not complete  # nobody said DONE for E2: the key may still come (as A's retired copy)
    assert in_e2 is not None and in_e2[0] == P.Kind.UNAVAILABLE, "served a key this node never received"


def test_an_object_lost_with_a_node_whose_successor_joined_first_is_reported_lost() -> None:
    key = _moved_to_y()

    async def main() -> str | None:
        node = await _y_after([E1, E2])
        try:
            return node._lost_on("Dict", key)
        finally:
            await node.close()

    assert asyncio.run(main()) is not None, "X crashed holding the key, but the node does not say so"


# -- the same, end to end: a killed node restarted by its supervisor ------------------------------------------


@pytest.mark.slow
def test_a_lost_ephemeral_object_is_reported_lost_when_its_successor_joined_first(key: str) -> None:
    with LocalCluster(nodes=3, rf=2, failure_timeout=6) as cluster, cluster.client(failover_timeout=60) as client:
        _, _, moved = _join_before_removal(cluster, client, key)
        for k in moved:
            with pytest.raises(ObjectNotFoundError) as err:
                client.call("Dict", k, "get", ("x",))
            assert isinstance(err.value, ObjectLostError), f"{k}: {err.value}"


# -- found while looking for the soak's RSS growth (fixed on main since) ---------------------------------------------


def test_remembering_a_reply_again_does_not_count_its_bytes_twice() -> None:
    """Found on this branch, fixed on main meanwhile (Node.remember): kept as a regression test.

    A reply remembered again (a resent record, a state installed) once added
    its size a second time; past DEDUP_BYTES of drift every reply was evicted
    as soon as it was remembered, and retried calls would have run twice.
    """
    from crucial.server import _replies

    async def main() -> tuple[int, bool]:
        node = Node(blocked_warning=None)
        await node.start()
        try:
            assert node.table is not None
            cell = node.table.create("AtomicInt", "k", (0,), {}, False)
            big = b"x" * (1 << 20)
            for _ in range(_replies.DEDUP_BYTES // len(big) + 2):  # one call's reply, remembered again and again
                node.remember(cell, ("client", 1), P.Kind.OK, big)
            node.remember(cell, ("client", 2), P.Kind.OK, b"small")
            return node.replies.nbytes, ("client", 2) in (cell.dedup or {})
        finally:
            await node.close()

    counted, kept = asyncio.run(main())
    assert counted == (1 << 20) + len(b"small"), f"{counted} bytes counted for two replies"
    assert kept, "a fresh reply was evicted at once: retries of it would run again"


# -- found by test_join_under_load (tests/test_membership.py), which failed about one run in three -------------


def test_a_joiner_serves_nothing_before_it_has_read_its_first_view() -> None:
    """A joining node listens before it reads its first view, alone in a placeholder view where it owns
    every key; a client that learned its address from the new view was served there: ObjectNotFoundError,
    or -- with create arguments -- a new object in place of the one being handed over."""
    from crucial.exceptions import ConfigError
    from crucial.server._coord import Coordinator
    from crucial.server._etcd import EtcdProcess, find_etcd
    from crucial.server._membership import Membership

    try:
        find_etcd()
    except ConfigError as exc:
        pytest.skip(f"no etcd binary here: {exc}")

    async def main() -> tuple[object, float]:
        with EtcdProcess() as etcd:
            node = Node(node_id="J", blocked_warning=None)
            membership = node.membership = Membership(node, [etcd.endpoint], "t-join", 1.0, 2)
            await node.start()
            # what Membership.start() does before it reads the view: a coordinator, the member key, a lease
            membership.coord = Coordinator([etcd.endpoint], "t-join", ttl=1.0)
            try:
                membership.coord.join("J", membership.info())
                return node.gate(("AtomicInt", "k"), None), membership.coord.lease_valid_until - time.monotonic()
            finally:
                membership.coord.close()
                await node.close()

    refusal, lease = asyncio.run(main())
    assert lease > 0, "the test's premise: the lease is granted"
    assert refusal is not None and refusal[0] == P.Kind.UNAVAILABLE, "served a key in the placeholder view"


def test_objects_pinned_for_a_joiner_before_its_first_view_are_served_where_they_are() -> None:
    """A busy ephemeral object stays with its old primary ("pinned") and the new one redirects its calls
    there; a joiner told so before it had read its first view dropped the pin -- then, its hand-over
    complete, answered ObjectNotFoundError for an object that existed."""
    x_address = "127.0.0.1:7"

    async def main() -> tuple[object, str]:
        node = Node(node_id="J", blocked_warning=None)
        await node.start()
        try:
            view = View(4, (("X", x_address), ("A", _HERE), ("J", node.address)), rf=2)
            ref = next(("AtomicInt", k) for k in (f"k{i}" for i in range(2000)) if view.primary("AtomicInt", k) == "J")
            # X's HANDOFF for view 4 arrives first: the object is busy there, it stays there for now
            node.handoff.on_handoff(pickle.dumps((4, "X", 0, [], [ref])))
            node.set_view(view)  # then the joiner reads its first view, which names it (Membership.start)
            before = view.without("J")
            assert before is not None
            node.handoff.start(before, view)
            return node.gate(ref, None), ref[1]
        finally:
            await node.close()

    refusal, key = asyncio.run(main())
    assert refusal is not None and refusal[0] == P.Kind.REDIRECT, f"{key}: {refusal}"
    assert P.decode_json(refusal[1], "redirect") == {"to": x_address}
