"""A node's data dir on disk: its lock, its SQLite file, and whether that file can be trusted.

::

    DIR/LOCK           flock, held while a Store is open; holds the holder's pid (for the error)
    DIR/store.db       made in store.db.new and renamed: whole or absent, never half-made
    DIR/store.db-wal   SQLite's write-ahead log while open (and after a crash)

:func:`open_db` runs every check before anything writes to the file: the
header (SQLite magic, our ``application_id``, the page count against the
size), then on a read-only connection the schema version, ``PRAGMA
quick_check`` and the index against its table.  Read-only, because a
read-write connection checkpoints a crash's WAL into the file when it
closes: it would rewrite, then delete, the evidence of a file we refuse.
Used by :mod:`._store` only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
import uuid
from pathlib import Path

from ..exceptions import CorruptDataError, DataDirLockedError, StorageError

__all__ = ["DB_NAME", "LOCK_NAME", "SCHEMA_VERSION", "fsync_dir", "lock_dir", "open_db", "storage_error"]

DB_NAME = "store.db"
LOCK_NAME = "LOCK"
#: ``PRAGMA user_version``: bump it, and migrate in ``_check``, when the tables change
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` ("CRUC"): tells a crucial store from any other SQLite file
APPLICATION_ID = 0x43525543
SQLITE_MAGIC = b"SQLite format 3\x00"

#: ``always``: the WAL is fsynced at every commit; ``batch`` and ``never`` write it at
#: every commit (it survives kill -9) and fsync it later.  Never ``synchronous=OFF``:
#: SQLite then skips the syncs that order a checkpoint, and a power loss could corrupt
#: the file, not only lose its last commits.
_SYNCHRONOUS = {"always": "FULL", "batch": "NORMAL", "never": "NORMAL"}

_SCHEMA = """
CREATE TABLE info (node_id TEXT NOT NULL, created REAL NOT NULL, opens INTEGER NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE types (name TEXT PRIMARY KEY, class BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE records (
    seq INTEGER PRIMARY KEY,   -- submit order = apply order
    type_name TEXT NOT NULL,
    key TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    n INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    data BLOB NOT NULL,        -- encode_records([record])
    crc INTEGER NOT NULL       -- zlib.crc32(data): a changed byte is found at load
);
CREATE INDEX records_by_object ON records (type_name, key, seq);
"""


def storage_error(path: Path, what: str, exc: BaseException) -> StorageError:
    name = getattr(exc, "sqlite_errorname", None)
    return StorageError(f"{path}: {what}: {exc}{f' ({name})' if name else ''}", path=str(path))


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_dir(directory: Path) -> int:
    """Make ``directory`` and hold ``directory/LOCK`` (flock: released by the kernel if we die)."""
    lock_path = directory / LOCK_NAME
    if directory.exists() and not directory.is_dir():
        raise StorageError(f"data dir {directory} is not a directory", path=str(directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"data dir {directory} cannot be used: {exc.strerror or exc}", path=str(directory)) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        by = f" by process {holder}" if holder.isdigit() else ""
        raise DataDirLockedError(
            f"data dir {directory} is locked{by}: another crucial node uses it (one node per data dir)", path=str(directory)
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise StorageError(f"data dir {directory} cannot be written: {exc.strerror or exc}", path=str(lock_path)) from exc
    return fd


def open_db(db_path: Path, fsync: str) -> sqlite3.Connection:
    """Open (making it if new) and check the store file; the connection goes to the writer."""
    wal = db_path.with_name(db_path.name + "-wal")
    if not db_path.exists():
        if wal.exists() and wal.stat().st_size > 0:
            raise CorruptDataError(f"{db_path} is missing but its log {wal} is there: not starting empty", path=str(db_path))
        _create(db_path)
    _check_header(db_path)
    had_wal = wal.exists()
    # Checked read-only: a read-write connection would checkpoint a crash's WAL into the
    # file when it closes -- rewriting, then deleting, the evidence of a file we refuse.
    ro = _connect(db_path, "ro")
    try:
        _check(ro, db_path)
    except sqlite3.Error as exc:
        raise _sqlite_error(db_path, exc) from exc
    finally:
        ro.close()
        _remove_index_files(db_path, had_wal)
    db = _connect(db_path, "rw")
    try:
        # before the first access, so SQLite keeps the WAL index in memory (we hold the dir lock)
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[fsync]}")
        db.execute("PRAGMA journal_size_limit = 67108864")
        db.execute("UPDATE info SET opens = opens + 1")  # a real write: a read-only file fails here, not later
        fsync_dir(db_path.parent)  # that write made the WAL: its name must outlive a power loss in every mode
    except (sqlite3.Error, OSError) as exc:
        db.close()
        raise _sqlite_error(db_path, exc) from exc
    except BaseException:
        db.close()
        raise
    return db


def _connect(db_path: Path, mode: str) -> sqlite3.Connection:
    """A connection in autocommit mode (we say BEGIN and COMMIT), ``ro`` or ``rw``."""
    try:
        return sqlite3.connect(f"file:{db_path}?mode={mode}", uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _sqlite_error(db_path, exc) from exc


def _sqlite_error(db_path: Path, exc: BaseException) -> StorageError:
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return CorruptDataError(f"{db_path} is corrupt: {exc}", path=str(db_path))
    if name == "SQLITE_BUSY":
        return StorageError(f"{db_path} is open in another program (SQLite says: {exc})", path=str(db_path))
    if name == "SQLITE_CANTOPEN" or name.startswith("SQLITE_READONLY"):
        return StorageError(
            f"{db_path}: cannot open: {exc} ({name}; SQLite makes its -wal and -shm files beside it: "
            f"is {db_path.parent} writable?)",
            path=str(db_path),
        )
    return storage_error(db_path, "cannot open", exc)


def _remove_index_files(db_path: Path, had_wal: bool) -> None:
    """Drop what the read-only check made: the shared-memory index (rebuilt from the WAL by
    whoever opens next; nobody else can, we hold the dir lock) and a WAL it made empty."""
    db_path.with_name(db_path.name + "-shm").unlink(missing_ok=True)
    wal = db_path.with_name(db_path.name + "-wal")
    with contextlib.suppress(FileNotFoundError):
        if not had_wal and wal.stat().st_size == 0:
            wal.unlink()


def _create(db_path: Path) -> None:
    """A new store, made in a side file and renamed: ``store.db`` is whole or absent, so an
    empty or short ``store.db`` is always damage, never a first open that crashed."""
    tmp = db_path.with_name(db_path.name + ".new")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO info VALUES (?, ?, 0)", (uuid.uuid4().hex[:12], time.time()))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        finally:
            db.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, db_path)
        fsync_dir(db_path.parent)
    except (sqlite3.Error, OSError) as exc:
        raise storage_error(db_path, "cannot create the store", exc) from exc


def _check_header(db_path: Path) -> None:
    """Before SQLite reads it: is it whole, is it SQLite, is it ours."""
    try:
        with open(db_path, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise storage_error(db_path, "cannot read", exc) from exc
    if len(head) < 100:
        raise CorruptDataError(f"{db_path} is truncated ({len(head)} bytes): not a whole crucial store", path=str(db_path))
    if not head.startswith(SQLITE_MAGIC):
        raise CorruptDataError(f"{db_path} is not a crucial store (no SQLite header)", path=str(db_path))
    if int.from_bytes(head[68:72], "big") != APPLICATION_ID:
        raise CorruptDataError(f"{db_path} is an SQLite file but not a crucial store (application_id)", path=str(db_path))
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big") if head[24:28] == head[92:96] else 0  # 0: not marked valid
    # A WAL left by a crash may hold pages the file does not have yet (a checkpoint cut short):
    # then SQLite's own checks below decide.
    if size < pages * page_size and not _wal_has_frames(db_path):
        raise CorruptDataError(f"{db_path} is truncated: {size} bytes, its header says {pages * page_size}", path=str(db_path))


def _check(db: sqlite3.Connection, db_path: Path) -> None:
    """Schema version, every page (``quick_check``: O(size)), and the index against the table
    (quick_check does not compare them; a stale index entry could resurrect a deleted object)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{db_path} has schema version {version}, newer than this crucial knows ({SCHEMA_VERSION}): "
            "run the crucial version that wrote it",
            path=str(db_path),
        )
    if version < 1:
        raise CorruptDataError(f"{db_path} has no schema version: not a whole crucial store", path=str(db_path))
    report = [line for (row,) in db.execute("PRAGMA quick_check(10)") for line in row.splitlines()]
    problems = [line for line in report if not line.startswith("*** in database")]
    if problems != ["ok"]:
        raise CorruptDataError(f"{db_path} is corrupt: {'; '.join(problems[:4])}", path=str(db_path))
    rows = db.execute("SELECT count(*) FROM records NOT INDEXED").fetchone()[0]
    indexed = db.execute("SELECT count(*) FROM records INDEXED BY records_by_object").fetchone()[0]
    if rows != indexed:
        raise CorruptDataError(f"{db_path} is corrupt: {rows} records but {indexed} in their index", path=str(db_path))


def _wal_has_frames(db_path: Path) -> bool:
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        return wal.stat().st_size > 32  # more than its header
    except FileNotFoundError:
        return False
