"""Replication records: one change to one persistent object.

The same record travels from a primary to its backups and is written to a
node's data dir, so a replica and a restarted node rebuild an object the
same way -- by applying its records in version order.  Pure data, no I/O.

::

    STATE   body = the object's pickled state      applies on anything (prev is None)
    CALL    body = the encoded CallRequest          applies on top of version ``prev``
    DELETE  body = b""                              the object is gone
    CHECK   body = b""                              changes nothing: "do you hold ``version``?"
                                                    (a new primary's probe; never stored)

A version is ``(epoch, n)``: the view epoch in which the change was made and
the object's change counter.  Replicas compare versions for *equality* only:
two replicas that both reached ``n`` in different epochs have diverged (one
applied a call that was never acknowledged) and the newer primary's state
wins.
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

from ..exceptions import ProtocolError

__all__ = ["Dedup", "Record", "RecordDedup", "RecordKind", "Version", "decode_records", "encode_records"]

Version = tuple[int, int]
#: a call's reply kept for replays: (client id, call seq, reply kind, reply body)
Dedup = tuple[str, int, int, bytes]
#: a record's reply, with the client's ``below`` as the primary knew it (every copy forgets the same
#: replies: docs/design.md, "How long a node keeps a reply"); records kept before it have no ``below``
RecordDedup = tuple[str, int, int, bytes, int] | Dedup


class RecordKind:
    STATE = 1
    CALL = 2
    DELETE = 3
    CHECK = 4
    ALL = frozenset({STATE, CALL, DELETE, CHECK})


class Record(NamedTuple):
    type_name: str
    key: str
    kind: int
    version: Version
    prev: Version | None  # None for STATE and DELETE: they apply on any version
    body: bytes
    dedup: RecordDedup | None = None


def encode_records(records: list[Record] | tuple[Record, ...]) -> bytes:
    """Records as bytes (plain tuples of str/int/bytes: the fast pickle path)."""
    return pickle.dumps([tuple(r) for r in records], protocol=pickle.HIGHEST_PROTOCOL)


def decode_records(data: bytes) -> list[Record]:
    try:
        raw: Any = pickle.loads(data)
        out = [Record(*r) for r in raw]
    except Exception as exc:  # a peer or a file that lies: say so, do not guess
        raise ProtocolError(f"malformed replication records: {exc}") from exc
    for r in out:
        if r.kind not in RecordKind.ALL or not isinstance(r.type_name, str) or not isinstance(r.key, str):
            raise ProtocolError(f"malformed replication record for {r.type_name!r} {r.key!r}")
    return out
