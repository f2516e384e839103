"""Replication of persistent objects: the primary's side and the backups' side.

::

    client ─CALL─► primary: runs the call ─► record ─┬─► backup 1 ─┐  applied, written,
                                                     ├─► backup 2 ─┤  acknowledged
                                                     └─► own disk ─┘
    client ◄─reply── (in call order, once every ack for its version is in)

Built-in types replicate *actively* (the record is the call itself, each
backup applies it); user classes *passively* (the record is the object's
new state).  See ``docs/replication.md`` for why, and for the guarantees.

Everything here runs on the node's event-loop thread, except the data dir's
writer thread, whose completions hop back with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import collections
import functools
import logging
import pickle
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import protocol as P
from ..exceptions import CrucialError, ObjectCreationError, ProtocolError, StorageError
from ..objects._monitor import Caller, inline
from ._peers import PeerLink
from ._records import Record, RecordDedup, RecordKind, Version, decode_records, encode_records
from ._runtime import Cell
from ._state import Image, Options, dump_image, load_image

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["ReplState", "Replicator"]

log = logging.getLogger("crucial.node")

Ref = tuple[str, str]
Did = tuple[str, int]
#: where a reply goes: (connection, request id)
Target = tuple[Any, int]
DISK = ""  # the local data dir, as an acknowledger beside the backups' node ids
#: records written to a key's log before the node replaces them by one state
COMPACT_EVERY = 1000


class Pending:
    """A call that ran on the primary and waits for its acknowledgements."""

    __slots__ = ("did", "kind", "payload", "targets", "version", "waiting")

    def __init__(self, version: Version, kind: int, payload: bytes, targets: list[Target], did: Did | None) -> None:
        self.version = version
        self.kind = kind
        self.payload = payload
        self.targets = targets
        self.did = did
        self.waiting: set[str] = set()


class ReplState:
    """What a node knows about one persistent object it holds."""

    __slots__ = ("active", "backups", "logged", "options", "pending", "placed", "ready", "state_sent", "version")

    def __init__(self, options: Options, active: bool, version: Version = (0, 0), ready: bool = True) -> None:
        self.options = options
        self.placed = 0  # the view epoch of ``backups``
        self.backups: list[str] = []
        self.active = active  # built-in type: records are calls; else records are states
        self.version = version
        self.pending: collections.deque[Pending] = collections.deque()
        self.ready = ready  # as primary: every backup of the view holds our version
        self.state_sent: dict[str, Version] = {}  # backup -> version of the last state sent to it
        self.logged = 0  # records in the data dir since the last compaction


class Replicator:
    """The replication half of a node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.links: dict[str, PeerLink] = {}
        self._out: dict[str, list[Record]] = {}
        self._disk: list[Record] = []
        self._flushing = False
        # a new primary's objects -> the backups that have not yet confirmed its version
        self._sync: dict[Ref, set[str]] = {}
        self._deleting: dict[Ref, Cell] = {}  # deleted here, the delete not yet acknowledged
        self.stats = {"records_sent": 0, "records_applied": 0, "states_sent": 0, "need_state": 0}

    # -- helpers -------------------------------------------------------------------

    @property
    def store(self) -> Any:
        return self.node.store

    def link(self, node_id: str) -> PeerLink:
        link = self.links.get(node_id)
        view = self.node.view
        assert view is not None
        if link is None or link.address != view.address(node_id):
            if link is not None:
                link.close()
            link = self.links[node_id] = PeerLink(self.node, node_id, view.address(node_id))
        return link

    def drop_links(self, keep: Iterable[str]) -> None:
        keep = set(keep)
        for node_id in [n for n in self.links if n not in keep]:
            self.links.pop(node_id).close()

    def backups(self, cell: Cell) -> list[str]:
        """The object's other replicas in the current view (computed once per view: hashing costs)."""
        view = self.node.view
        assert view is not None
        st: ReplState = cell.repl
        if st.placed != view.epoch:
            replicas = view.replicas(cell.ref[0], cell.ref[1], st.options.rf)
            st.backups = [n for n in replicas if n != self.node.node_id]
            st.placed = view.epoch
        return st.backups

    def image(self, cell: Cell) -> Image:
        st: ReplState | None = cell.repl
        options = st.options if st is not None else Options()
        version = st.version if st is not None else (0, 0)
        dedup = [(cid, seq, kind, body) for (cid, seq), (kind, body) in (cell.dedup or {}).items()]
        return Image(cell.ref[0], cell.ref[1], options, version, cell.obj, dedup)

    def dump(self, cell: Cell, with_dedup: bool = True) -> bytes:
        image = self.image(cell)
        if not with_dedup:
            image = image._replace(dedup=[])
        return dump_image(image, self.node.user_classes())

    # -- the primary ------------------------------------------------------------------

    def make_persistent(self, cell: Cell, options: Options) -> None:
        cell.repl = ReplState(options, active=cell.ref[0] in self.node.builtin_names)

    def commit(self, cell: Cell, body: bytes | None, did: Did | None, kind: int, payload: bytes, targets: list[Target]) -> None:
        """A call on a persistent object ran here (``body``: the call; None for a delete): replicate, then reply."""
        st: ReplState = cell.repl
        view = self.node.view
        assert view is not None and self.node.table is not None
        if body is not None and (self.node.table.cells.get(cell.ref) is not cell or view.primary(*cell.ref) != self.node.node_id):
            # the view changed while the call ran: this node no longer orders the object's calls,
            # so this run does not count (the caller retries with the same call id at the primary);
            # this copy ran it all the same: no version matches it now, so the primary's next record
            # finds it different and sends its whole state
            st.version = (view.epoch, -1)
            self.node.refuse(targets, did)
            return
        prev = st.version
        st.version = version = (view.epoch, prev[1] + 1)
        backups = self.backups(cell)
        if not backups and self.store is None and not st.pending:  # one replica, in memory: nothing to wait for
            self.node.reply_now(targets, kind, payload, did)
            if body is None and self._deleting.get(cell.ref) is cell:
                del self._deleting[cell.ref]
            return
        if body is None:
            record = Record(cell.ref[0], cell.ref[1], RecordKind.DELETE, version, None, b"")
        elif st.active:
            dedup = self._dedup(did, kind, payload)
            record = Record(cell.ref[0], cell.ref[1], RecordKind.CALL, version, prev, body, dedup)
        else:
            dedup = self._dedup(did, kind, payload)
            try:
                state = self.dump(cell, with_dedup=False)
            except CrucialError as exc:  # the state cannot travel: the call must not be acknowledged
                st.version = prev
                self.node.reply_now(targets, *self.node.error_reply(exc), did)
                return
            record = Record(cell.ref[0], cell.ref[1], RecordKind.STATE, version, None, state, dedup)
        pending = Pending(version, kind, payload, targets, did)
        for backup in backups:
            pending.waiting.add(backup)
            self._send(backup, record)
        if self.store is not None:
            pending.waiting.add(DISK)
            self._write(record)
        st.pending.append(pending)
        if not pending.waiting:
            self._release(cell)

    def commit_delete(self, cell: Cell, targets: list[Target]) -> None:
        """A persistent object was deleted here: the backups and the disk forget it before the reply."""
        self._deleting[cell.ref] = cell
        kind, payload = P.Kind.OK, P.dumps(True)
        self.commit(cell, None, None, kind, payload, targets)

    def _cell(self, ref: Ref) -> Cell | None:
        table = self.node.table
        cell = table.cells.get(ref) if table is not None else None
        if cell is None or cell.repl is None:
            cell = self._deleting.get(ref)
        return cell

    def read_done(self, cell: Cell, kind: int, payload: bytes, targets: list[Target], did: Did | None) -> None:
        """A read-only call ran: reply once the writes before it are acknowledged (now, if there are none)."""
        st: ReplState = cell.repl
        if not st.pending:
            self.node.reply_now(targets, kind, payload, did)
            return
        st.pending.append(Pending(st.version, kind, payload, targets, did))  # waits for nobody itself

    def _send(self, backup: str, record: Record) -> None:
        self._out.setdefault(backup, []).append(record)
        self._schedule()

    def _write(self, record: Record) -> None:
        self._disk.append(record)
        self._schedule()

    def _schedule(self) -> None:
        if not self._flushing:
            self._flushing = True
            loop = self.node.loop
            assert loop is not None
            loop.call_soon(self._flush)

    def flush(self) -> None:
        """Send the records queued so far now: a new view is about to be installed.

        A frame carries the epoch current when it is sent; records of calls
        committed in one view, sent after the next was installed, would carry
        the new epoch -- and a node that stopped being a backup in it accepted
        them (found as a third copy of a persistent object after a join).
        """
        if self._out or self._disk:
            self._flush()

    def _flush(self) -> None:
        """Send this event-loop turn's records: one frame per backup, one transaction on disk."""
        self._flushing = False
        out, self._out = self._out, {}
        view = self.node.view
        assert view is not None
        for backup, records in out.items():
            if backup not in view:
                continue  # it left: the view change re-evaluated what waits for it
            link = self.link(backup)
            for type_name in {r.type_name for r in records if r.type_name not in self.node.builtin_names}:
                if type_name not in link.registered and type_name in self.node.class_bytes:
                    link.registered.add(type_name)
                    link.request(P.Kind.REGISTER, self.node.class_bytes[type_name], _ignore)
            body = pickle.dumps((view.epoch, self.node.node_id, encode_records(records)), protocol=pickle.HIGHEST_PROTOCOL)
            self.stats["records_sent"] += len(records)
            link.request(P.Kind.REPLICATE, body, functools.partial(self._acked, backup, records))
        disk, self._disk = self._disk, []
        if disk:
            loop = self.node.loop
            assert loop is not None

            def done(exc: BaseException | None, records: list[Record] = disk) -> None:
                loop.call_soon_threadsafe(self._written, records, exc)

            self.store.submit(disk, done)

    def _written(self, records: list[Record], exc: BaseException | None) -> None:
        if exc is not None:
            log.error("cannot write to the data dir: %s", exc)
            err = exc if isinstance(exc, CrucialError) else StorageError(str(exc))
            for r in records:
                self._fail(r, err)
            return
        for r in records:
            self.ack((r.type_name, r.key), r.version, DISK)
            self.logged(r)

    def logged(self, r: Record) -> None:
        """One more record of ``r``'s object in the data dir: past ``COMPACT_EVERY``, keep its state instead."""
        cell = self.node.table.cells.get((r.type_name, r.key)) if self.node.table else None
        if cell is not None and cell.repl is not None:
            cell.repl.logged += 1
            if cell.repl.logged >= COMPACT_EVERY:
                self.compact(cell)

    def compact(self, cell: Cell) -> None:
        """Replace the key's records in the data dir by its state (the log would grow forever,
        and an object that arrived whole -- a hand-over -- has no log yet)."""
        st: ReplState = cell.repl
        st.logged = 0
        state = Record(cell.ref[0], cell.ref[1], RecordKind.STATE, st.version, None, self.dump(cell))
        self.store.compact(state)

    def _fail(self, record: Record, err: CrucialError) -> None:
        cell = self._cell((record.type_name, record.key))
        if cell is None:
            return
        st: ReplState = cell.repl
        kind, payload = self.node.error_reply(err)
        while st.pending and st.pending[0].version <= record.version:
            p = st.pending.popleft()
            self.node.reply_now(p.targets, kind, payload, p.did)

    def _acked(self, backup: str, records: list[Record], frame: P.Frame | None) -> None:
        if frame is None:
            return  # the link was closed: the backup left the view
        if frame.kind != P.Kind.OK:
            self._refused(backup, records, frame)
            return
        try:
            statuses = P.loads(frame.body, what=f"acks from {backup}")
        except CrucialError as exc:
            log.warning("peer %s sent malformed acks: %s", backup, exc)
            return
        for r, (status, version) in zip(records, statuses, strict=False):
            ref = (r.type_name, r.key)
            if status == "ok":
                self.ack(ref, tuple(version), backup)  # type: ignore[arg-type]
            else:  # it lacks the version this record applies on: it gets the whole state
                self.stats["need_state"] += 1
                self.send_state(ref, backup)

    def _refused(self, backup: str, records: list[Record], frame: P.Frame) -> None:
        """The backup is in another epoch: newer -- we were deposed; older -- it catches up, resend."""
        info = P.decode_json(frame.body, "refusal") if frame.kind == P.Kind.UNAVAILABLE else {}
        theirs = info.get("epoch", 0)
        view = self.node.view
        assert view is not None
        if isinstance(theirs, int) and theirs > view.epoch:
            self.node.deposed(theirs)
            return
        loop = self.node.loop
        assert loop is not None

        def again() -> None:
            current = self.node.view
            if current is None or backup not in current:
                return
            for r in records:
                cell = self.node.table.cells.get((r.type_name, r.key)) if self.node.table else None
                if cell is not None and cell.repl is not None and backup in self.backups(cell):
                    self._send(backup, r._replace(version=r.version))

        loop.call_later(0.02, again)

    def send_state(self, ref: Ref, backup: str) -> None:
        cell = self.node.table.cells.get(ref) if self.node.table else None
        if cell is None or cell.repl is None:
            return
        st: ReplState = cell.repl
        if st.state_sent.get(backup) == st.version or backup not in self.backups(cell):
            return  # already on its way; or no longer a backup (it answered a record of an earlier view)
        st.state_sent[backup] = st.version
        self.stats["states_sent"] += 1
        self._send(backup, Record(ref[0], ref[1], RecordKind.STATE, st.version, None, self.dump(cell)))

    def ack(self, ref: Ref, version: Version, who: str) -> None:
        cell = self._cell(ref)
        if cell is None:
            return
        st: ReplState = cell.repl
        for p in st.pending:
            if p.version > version:
                break
            p.waiting.discard(who)
        self._release(cell)
        waiting = self._sync.get(ref)
        if waiting is not None and version == st.version:
            waiting.discard(who)
            self._check_ready(cell)

    def _release(self, cell: Cell) -> None:
        st: ReplState = cell.repl
        while st.pending and not st.pending[0].waiting:
            p = st.pending.popleft()
            self.node.reply_now(p.targets, p.kind, p.payload, p.did)
        if not st.pending and self._deleting.get(cell.ref) is cell:
            del self._deleting[cell.ref]

    # -- view changes ---------------------------------------------------------------------

    def become_primary(self, cell: Cell, changed: bool) -> None:
        """This node is the primary of ``cell`` in the new view; ``changed``: it was not, or its backups changed.

        Until every backup confirms our version the object serves nothing
        (``ready`` is False): a reply -- even one from the de-duplication
        window -- must never report a state that one failure could lose.
        """
        st: ReplState = cell.repl
        backups = self.backups(cell)
        for p in st.pending:  # backups that left no longer count; new ones must confirm
            p.waiting = {w for w in p.waiting if w == DISK or w in backups} | set(backups)
        if not changed and st.ready:
            return
        st.ready = False
        st.state_sent.clear()
        self._sync[cell.ref] = set(backups)
        for backup in backups:
            self._send(backup, Record(cell.ref[0], cell.ref[1], RecordKind.CHECK, st.version, st.version, b""))
        self._check_ready(cell)

    def _check_ready(self, cell: Cell) -> None:
        """A CHECK or STATE acknowledged at our version by every backup makes the object ready -- once the
        hand-over of the view is complete too: every other node, the object's previous primary included,
        has then installed the view, so none of them still answers for it (reads are not replicated)."""
        waiting = self._sync.get(cell.ref)
        if waiting is None or waiting or not self.node.handoff.complete:
            return
        del self._sync[cell.ref]
        cell.repl.ready = True
        self.node.object_ready(cell)

    def recheck_ready(self) -> None:
        """The hand-over completed: objects whose backups had all confirmed become ready."""
        table = self.node.table
        assert table is not None
        for ref, waiting in list(self._sync.items()):
            cell = table.cells.get(ref)
            if cell is None or cell.repl is None:
                del self._sync[ref]
            elif not waiting:
                self._check_ready(cell)

    def step_down(self, cell: Cell) -> None:
        """No longer the primary: calls still waiting for acks are refused (their clients retry)."""
        st: ReplState = cell.repl
        pending, st.pending = st.pending, collections.deque()
        self._sync.pop(cell.ref, None)
        st.ready = False
        for p in pending:
            self.node.refuse(p.targets, p.did)

    # -- the backup ---------------------------------------------------------------------

    def on_replicate(self, conn: Any, req_id: int, body: bytes) -> None:
        try:
            epoch, sender, data = pickle.loads(body)
            records = decode_records(data)
        except Exception as exc:
            raise ProtocolError(f"malformed REPLICATE: {exc}") from None
        view = self.node.view
        assert view is not None
        if epoch != view.epoch or not self.node.lease_ok():
            conn.send(P.Kind.UNAVAILABLE, req_id, P.encode_json({"reason": "epoch", "epoch": view.epoch}))
            if epoch > view.epoch:
                self.node.behind(epoch)
            return
        statuses: list[tuple[str, Version]] = []
        written: list[Record] = []
        for r in records:
            status, version = self.apply(r, sender)
            statuses.append((status, version))
            if status == "ok" and r.kind != RecordKind.CHECK and version == r.version:
                written.append(r)
        self.stats["records_applied"] += len(records)
        reply = P.dumps(statuses)
        if written and self.store is not None:
            loop = self.node.loop
            assert loop is not None

            def done(exc: BaseException | None) -> None:
                loop.call_soon_threadsafe(self._backup_written, conn, req_id, reply, exc)

            self.store.submit(written, done)
            for r in written:
                self.logged(r)
            return
        conn.send(P.Kind.OK, req_id, reply)

    def _backup_written(self, conn: Any, req_id: int, reply: bytes, exc: BaseException | None) -> None:
        if exc is not None:
            log.error("cannot write replicated records to the data dir: %s", exc)
            conn.send(P.Kind.UNAVAILABLE, req_id, P.encode_json({"reason": "storage", "epoch": 0}))
            return
        conn.send(P.Kind.OK, req_id, reply)

    def apply(self, r: Record, sender: str = "") -> tuple[str, Version]:
        """Apply one record to this replica: ("ok", version) or ("need", version held)."""
        table = self.node.table
        assert table is not None
        ref = (r.type_name, r.key)
        cell = table.cells.get(ref)
        current: Version = cell.repl.version if cell is not None and cell.repl is not None else (0, 0)
        if r.version == current and r.kind != RecordKind.DELETE:
            return "ok", current  # already held (a resend after a reconnect)
        if r.kind == RecordKind.CHECK:
            return ("ok" if r.version == current else "need"), current
        if r.kind == RecordKind.STATE:
            self.install(r.body, r.version, r.dedup)
            return "ok", r.version
        if r.kind == RecordKind.DELETE:
            if cell is not None:
                table.delete(*ref)
            return "ok", r.version
        if r.prev != current:
            return "need", current
        cell = self._apply_call(r, cell)
        if cell is None:
            return "need", current
        cell.repl.version = r.version
        if r.dedup is not None:
            self._remember(cell, r.dedup)
        return "ok", r.version

    def _apply_call(self, r: Record, cell: Cell | None) -> Cell | None:
        """Run a replicated call of a built-in type as the primary did (inline: they never wait)."""
        table = self.node.table
        assert table is not None
        call = P.decode_call(r.body)
        options = Options(*call.create[2]) if call.create is not None and len(call.create) > 2 else Options(True)
        try:
            if call.create is not None or call.force:
                args, kwargs = (call.create[0], call.create[1]) if call.create is not None else ((), {})
                fresh = cell is None or call.force
                cell = table.create(call.type_name, call.key, args, kwargs, call.force)
                if fresh or cell.repl is None:
                    self.make_persistent(cell, options)
            elif cell is None:
                return None
        except (ObjectCreationError, CrucialError):
            return cell if cell is not None and cell.repl is not None else None
        if call.method:
            fn = getattr(cell.obj, call.method, None)
            if fn is not None and not call.method.startswith("_"):
                inline.caller = Caller(r.dedup[0] if r.dedup else "", call.owner)
                try:
                    fn(*call.args, **(call.kwargs or {}))
                except Exception:  # the primary got the same error: it was its reply
                    pass
                finally:
                    inline.caller = None
        return cell

    def install(self, body: bytes, version: Version, dedup: RecordDedup | None = None) -> Cell:
        """Host an object from its state (a backup's STATE, a hand-over, the data dir)."""
        table = self.node.table
        assert table is not None
        image = load_image(body, table.types)
        old = table.cells.get((image.type_name, image.key))
        kept = dict(old.dedup) if old is not None and old.dedup else {}
        cell = table.install(image.type_name, image.key, image.obj)
        if kept:  # a passive record carries only its own call's reply: keep the earlier ones
            cell.dedup = kept
        if image.options.persistent:
            self.make_persistent(cell, image.options)
            cell.repl.version = version
        for cid, seq, kind, reply in image.dedup:
            self.node.remember(cell, (cid, seq), kind, reply)
        if dedup is not None:
            self._remember(cell, dedup)
        return cell

    def _dedup(self, did: tuple[str, int] | None, kind: int, payload: bytes) -> RecordDedup | None:
        """A record's reply, with what the client said of its calls that are over (``below``)."""
        return None if did is None else (did[0], did[1], kind, payload, self.node.replies.below(did[0]))

    def _remember(self, cell: Cell, dedup: RecordDedup) -> None:
        """Keep a record's reply as its primary did, and forget what its client said is over."""
        if len(dedup) > 4:
            self.node.replies.heard(dedup[0], dedup[4])  # type: ignore[misc]
        self.node.remember(cell, (dedup[0], dedup[1]), dedup[2], dedup[3])

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()


def _ignore(frame: P.Frame | None) -> None:
    return None
