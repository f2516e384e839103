"""Views and placement: which nodes hold an object, as clients and nodes both compute it.

Pure and deterministic, so every client and every node computes the same
replicas for a reference ``(type, key)`` from the same view.

A :class:`View` is what the cluster agreed on (through etcd, see
``docs/replication.md``): an epoch, the members (node id -> address) and the
default replication factor.  Placement hashes over the *node ids*, so a node
restarted on another port keeps its keys.  Each node gets ``vnodes`` points
on a 64-bit ring; a reference belongs to the first point clockwise from its
hash, and its ``rf`` replicas are the first ``rf`` distinct nodes from there.
Adding a node moves only the references that land on its new points (about
``1/(n+1)`` of them).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .exceptions import ProtocolError

__all__ = ["ANCHOR", "PLACEMENTS", "HashRing", "View", "anchor_key", "ref_hash"]

DEFAULT_VNODES = 128
#: primary addresses a view remembers (a client's hot path hashes each object once per view)
_REMEMBERED = 65536


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def ref_hash(type_name: str, key: str) -> int:
    """The ring position of a reference (stable across processes and runs)."""
    return _h(f"{type_name}\x00{key}".encode())


class HashRing:
    """An immutable ring over a set of node names (addresses)."""

    def __init__(self, nodes: Iterable[str], vnodes: int = DEFAULT_VNODES) -> None:
        self.nodes: tuple[str, ...] = tuple(sorted(set(nodes)))
        if not self.nodes:
            raise ValueError("a hash ring needs at least one node")
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, not {vnodes}")
        points = sorted((_h(f"{node}#{i}".encode()), node) for node in self.nodes for i in range(vnodes))
        self._hashes = [p for p, _ in points]
        self._owners = [n for _, n in points]

    def owner(self, type_name: str, key: str) -> str:
        if len(self.nodes) == 1:
            return self.nodes[0]
        i = bisect.bisect_right(self._hashes, ref_hash(type_name, key))
        return self._owners[i % len(self._owners)]

    def owners(self, type_name: str, key: str, n: int) -> Sequence[str]:
        """The first ``n`` distinct nodes clockwise: the replica set of a reference."""
        n = min(n, len(self.nodes))
        if n <= 0:
            return []
        i = bisect.bisect_right(self._hashes, ref_hash(type_name, key))
        found: list[str] = []
        for j in range(len(self._owners)):
            node = self._owners[(i + j) % len(self._owners)]
            if node not in found:
                found.append(node)
                if len(found) == n:
                    break
        return found


#: the failure timeout a view carries when none was configured (seconds)
DEFAULT_FAILURE_TIMEOUT = 3.0
#: how a cluster places new ephemeral objects: by consistent hashing, or on its newest node
PLACEMENTS = ("hash", "anchored")
#: the type of the directory entries of anchored objects ("where does this object live?")
ANCHOR = "crucial.Anchor"


def anchor_key(type_name: str, key: str) -> str:
    """The key of the directory entry of ``(type_name, key)``: placed on that object's own ring position."""
    return f"{type_name}\x00{key}"


def _home(type_name: str, key: str) -> tuple[str, str]:
    """The reference whose ring position places ``(type_name, key)``: a directory entry sits with its object's."""
    if type_name == ANCHOR:
        t, sep, k = key.partition("\x00")
        if sep:
            return t, k
    return type_name, key


