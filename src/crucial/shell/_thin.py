"""A verb from the client in a few milliseconds: one DSO call over one socket, no client library.

``crucial ipc counter -n hits increment`` is a process of its own, and a
shell script calls it in a loop: importing the DSO client, the object
library, ``typing`` and ``dataclasses`` took ~50 ms of each call, against
~10 ms for the interpreter itself.  This module sends the verb's one call
with what the interpreter has built in (``_socket``), the pickles of plain
values (:mod:`._plainpickle`) and the verb grammar of :mod:`._grammar`, exactly as the object's proxy would send
it (``tests/test_shell_thin.py`` runs every operation both ways and
compares what they print and what they leave in the DSO)::

    crucial ipc VERB ...  ──► parse (._grammar) ──► PLANS[verb, op]: type, method, args, create
                                                        │
           node ◄── HELLO, CALL (or DELETE) ◄───────────┘  one connection, no retry
                └──► OK ──► printed as verbs prints it

:func:`run` returns ``None`` -- and :mod:`crucial.cli` runs the verb the
usual way, through :mod:`.verbs` -- whenever this path is not the same:
an operation not in :data:`PLANS` (several calls, local logic) -- ``put-all`` and
``merge-all`` are, when they make one call, pairs on stdin included -- a
configuration beyond ``CRUCIAL_DSO``/``CRUCIAL_TOKEN`` (a config file,
other ``CRUCIAL_*`` settings), a cluster of several nodes (routing), a node
that does not answer the handshake or redirects the call (nothing was
applied).  An operation that raised on the node is reported as
:func:`.verbs.failure` reports it -- or, for the read-only ones whose
failures the verbs word specially, run again the usual way.
"""

from __future__ import annotations

import _socket
import _thread
import os

from . import _plainpickle
from ._grammar import VERBS, UsageError, _line, _lines, _pairs, parse, parse_pairs, usage, usage_failure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from ._grammar import Command

__all__ = ["PLANS", "run"]

# the wire protocol's numbers (crucial.protocol; tests/test_shell_thin.py keeps them equal)
PROTOCOL_VERSION = 2
HELLO, CALL, DELETE = 1, 2, 4
WELCOME, OK, ERROR = 16, 17, 18
HEADER_SIZE = 13  # !IBQ: body length, kind, request id

#: settings this path honours; any other CRUCIAL_* variable sends the verb the usual way
_OWN_SETTINGS = frozenset({"CRUCIAL_DSO", "CRUCIAL_TOKEN", "CRUCIAL_BACKEND", "CRUCIAL_SHARED_DIR"})
_CONNECT_TIMEOUT = 5.0  # Config.connect_timeout's default


class _Plan:
    """One operation as its proxy sends it: type, method, arguments, create arguments, and its printing."""

    __slots__ = ("args", "create", "method", "read_only", "show", "type_name")

    def __init__(
        self,
        type_name: str,
        method: str,
        args: Callable[[Command], tuple[Any, ...]],
        create: Callable[[Command], Any],
        show: Callable[[Command, Any], str] = lambda c, v: _line(v),
        read_only: bool = False,
    ) -> None:
        self.type_name = type_name
        self.method = method
        self.args = args
        self.create = create  # (args, kwargs) to create if absent, or None to attach
        self.show = show
        self.read_only = read_only  # a failure may be run again the usual way (for its wording)


def _none(c: Command) -> tuple[Any, ...]:
    return ()


def _a0(c: Command) -> tuple[Any, ...]:
    return c.args[:1]


def _a01(c: Command) -> tuple[Any, ...]:
    return c.args[:2]


def _nothing(c: Command, v: Any) -> str:
    return ""


def _counter(c: Command) -> Any:  # Counter(c.count or 0, key=c.name)
    return ((c.count or 0,), {})


def _container(c: Command) -> Any:  # Dict/SortedDict/List(key=c.name): data=None
    return ((None,), {})


def _barrier(c: Command) -> Any:  # Barrier(parties, key=...) or Barrier.attach(name)
    return None if c.parties is None else ((c.parties, None, None), {})


def _latch(c: Command) -> Any:  # CountDownLatch(count, key=...) or CountDownLatch.attach(name)
    return None if c.count is None else ((c.count,), {})


