"""A node's membership: joining through etcd, following views, proposing changes.

::

    etcd ──watch thread──► call_soon_threadsafe ──► Membership._event (loop)
                                                        ├─ view changed ──► Node.install_view
                                                        └─ members changed ─► next_view() ─► propose (a worker thread,
                                                                                              compare-and-swap)
    keep-alive thread: lease lost ──► node serves nothing until it has re-read the view

Nothing here blocks the event loop: every etcd request runs on a worker
thread.  The decisions are :func:`._proposer.next_view`'s; the agreement is
etcd's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

from .._placement import View
from ..exceptions import CoordinatorError, ProtocolError
from ._proposer import next_view

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["Membership"]

log = logging.getLogger("crucial.node")


class Membership:
    """Joins ``node`` to the cluster ``cluster`` whose views live in etcd at ``endpoints``."""

    def __init__(
        self, node: Node, endpoints: list[str], cluster: str, failure_timeout: float, rf: int, placement: str = "hash"
    ) -> None:
        self.placement = placement  # for the first view only: a cluster keeps the placement it started with
        self.node = node
        self.endpoints = endpoints
        self.cluster = cluster
        self.failure_timeout = failure_timeout
        #: how long members missing when this node started may take to come back before they are removed
        self.restart_grace = max(10.0, 5 * failure_timeout)
        self.rf = rf
        self.coord: Any = None
        self.live: dict[str, dict[str, Any]] = {}
        #: when a member key vanished: kept for the view's members, and restart_grace long for a node never in
        #: the view (the view adding it may come); a removed member's goes with the view that removes it
        self._gone_since: dict[str, float] = {}
        self._view_rev = 0
        self._started = 0.0
        #: the members of the first view this node read: only they may be restarting with it (a whole-cluster
        #: restart) and get restart_grace when their key vanishes; a node added by a later view cannot be one
        self._members_at_start: frozenset[str] = frozenset()
        #: view members whose key was written while this node watched (not only listed when it started): that
        #: incarnation lived after this node started, so its key vanishing is a crash, never a restart's leftover
        self._seen_alive: set[str] = set()
        self._proposing = False
        self._timer: asyncio.TimerHandle | None = None
        self._settled = 0
        self._leaving = False
        #: members that left gracefully (not crashed): those the view being installed lets go, nothing older
        self._left: set[str] = set()
        # nothing is served until the view is read: the lease was lost, or -- from the start -- this node
        # has not read its first view yet (it listens meanwhile, alone in the placeholder view of
        # Node.start(), where it owns every key: a client that learned its address from the new view
        # was served there -- ObjectNotFoundError, or a new object made from create arguments)
        self.suspended = True
        self._closing = False
        self.left = asyncio.Event()

    # -- joining -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "address": self.node.address,
            "pid": os.getpid(),
            "settled": self._settled,
            "leaving": self._leaving,
            "data_dir": str(self.node.store.path) if self.node.store is not None else None,
        }

    async def start(self) -> None:
        """Join, take the current view (proposing the first one), then follow changes."""
        from ._coord import Coordinator

        loop = asyncio.get_running_loop()
        self.coord = Coordinator(
            self.endpoints,
            self.cluster,
            ttl=self.failure_timeout,
            on_lease_lost=self._lease_lost,
        )
        self._started = time.monotonic()
        view = await loop.run_in_executor(None, self._join)
        self._members_at_start = frozenset(view.ids)
        node = self.node
        if node.node_id not in view and node.store is not None:
            node.discard_data("this node is not a member of the current view: its data is stale")
        node.set_view(view, member=node.node_id in view)  # the first view: nothing was served before
        assert node.table is not None
        before = view.without(node.node_id)
        if node.node_id in view and before is not None and not node.table.cells:
            # The view that adds this node was agreed before we read it (the others saw our member
            # key first): they are handing objects over to us.  Taking it as a first view would serve
            # the keys we now lead before their state arrives -- and a call with create arguments
            # would make them anew, losing every acknowledged write (found under load by
            # test_kill_any_node_under_load: a restarted node).  Hand over from the view without us.
            node.handoff.start(before, view)
            self.settle_when_done(view.epoch)
        elif node.node_id in view:
            node.handoff.first_view(view)
            self.settled(view.epoch)
        self.suspended = False
        self.coord.watch(lambda name, value, rev: loop.call_soon_threadsafe(self._event, name, value, rev))
        self._consider()

    def _join(self) -> View:
        coord = self.coord
        coord.join(self.node.node_id, self.info())
        while True:
            data, rev = coord.read_view()
            if data is not None:
                self._view_rev = rev
                return View.from_json(data)
            first = View(1, ((self.node.node_id, self.node.address),), self.rf, self.failure_timeout, placement=self.placement)
            if coord.propose_view(first.as_json(), 0):
                log.info("started cluster %r at %s", self.cluster, ",".join(self.endpoints))

    def describe(self) -> dict[str, Any]:
        """For ``crucial info`` and ``--join``: where the views live, and this node's standing."""
        return {
            "name": self.cluster,
            "etcd": list(self.endpoints),
            "failure_timeout": self.failure_timeout,
            "settled": self._settled,
            "leaving": self._leaving,
            "suspended": self.suspended,
            "lease_s": round(self.lease_valid_until - time.monotonic(), 3) if self.coord is not None else None,
        }

    def left_gracefully(self, node_id: str) -> bool:
        return node_id in self._left

    @property
    def lease_valid_until(self) -> float:
        return -math.inf if self.suspended or self.coord is None else self.coord.lease_valid_until

    # -- following ------------------------------------------------------------------------

    def _event(self, name: str, value: bytes | None, revision: int) -> None:
        if self._closing:
            return  # the node is stopping: its store may be closed already
        if name == "view":
            if value is None:
                return
            try:
                view = View.from_json(json.loads(value))
            except (ValueError, ProtocolError) as exc:
                log.error("ignoring a malformed view in etcd: %s", exc)
                return
            self._view_rev = max(self._view_rev, revision)
            self._install(view)
        elif name.startswith("members/"):
            node_id = name[len("members/") :]
            if value is None:
                if self.live.pop(node_id, None) is not None:
                    self._gone_since.setdefault(node_id, time.monotonic())
            else:
                try:
                    info = json.loads(value)
                except ValueError:
                    return
                if node_id in self.live or node_id in self._gone_since:
                    self._seen_alive.add(node_id)  # written again (settled, an address) or back: alive now
                self.live[node_id] = info
                self._gone_since.pop(node_id, None)
        self._consider()

    def _install(self, view: View) -> None:
        node = self.node
        assert node.view is not None
        if view.epoch <= node.view.epoch:
            return
        # read only by node.install_view below, for members of node.view that are not in view: a node that
        # left, came back with the same id (its data dir) and crashed later is not taken for one that left
        self._left = {node_id for node_id in node.view.leaving if node_id not in view}
        now = time.monotonic()
        self._gone_since = {
            i: t for i, t in self._gone_since.items() if i in view or (i not in node.view and now - t < self.restart_grace)
        }
        self._seen_alive = {i for i in self._seen_alive if i in view or i in self.live}
        was_member = node.node_id in node.view
        if was_member and node.node_id in view and view.joined(node.node_id) > node.view.epoch:
            # removed by a view this node never installed (its lease ran out: it was cut off or paused) and
            # added back since: its copies are stale, and the others hand it its objects as to any joiner
            node.discard_data(
                f"this node was removed after view {node.view.epoch} and added back in view {view.joined(node.node_id)}"
            )
            node.view = node.view.without(node.node_id) or view.without(node.node_id) or node.view
            was_member = False
        node.install_view(view)
        if node.node_id not in view:
            if was_member:
                node.discard_data("this node was removed from the view")
            if self._leaving:
                self.left.set()
        else:
            self.settle_when_done(view.epoch)

    def settle_when_done(self, epoch: int) -> None:
        handoff = self.node.handoff
        if handoff.complete and handoff.epoch == epoch and not handoff.pinned:
            self.settled(epoch)

    def settled(self, epoch: int) -> None:
        """This node finished the hand-over of ``epoch``: say so in its member key (proposers wait for it)."""
        if epoch <= self._settled:
            return
        self._settled = epoch
        self._publish()

    def _publish(self) -> None:
        loop = self.node.loop
        assert loop is not None
        info = self.info()

        def put() -> None:
            try:
                self.coord.join(self.node.node_id, info)
            except (CoordinatorError, ValueError) as exc:
                log.warning("cannot update this node's member key: %s", exc)

        loop.run_in_executor(None, put)

    # -- proposing -------------------------------------------------------------------------

    def _consider(self) -> None:
        node = self.node
        if node.view is None or self._proposing or self.coord is None or self._closing:
            return
        now = time.monotonic()
        # a member whose key vanished while we watched is gone now: its lease ran out (or it left);
        # one we never saw since we started is given restart_grace to come back: after a whole-cluster
        # restart its data may hold the only copies of some objects, and nodes start at their own pace
        grace = self.restart_grace - self.failure_timeout
        up = now - self._started - grace
        # a key that vanishes within the grace may be a previous incarnation's lease running out while
        # that node restarts (a whole-cluster restart): it gets the grace too -- but only a member of the view
        # this node started in whose key it has not seen written since (a later view added the others, or
        # they settled a view while we watched: they were running, and crashed when their key vanished).
        # Giving them the grace too kept a node killed in a young cluster's first seconds in the view for up
        # to restart_grace, its objects with one live replica -- and a second crash meanwhile lost
        # acknowledged persistent objects (found by the soak's --smoke: a kill -9 every 6 s)
        absent_for = {
            i: math.inf
            if i in self._gone_since and (self._gone_since[i] - self._started >= grace or not self._restarting(i))
            else up
            for i in node.view.ids
            if i not in self.live
        }
        proposal = next_view(node.view, self.live, absent_for)
        if proposal is None:
            waiting = [self.failure_timeout - t for t in absent_for.values() if t < self.failure_timeout]  # timers
            if waiting:
                self._arm(min(waiting))
            return
        self._proposing = True
        expected = self._view_rev
        loop = node.loop
        assert loop is not None

        def propose() -> bool:
            return bool(self.coord.propose_view(proposal.view.as_json(), expected, absent=proposal.absent))

        def done(fut: asyncio.Future[bool]) -> None:
            self._proposing = False
            exc = fut.exception()
            if self._closing:
                return
            if exc is not None:
                log.warning("proposing view %d (%s) failed: %s", proposal.view.epoch, proposal.why, exc)
                self._arm(0.1)
            elif fut.result():
                log.info("proposed view %d: %s", proposal.view.epoch, proposal.why)
            else:
                self._arm(0.05)  # someone else changed it first: the watch brings it; look again

        loop.run_in_executor(None, propose).add_done_callback(done)

    def _restarting(self, node_id: str) -> bool:
        """Whether a vanished member key may be a previous incarnation's, its node restarting with this one."""
        return node_id in self._members_at_start and node_id not in self._seen_alive

    def _arm(self, delay: float) -> None:
        loop = self.node.loop
        assert loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(max(0.01, delay), self._consider)

    # -- losing the lease, leaving -----------------------------------------------------------

    def _lease_lost(self) -> None:
        """Keep-alive thread: the lease expired (this process was paused or cut off)."""
        self.suspended = True
        log.warning("membership lease lost: serving nothing until the current view is read again")
        loop = self.node.loop
        assert loop is not None
        loop.call_soon_threadsafe(self.refresh)

    def refresh(self) -> None:
        """Read the view from etcd (after our lease is valid again) and install it; then serve again."""
        loop = self.node.loop
        assert loop is not None

        def read() -> tuple[dict[str, Any] | None, int]:
            deadline = time.monotonic() + 10 * self.failure_timeout
            while self.coord.lease_valid_until <= time.monotonic() and time.monotonic() < deadline:
                time.sleep(0.01)  # the keep-alive thread is re-granting the lease
            return self.coord.read_view()  # type: ignore[no-any-return]

        def done(fut: asyncio.Future[tuple[dict[str, Any] | None, int]]) -> None:
            if fut.exception() is not None:
                log.warning("cannot re-read the view: %s", fut.exception())
                loop.call_later(0.2, self.refresh)
                return
            data, rev = fut.result()
            if data is not None:
                self._view_rev = max(self._view_rev, rev)
                self._install(View.from_json(data))
            self.suspended = False

        loop.run_in_executor(None, read).add_done_callback(done)

    async def leave(self, timeout: float) -> bool:
        """Hand everything over, then go (SIGTERM): True if the view let us go in time."""
        if self.node.view is None or self.node.node_id not in self.node.view:
            return True
        self._leaving = True
        self._publish()
        try:
            await asyncio.wait_for(self.left.wait(), timeout)
            return True
        except TimeoutError:
            log.warning("leaving: the cluster did not take this node's objects within %.0f s", timeout)
            return False

    def close(self, leave: bool = False) -> None:
        self._closing = True
        if self.coord is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        try:
            if leave:
                self.coord.leave()
        except CoordinatorError as exc:
            log.warning("leaving etcd: %s", exc)
        self.coord.close()
