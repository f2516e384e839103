"""The IPC verbs of the serverless shell: ``counter``, ``barrier``, ``latch``,
``rdv``, ``map``, ``treemap`` and ``list``.

The syntax is the original CRUCIAL one (``VERB -n NAME OPERATION [-1 A]
[-2 B] [-3 C]``); camelCase operation names (``mergeAll``, ``keySet`` …) are
accepted beside the kebab-case ones.  Two halves:

* :func:`parse` turns an argv into a :class:`Command` -- pure, no server
  needed -- and raises :class:`UsageError` on bad input;
* :func:`execute` runs a :class:`Command` against the process's default DSO
  client and returns a :class:`VerbResult` (exit code, stdout, stderr).

:func:`run_verb` does both and never raises for bad input or a failed
operation: usage errors are exit code 2, failed operations exit code 1.
See ``docs/sshell.md`` for the full reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..exceptions import (
    BrokenBarrierError,
    ConnectError,
    CrucialError,
    ObjectCreationError,
    ObjectNotFoundError,
)
from ..objects._proxy import Proxy
from ..objects.atomics import Counter
from ..objects.containers import MERGE_FUNCTIONS, Dict, List, SortedDict
from ..objects.synchronization import Barrier, CountDownLatch, SharedFuture

__all__ = ["VERBS", "Command", "UsageError", "VerbResult", "coerce", "execute", "parse", "parse_pairs", "run_verb", "usage"]


class VerbResult(NamedTuple):
    """What a verb prints and its exit status (0 ok, 1 a failed operation, 2 a usage error)."""

    code: int
    out: str
    err: str


class UsageError(ValueError):
    """Bad command line (exit status 2); the message is one line naming the problem."""


# --------------------------------------------------------------------------- the grammar

_KEY = "key"  # a map key: always a string
_VALUE = "value"  # a stored value: int, float or string (see coerce)
_RAW = "raw"  # a string kept verbatim (rdv values)
_INT = "int"  # an integer (counter steps, list indices)
_NAT = "nat"  # an integer >= 0
_FN = "fn"  # a merge function name
_ITEMS = "items"  # KEY=VALUE items (repeatable, or read from stdin)


class _Operand(NamedTuple):
    flag: str
    kind: str
    what: str  # for messages and usage: "KEY", "VALUE", "FN" …
    required: bool = True
    default: Any = None


_OpSpec = tuple[_Operand, ...]

_K1 = _Operand("-1", _KEY, "KEY")
_V2 = _Operand("-2", _VALUE, "VALUE")

_MAP_OPS: dict[str, _OpSpec] = {
    "put": (_K1, _V2),
    "get": (_K1,),
    "remove": (_K1,),
    "contains": (_K1,),
    "size": (),
    "is-empty": (),
    "keys": (),
    "values": (),
    "items": (),
    "clear": (),
    "delete": (),
    "put-all": (_Operand("-1", _ITEMS, "KEY=VALUE", required=False),),
    "merge": (_K1, _V2, _Operand("-3", _FN, "FN", required=False, default="sum")),
    "merge-all": (_Operand("-1", _ITEMS, "KEY=VALUE", required=False), _Operand("-2", _FN, "FN", required=False, default="sum")),
}

_TREEMAP_OPS: dict[str, _OpSpec] = {
    **_MAP_OPS,
    "first-key": (),
    "last-key": (),
    "head": (_K1,),
    "tail": (_K1,),
    "sub": (_K1, _Operand("-2", _KEY, "KEY")),
    "top": (_Operand("-1", _NAT, "K"),),
}

_STEP = _Operand("-1", _INT, "X", required=False, default=1)

#: verb -> (its own options: flag -> (kind, metavar)), operations
_GRAMMAR: dict[str, tuple[dict[str, tuple[str, str]], dict[str, _OpSpec]]] = {
    "counter": ({"-c": (_INT, "INIT")}, {"increment": (_STEP,), "decrement": (_STEP,), "tally": (), "reset": (), "delete": ()}),
    "barrier": ({"-p": ("pos", "PARTIES")}, {"await": (), "reset": (), "delete": ()}),
    "latch": ({"-c": (_NAT, "COUNT")}, {"count-down": (), "await": (), "count": (), "delete": ()}),
    "rdv": ({}, {"put": (_Operand("-1", _RAW, "VALUE"),), "get": (), "delete": ()}),
    "map": ({}, _MAP_OPS),
    "treemap": ({}, _TREEMAP_OPS),
    "list": (
        {},
        {
            "add": (_Operand("-1", _VALUE, "E"),),
            "get": (_Operand("-1", _INT, "I"),),
            "set": (_Operand("-1", _INT, "I"), _Operand("-2", _VALUE, "E")),
            "size": (),
            "contains": (_Operand("-1", _VALUE, "E"),),
            "remove": (_Operand("-1", _VALUE, "E"),),
            "index-of": (_Operand("-1", _VALUE, "E"),),
            "slice": (_Operand("-1", _INT, "I"), _Operand("-2", _INT, "J")),
            "all": (),
            "clear": (),
            "delete": (),
        },
    ),
}

VERBS: frozenset[str] = frozenset(_GRAMMAR)

#: the original's camelCase operation names (and a few of its other names)
ALIASES: dict[str, str] = {
    "mergeAll": "merge-all",
    "putAll": "put-all",
    "keySet": "keys",
    "containsKey": "contains",
    "isEmpty": "is-empty",
    "firstKey": "first-key",
    "lastKey": "last-key",
    "headMap": "head",
    "tailMap": "tail",
    "subMap": "sub",
    "indexOf": "index-of",
    "subList": "slice",
    "toArray": "all",
    "countDown": "count-down",
}

_LONG = {"--name": "-n", "--count": "-c", "--init": "-c", "--parties": "-p"}
_OPTION_ALIASES = {"counter": {"-i": "-1"}}  # Figure 11 of the seed: `counter -n average increment -i N`

_INT_RE = re.compile(r"[+-]?[0-9]+")
_CANONICAL_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+")


def coerce(text: str) -> int | float | str:
    """How a value typed in the shell is stored.

    An integer written plainly (``42``, ``-7``, ``0``; no sign ``+``, no
    leading zero, no ``_``) becomes an ``int``; a decimal number with a point
    or an exponent (``1.5``, ``-0.25``, ``2e3``) a ``float``; anything else
    (``007``, ``+5``, ``inf``, ``1_000``, ``abc``) stays a string.
    """
    if _CANONICAL_INT_RE.fullmatch(text):
        return int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    return text


def _operation(verb: str, word: str) -> str | None:
    ops = _GRAMMAR[verb][1]
    for candidate in (word, ALIASES.get(word), word.replace("_", "-")):
        if candidate is not None and candidate in ops:
            return candidate
    return None


def _usage_line(verb: str) -> str:
    own, ops = _GRAMMAR[verb]
    head = [f"usage: {verb} -n NAME"]
    for flag, (_kind, meta) in own.items():
        head.append(f"[{flag} {meta}]")
    alts = []
    for op, spec in ops.items():
        parts = [op]
        for o in spec:
            arg = f"{o.flag} {o.what}" + (" …" if o.kind == _ITEMS else "")
            parts.append(arg if o.required else f"[{arg}]")
        alts.append(" ".join(parts))
    return " ".join(head) + " " + " | ".join(alts)


def usage(verb: str | None = None) -> str:
    """The usage text of ``verb`` (or of every verb), without a final newline."""
    if verb is None:
        return "\n".join(_usage_line(v) for v in sorted(VERBS))
    return _usage_line(verb)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Command:
    """A parsed verb call.

    ``args`` holds the converted ``-1``/``-2`` operands of the operation in
    flag order (``fn`` and ``items`` excepted); ``items`` is ``None`` when an
    operation that takes ``KEY=VALUE`` items got none (they come from stdin).
    ``op == "help"`` for ``-h``/``--help``.
    """

    verb: str
    op: str
    name: str = ""
    count: int | None = None  # -c: counter INIT / latch COUNT
    parties: int | None = None  # -p
    args: tuple[Any, ...] = ()
    items: tuple[tuple[str, Any], ...] | None = None
    fn: str | None = None


def _to_int(text: str, what: str, minimum: int | None = None) -> int:
    if not _INT_RE.fullmatch(text):
        raise UsageError(f"{what} {text!r} is not an integer")
    n = int(text)
    if minimum is not None and n < minimum:
        raise UsageError(f"{what} must be {minimum} or more, not {n}")
    return n


def _to_fn(text: str, what: str) -> str:
    if text not in MERGE_FUNCTIONS:
        raise UsageError(f"{what}: unknown merge function {text!r}; one of: {', '.join(sorted(MERGE_FUNCTIONS))}")
    return text


def _item(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"-1 {text!r} is not KEY=VALUE")
    return key, coerce(value)


def parse_pairs(text: str) -> list[tuple[str, Any]]:
    """``KEY VALUE`` or ``KEY=VALUE`` pairs, one per line (blank lines skipped).

    A line whose first field contains ``=`` is ``KEY=VALUE``, split at the
    first ``=``; otherwise it is split at its first run of blanks.  Values are
    converted by :func:`coerce`.  A line with a single field and no ``=`` is a
    :class:`UsageError` naming the line.
    """
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        fields = line.split(None, 1)
        if "=" in fields[0]:
            key, _, value = line.partition("=")
        elif len(fields) == 2:
            key, value = fields
        else:
            raise UsageError(f"stdin line {n}: {line!r} is neither 'KEY VALUE' nor 'KEY=VALUE'")
        pairs.append((key, coerce(value.strip())))
    return pairs


def parse(argv: Sequence[str]) -> Command:
    """Parse ``argv`` (``argv[0]`` is the verb); raise :class:`UsageError` on bad input.

    Options may come before or after the operation (``barrier -n B await -p 4``
    as in the seed).  ``-1`` may be repeated for the ``KEY=VALUE`` items of
    ``put-all``/``merge-all``, and words following such an item are more items
    (``merge-all -1 a=1 b=2 -2 sum``).
    """
    if not argv:
        raise UsageError(f"missing verb; one of: {', '.join(sorted(VERBS))}")
    verb = argv[0]
    if verb not in VERBS:
        raise UsageError(f"unknown verb {verb!r}; one of: {', '.join(sorted(VERBS))}")
    own, ops = _GRAMMAR[verb]
    allowed = {"-n", *own, *(o.flag for spec in ops.values() for o in spec)}
    aliases = _OPTION_ALIASES.get(verb, {})
    given: dict[str, list[str]] = {}
    op: str | None = None
    last_flag: str | None = None
    i = 1
    while i < len(argv):
        word = argv[i]
        if word in ("-h", "--help"):
            return Command(verb, "help")
        if word.startswith("-") and len(word) > 1:
            flag = aliases.get(word, _LONG.get(word, word))
            if flag not in allowed:
                raise UsageError(f"unknown option {word}")
            if i + 1 >= len(argv):
                raise UsageError(f"option {word} needs a value")
            given.setdefault(flag, []).append(argv[i + 1])
            last_flag = flag
            i += 2
            continue
        if op is None:
            op = _operation(verb, word)
            if op is None:
                raise UsageError(f"unknown operation {word!r}; one of: {', '.join(ops)}")
        elif last_flag == "-1" and any(o.kind == _ITEMS and o.flag == "-1" for o in ops[op]):
            given["-1"].append(word)
        else:
            raise UsageError(f"unexpected argument {word!r}")
        i += 1
    if op is None:
        raise UsageError(f"missing operation; one of: {', '.join(ops)}")
    spec = {o.flag: o for o in ops[op]}
    for flag, values in given.items():
        if flag != "-n" and flag not in own and flag not in spec:
            raise UsageError(f"{op} takes no {flag}")
        if len(values) > 1 and not (flag in spec and spec[flag].kind == _ITEMS):
            raise UsageError(f"option {flag} given more than once")
    if "-n" not in given:
        raise UsageError("missing -n NAME")
    name = given["-n"][0]
    if not name:
        raise UsageError("-n NAME is empty")

    count = parties = None
    if "-c" in given:
        kind, meta = own["-c"]
        count = _to_int(given["-c"][0], f"-c {meta}", 0 if kind == _NAT else None)
    if "-p" in given:
        parties = _to_int(given["-p"][0], "-p PARTIES", 1)
    if verb == "barrier" and op == "await" and parties is None:
        raise UsageError("await needs -p PARTIES")

    args: list[Any] = []
    items: tuple[tuple[str, Any], ...] | None = None
    fn: str | None = None
    for o in ops[op]:
        if o.flag not in given:
            if o.required:
                raise UsageError(f"{op} needs {o.flag} {o.what}")
            if o.kind == _FN:
                fn = o.default
            elif o.kind != _ITEMS:
                args.append(o.default)
            continue
        text = given[o.flag][0]
        what = f"{op} {o.flag}"
        if o.kind == _ITEMS:
            items = tuple(_item(t) for t in given[o.flag])
        elif o.kind == _FN:
            fn = _to_fn(text, what)
        elif o.kind == _INT:
            args.append(_to_int(text, what))
        elif o.kind == _NAT:
            args.append(_to_int(text, what, 0))
        elif o.kind == _VALUE:
            args.append(coerce(text))
        else:  # _KEY, _RAW
            args.append(text)
    if verb == "treemap" and op == "sub" and args[0] > args[1]:
        raise UsageError(f"sub: -1 {args[0]!r} sorts after -2 {args[1]!r}")
    return Command(verb, op, name, count, parties, tuple(args), items, fn)


# --------------------------------------------------------------------------- execution


class _Failed(Exception):
    """A failed operation: exit status 1 with this message."""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _line(value: Any) -> str:
    text = _fmt(value)
    return text + "\n" if value is not None else ""


def _lines(values: Iterable[Any]) -> str:
    return "".join(_fmt(v) + "\n" for v in values)


def _pairs(items: Iterable[tuple[Any, Any]]) -> str:
    return "".join(f"{_fmt(k)} {_fmt(v)}\n" for k, v in items)


_ASSOCIATIVE = frozenset(MERGE_FUNCTIONS) - {"sub"}


def _merge_rounds(items: Sequence[tuple[str, Any]], fn: str) -> list[dict[str, Any]]:
    """The mappings to ``merge_all`` in order, so the result is that of merging item by item.

    With an associative function, repeated keys are combined locally first:
    one call.  With ``sub``, the n-th occurrences of the keys go in round n.
    """
    if fn in _ASSOCIATIVE:
        f = MERGE_FUNCTIONS[fn]
        local: dict[str, Any] = {}
        for k, v in items:
            local[k] = f(local[k], v) if k in local else v
        return [local]
    rounds: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for k, v in items:
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(rounds):
            rounds.append({})
        rounds[n][k] = v
    return rounds or [{}]


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
        for mapping in _merge_rounds(items or (), c.fn or "sum"):
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
    where = f"{c.verb} {c.name}"
    try:
        if c.op == "delete":  # every verb: remove the object (prints whether it existed)
            return VerbResult(0, _line(_TYPES[c.verb].attach(c.name).delete()), "")
        return VerbResult(0, _RUN[c.verb](c, items), "")
    except _Failed as exc:
        return VerbResult(1, "", f"{where}: {exc}\n")
    except ConnectError as exc:
        return VerbResult(1, "", f"{c.verb}: cannot reach the DSO: {exc}\n")
    except ObjectNotFoundError as exc:
        hint = {"barrier": " (create it with -p PARTIES)", "latch": " (create it with -c COUNT)"}.get(c.verb)
        if hint is None:
            return VerbResult(1, "", f"{where}: {_message(exc)}\n")
        return VerbResult(1, "", f"{where}: no such {c.verb}{hint}\n")
    except (ObjectCreationError, BrokenBarrierError) as exc:
        return VerbResult(1, "", f"{where}: {_message(exc)}\n")
    except CrucialError as exc:
        return VerbResult(1, "", f"{where}: {type(exc).__name__}: {_message(exc)}\n")
    except Exception as exc:  # raised by the object on the node (TypeError, IndexError …)
        return VerbResult(1, "", f"{where}: {c.op}: {type(exc).__name__}: {_message(exc)}\n")


def run_verb(argv: Sequence[str], stdin: str | None = None) -> VerbResult:
    """Parse and run one verb call; ``argv[0]`` is the verb name.

    Uses the process's default DSO client (``crucial.connect`` / ``CRUCIAL_DSO``).
    ``stdin`` feeds ``put-all``/``merge-all`` when they get no ``-1`` items.
    """
    try:
        command = parse(argv)
    except UsageError as exc:
        verb = argv[0] if argv else ""
        prefix = f"{verb}: " if verb in VERBS else ""
        text = f"{prefix}{exc}\n" + (f"{usage(verb)}\n" if verb in VERBS else "")
        return VerbResult(2, "", text)
    return execute(command, stdin)
