"""Anchored placement (the seed's §5.3): new ephemeral objects go to the newest node and stay there.

With ``crucial server --placement anchored`` a scale-up moves no object: a
new ephemeral object is placed on the most recently joined node, and its
location is recorded in a *directory entry* -- a small persistent object
(``crucial.Anchor``) kept, with ``rf`` replicas, where consistent hashing
would have put the object itself (its *home*).  Joins move directory
entries (about 1/N of them, a few dozen bytes each), never the objects.

::

    client ──call──► home (ring owner) ── directory entry? ──► REDIRECT {"to": anchor}
                       │ none, and the call creates:                 │ (clients cache it)
                       ├─ ANCHOR(ref) ──► newest node (may create it) │
                       └─ write the entry (replicated) ─► REDIRECT ───┘

Persistent objects keep consistent hashing: their replicas must follow
the ring (``docs/replication.md``, "Anchored placement").  An anchored
object lives on one node, like any ephemeral object: if that node crashes
it is lost, and its home says so (``ObjectLostError`` naming the node).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import protocol as P
from .._placement import ANCHOR, anchor_key
from ..exceptions import ObjectLostError, ProtocolError
from ._runtime import Cell
from ._state import Options

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["AnchorState", "Anchors"]

Ref = tuple[str, str]


class AnchorState:
    """A directory entry: the node an anchored object lives on."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def get(self) -> str:
        return self.node_id


class _Then:
    """Stands for a connection where a replicated write's reply goes: runs ``then`` instead."""

    def __init__(self, then: Callable[[int], None]) -> None:
        self.then = then
        self.pending: dict[int, Any] = {}

    def send(self, kind: int, req_id: int, body: bytes) -> None:
        self.then(kind)


class Anchors:
    """One node's part in anchored placement: directory entries at homes, objects where they were placed."""

    def __init__(self, node: Node) -> None:
        self.node = node
        #: objects placed on this node by their home (kept after a delete: the home still points here)
        self.here: set[Ref] = set()

    def route(self, conn: Any, req_id: int, call: P.CallRequest) -> bool:
        """At an object's home, for an object not held here: True when the call was answered (or will be)."""
        node = self.node
        view = node.view
        table = node.table
        assert view is not None and table is not None
        ref = (call.type_name, call.key)
        entry = table.cells.get((ANCHOR, anchor_key(*ref)))
        creates = call.create is not None or call.force
        if entry is not None:
            where = entry.obj.node_id
            if where == node.node_id:
                return False  # it lives (or lived) here: the usual path answers
            if where in view and where not in view.leaving:
                conn.send(P.Kind.REDIRECT, req_id, P.encode_json({"to": view.address(where), "anchored": True}))
                return True
            if not creates:
                raise ObjectLostError(
                    f"{ref[0]} {ref[1]!r} was lost: it was anchored on node {where}, which is gone "
                    "(anchored objects live on one node)",
                    ref[0],
                    ref[1],
                    where,
                )
        persistent = call.create is not None and len(call.create) > 2 and call.create[2][0]
        if not creates or persistent:
            return False  # not found here, or replicated (persistent objects follow the ring)
        target = view.newest
        if target == node.node_id:
            self.here.add(ref)
            self.record(ref, target, lambda kind: None)
            return False  # create it here, now
        body = pickle.dumps(ref)

        def placed(frame: P.Frame | None) -> None:
            if frame is None or frame.kind != P.Kind.OK:
                conn.send(P.Kind.UNAVAILABLE, req_id, P.encode_json({"reason": "placing the object", "epoch": view.epoch}))
                return
            address = view.address(target)
            self.record(
                ref, target, lambda kind: conn.send(P.Kind.REDIRECT, req_id, P.encode_json({"to": address, "anchored": True}))
            )

        node.repl.link(target).request(P.Kind.ANCHOR, body, placed)
        return True

    def record(self, ref: Ref, node_id: str, then: Callable[[int], None]) -> None:
        """Write the directory entry ``ref -> node_id`` (replicated like any persistent object), then ``then``."""
        node = self.node
        table = node.table
        assert table is not None
        key = anchor_key(*ref)
        create: tuple[Any, ...] = ((node_id,), {}, (True, None))
        cell = table.create(ANCHOR, key, create[0], create[1], True)
        node.repl.make_persistent(cell, Options(True, None))
        body = P.encode_call(P.CallRequest(0, ANCHOR, key, "", (), None, create, True, 0))
        node.repl.commit(cell, body, None, P.Kind.OK, P.dumps(None), [(_Then(then), 0)])

    def forget(self, ref: Ref) -> None:
        """The object came home (its node left): its directory entry goes."""
        node = self.node
        table = node.table
        assert table is not None
        entry: Cell | None = table.cells.get((ANCHOR, anchor_key(*ref)))
        if entry is not None and entry.repl is not None:
            table.delete(ANCHOR, anchor_key(*ref))
            node.repl.commit_delete(entry, [])

    def on_anchor(self, body: bytes) -> None:
        """Peer request: the home of ``ref`` placed it here."""
        try:
            ref = pickle.loads(body)
            self.here.add((str(ref[0]), str(ref[1])))
        except Exception as exc:
            raise ProtocolError(f"malformed ANCHOR: {exc}") from None