def _future(c: Command) -> Any:  # SharedFuture(key=c.name)
    return ((), {})


def _map_plans(type_name: str) -> dict[str, _Plan]:
    def plan(method: str, args: Any, show: Any = None, read_only: bool = False) -> _Plan:
        return _Plan(type_name, method, args, _container, show or (lambda c, v: _line(v)), read_only)

    return {
        "get": plan("getitem", _a0, read_only=True),
        "contains": plan("contains", _a0, read_only=True),
        "size": plan("len", _none, read_only=True),
        "is-empty": plan("len", _none, lambda c, v: _line(v == 0), read_only=True),
        "keys": plan("keys", _none, lambda c, v: _lines(v), read_only=True),
        "values": plan("values", _none, lambda c, v: _lines(v), read_only=True),
        "items": plan("items", _none, lambda c, v: _pairs(v), read_only=True),
        "put": plan("put", _a01),
        "merge": plan("merge", lambda c: (c.args[0], c.args[1], c.fn or "sum")),
        "clear": plan("clear", _none, _nothing),
    }


_TREEMAP_ONLY = {
    "first-key": _Plan("SortedDict", "first_key", _none, _container, read_only=True),
    "last-key": _Plan("SortedDict", "last_key", _none, _container, read_only=True),
    "head": _Plan("SortedDict", "head", _a0, _container, lambda c, v: _pairs(v), read_only=True),
    "tail": _Plan("SortedDict", "tail", _a0, _container, lambda c, v: _pairs(v), read_only=True),
    "sub": _Plan("SortedDict", "sub", _a01, _container, lambda c, v: _pairs(v), read_only=True),
    "top": _Plan("SortedDict", "top", _a0, _container, lambda c, v: _pairs(v), read_only=True),
}

#: (verb, operation) -> how its proxy sends it; what is not here goes the usual way
PLANS: dict[tuple[str, str], _Plan] = {
    ("counter", "increment"): _Plan("Counter", "increment", _a0, _counter),
    ("counter", "decrement"): _Plan("Counter", "decrement", _a0, _counter),
    ("counter", "tally"): _Plan("Counter", "tally", _none, _counter, read_only=True),
    ("counter", "reset"): _Plan("Counter", "reset", _none, _counter),
    ("barrier", "await"): _Plan("Barrier", "wait", lambda c: (None,), _barrier, lambda c, v: _line(v + 1)),
    ("barrier", "reset"): _Plan("Barrier", "reset", _none, _barrier, _nothing),
    ("latch", "count-down"): _Plan("CountDownLatch", "count_down", _none, _latch),
    ("latch", "count"): _Plan("CountDownLatch", "get_count", _none, _latch, read_only=True),
    ("latch", "await"): _Plan("CountDownLatch", "wait", lambda c: (None,), _latch, _nothing),
    ("rdv", "get"): _Plan("SharedFuture", "get", lambda c: (None,), _future, read_only=True),
    **{("map", op): p for op, p in _map_plans("Dict").items()},
    **{("treemap", op): p for op, p in _map_plans("SortedDict").items()},
    **{("treemap", op): p for op, p in _TREEMAP_ONLY.items()},
    ("list", "add"): _Plan("List", "append", _a0, _container, _nothing),
    ("list", "get"): _Plan("List", "get", _a0, _container, read_only=True),
    ("list", "set"): _Plan("List", "set", _a01, _container),
    ("list", "size"): _Plan("List", "len", _none, _container, read_only=True),
    ("list", "contains"): _Plan("List", "contains", _a0, _container, read_only=True),
    ("list", "index-of"): _Plan("List", "index_of", _a0, _container, read_only=True),
    ("list", "slice"): _Plan("List", "sub_list", _a01, _container, lambda c, v: _lines(v), read_only=True),
    ("list", "all"): _Plan("List", "to_list", _none, _container, lambda c, v: _lines(v), read_only=True),
    ("list", "clear"): _Plan("List", "clear", _none, _container, _nothing),
}

