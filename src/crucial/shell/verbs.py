"""The IPC verbs of the serverless shell: ``counter``, ``barrier``, ``latch``,
``rdv``, ``map``, ``treemap`` and ``list``.

The syntax is the original CRUCIAL one (``VERB -n NAME OPERATION [-1 A]
[-2 B] [-3 C]``); camelCase operation names (``mergeAll``, ``keySet`` …) are
accepted beside the kebab-case ones.  Two halves:

* :func:`parse` turns an argv into a :class:`Command` -- pure, no server
  needed -- and raises :class:`UsageError` on bad input (it lives in
  :mod:`._grammar`, which a client-side verb imports without the rest);
* :func:`execute` runs a :class:`Command` against the process's default DSO
  client and returns a :class:`VerbResult` (exit code, stdout, stderr).

:func:`run_verb` does both and never raises for bad input or a failed
operation: usage errors are exit code 2, failed operations exit code 1.
See ``docs/sshell.md`` for the full reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .._merge import merge_rounds
from ..exceptions import (
    BrokenBarrierError,
    ConnectError,
    CrucialError,
    ObjectCreationError,
    ObjectNotFoundError,
)
from ..objects._proxy import Proxy
from ..objects.atomics import Counter
from ..objects.containers import Dict, List, SortedDict
from ..objects.synchronization import Barrier, CountDownLatch, SharedFuture
from ._grammar import (  # noqa: F401  (ALIASES: re-exported)
    ALIASES,
    VERBS,
    Command,
    UsageError,
    _line,
    _lines,
    _pairs,
    coerce,
    parse,
    parse_pairs,
    usage,
    usage_failure,
)

__all__ = ["VERBS", "Command", "UsageError", "VerbResult", "coerce", "execute", "parse", "parse_pairs", "run_verb", "usage"]


class VerbResult(NamedTuple):
    """What a verb prints and its exit status (0 ok, 1 a failed operation, 2 a usage error)."""

    code: int
    out: str
    err: str


# --------------------------------------------------------------------------- execution


class _Failed(Exception):
    """A failed operation: exit status 1 with this message."""


def _counter(c: Command, _items: Any) -> str:
    counter = Counter(c.count or 0, key=c.name)
    if c.op == "increment":
        return _line(counter.increment(c.args[0]))
    if c.op == "decrement":
        return _line(counter.decrement(c.args[0]))
    if c.op == "tally":
        return _line(counter.tally())
    return _line(counter.reset())


def _barrier(c: Command, _items: Any) -> str:
    barrier = Barrier(c.parties, key=c.name) if c.parties is not None else Barrier.attach(c.name)
    if c.op == "await":
        return _line(barrier.wait() + 1)  # arrival rank: PARTIES for the one that lifts it
    barrier.reset()
    return ""


def _latch(c: Command, _items: Any) -> str:
    latch = CountDownLatch(c.count, key=c.name) if c.count is not None else CountDownLatch.attach(c.name)
    if c.op == "count-down":
        return _line(latch.count_down())
    if c.op == "count":
        return _line(latch.get_count())
    latch.wait()
    return ""


def _rdv(c: Command, _items: Any) -> str:
    future = SharedFuture(key=c.name)
    if c.op == "get":
        return _line(future.get())
    if not future.set(c.args[0]):
        raise _Failed("already has a value (a rendezvous takes one put)")
    return ""


def _map(c: Command, items: Sequence[tuple[str, Any]] | None) -> str:
    d: Dict = SortedDict(key=c.name) if c.verb == "treemap" else Dict(key=c.name)
    op, a = c.op, c.args
    try:
        if op == "get":
            return _line(d[a[0]])
        if op == "remove":
            return _line(d.pop(a[0]))
    except KeyError:
        raise _Failed(f"no key {a[0]!r}") from None
    simple: dict[str, Callable[[], str]] = {
        "put": lambda: _line(d.put(a[0], a[1])),
        "contains": lambda: _line(d.contains(a[0])),
        "size": lambda: _line(len(d)),
        "is-empty": lambda: _line(len(d) == 0),
        "keys": lambda: _lines(d.keys()),
        "values": lambda: _lines(d.values()),
        "items": lambda: _pairs(d.items()),
        "merge": lambda: _line(d.merge(a[0], a[1], c.fn or "sum")),
    }
    if op in simple:
        return simple[op]()
    if op == "clear":
        d.clear()
        return ""
    if op == "put-all":
        d.update(dict(items or ()))
        return ""
    if op == "merge-all":
        for mapping in merge_rounds(items or (), c.fn or "sum"):
            d.merge_all(mapping, c.fn or "sum")
        return ""
    assert isinstance(d, SortedDict)
    try:
        if op == "first-key":
            return _line(d.first_key())
        if op == "last-key":
            return _line(d.last_key())
    except KeyError:
        raise _Failed(f"no {op.replace('-', ' ')}: it is empty") from None
    if op == "head":
        return _pairs(d.head(a[0]))
    if op == "tail":
        return _pairs(d.tail(a[0]))
    if op == "sub":
        return _pairs(d.sub(a[0], a[1]))
    return _pairs(d.top(a[0]))  # "top"


def _list(c: Command, _items: Any) -> str:
    lst = List(key=c.name)
    op, a = c.op, c.args
    if op == "add":
        lst.add(a[0])
        return ""
    if op == "get":
        return _line(lst.get(a[0]))
    if op == "set":
        return _line(lst.set(a[0], a[1]))
    if op == "size":
        return _line(len(lst))
    if op == "contains":
        return _line(lst.contains(a[0]))
    if op == "remove":
        try:
            lst.remove(a[0])
        except ValueError:
            raise _Failed(f"no element {a[0]!r}") from None
        return ""
    if op == "index-of":
        return _line(lst.index_of(a[0]))
    if op == "slice":
        return _lines(lst.sub_list(a[0], a[1]))
    if op == "all":
        return _lines(lst.to_list())
    lst.clear()
    return ""


_RUN: dict[str, Callable[[Command, Any], str]] = {
    "counter": _counter,
    "barrier": _barrier,
    "latch": _latch,
    "rdv": _rdv,
    "map": _map,
    "treemap": _map,
    "list": _list,
}


#: the shared type behind each verb (for ``delete``)
_TYPES: dict[str, type[Proxy]] = {
    "counter": Counter,
    "barrier": Barrier,
    "latch": CountDownLatch,
    "rdv": SharedFuture,
    "map": Dict,
    "treemap": SortedDict,
    "list": List,
}

_OBJECT_PREFIX = re.compile(r"^[A-Za-z]\w* '[^']*': ")


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        return str(exc.args[0])
    text = str(exc) or type(exc).__name__
    return _OBJECT_PREFIX.sub("", text) if isinstance(exc, CrucialError) else text


def execute(command: Command, stdin: str | None = None) -> VerbResult:
    """Run ``command`` with the default DSO client; bad input and failures are results, not exceptions."""
    c = command
    if c.op == "help":
        return VerbResult(0, usage(c.verb) + "\n", "")
    items: Sequence[tuple[str, Any]] | None = c.items
    if c.op in ("put-all", "merge-all") and items is None:
        if stdin is None:
            return VerbResult(2, "", f"{c.verb}: {c.op} needs -1 KEY=VALUE … or pairs on stdin\n{usage(c.verb)}\n")
        try:
            items = parse_pairs(stdin)
        except UsageError as exc:
            return VerbResult(2, "", f"{c.verb}: {exc}\n")
    try:
        if c.op == "delete":  # every verb: remove the object (prints whether it existed)
            return VerbResult(0, _line(_TYPES[c.verb].attach(c.name).delete()), "")
        out = _RUN[c.verb](c, items)
    except Exception as exc:
        return failure(c, exc)
    return then_delete(c, out) if c.delete else VerbResult(0, out, "")


def then_delete(command: Command, out: str) -> VerbResult:
    """``--delete`` after an operation that succeeded and printed ``out``: delete the object (its status, not its output)."""
    gone = execute(Command(command.verb, "delete", command.name))
    return VerbResult(gone.code, out, gone.err)


def failure(command: Command, exc: Exception) -> VerbResult:
    """What a verb prints when its operation raised ``exc`` (exit status 1)."""
    c = command
    where = f"{c.verb} {c.name}"
    if isinstance(exc, _Failed):
        return VerbResult(1, "", f"{where}: {exc}\n")
    if isinstance(exc, ConnectError):
        return VerbResult(1, "", f"{c.verb}: cannot reach the DSO: {exc}\n")
    if isinstance(exc, ObjectNotFoundError):
        hint = {"barrier": " (create it with -p PARTIES)", "latch": " (create it with -c COUNT)"}.get(c.verb)
        if hint is None:
            return VerbResult(1, "", f"{where}: {_message(exc)}\n")
        return VerbResult(1, "", f"{where}: no such {c.verb}{hint}\n")
    if isinstance(exc, (ObjectCreationError, BrokenBarrierError)):
        return VerbResult(1, "", f"{where}: {_message(exc)}\n")
    if isinstance(exc, CrucialError):
        return VerbResult(1, "", f"{where}: {type(exc).__name__}: {_message(exc)}\n")
    # raised by the object on the node (TypeError, IndexError …)
    return VerbResult(1, "", f"{where}: {c.op}: {type(exc).__name__}: {_message(exc)}\n")


def run_verb(argv: Sequence[str], stdin: str | None = None) -> VerbResult:
    """Parse and run one verb call; ``argv[0]`` is the verb name.

    Uses the process's default DSO client (``crucial.connect`` / ``CRUCIAL_DSO``).
    ``stdin`` feeds ``put-all``/``merge-all`` when they get no ``-1`` items.
    """
    try:
        command = parse(argv)
    except UsageError as exc:
        return VerbResult(*usage_failure(argv, exc))
    return execute(command, stdin)