@dataclass(frozen=True)
class View:
    """One agreed membership: ``epoch``, ``members`` (node id, address) sorted by id, ``rf``.

    ``failure_timeout`` travels with the view so that clients know how long a
    failover may take.  Views are immutable: a change is a new view with a
    higher epoch.
    """

    epoch: int
    members: tuple[tuple[str, str], ...]
    rf: int = 1
    failure_timeout: float = DEFAULT_FAILURE_TIMEOUT
    #: members handing their objects over before they go: reachable, but placed nothing
    leaving: tuple[str, ...] = ()
    #: "hash" (consistent hashing) or "anchored" (new ephemeral objects go to the newest node, see docs)
    placement: str = "hash"
    #: the members in the order they joined (the last one is the newest)
    order: tuple[str, ...] = ()
    #: (node id, the epoch of the view that added it) for members added after the first view; a node that
    #: missed views (its lease ran out) learns from it that it was removed and added back meanwhile
    since: tuple[tuple[str, int], ...] = field(default=(), compare=False)
    ring: HashRing = field(init=False, repr=False, compare=False)
    _address: dict[str, str] = field(init=False, repr=False, compare=False)
    #: primary_address's answers so far: a client asks it on every call, and the view never changes
    _primaries: dict[tuple[str, str], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        members = tuple(sorted((str(i), str(a)) for i, a in self.members))
        if not members:
            raise ValueError("a view needs at least one member")
        if len({i for i, _ in members}) != len(members):
            raise ValueError(f"a view names a node twice: {members}")
        if self.rf < 1:
            raise ValueError(f"rf must be at least 1, not {self.rf}")
        leaving = tuple(sorted({str(i) for i in self.leaving}))
        if any(i not in dict(members) for i in leaving):
            raise ValueError(f"leaving nodes {leaving} must be members")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not {self.placement!r}")
        placed = [i for i, _ in members if i not in leaving] or [i for i, _ in members]
        ids = {i for i, _ in members}
        order = [i for i in dict.fromkeys(self.order) if i in ids]
        order += [i for i, _ in members if i not in order]
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "leaving", leaving)
        object.__setattr__(self, "order", tuple(order))
        object.__setattr__(self, "since", tuple(sorted((str(i), int(e)) for i, e in dict(self.since).items() if i in ids and e)))
        object.__setattr__(self, "ring", HashRing(placed))
        object.__setattr__(self, "_address", dict(members))
        object.__setattr__(self, "_primaries", {})

    @classmethod
    def single(cls, node_id: str, address: str, epoch: int = 1, rf: int = 1) -> View:
        return cls(epoch, ((node_id, address),), rf)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(i for i, _ in self.members)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(a for _, a in self.members)

    def address(self, node_id: str) -> str:
        return self._address[node_id]

    def node_at(self, address: str) -> str | None:
        for i, a in self.members:
            if a == address:
                return i
        return None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._address

    def joined(self, node_id: str) -> int:
        """The epoch of the view that added ``node_id`` (0: a member since the first view, or not recorded)."""
        return dict(self.since).get(node_id, 0)

    @property
    def newest(self) -> str:
        """The most recently joined member that holds objects: where anchored placement puts new ones."""
        placed = set(self.ring.nodes)
        return next(i for i in reversed(self.order) if i in placed)

    @property
    def placed(self) -> tuple[str, ...]:
        """The members that hold objects (not leaving)."""
        return self.ring.nodes

    def effective_rf(self, rf: int | None = None) -> int:
        """An object's replica count in this view: its own ``rf`` or the cluster's, at most the placed members."""
        return max(1, min(rf or self.rf, len(self.ring.nodes)))

    def replicas(self, type_name: str, key: str, rf: int | None = None) -> Sequence[str]:
        """Node ids holding the object, primary first."""
        n = self.effective_rf(rf)
        if n == 1:
            return [self.ring.owner(*_home(type_name, key))]
        return self.ring.owners(*_home(type_name, key), n)

    def primary(self, type_name: str, key: str) -> str:
        return self.ring.owner(*_home(type_name, key))

    def primary_address(self, type_name: str, key: str) -> str:
        ref = (type_name, key)
        where = self._primaries.get(ref)
        if where is None:
            if len(self._primaries) >= _REMEMBERED:
                self._primaries.clear()
            where = self._primaries[ref] = self._address[self.ring.owner(*_home(type_name, key))]
        return where

    def with_changes(
        self,
        *,
        members: Iterable[tuple[str, str]] | None = None,
        rf: int | None = None,
        leaving: Iterable[str] | None = None,
    ) -> View:
        """The next view: epoch + 1 and the given changes."""
        members = tuple(members) if members is not None else self.members
        ids = {i for i, _ in members}
        return View(
            self.epoch + 1,
            members,
            rf if rf is not None else self.rf,
            self.failure_timeout,
            tuple(i for i in (leaving if leaving is not None else self.leaving) if i in ids),
            self.placement,
            self.order + tuple(sorted(i for i in ids if i not in self.order)),  # joiners are the newest
            tuple((i, self.joined(i) if i in self else self.epoch + 1) for i in ids),
        )

    def without(self, node_id: str) -> View | None:
        """This view (same epoch) as if ``node_id`` were not a member; None if it is the only one."""
        members = tuple(m for m in self.members if m[0] != node_id)
        if not members:
            return None
        leaving = tuple(i for i in self.leaving if i != node_id)
        return replace(self, members=members, leaving=leaving)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "members": [list(m) for m in self.members],
            "rf": self.rf,
            "failure_timeout": self.failure_timeout,
        }
        if self.leaving:
            out["leaving"] = list(self.leaving)
        if self.placement != "hash":
            out["placement"] = self.placement
            out["order"] = list(self.order)
        if self.since:
            out["since"] = dict(self.since)
        return out

    @classmethod
    def from_json(cls, data: Any) -> View:
        """A view from its JSON form; anything malformed is a ProtocolError."""
        try:
            epoch, members = data["epoch"], data["members"]
            rf = data.get("rf", 1)
            timeout = float(data.get("failure_timeout", DEFAULT_FAILURE_TIMEOUT))
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0 or not isinstance(rf, int):
                raise ValueError("epoch and rf must be ints")
            if not math.isfinite(timeout) or timeout <= 0:
                raise ValueError("failure_timeout must be a positive number")
            pairs = []
            for m in members:
                node_id, address = m
                if not isinstance(node_id, str) or not isinstance(address, str):
                    raise ValueError("members must be [node id, address] pairs of strings")
                pairs.append((node_id, address))
            leaving = data.get("leaving", [])
            order = data.get("order", [])
            for name, ids in (("leaving", leaving), ("order", order)):
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise ValueError(f"{name} must be a list of node ids")
            placement = data.get("placement", "hash")
            since = data.get("since", {})
            if not isinstance(since, dict) or not all(
                isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= epoch for e in since.values()
            ):
                raise ValueError("since must map node ids to epochs")
            return cls(epoch, tuple(pairs), rf, timeout, tuple(leaving), placement, tuple(order), tuple(since.items()))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"malformed view {data!r}: {exc}") from None
