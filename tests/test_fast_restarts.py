"""Nodes killed one after the other in a young cluster (the soak's ``--smoke``: a ``kill -9`` every 6 s).

Found by ``benchmarks/soak.py --smoke``: persistent objects (rf=2) answered
``ObjectLostError`` / ``ObjectNotFoundError`` after the second kill, and some
stayed unreadable.  The sequence (3 nodes A, B, C; the cluster started < 10 s
before):

1. B is killed; the supervisor starts it again as B' (a new node id), which
   joins at once (B's member key has not expired yet): view ``{A, B, B', C}``.
2. B's key vanishes after ``failure_timeout`` -- but every node then was younger
   than its ``restart_grace`` (``max(10 s, 5 x failure_timeout)``), and a key
   that vanished in that time got the grace of a whole-cluster restart, meant
   for the members of the view a node *started* in (an old incarnation's lease
   running out while it restarts with its data): B stayed in the view until
   the oldest node was ``restart_grace`` old.  Meanwhile the hand-over of the
   view with B' could not complete (B's ``DONE`` never came) and an object
   whose replicas were B and C kept a single live copy, on C.
3. C is killed (6 s after B): both replicas of those objects are gone -- two
   crashes 6 s apart, with a 3 s failure timeout, lost acknowledged writes.

Only a member of the view a node started in, whose key it has not seen written
since, may be an incarnation restarting with it: a node added by a later view,
or one that settled a view while it watched (the cluster's first node), crashed
when its key vanished, and is removed at once (``Membership._consider``).
Before, both variants below lost objects (``ObjectLostError`` on the read).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable

import pytest

from crucial._placement import View
from crucial.client import Client
from crucial.testing import LocalCluster

FAILURE_TIMEOUT = 1.0
INT = "AtomicInt"
PERSISTENT = ((), {}, (True, None))


def _view(client: Client) -> View:
    client.refresh()
    view = client.core.view
    assert view is not None
    return view


def _wait_view(client: Client, accept: Callable[[View], bool], timeout: float) -> View | None:
    deadline = time.monotonic() + timeout
    while True:
        view = _view(client)
        if accept(view):
            return view
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _kill(client: Client, view: View, node_id: str) -> None:
    os.kill(int(client.info(view.address(node_id))["pid"]), signal.SIGKILL)


@pytest.mark.parametrize("first_victim", ["founder", "joiner"])
def test_a_second_kill_soon_after_a_first_in_a_young_cluster_loses_no_persistent_object(first_victim: str) -> None:
    """The first node killed is the one that started the cluster (every other node's first view names it,
    and it settled views while they watched) or one that joined it (no other node started with it)."""
    with LocalCluster(nodes=3, rf=2, failure_timeout=FAILURE_TIMEOUT) as cluster:
        client = cluster.client()
        first = _wait_view(client, lambda v: len(v.ids) == 3, timeout=30)
        assert first is not None
        run = uuid.uuid4().hex[:8]
        keys = [f"young-{run}-{i}" for i in range(60)]
        expected = {}
        for k in keys:
            expected[k] = client.call(INT, k, "add_and_get", (5,), create=PERSISTENT)
        founder = next(n for n in first.ids if first.joined(n) == 0)
        x = founder if first_victim == "founder" else next(n for n in first.ids if n != founder)
        # the node that holds the most objects with x: killed next
        y = max(
            (n for n in first.ids if n != x),
            key=lambda n: sum(set(first.replicas(INT, k, 2)) == {x, n} for k in keys),
        )
        both = [k for k in keys if set(first.replicas(INT, k, 2)) == {x, y}]
        assert both, "no object on both nodes: pick more keys"

        _kill(client, first, x)  # the supervisor starts it again, as a new node
        # x's lease runs out after FAILURE_TIMEOUT: the view must drop it then (and take its restarted self),
        # well before restart_grace (10 s) -- the window in which one more crash loses objects
        settled = _wait_view(client, lambda v: x not in v and len(v.ids) == 3, timeout=4 * FAILURE_TIMEOUT)
        if settled is not None:
            for k in keys:  # acknowledged by both replicas of a view without x
                expected[k] = client.call(INT, k, "add_and_get", (1,))
        current = _view(client)
        assert y in current
        _kill(client, current, y)  # 4 failure timeouts after x at the latest (the soak: 6 s, 3 s timeouts)

        after = _wait_view(client, lambda v: y not in v and x not in v, timeout=60)
        assert after is not None
        held = {k: client.call(INT, k, "get", ()) for k in keys}
        assert held == expected
        assert settled is not None, f"{x} was still in the view {4 * FAILURE_TIMEOUT} s after it was killed"
