"""The wire protocol: frames, message kinds, handshake and call envelopes.

Pure logic, no I/O: the node and both clients feed bytes in and take frames
out, so every rule here is unit-tested without a socket.

A frame is a 13-byte header followed by a body::

    +----------------+---------+--------------------+----------------+
    | body length u32| kind u8 | request id u64     | body ...       |
    +----------------+---------+--------------------+----------------+

Request ids let one connection carry many calls at once; replies carry the
id of their request and may come back in any order (a blocked
``barrier.wait()`` holds up nothing else on its connection).

The handshake (``HELLO``/``WELCOME``) is JSON, so a node never unpickles a
byte from a client before the client has shown its token.  Everything after
it is pickled (cloudpickle on the way out, plain :func:`pickle.loads` in).

Kinds that ask (client → node) are below 16, kinds that answer are 16 and up.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import sysconfig
import threading
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from .exceptions import FrameTooLargeError, ProtocolError, SerializationError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DELATTR",
    "GETATTR",
    "HEADER",
    "STDLIB",
    "PROTOCOL_VERSION",
    "RECV_SIZE",
    "SETATTR",
    "STDERR",
    "STDOUT",
    "CallRequest",
    "Frame",
    "FrameDecoder",
    "Kind",
    "by_value",
    "cloudpickle",
    "pickle_bytes",
    "decode_call",
    "decode_json",
    "dumps",
    "encode_call",
    "encode_call_fields",
    "encode_frame",
    "encode_json",
    "encode_output",
    "decode_output",
    "loads",
    "ships_by_value",
]

PROTOCOL_VERSION = 2
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024
HEADER = struct.Struct("!IBQ")
# How much one recv() asks for.  Under glibc's 128 KiB mmap threshold on purpose: CPython allocates the
# whole size before the read, so 256 KiB was an mmap, an mremap down to the reply's size and a munmap
# -- three syscalls and a page fault per reply, and per empty poll (a third of a call's kernel time).
RECV_SIZE = 1 << 16


class Kind:
    """Message kinds (a plain namespace of ints: they are compared in hot loops)."""

    HELLO = 1  # json {version, token, client_id}
    CALL = 2  # pickle CallRequest tuple
    REGISTER = 3  # pickle (type_name, class)
    DELETE = 4  # pickle (type_name, key)
    VIEW = 5  # empty: ask for the current view
    PING = 6  # empty
    INFO = 7  # pickle {"objects": N}: the node's statistics and its first N objects
    # between nodes (a connection whose HELLO named a peer node):
    REPLICATE = 8  # pickle (epoch, sender id, records): a primary's records for a backup
    HANDOFF = 9  # pickle (epoch, sender id, rank, images): objects for their new primary
    DONE = 10  # pickle (epoch, sender id): the sender sent every hand-over of that view
    READY = 11  # pickle (epoch, sender id): the sender's objects are synced; drop retired copies
    LEAVE = 12  # empty: hand every object over and leave the cluster (`crucial cluster remove`)
    READ = 13  # a CALL of a read-only method that any replica may answer (sequential reads)
    ANCHOR = 14  # pickle (type, key): between nodes: the object's home placed it on the receiver
    WELCOME = 16  # json {version, node_id, view}
    OK = 17  # pickle value
    ERROR = 18  # pickle (exception, traceback text)
    FAIL = 19  # json {code, message}: protocol-level failure
    REDIRECT = 20  # json {view}: this node does not own the object
    UNAVAILABLE = 21  # json {reason, epoch}: not served here now (view changing): retry shortly
    OUTPUT = 22  # stream byte + utf-8 text: what a call printed on the node, sent before its reply

    REQUESTS = frozenset({HELLO, CALL, REGISTER, DELETE, VIEW, PING, INFO, REPLICATE, HANDOFF, DONE, READY, LEAVE, READ, ANCHOR})
    PEER_REQUESTS = frozenset({REPLICATE, HANDOFF, DONE, READY, ANCHOR})
    REPLIES = frozenset({WELCOME, OK, ERROR, FAIL, REDIRECT, UNAVAILABLE})  # what ends a request
    FROM_NODE = REPLIES | {OUTPUT}  # what a client may receive
    ALL = REQUESTS | FROM_NODE


class Frame(NamedTuple):
    kind: int
    req_id: int
    body: bytes


def encode_frame(kind: int, req_id: int, body: bytes = b"") -> bytes:
    """Header plus body, ready for ``sendall``."""
    return HEADER.pack(len(body), kind, req_id) + body


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get whole frames back.

    A header announcing more than ``max_frame_size`` bytes raises
    :class:`FrameTooLargeError` at once, before the body is buffered: a
    peer cannot make us hold an oversized frame in memory.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, kinds: frozenset[int] = Kind.ALL) -> None:
        self.max_frame_size = max_frame_size
        self._kinds = kinds
        self._buf = self.buffer = bytearray()  # what arrived of the next frame (empty between frames)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        if _split_frames is not None:
            frames, pos = _split_frames(self._buf, self.max_frame_size, self._kinds)
            if pos:
                del self._buf[:pos]
            return frames  # type: ignore[no-any-return]
        frames = []
        buf = self._buf
        pos = 0
        hsize = HEADER.size
        while len(buf) - pos >= hsize:
            length, kind, req_id = HEADER.unpack_from(buf, pos)
            if length > self.max_frame_size:
                raise FrameTooLargeError(length, self.max_frame_size)
            if kind not in self._kinds:
                raise ProtocolError(f"unknown frame kind {kind}")
            end = pos + hsize + length
            if len(buf) < end:
                break
            frames.append(Frame(kind, req_id, bytes(buf[pos + hsize : end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf)


_PLAIN = frozenset({bytes, str, int, float, bool, type(None), bytearray, complex})
#: NumPy's scalar types, by name (numpy is not imported for this): pickle writes them by reference to numpy
_NUMPY_SCALARS = frozenset(
    {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8"}
    | {"bool", "bool_", "complex128", "complex64", "longlong", "ulonglong", "longdouble", "clongdouble", "timedelta64"}
)


def cloudpickle() -> Any:
    """cloudpickle, imported when first needed: plain data never needs it (a shell verb
    starts faster without it)."""
    import cloudpickle

    return cloudpickle


def _plain_py(obj: Any, depth: int = 0) -> bool:
    """True for data made only of builtin scalars and containers (and NumPy arrays of numbers).

    Such data pickles the same with :mod:`pickle` as with cloudpickle, and
    ~5x faster -- this is the hot path of every call and reply.
    """
    t = type(obj)
    if t in _PLAIN:
        return True
    if depth > 3:
        return False
    if t is tuple or t is list:
        for x in obj:
            if type(x) not in _PLAIN and not _plain_py(x, depth + 1):
                return False
        return True
    if t is dict:
        for k, v in obj.items():
            if type(k) not in _PLAIN or (type(v) not in _PLAIN and not _plain_py(v, depth + 1)):
                return False
        return True
    if t.__module__ == "numpy":  # arrays of numbers, and NumPy scalars: ~2.5x faster than cloudpickle
        if t.__name__ == "ndarray":
            return not obj.dtype.hasobject  # an object array may hold anything (functions...)
        return t.__name__ in _NUMPY_SCALARS
    return False


_plain = _plain_py


# -- the optional C accelerator (crucial/_speedups.c, built when a compiler is there) --------------

_pure_encode_frame, _pure_plain = encode_frame, _plain_py
_split_frames: Any = None


def use_speedups(enabled: bool) -> bool:
    """Use the C twins of the per-call functions (when built); False for the pure-Python ones.

    Set once at import: ``CRUCIAL_PURE_PYTHON=1`` in the environment keeps
    the pure-Python versions (the tests run both).  Returns whether the C
    ones are in use.
    """
    global encode_frame, _plain, _split_frames
    speedups = None
    if enabled:
        try:
            from . import _speedups as speedups  # type: ignore[attr-defined, no-redef]
        except ImportError:
            speedups = None
    if speedups is None:
        encode_frame, _plain, _split_frames = _pure_encode_frame, _pure_plain, None
        return False
    speedups.set_frame_type(Frame, FrameTooLargeError, ProtocolError)
    encode_frame, _plain, _split_frames = speedups.encode_frame, speedups.is_plain, speedups.split_frames
    return True


SPEEDUPS = use_speedups(not os.environ.get("CRUCIAL_PURE_PYTHON"))


def is_plain(obj: Any) -> bool:
    """Whether ``obj`` is plain data (builtin scalars and containers, NumPy arrays of numbers): :mod:`pickle` writes it."""
    return bool(_plain(obj))


def pickle_bytes(obj: Any, code: Iterable[Any] = ()) -> bytes:
    """The one pickling policy of crucial; raises whatever pickling raises.

    Plain data goes through :mod:`pickle` (the hot path); anything else
    through cloudpickle, with the modules of the functions and classes among
    ``code`` pickled by value when nodes and workers cannot import them.
    ``code`` is only looked at when needed, so it may be a generator.
    """
    if _plain(obj):
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with by_value(_code_objects(code)):
        return cloudpickle().dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def dumps(obj: Any, what: str = "value", code: Iterable[Any] = ()) -> bytes:
    """:func:`pickle_bytes`, with its failures turned into a SerializationError naming ``what``."""
    try:
        return pickle_bytes(obj, code)
    except Exception as exc:  # pickling raises many types: normalise them here, once
        raise SerializationError(f"{what} cannot be pickled: {exc}") from exc


def ships_by_value(obj: Any) -> bool:
    """Whether nodes need the code of function or class ``obj`` (a script, a
    test, a package in the working directory) rather than importing it by
    name (site-packages, the stdlib, crucial itself)."""
    name = getattr(obj, "__module__", None)
    if not isinstance(name, str):
        return False
    module = sys.modules.get(name)
    if module is None:  # it came by value: pass it on by value
        return True
    if name in ("__main__", "__mp_main__"):  # a script: never importable on a node
        return True
    path = getattr(module, "__file__", None) or ""
    return bool(path) and "-packages" not in path and not name.startswith("crucial.") and not path.startswith(STDLIB)


STDLIB = sysconfig.get_paths()["stdlib"]
_by_value_lock = threading.RLock()  # re-entrant: pickling a proxy may ship its class inside a task
_by_value_refs: dict[str, int] = {}


@contextmanager
def by_value(objs: Iterable[Any]) -> Iterator[None]:
    """Pickle the modules of these functions/classes by value meanwhile.

    cloudpickle pickles functions of importable modules by reference; a node
    (or a cloud function) cannot import the user's local modules, so their
    code must travel -- the ``ModuleNotFoundError`` users of other systems
    meet.  cloudpickle's switch is per module and global: hence the lock,
    and a count per module so nested uses (a task holding a proxy whose
    class ships by value) undo only what they did.
    """
    modules = {sys.modules[o.__module__] for o in objs if ships_by_value(o) and o.__module__ in sys.modules}
    if not modules:
        yield
        return
    with _by_value_lock:
        for m in modules:
            n = _by_value_refs.get(m.__name__, 0)
            if n == 0:
                cloudpickle().register_pickle_by_value(m)
            _by_value_refs[m.__name__] = n + 1
        try:
            yield
        finally:
            for m in modules:
                n = _by_value_refs.pop(m.__name__) - 1
                if n:
                    _by_value_refs[m.__name__] = n
                else:
                    cloudpickle().unregister_pickle_by_value(m)


def _code_objects(values: Iterable[Any]) -> list[Any]:
    """Functions and classes among ``values`` (one level deep: args, kwargs)."""
    return [v for v in values if isinstance(v, (types.FunctionType, type))]


def loads(data: bytes, what: str = "value") -> Any:
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"{what} cannot be unpickled: {exc}") from exc


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def decode_json(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed {what}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"malformed {what}: expected an object")
    return obj


class CallRequest(NamedTuple):
    """One method call on one object.

    ``create`` is ``None`` to attach only (a missing object is an error), or
    ``(args, kwargs)`` to create the object with those arguments if absent,
    or ``(args, kwargs, (persistent, rf))`` to create it replicated.
    ``force`` recreates it even if present.  ``seq`` with the connection's
    client id names the call, so a retried call is applied once.
    """

    seq: int
    type_name: str
    key: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    create: tuple[Any, ...] | None = None
    force: bool = False
    owner: int = 0  # the caller's thread id, for owner-aware objects (RLock)
    below: int = 0  # every call of this client below this seq is over (0: unknown); docs/design.md


def encode_call(call: CallRequest) -> bytes:
    payload = tuple(call)
    if _plain(payload):  # the hot path: no generator, no by_value
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        return pickle_bytes(payload, _call_code(call))
    except Exception as exc:  # the message is built only when it is needed: this is the hot path
        what = f"arguments of {call.type_name}.{call.method} (key {call.key!r})"
        raise SerializationError(f"{what} cannot be pickled: {exc}") from exc


def encode_call_fields(*fields: Any) -> bytes:
    """:func:`encode_call` of ``CallRequest(*fields)``, without making the CallRequest when the call is plain data."""
    if _plain(fields):
        return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
    return encode_call(CallRequest(*fields))


def _call_code(call: CallRequest) -> Iterator[Any]:
    """What may carry code in a call: its arguments and its constructor arguments."""
    yield from call.args
    if call.kwargs:
        yield from call.kwargs.values()
    if call.create is not None:
        yield from call.create[0]
        yield from call.create[1].values()


def _options_ok(options: Any) -> bool:
    return (
        isinstance(options, tuple)
        and len(options) == 2
        and isinstance(options[0], bool)
        and (options[1] is None or (isinstance(options[1], int) and not isinstance(options[1], bool)))
    )


def decode_call(body: bytes) -> CallRequest:
    payload = loads(body, what="call")
    try:  # nine fields from a client that does not say which calls are over (the shell's one-call client)
        seq, type_name, key, method, args, kwargs, create, force, owner, *rest = payload
        below = rest[0] if rest else 0
    except (TypeError, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed call: {exc}") from exc
    if len(rest) > 1:
        raise ProtocolError(f"malformed call: {len(payload)} fields, expected 9 or 10")
    if not (isinstance(type_name, str) and isinstance(key, str) and isinstance(method, str)):
        raise ProtocolError("malformed call: type, key and method must be strings")
    if not (isinstance(seq, int) and isinstance(owner, int) and isinstance(below, int)):
        raise ProtocolError("malformed call: seq, owner and below must be ints")
    if not isinstance(args, tuple) or not (kwargs is None or isinstance(kwargs, dict)):
        raise ProtocolError("malformed call: args must be a tuple and kwargs a dict")
    if create is not None and not (
        isinstance(create, tuple)
        and len(create) in (2, 3)
        and isinstance(create[0], tuple)
        and isinstance(create[1], dict)
        and (len(create) == 2 or _options_ok(create[2]))
    ):
        raise ProtocolError("malformed call: create must be (args, kwargs) or (args, kwargs, (persistent, rf))")
    return CallRequest(seq, type_name, key, method, args, kwargs, create, bool(force), owner, below)


#: method names of a CALL that read, write and delete a data attribute of a
#: user object (``proxy.value``, ``proxy.value = 5``): a dot is in no Python name
GETATTR, SETATTR, DELATTR = "crucial.getattr", "crucial.setattr", "crucial.delattr"

#: the streams of an OUTPUT frame
STDOUT, STDERR = 1, 2


def encode_output(stream: int, text: str) -> bytes:
    """The body of an OUTPUT frame: one byte naming the stream, then the text as UTF-8."""
    return bytes((stream,)) + text.encode("utf-8", "surrogateescape")


def decode_output(body: bytes) -> tuple[int, str]:
    """``(stream, text)`` of an OUTPUT frame; an unknown stream is a ProtocolError."""
    if not body or body[0] not in (STDOUT, STDERR):
        raise ProtocolError("malformed OUTPUT: the first byte must name stdout (1) or stderr (2)")
    return body[0], body[1:].decode("utf-8", "replace")
