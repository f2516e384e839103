"""A node's durable store: replication records, metadata and shared classes in SQLite (WAL mode).

::

    event loop ──submit(records, done)──► queue ──► writer thread: ONE transaction per turn
       ▲                                             (everything queued since its last commit)
       └──── loop.call_soon_threadsafe ◄── done(None | StorageError), in submit order

    DIR/LOCK       flock held for the Store's life (two nodes on one dir: DataDirLockedError)
    DIR/store.db   + store.db-wal while open; made whole by an atomic rename on first open

Group commit is what Redis' ``appendfsync always`` does once per event-loop
turn: the loop never waits for the disk, and one commit (one fsync) covers
every call that arrived while the previous one was being written.  The
store never applies records, it keeps them: bodies are opaque bytes.

A STATE record supersedes everything stored before it for its object, and a
DELETE record removes the object, in the same transaction as the record
itself, so the rows on disk are always what :meth:`Store.load` returns:
per object its last STATE and the records after it.  :meth:`Store.compact`
lets the node bound that log; :meth:`Store.record_count` says when.

Errors: a data dir that cannot be made or written is a :class:`StorageError`,
one held by another process a :class:`DataDirLockedError`, a file that is not
a crucial store, damaged or truncated a :class:`CorruptDataError` (found at
open by the SQLite header, ``PRAGMA quick_check`` and the schema version; a
record whose bytes changed is found by its CRC when it is loaded).  After a
failed write the store fails every later write too (the page cache may have
dropped what it could not write, like PostgreSQL's fsync PANIC): the node must
restart and recover.  See docs/durability.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import (
    ConfigError,
    CorruptDataError,
    ProtocolError,
    SerializationError,
    StorageError,
)
from ._datadir import DB_NAME, fsync_dir, lock_dir, open_db, storage_error
from ._records import Record, RecordKind, decode_records, encode_records

__all__ = ["BATCH_FSYNC_INTERVAL", "FSYNC_MODES", "Store"]

log = logging.getLogger("crucial.store")

FSYNC_MODES = ("always", "batch", "never")
#: seconds after a commit within which ``batch`` mode fsyncs it (Redis' ``everysec``)
BATCH_FSYNC_INTERVAL = 1.0
_INSERT = "INSERT INTO records (type_name, key, epoch, n, kind, data, crc) VALUES (?, ?, ?, ?, ?, ?, ?)"
_DROP = "DELETE FROM records WHERE type_name = ? AND key = ?"

# queued operations, executed by the writer thread in queue order
_SUBMIT, _COMPACT, _DELETE, _META, _TYPE, _FLUSH, _READ, _REFUSED = range(8)
_WRITES = frozenset({_SUBMIT, _COMPACT, _DELETE, _META, _TYPE})

Done = Callable[[BaseException | None], None]


class Store:
    """The durable store of one node's data dir; open it with :meth:`Store.open`."""

    node_id: str
    path: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str], fsync: str = "always") -> Store:
        """Lock ``path`` (made if missing), check or create its store, start the writer."""
        if fsync not in FSYNC_MODES:
            raise ConfigError(f"fsync mode {fsync!r} is not one of {', '.join(FSYNC_MODES)}")
        directory = Path(path)
        lock_fd = lock_dir(directory)
        try:
            db = open_db(directory / DB_NAME, fsync)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(directory, fsync, db, lock_fd)

    def __init__(self, path: Path, fsync: str, db: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self.fsync = fsync
        self._db_path = path / DB_NAME
        self._db = db
        self._lock_fd = lock_fd
        self.node_id = db.execute("SELECT node_id FROM info").fetchone()[0]
        self._counts: dict[tuple[str, str], int] = {
            (t, k): c for t, k, c in db.execute("SELECT type_name, key, count(*) FROM records GROUP BY type_name, key")
        }
        self._cond = threading.Condition()
        self._queue: list[tuple[Any, ...]] = []
        self._pending = 0  # records submitted, not yet committed
        self._closing = False
        self._failure: StorageError | None = None
        self._stats = {
            "commits": 0,
            "records_written": 0,
            "last_commit_s": 0.0,
            "commit_s_total": 0.0,
            "fsyncs": 0,  # ours (batch mode, meta, close); SQLite's own in `always` mode are not counted
            "last_fsync_s": 0.0,
        }
        self._dirty = threading.Event()  # batch mode: a commit not yet fsynced
        self._stop_sync = threading.Event()
        self._syncer: threading.Thread | None = None
        if fsync == "batch":
            self._syncer = threading.Thread(target=self._sync_loop, name=f"crucial-store-fsync {path}", daemon=True)
            self._syncer.start()
        self._writer = threading.Thread(target=self._run, name=f"crucial-store {path}", daemon=True)
        self._writer.start()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r} node_id={self.node_id} fsync={self.fsync}{' closed' if self._closing else ''}>"

    # -- writes: queued, in order ----------------------------------------------------------------

    def submit(self, records: Sequence[Record], done: Done) -> None:
        """Queue ``records`` (in apply order); ``done(None)`` once they are durable per the fsync
        mode, ``done(StorageError)`` if they cannot be.  Never blocks: call it from the event loop.

        ``done`` runs on the writer thread (hop back with ``loop.call_soon_threadsafe``), exactly
        once; after :meth:`close` it runs at once, here, with a :class:`StorageError`."""
        with self._cond:
            if not self._closing:
                self._queue.append((_SUBMIT, records, done))
                self._pending += len(records)
                counts = self._counts
                for r in records:
                    k = (r.type_name, r.key)
                    if r.kind == RecordKind.CALL:
                        counts[k] = counts.get(k, 0) + 1
                    elif r.kind == RecordKind.STATE:
                        counts[k] = 1
                    else:
                        counts.pop(k, None)
                self._cond.notify()
                return
        done(StorageError(f"store {self.path} is closed: records not written", path=str(self.path)))

    def compact(self, state: Record) -> None:
        """Replace every stored record of ``state``'s object by ``state`` (a STATE record), after
        every earlier submit.  Not acknowledged: if it is lost, the old log gives the same state."""
        if state.kind != RecordKind.STATE:
            raise ValueError(f"compact() takes a STATE record, not kind {state.kind} for {state.type_name!r} {state.key!r}")
        row = _row(state, self._db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH))  # a bad record raises here
        self._enqueue((_COMPACT, row), (state.type_name, state.key), 1)

    def delete(self, type_name: str, key: str) -> None:
        """Remove every stored record of one object (one this node no longer hosts), after earlier submits."""
        self._enqueue((_DELETE, type_name, key), (type_name, key), 0)

    def set_meta(self, name: str, value: bytes) -> None:
        """Store one named value; it is on disk (fsynced, whatever the mode) when this returns."""
        self._wait((_META, _text(name), bytes(value)))

    def save_type(self, type_name: str, class_bytes: bytes) -> None:
        """Store a registered shared class; on disk (fsynced) when this returns."""
        self._wait((_TYPE, _text(type_name), bytes(class_bytes)))

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is durable per the fsync mode (committed;
        in ``always`` mode fsynced).  Raises the store's :class:`StorageError` if it failed."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._cond:
            closing = self._closing
            if not closing:
                self._queue.append((_FLUSH, future))
                self._cond.notify()
        if not closing:
            self._result(future, timeout)
            return
        if threading.current_thread() is not self._writer:  # close() writes everything queued
            self._writer.join(timeout)
            if self._writer.is_alive():
                raise StorageError(f"{self._db_path}: not written within {timeout} s", path=str(self._db_path))
        if self._failure is not None:
            raise self._failure

    # -- reads: through the writer, so they see every earlier write -------------------------------

    def get_meta(self, name: str) -> bytes | None:
        rows = self._read(lambda db: db.execute("SELECT value, crc FROM meta WHERE name = ?", (name,)).fetchall())
        return self._checked(rows[0][0], rows[0][1], f"meta {name!r}") if rows else None

    def types(self) -> dict[str, bytes]:
        rows = self._read(lambda db: db.execute("SELECT name, class, crc FROM types ORDER BY name").fetchall())
        return {name: self._checked(data, crc, f"shared class {name!r}") for name, data, crc in rows}

    def load(self) -> dict[tuple[str, str], list[Record]]:
        """Every stored object: its last STATE record, then the records after it, in apply order.

        A record whose bytes changed on disk is a :class:`CorruptDataError` naming it.  An object
        whose log has no STATE (only CALLs: its base never reached this node) comes back as is."""
        # in rowid order, without the index: load() must not depend on the one part quick_check skips
        sql = "SELECT seq, type_name, key, epoch, n, kind, data, crc FROM records NOT INDEXED ORDER BY seq"
        out: dict[tuple[str, str], list[Record]] = {}
        for seq, type_name, key, epoch, n, kind, data, crc in self._read(lambda db: db.execute(sql).fetchall()):
            what = f"record {seq} of {type_name!r} {key!r}"
            try:
                (record,) = decode_records(self._checked(data, crc, what))
            except (ProtocolError, ValueError) as exc:
                raise CorruptDataError(f"{self._db_path}: {what} does not decode: {exc}", path=str(self._db_path))
            if (record.type_name, record.key, record.kind, tuple(record.version)) != (type_name, key, kind, (epoch, n)):
                raise CorruptDataError(f"{self._db_path}: {what} disagrees with its columns", path=str(self._db_path))
            object_log = out.setdefault((type_name, key), [])
            if kind == RecordKind.STATE:
                object_log.clear()
            object_log.append(record)
        return out

    def record_count(self, type_name: str, key: str) -> int:
        """Records stored (or queued) for one object: compact it when this grows.  A hint, counted
        when submitted (a submit refused for a bad record is counted all the same)."""
        with self._cond:
            return self._counts.get((type_name, key), 0)

    def stats(self) -> dict[str, Any]:
        """Counters for ``crucial status`` and the benchmarks (sizes in bytes, durations in seconds)."""
        size = 0
        for name in (DB_NAME, DB_NAME + "-wal"):
            with contextlib.suppress(OSError):
                size += (self.path / name).stat().st_size
        with self._cond:
            return {
                "path": str(self.path),
                "fsync": self.fsync,
                "objects": len(self._counts),
                "records": sum(self._counts.values()),
                "pending": self._pending,
                "bytes": size,
                "failed": str(self._failure) if self._failure else None,
                "closed": self._closing,
                **self._stats,
            }

    def close(self) -> None:
        """Write everything queued, stop the writer, close the file, release the lock.  Idempotent;
        called from a ``done`` callback it returns at once and the writer finishes the rest."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._writer:
            self._writer.join()

    # -- internals ----------------------------------------------------------------------------------

    def _closed_error(self) -> StorageError:
        return StorageError(f"store {self.path} is closed", path=str(self.path))

    def _enqueue(self, op: tuple[Any, ...], obj: tuple[str, str] | None = None, count: int = 0) -> None:
        """Queue ``op``; ``obj`` and ``count``: the object's record count once it is done (0: gone)."""
        with self._cond:
            if self._closing:
                raise self._closed_error()
            self._queue.append(op)
            if obj is not None:
                if count:
                    self._counts[obj] = count
                else:
                    self._counts.pop(obj, None)
            self._cond.notify()

    def _wait(self, op: tuple[Any, ...], timeout: float | None = None) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._enqueue((*op, future))
        return self._result(future, timeout)

    def _result(self, future: concurrent.futures.Future[Any], timeout: float | None) -> Any:
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise StorageError(f"{self._db_path}: not written within {timeout} s", path=str(self._db_path)) from None

    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return self._wait((_READ, fn))

    def _checked(self, data: bytes, crc: int, what: str) -> bytes:
        if zlib.crc32(data) != crc:
            raise CorruptDataError(f"{self._db_path}: {what} is corrupt (checksum mismatch)", path=str(self._db_path))
        return data

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    ops, self._queue = self._queue, []
                    closing = self._closing
                if ops:
                    self._process(ops)
                if closing:
                    break
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            log.exception("store writer for %s died", self.path)
            self._fail(StorageError(f"store writer for {self.path} died: {exc!r}", path=str(self.path)))
            with self._cond:
                self._closing = True
                ops, self._queue = self._queue, []
            self._settle(ops, self._failure)
        finally:
            self._shutdown()

    def _process(self, ops: list[tuple[Any, ...]]) -> None:
        """One turn of the writer: every write op queued since the last turn in ONE transaction."""
        submitted = sum(len(op[1]) for op in ops if op[0] == _SUBMIT)
        rows: dict[int, list[tuple[Any, ...]]] = {}  # per submit: its rows, encoded before BEGIN
        max_bytes = self._db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        for i, op in enumerate(ops):
            if op[0] == _SUBMIT:
                try:
                    rows[i] = [_row(r, max_bytes) for r in op[1]]
                except Exception as exc:  # a bad record fails its own submit, not the others
                    ops[i] = (_REFUSED, op[-1], SerializationError(f"cannot store replication records: {exc!r}"))
        error = self._failure
        if error is None and any(op[0] in _WRITES for op in ops):
            started = time.perf_counter()
            try:
                durable = _write(self._db, ops, rows)
                if durable and self.fsync != "always":
                    self._fsync_files()
            except Exception as exc:  # the disk (sqlite3.Error, OSError), or a bug: either way, fail closed
                with contextlib.suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                error = self._fail(storage_error(self._db_path, "cannot write", exc))
            else:
                with self._cond:
                    self._stats["commits"] += 1
                    self._stats["records_written"] += sum(len(r) for r in rows.values())  # compactions not counted
                    took = time.perf_counter() - started
                    self._stats["last_commit_s"] = took
                    self._stats["commit_s_total"] += took
                if self.fsync == "batch":
                    self._dirty.set()
        with self._cond:
            self._pending -= submitted
        self._settle(ops, error)

    def _settle(self, ops: list[tuple[Any, ...]], error: BaseException | None) -> None:
        """Tell every waiter of ``ops`` how it went (reads run here, after the commit)."""
        for op in ops:
            code = op[0]
            if code == _SUBMIT or code == _REFUSED:
                try:
                    op[2](error) if code == _SUBMIT else op[1](op[2])
                except Exception:
                    log.exception("a store done() callback raised")
            elif code == _READ:
                future = op[2]
                try:
                    future.set_result(op[1](self._db))
                except (sqlite3.Error, OSError) as exc:
                    future.set_exception(storage_error(self._db_path, "cannot read", exc))
                except BaseException as exc:
                    future.set_exception(exc)
            elif code in (_META, _TYPE, _FLUSH):
                future = op[-1]
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _fail(self, error: StorageError) -> StorageError:
        """Remember the first failure: every later write fails with it (see the module docstring)."""
        with self._cond:
            if self._failure is None:
                log.error("%s", error)
                self._failure = StorageError(f"{error} (no write is accepted since: restart the node)", path=error.path)
            return self._failure

    def _fsync_files(self) -> None:
        started = time.perf_counter()
        for name in (DB_NAME + "-wal", DB_NAME):
            try:
                fd = os.open(self.path / name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        with self._cond:
            self._stats["fsyncs"] += 1
            self._stats["last_fsync_s"] = time.perf_counter() - started

    def _sync_loop(self) -> None:
        """``batch`` mode: fsync at most BATCH_FSYNC_INTERVAL after a commit, off the writer thread
        (Redis moved its ``everysec`` fsync to a background thread for the same reason)."""
        while True:
            self._dirty.wait()
            if self._stop_sync.wait(BATCH_FSYNC_INTERVAL):
                return  # closing: the writer fsyncs once more on its way out
            self._dirty.clear()
            try:
                self._fsync_files()
            except OSError as exc:
                self._fail(storage_error(self._db_path, "cannot fsync", exc))

    def _shutdown(self) -> None:
        """On the writer thread, after its last batch: stop the syncer, checkpoint and close, unlock."""
        self._stop_sync.set()
        self._dirty.set()
        if self._syncer is not None:
            self._syncer.join()
        try:
            self._db.close()  # the last connection checkpoints the WAL into the file and removes it
            self._fsync_files()
            fsync_dir(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._fail(storage_error(self._db_path, "cannot close", exc))
        finally:
            os.close(self._lock_fd)


# -- pure helpers and the open-time checks ------------------------------------------------------------


def _row(r: Record, max_bytes: int) -> tuple[Any, ...]:
    """A record as a row of ``records``; whatever SQLite would refuse mid-transaction (and so
    fail every other record of the batch with it) is refused here, for this record alone."""
    if r.kind not in RecordKind.ALL:
        raise ValueError(f"record kind {r.kind!r} for {r.type_name!r} {r.key!r}")
    _text(r.type_name)
    _text(r.key)
    epoch, n = r.version
    if not (isinstance(epoch, int) and isinstance(n, int) and -(2**63) <= min(epoch, n) and max(epoch, n) < 2**63):
        raise ValueError(f"version {r.version!r} of {r.type_name!r} {r.key!r} is not two 64-bit integers")
    data = encode_records([r])
    if len(data) > max_bytes:
        raise ValueError(f"record of {r.type_name!r} {r.key!r} is {len(data)} bytes, over the store's limit of {max_bytes}")
    return (r.type_name, r.key, epoch, n, r.kind, data, zlib.crc32(data))


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a str")
    value.encode()  # a lone surrogate would fail inside the transaction
    return value


def _write(db: sqlite3.Connection, ops: list[tuple[Any, ...]], rows: dict[int, list[tuple[Any, ...]]]) -> bool:
    """Apply the write ops to the tables in one transaction; True if one must be fsynced now.

    Runs of CALL rows (the common case) go in one ``executemany``: a few µs less per record."""
    durable = False
    calls: list[tuple[Any, ...]] = []
    db.execute("BEGIN")
    for i, op in enumerate(ops):
        code = op[0]
        if code == _SUBMIT:
            for row in rows[i]:
                if row[4] == RecordKind.CALL:
                    calls.append(row)
                    continue
                if calls:
                    db.executemany(_INSERT, calls)
                    calls = []
                db.execute(_DROP, row[:2])  # STATE and DELETE end the object's log so far
                if row[4] == RecordKind.STATE:
                    db.execute(_INSERT, row)
            continue
        if calls:
            db.executemany(_INSERT, calls)
            calls = []
        if code == _COMPACT:
            db.execute(_DROP, op[1][:2])
            db.execute(_INSERT, op[1])
        elif code == _DELETE:
            db.execute(_DROP, op[1:3])
        elif code == _META or code == _TYPE:
            table = "meta" if code == _META else "types"
            db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", (op[1], op[2], zlib.crc32(op[2])))
            durable = True
    if calls:
        db.executemany(_INSERT, calls)
    db.execute("COMMIT")
    return durable
