"""An object's state as bytes, and back: for passive replication, hand-over and the data dir.

An *image* is everything a node needs to host an object it did not create:
the object itself, its options (``persistent``, ``rf``), its version and the
replies of its recent calls (so a call retried on the new host is answered
once).  Pure: no I/O.

A user class reached the node by value (``REGISTER``): pickling an instance
with cloudpickle would ship the whole class again with every call.  The
pickler below names registered classes by their type name instead, and the
unpickler maps the name back to the class the receiving node registered --
so a state costs what its attributes cost.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..exceptions import SerializationError, UnknownTypeError
from ._records import Dedup, Version

__all__ = ["Image", "Options", "dump_image", "encode_dedup", "load_image"]


class Options(NamedTuple):
    """How an object is kept: ``persistent`` (replicated, durable) and its own ``rf`` (None: the cluster's)."""

    persistent: bool = False
    rf: int | None = None


class Image(NamedTuple):
    type_name: str
    key: str
    options: Options
    version: Version
    obj: Any
    dedup: list[Dedup]


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, classes: Mapping[type, str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._classes = classes

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type):
            name = self._classes.get(obj)
            if name is not None:
                return name
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, types: Mapping[str, type]) -> None:
        super().__init__(file)
        self._types = types

    def persistent_load(self, pid: Any) -> Any:
        cls = self._types.get(pid) if isinstance(pid, str) else None
        if cls is None:
            raise UnknownTypeError(f"state of an object of unknown shared type {pid!r}", str(pid), None)
        return cls


def dump_image(image: Image, user_classes: Mapping[type, str]) -> bytes:
    """Pickle an image; ``user_classes`` maps registered classes to their type names."""
    body = (image.type_name, image.key, tuple(image.options), image.version, image.obj, image.dedup)
    buf = io.BytesIO()
    try:
        if user_classes:
            _Pickler(buf, user_classes).dump(body)
        else:
            pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(body)
    except Exception:
        # something inside is only picklable by value (a lambda, a class of a script): cloudpickle
        # pickles it whole; registered classes are still named, so the receiver can map them
        try:
            return _cloud_dump(body, user_classes)
        except Exception as exc:
            raise SerializationError(f"the state of {image.type_name} {image.key!r} cannot be pickled: {exc}") from exc
    return buf.getvalue()


def _cloud_dump(body: Any, user_classes: Mapping[type, str]) -> bytes:
    import cloudpickle

    class CloudPickler(cloudpickle.Pickler):  # type: ignore[misc,name-defined]
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, type):
                return user_classes.get(obj)
            return None

    buf = io.BytesIO()
    CloudPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(body)
    return buf.getvalue()


def load_image(data: bytes, types: Mapping[str, type]) -> Image:
    """The image in ``data``; ``types`` maps type names to the classes this node has registered."""
    try:
        type_name, key, options, version, obj, dedup = _Unpickler(io.BytesIO(data), types).load()
    except UnknownTypeError:
        raise
    except Exception as exc:
        raise SerializationError(f"an object state cannot be unpickled: {exc}") from exc
    return Image(type_name, key, Options(*options), tuple(version), obj, list(dedup))  # type: ignore[arg-type]


def encode_dedup(entries: Mapping[tuple[str, int], tuple[int, bytes]]) -> list[Dedup]:
    return [(cid, seq, kind, body) for (cid, seq), (kind, body) in entries.items()]