#: the object type behind each verb, for ``delete``
TYPES = {
    "counter": "Counter",
    "barrier": "Barrier",
    "latch": "CountDownLatch",
    "rdv": "SharedFuture",
    "map": "Dict",
    "treemap": "SortedDict",
    "list": "List",
}


class _Unusual(Exception):
    """Not the common case: the verb goes the usual way (nothing was applied)."""


def _environment_only() -> bool:
    """Whether the environment alone configures crucial: no config file, no ``CRUCIAL_*`` setting but ours."""
    env = os.environ
    if env.get("CRUCIAL_CONFIG") or os.path.isfile(os.path.join(os.path.expanduser("~"), ".config", "crucial", "config.toml")):
        return False
    for name in env:
        if name.startswith("CRUCIAL_") and name not in _OWN_SETTINGS and not name.startswith("CRUCIAL_IPC_"):
            return False
    return True


def _settings() -> tuple[str, str | None] | None:
    """(node address, token) when the environment alone configures one node, else None."""
    dso = os.environ.get("CRUCIAL_DSO", "")
    if not dso or "," in dso.strip(",") or not _environment_only():
        return None
    return dso.strip(","), os.environ.get("CRUCIAL_TOKEN") or None


def _one_member(welcome: bytes) -> bool:
    """Whether the WELCOME's view names one node, in the hash placement (``"members":[["id","addr"]]``)."""
    members = welcome.partition(b'"members":[')[2]
    return members.startswith(b'["') and b"],[" not in members.partition(b"]]")[0] and b'"placement"' not in welcome


