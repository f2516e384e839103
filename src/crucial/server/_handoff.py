"""View changes on one node: which objects it sends, keeps, gains and drops.

::

    install view e+1 ──► plan(prev=e, new=e+1) ──► HANDOFF images to new primaries
                                               ──► DONE(e+1) to every member
    every survivor's DONE(e+1) in ──► gained objects installed (best copy wins)
                                  ──► persistent ones sync their backups ──► READY(e+1)
    READY(e+1) from a primary ──► retired copies it now holds are dropped

:func:`plan` is pure; :class:`Handoff` does the sending and bookkeeping.
The rules (``docs/replication.md``, "View changes: hand-over"):

* the *sync source* of a key -- the first of its replicas in the previous
  view that is still a member -- sends the object to the key's new primary
  when that primary was not a replica before (else it already holds every
  acknowledged change);
* a node that is no longer a replica keeps a *retired* copy, serving nothing
  from it, until the new primary says READY -- and offers it again if
  another view change comes first (a fallback, used only when no replica's
  copy arrives);
* a primary serves the keys it already held at once, and keys it may gain
  only once every surviving member said DONE.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import protocol as P
from .._placement import View
from ..exceptions import CrucialError, ProtocolError
from ._runtime import Cell

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["Crash", "Handoff", "Plan", "plan"]

log = logging.getLogger("crucial.node")

Ref = tuple[str, str]


class Held(NamedTuple):
    """An object this node holds: its reference and replica count (1 for ephemeral objects)."""

    ref: Ref
    rf: int | None
    persistent: bool
    anchored: bool = False  # placed here by anchored placement: it stays unless this node leaves


class Crash(NamedTuple):
    """A node removed from the view without leaving, and the views an object may have lived on it in."""

    node_id: str
    address: str
    removed_in: int  # the epoch of the view that removed it
    views: tuple[View, ...]


class Plan(NamedTuple):
    push: dict[str, list[Ref]]  # new primary id -> objects to send it
    retire: list[Ref]  # no longer a replica here
    lead: list[tuple[Ref, bool]]  # primary here in the new view: (ref, replica set changed)
    follow: list[tuple[Ref, bool]]  # a backup here: (ref, was the primary)


def replicas(view: View, held: Held) -> list[str]:
    if not held.persistent:
        return [view.primary(*held.ref)]
    return list(view.replicas(held.ref[0], held.ref[1], held.rf))


def plan(me: str, prev: View, new: View, held: Iterable[Held]) -> Plan:
    """What this node does with each object it holds when ``new`` follows ``prev``."""
    push: dict[str, list[Ref]] = {}
    retire: list[Ref] = []
    lead: list[tuple[Ref, bool]] = []
    follow: list[tuple[Ref, bool]] = []
    for h in held:
        if h.anchored:
            if me in new and me not in new.leaving:
                continue  # anchored objects never move while their node stays
            push.setdefault(new.primary(*h.ref), []).append(h.ref)  # going: back to its home
            retire.append(h.ref)
            continue
        old_r = replicas(prev, h)
        new_r = replicas(new, h)
        primary = new_r[0]
        source = next((n for n in old_r if n in new), None)
        if source == me and primary not in old_r:
            push.setdefault(primary, []).append(h.ref)
        if me not in new_r:
            retire.append(h.ref)
        elif primary == me:
            lead.append((h.ref, old_r != new_r))
        else:
            follow.append((h.ref, old_r[0] == me))
    return Plan(push, retire, lead, follow)


def may_gain(me: str, since: Sequence[View], ref: Ref) -> bool:
    """Whether an object absent here might still be on its way: another node led it in one of ``since``,
    the views installed since this node's last complete hand-over (a view whose hand-over never completed
    -- its sync source crashed -- did not bring what it moved here: a retired copy may still come)."""
    return any(v.primary(*ref) != me for v in since)


class _Candidate(NamedTuple):
    rank: int  # 0 best: a replica of the previous view; 1: a retired copy
    version: tuple[int, int]
    body: bytes


class Handoff:
    """One node's part in view changes."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.epoch = 0  # the view epoch being handed over to
        self.since: list[View] = []  # the views installed since the last complete hand-over, oldest first
        self.complete = True
        self._done_from: set[str] = set()
        self._expect: set[str] = set()
        self._candidates: dict[Ref, _Candidate] = {}
        self.retired: dict[Ref, Cell] = {}
        self.pinned: dict[Ref, str] = {}  # busy objects kept here until idle -> their new primary
        self.pinned_at: dict[Ref, str] = {}  # objects this node now owns, still served at this address
        self._drain_timer: Any = None
        # notices for epochs not installed yet; kept only for epochs above the installed view's (forget_early)
        self._early: dict[int, set[str]] = {}  # DONE notices
        self._early_ready: dict[int, set[str]] = {}  # READY notices likewise
        self._early_pins: dict[int, dict[Ref, str]] = {}  # pins sent to a joiner before it read its first view
        self.stats = {"pushed": 0, "received": 0, "moved_in": 0}

    # -- installing a view ---------------------------------------------------------

    def start(self, prev: View, new: View) -> None:
        node = self.node
        table = node.table
        assert table is not None
        me = node.node_id
        self.since = [*(self.since if not self.complete else []), prev]
        self.epoch, self.complete = new.epoch, False
        self.pinned_at = {r: a for r, a in self.pinned_at.items() if a in new.addresses}
        for ref, sender in self._early_pins.pop(new.epoch, {}).items():
            if sender in new:
                self.pinned_at[ref] = new.address(sender)
        self._done_from = self._early.pop(new.epoch, set())
        early_ready = self._early_ready.pop(new.epoch, set())
        self.forget_early(new.epoch)
        self._expect = {n for n in prev.ids if n in new and n != me}
        here = node.anchors.here
        held = [
            Held(ref, cell.repl.options.rf if cell.repl is not None else None, cell.repl is not None, ref in here)
            for ref, cell in table.cells.items()
        ]
        p = plan(me, prev, new, held)
        # an ephemeral object with calls parked or queued on it cannot move now: it stays here,
        # pinned, serving the calls its new primary redirects here, and moves once it is idle
        busy = {r for refs in p.push.values() for r in refs if _busy(table.cells[r]) and table.cells[r].repl is None}
        for target, refs in p.push.items():
            for ref in refs:
                if ref in busy:
                    self.pinned[ref] = target
        for ref in p.retire:
            if ref in self.pinned:
                continue
            cell = table.cells.pop(ref)
            self.retired[ref] = cell
            if cell.repl is not None:
                node.repl.step_down(cell)
            _release_waiters(table, cell)
        for ref, was_primary in p.follow:
            cell = table.cells[ref]
            if was_primary and cell.repl is not None:
                node.repl.step_down(cell)
        for target, refs in p.push.items():
            images = [self._image(table.cells.get(r) or self.retired[r]) for r in refs if r not in busy]
            self._send(target, images, rank=0, pins=[r for r in refs if r in busy])
        if self.pinned:
            self._arm_drain()
        # retired copies of earlier changes: offered to their new primary as a fallback
        fallback: dict[str, list[bytes]] = {}
        for ref, cell in self.retired.items():
            primary = new.primary(*ref) if cell.repl is None else new.replicas(ref[0], ref[1], cell.repl.options.rf)[0]
            if primary != me and ref not in {r for refs in p.push.values() for r in refs}:
                fallback.setdefault(primary, []).append(self._image(cell))
        for target, images in fallback.items():
            self._send(target, images, rank=1)
        for ref, changed in p.lead:
            cell = table.cells[ref]
            if cell.repl is not None:
                node.repl.become_primary(cell, changed)
        self._send_done(new, joiners=[n for n in new.ids if n not in prev])
        for sender in early_ready:
            self._drop_retired(sender)
        self._maybe_complete()

    def forget_early(self, epoch: int) -> None:
        """View ``epoch`` is installed: notices for it and for the epochs it skipped can never be used."""
        self._early = {e: s for e, s in self._early.items() if e > epoch}
        self._early_ready = {e: s for e, s in self._early_ready.items() if e > epoch}
        self._early_pins = {e: p for e, p in self._early_pins.items() if e > epoch}

    def first_view(self, view: View) -> None:
        """This node starts in ``view`` (a restart with its data, or a cluster's first node): it has nothing
        to hand over, and says so -- members that installed ``view`` through a change wait for every
        member's DONE, and one that never came kept their hand-over open for ever (no READY, no join:
        found after a whole-cluster restart, where nodes come back one by one)."""
        self.epoch = view.epoch
        self._send_done(view)

    def _send_done(self, view: View, joiners: Sequence[str] = ()) -> None:
        """DONE(epoch) to every other member; a joiner's also names the nodes that crashed before it came
        (``Node.crashed``): an object lost with one of them and now placed on the joiner is reported lost."""
        node = self.node
        body = pickle.dumps((view.epoch, node.node_id))
        told = body
        if joiners and node.crashed:
            crashes = [(c.node_id, c.address, c.removed_in, [v.as_json() for v in c.views]) for c in node.crashed.values()]
            told = pickle.dumps((view.epoch, node.node_id, crashes))
        for other in view.ids:
            if other != node.node_id:
                node.repl.link(other).request(P.Kind.DONE, told if other in joiners else body, _ignore)

    def _image(self, cell: Cell) -> bytes:
        st = cell.repl
        version = st.version if st is not None else (0, 0)
        return pickle.dumps((cell.ref, version, self.node.repl.dump(cell)), protocol=pickle.HIGHEST_PROTOCOL)

    def _send(self, target: str, images: list[bytes], rank: int, pins: list[Ref] | None = None) -> None:
        if not images and not pins:
            return
        self.stats["pushed"] += len(images)
        body = pickle.dumps((self.epoch, self.node.node_id, rank, images, pins or []), protocol=pickle.HIGHEST_PROTOCOL)
        link = self.node.repl.link(target)
        for type_name, class_body in self.node.class_bytes.items():  # the receiver may lack user classes
            if type_name not in link.registered:
                link.registered.add(type_name)
                link.request(P.Kind.REGISTER, class_body, _ignore)
        link.request(P.Kind.HANDOFF, body, _ignore)

    # -- receiving ---------------------------------------------------------------------

    def on_handoff(self, body: bytes) -> None:
        try:
            epoch, sender, rank, images, pins = pickle.loads(body)
        except Exception as exc:
            raise ProtocolError(f"malformed HANDOFF: {exc}") from None
        self.stats["received"] += len(images)
        table = self.node.table
        assert table is not None
        view = self.node.view  # a joiner's placeholder view until it has read its first one
        for ref in pins:  # parked calls keep them there for a while: send their callers there
            if view is not None and sender in view and epoch <= view.epoch:
                self.pinned_at[tuple(ref)] = view.address(sender)
            else:  # sent for a view not installed here yet (a joiner's first): resolved by its start()
                self._early_pins.setdefault(epoch, {})[tuple(ref)] = sender
        for data in images:
            ref, version, state = pickle.loads(data)
            ref = tuple(ref)
            self.pinned_at.pop(ref, None)  # arrived (late, when its parked calls were done)
            for early in self._early_pins.values():
                early.pop(ref, None)
            cand = _Candidate(rank, tuple(version), state)  # type: ignore[arg-type]
            best = self._candidates.get(ref)
            if best is None or (cand.rank, _neg(cand.version)) < (best.rank, _neg(best.version)):
                self._candidates[ref] = cand
        # a member sent objects of a view it has not installed yet keeps them until it has: that view may
        # have re-added it after a removal it missed, and its stale copies (dropped then) would win over them
        if self.complete and view is not None and (epoch <= view.epoch or self.node.node_id not in view):
            self._install_candidates()

    def on_done(self, body: bytes) -> None:
        try:
            epoch, sender, *told = pickle.loads(body)  # a joiner's carries the crashes its sender knows of
            crashes = self._new_crashes(told[0]) if told else []
        except Exception as exc:
            raise ProtocolError(f"malformed DONE: {exc}") from None
        if crashes:
            self.node.remember_crashed(crashes)
        if epoch == self.epoch:
            self._done_from.add(sender)
            self._maybe_complete()
        elif epoch > self.epoch:
            self._early.setdefault(epoch, set()).add(sender)

    def _new_crashes(self, told: list[Any]) -> list[Crash]:
        """The crashes in a DONE this node does not know of yet (every member tells a joiner the same ones:
        only the first DONE builds their views' rings, each view once)."""
        known = self.node.crashed
        views: dict[str, View] = {}  # by JSON form (a joiner's own "view without me" shares an epoch)
        out = []
        for node_id, address, removed_in, lived_in in told:
            if node_id in known and known[node_id].removed_in >= removed_in:
                continue
            forms = [json.dumps(data, sort_keys=True) for data in lived_in]
            for form, data in zip(forms, lived_in, strict=True):
                if form not in views:
                    views[form] = View.from_json(data)
            out.append(Crash(str(node_id), str(address), int(removed_in), tuple(views[f] for f in forms)))
        return out

    def on_ready(self, body: bytes) -> None:
        try:
            epoch, sender = pickle.loads(body)
        except Exception as exc:
            raise ProtocolError(f"malformed READY: {exc}") from None
        view = self.node.view
        if view is None or epoch < view.epoch:
            return
        if epoch > view.epoch:  # it installed the view before us: keep the notice until we do
            self._early_ready.setdefault(epoch, set()).add(sender)
            return
        self._drop_retired(sender)

    def _drop_retired(self, sender: str) -> None:
        """``sender`` holds, synced, every object it leads: copies retired here for it can go."""
        view = self.node.view
        assert view is not None
        for ref, cell in list(self.retired.items()):
            rf = cell.repl.options.rf if cell.repl is not None else None
            primary = view.replicas(ref[0], ref[1], rf)[0] if cell.repl is not None else view.primary(*ref)
            if primary == sender:
                del self.retired[ref]
                if cell.repl is not None and self.node.store is not None:
                    self.node.store.delete(*ref)  # no longer a replica here

    def _maybe_complete(self) -> None:
        if self.complete or not self._expect <= self._done_from:
            return
        self.complete = True
        self._install_candidates()
        self.node.repl.recheck_ready()
        self.node.handoff_complete(self.epoch)

    def _install_candidates(self) -> None:
        node = self.node
        table = node.table
        assert table is not None and node.view is not None
        candidates, self._candidates = self._candidates, {}
        for ref, cand in candidates.items():
            if ref in table.cells:
                continue  # held already (a replica's copy is at least as good)
            try:
                cell = node.repl.install(cand.body, cand.version)
            except CrucialError as exc:
                log.error("cannot install handed-over %s %r: %s", ref[0], ref[1], exc)
                continue
            self.stats["moved_in"] += 1
            if cell.repl is None and node.view.placement == "anchored":
                node.anchors.forget(ref)  # it came home (its node left): hash placement from now on
            if cell.repl is not None and node.store is not None:
                node.repl.compact(cell)  # on disk too: this node is one of its replicas now
            if cell.repl is not None and node.view.replicas(ref[0], ref[1], cell.repl.options.rf)[0] == node.node_id:
                node.repl.become_primary(cell, changed=True)
            self.retired.pop(ref, None)

    # -- pinned objects ---------------------------------------------------------------------

    def _arm_drain(self) -> None:
        loop = self.node.loop
        if self._drain_timer is None and loop is not None:
            self._drain_timer = loop.call_later(0.02, self._drain)

    def _drain(self) -> None:
        """Move pinned objects that became idle (their parked calls are done) to their new primary."""
        self._drain_timer = None
        node = self.node
        table = node.table
        assert table is not None and node.view is not None
        for ref, target in list(self.pinned.items()):
            cell = table.cells.get(ref)
            if cell is None or target not in node.view:
                del self.pinned[ref]
                continue
            if _busy(cell):
                continue
            del self.pinned[ref]
            self._send(target, [self._image(cell)], rank=0)
            del table.cells[ref]
        if self.pinned:
            self._arm_drain()
        elif self.complete:
            node.handoff_complete(self.epoch)

    def ready_notice(self) -> None:
        """Every object this node leads is synced: tell the others to drop their retired copies."""
        view = self.node.view
        assert view is not None
        body = pickle.dumps((view.epoch, self.node.node_id))
        for other in view.ids:
            if other != self.node.node_id:
                self.node.repl.link(other).request(P.Kind.READY, body, _ignore)


def _neg(version: tuple[int, int]) -> tuple[int, int]:
    return (-version[0], -version[1])


def _busy(cell: Cell) -> bool:
    return bool(cell.waiters or cell.queue or cell.held is not None or cell.running)


def _release_waiters(table: Any, cell: Cell) -> None:
    """Calls parked on an object that moved away cannot follow it: they get an error to retry."""
    if cell.waiters or cell.queue:
        table._retire(cell, f"{cell.ref[0]} {cell.ref[1]!r} moved to another node")


def _ignore(frame: P.Frame | None) -> None:
    return None
