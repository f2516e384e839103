"""What the next view should be: crucial's part of membership, as a pure function.

etcd agrees on views (compare-and-swap on one key); this module only
decides *which* change to propose from what a node sees -- the current
view, the live member keys and how long the missing ones have been gone.
Pure, so every rule below is a unit test without etcd (``test_proposer.py``).

Rules, in order (one change per proposal keeps every hand-over simple):

1. a member whose address changed (restarted on another port) is updated;
2. a member whose key has been absent for ``failure_timeout`` is removed
   (crashed); the caller counts absence so that a member whose key vanished
   while it watched is absent "forever", and one it never saw gets a restart
   grace (after a whole-cluster restart its data may hold the only copies);
3. a member that asked to leave is marked *leaving* (it keeps serving its
   hand-over but gets no objects), and once it reports its hand-over done
   (``settled`` at the current epoch) it is removed;
4. a live node that is not a member joins -- only when every member has
   settled the current view, so joins never overlap a hand-over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .._placement import View

__all__ = ["Proposal", "next_view", "settled"]


class Proposal(NamedTuple):
    view: View
    why: str
    #: nodes the change assumes are gone: the compare-and-swap also checks their keys are absent
    absent: tuple[str, ...] = ()


def next_view(view: View, live: Mapping[str, Mapping[str, Any]], absent_for: Mapping[str, float]) -> Proposal | None:
    """The change to propose, or None.

    ``live``: node id -> its member info (``address``, ``settled``, ``leaving``).
    ``absent_for``: for each view member without a live key, for how many
    seconds this node has seen it absent.
    """
    members = dict(view.members)
    # 1. addresses
    moved = {i: str(info.get("address")) for i, info in live.items() if i in members and info.get("address") != members[i]}
    if moved:
        members.update(moved)
        return Proposal(view.with_changes(members=members.items()), f"new address of {', '.join(sorted(moved))}")
    # 2. crashed members
    gone = sorted(i for i in members if i not in live and absent_for.get(i, 0.0) >= view.failure_timeout)
    if gone and len(gone) < len(members):
        kept = [(i, a) for i, a in members.items() if i not in gone]
        return Proposal(view.with_changes(members=kept), f"{', '.join(gone)} crashed", tuple(gone))
    # 3. graceful leaves
    asking = sorted(i for i, info in live.items() if i in members and info.get("leaving") and i not in view.leaving)
    if asking and len(set(view.leaving) | set(asking)) < len(members):
        return Proposal(view.with_changes(leaving=(*view.leaving, *asking)), f"{', '.join(asking)} leaving")
    done = sorted(i for i in view.leaving if i in live and settled(live[i], view))
    if done and all(settled(live[i], view) for i in members if i in live):
        kept = [(i, a) for i, a in members.items() if i not in done]
        return Proposal(view.with_changes(members=kept), f"{', '.join(done)} left")
    # 4. joins
    joining = sorted(i for i, info in live.items() if i not in members and not info.get("leaving") and info.get("address"))
    if joining and all(settled(live[i], view) for i in members if i in live):
        members.update({i: str(live[i]["address"]) for i in joining})
        return Proposal(view.with_changes(members=members.items()), f"{', '.join(joining)} joined")
    return None


def settled(info: Mapping[str, Any], view: View) -> bool:
    """Whether a member's info says it finished the hand-over of ``view``."""
    settled = info.get("settled", 0)
    return isinstance(settled, int) and settled >= view.epoch