def _frame(kind: int, req_id: int, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind.to_bytes(1, "big") + req_id.to_bytes(8, "big") + body


def _json_str(text: str | None) -> str:
    if text is None:
        return "null"
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    import json  # a token with characters JSON escapes: rare, and only then pay for json

    return json.dumps(text)


class _Connection:
    def __init__(self, address: str, token: str | None) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise _Unusual(address)
        self.address = address
        self.sock = _socket.socket(_socket.AF_INET6 if ":" in host.strip("[]") else _socket.AF_INET, _socket.SOCK_STREAM)
        self.sock.settimeout(_CONNECT_TIMEOUT)
        self.buf = b""
        try:
            self.sock.connect((host.strip("[]"), int(port)))
            self.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            client_id = os.urandom(16).hex()
            hello = f'{{"version":{PROTOCOL_VERSION},"token":{_json_str(token)},"client_id":"{client_id}"}}'
            self.sock.sendall(_frame(HELLO, 0, hello.encode()))
            kind, body = self.read()
        except OSError as exc:  # refused, unreachable, timed out: the usual way says it as it always has
            self.sock.close()
            raise _Unusual(str(exc)) from None
        if kind != WELCOME or not _one_member(body):
            self.sock.close()
            raise _Unusual("a refused handshake, or a cluster of several nodes")
        self.sock.settimeout(None)  # a call waits as long as the object makes it (Config.call_timeout's default)

    def read(self) -> tuple[int, bytes]:
        while len(self.buf) < HEADER_SIZE or len(self.buf) < HEADER_SIZE + int.from_bytes(self.buf[:4], "big"):
            data = self.sock.recv(65536)  # protocol.RECV_SIZE: a larger size is an mmap per reply
            if not data:
                raise OSError("the node closed the connection")
            self.buf += data
        length = int.from_bytes(self.buf[:4], "big")
        kind, body = self.buf[4], self.buf[HEADER_SIZE : HEADER_SIZE + length]
        self.buf = self.buf[HEADER_SIZE + length :]
        return kind, body

    def roundtrip(self, kind: int, body: bytes, req_id: int = 1) -> tuple[int, bytes]:
        self.sock.sendall(_frame(kind, req_id, body))
        return self.read()

    def idle(self) -> bool:
        """Whether the connection is still open with nothing unread (the node has not closed it meanwhile)."""
        try:
            self.sock.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True  # nothing to read
        except OSError:
            return False
        return False  # something unasked for, or b"" at EOF


def _connect(settings: tuple[str, str | None], opened: _Connection | None) -> _Connection:
    """``opened`` (a handshaken connection to the same node, unused) while it is still idle, else a new one."""
    if opened is not None:
        if opened.address == settings[0] and not opened.buf and opened.idle():
            return opened
        opened.sock.close()
    return _Connection(*settings)


def run(argv: Sequence[str], stdin: str | None = None, opened: _Connection | None = None) -> tuple[int, str, str] | None:
    """Run one verb over a connection of its own: (code, out, err), or None to run it the usual way.

    ``opened``: a connection already handshaken with the node, never used for
    a call (the quick ``sshell`` hands over the one it checked the node with);
    it is used if still idle, and closed in any case.
    """
    try:
        return _run(argv, stdin, opened)
    finally:
        if opened is not None:
            opened.sock.close()


def _run(argv: Sequence[str], stdin: str | None, opened: _Connection | None) -> tuple[int, str, str] | None:
    try:
        command = parse(argv)
    except UsageError as exc:
        return usage_failure(argv, exc)
    if command.op == "help":
        return 0, usage(command.verb) + "\n", ""
    if command.op in ("put-all", "merge-all"):
        plan = _all_plan(command, stdin)
        if plan is None:
            return None
    elif stdin is not None:
        return None
    else:
        plan = PLANS.get((command.verb, command.op))
    settings = _settings()
    if (plan is None and command.op != "delete") or settings is None or command.verb not in VERBS:
        return None
    try:
        conn = _connect(settings, opened)
    except _Unusual:
        return None
    deleted: tuple[int, bytes] | None = None
    try:
        if plan is None:  # delete
            kind, reply = conn.roundtrip(DELETE, _pickled((TYPES[command.verb], command.name)))
        else:
            call = (1, plan.type_name, command.name, plan.method, plan.args(command), None, plan.create(command), False)
            kind, reply = conn.roundtrip(CALL, _pickled((*call, _thread.get_ident())))
            if kind == OK and command.delete:  # --delete: once the operation has succeeded
                try:
                    deleted = conn.roundtrip(DELETE, _pickled((TYPES[command.verb], command.name)), 2)
                except OSError:
                    pass  # deleted stays None: the usual way deletes (a delete may be sent twice)
    except OSError as exc:  # the call may have been applied: say so, do not send it again
        return 1, "", f"{command.verb}: cannot reach the DSO: connection to DSO node {conn.address} lost: {exc}\n"
    finally:
        conn.sock.close()
    if kind == OK:
        value = _plainpickle.loads(reply)
        out = _line(bool(value)) if plan is None else plan.show(command, value)
        if command.delete and (deleted is None or deleted[0] != OK):
            from .verbs import then_delete  # the object library: only on this slow path

            return tuple(then_delete(command, out))  # type: ignore[return-value]
        return 0, out, ""
    if kind != ERROR or plan is None or plan.read_only:
        return None  # a redirect or a protocol failure (not applied), or wording the usual way knows
    return _failure(command, reply)


def _all_plan(command: Command, stdin: str | None) -> _Plan | None:
    """``put-all``/``merge-all`` as the one call the verbs make of them, or None when they make several
    (``merge-all -2 sub`` with a key twice) or the pairs are bad (the usual way words that)."""
    items: Sequence[tuple[str, Any]]
    if command.items is not None:
        items = command.items
    elif stdin is None:
        return None
    else:
        try:
            items = parse_pairs(stdin)
        except UsageError:
            return None
    type_name = TYPES[command.verb]
    if command.op == "put-all":
        mapping = dict(items)
        return _Plan(type_name, "update", lambda c: (mapping,), _container, _nothing)
    from .._merge import merge_rounds  # operator: only for these two

    fn = command.fn or "sum"
    rounds = merge_rounds(items, fn)
    if len(rounds) != 1:
        return None
    return _Plan(type_name, "merge_all", lambda c: (rounds[0], fn), _container, _nothing)


def _pickled(value: Any) -> bytes:
    try:
        return _plainpickle.dumps(value)
    except _plainpickle.Unpicklable:
        import pickle

        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _failure(command: Command, reply: bytes) -> tuple[int, str, str]:
    """An operation that raised on the node, printed as the verbs print it."""
    import pickle

    from .verbs import failure  # the object library: only on this slow path

    exc, _tb = pickle.loads(reply)
    return tuple(failure(command, exc))  # type: ignore[return-value]
