"""The grammar of the IPC verbs: parsing an argv into a :class:`Command`, and the usage texts.

Pure, and light on purpose: a client-side verb (``crucial ipc counter -n c
increment``) is a process of its own, so this module imports no typing,
dataclasses or regular expressions, and neither the DSO client nor the
object library (``crucial.shell.verbs`` runs commands; ``._thin`` sends the
common ones over one connection).  See ``docs/sshell.md`` for the syntax.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = [
    "ALIASES",
    "MERGE_NAMES",
    "VERBS",
    "Command",
    "UsageError",
    "coerce",
    "parse",
    "parse_pairs",
    "usage",
    "usage_failure",
    "wants_stdin",
]

#: the names of crucial.objects.containers.MERGE_FUNCTIONS (a test keeps them equal)
MERGE_NAMES = frozenset({"sum", "add", "sub", "mul", "min", "max", "replace", "keep", "concat", "union"})


class UsageError(ValueError):
    """Bad command line (exit status 2); the message is one line naming the problem."""


_KEY = "key"  # a map key: always a string
_VALUE = "value"  # a stored value: int, float or string (see coerce)
_RAW = "raw"  # a string kept verbatim (rdv values)
_INT = "int"  # an integer (counter steps, list indices)
_NAT = "nat"  # an integer >= 0
_FN = "fn"  # a merge function name
_ITEMS = "items"  # KEY=VALUE items (repeatable, or read from stdin)


class _Operand:
    """One operand of an operation: its flag, kind, name in messages and usage ("KEY", "VALUE", "FN" …),
    whether it is required, and its default."""

    __slots__ = ("default", "flag", "kind", "required", "what")

    def __init__(self, flag: str, kind: str, what: str, required: bool = True, default: Any = None) -> None:
        self.flag = flag
        self.kind = kind
        self.what = what
        self.required = required
        self.default = default


if TYPE_CHECKING:
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

_DIGITS = frozenset("0123456789")


def _digits(text: str) -> bool:
    """``[0-9]+`` (str.isdigit also takes other scripts' digits)."""
    return bool(text) and all(c in _DIGITS for c in text)


def _is_int(text: str) -> bool:
    """``[+-]?[0-9]+``: what an integer operand may look like."""
    return _digits(text[1:] if text[:1] in ("+", "-") else text)


def _is_canonical_int(text: str) -> bool:
    """``-?(0|[1-9][0-9]*)``: an integer written plainly."""
    digits = text[1:] if text[:1] == "-" else text
    return _digits(digits) and (digits == "0" or digits[0] != "0")


def _is_decimal(text: str) -> bool:
    """``-?([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?`` or ``-?[0-9]+[eE][+-]?[0-9]+``: a decimal number."""
    body = text[1:] if text[:1] == "-" else text
    mantissa, e, exponent = body.replace("E", "e").partition("e")
    if e and not _is_int(exponent):
        return False
    whole, point, fraction = mantissa.partition(".")
    if not point:
        return bool(e) and _digits(whole)
    return (_digits(whole) and (not fraction or _digits(fraction))) or (not whole and _digits(fraction))


def coerce(text: str) -> int | float | str:
    """How a value typed in the shell is stored.

    An integer written plainly (``42``, ``-7``, ``0``; no sign ``+``, no
    leading zero, no ``_``) becomes an ``int``; a decimal number with a point
    or an exponent (``1.5``, ``-0.25``, ``2e3``) a ``float``; anything else
    (``007``, ``+5``, ``inf``, ``1_000``, ``abc``) stays a string.
    """
    if _is_canonical_int(text):
        return int(text)
    if _is_decimal(text):
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


class Command:
    """A parsed verb call.

    ``args`` holds the converted ``-1``/``-2`` operands of the operation in
    flag order (``fn`` and ``items`` excepted); ``items`` is ``None`` when an
    operation that takes ``KEY=VALUE`` items got none (they come from stdin).
    ``op == "help"`` for ``-h``/``--help``.  ``delete``: ``--delete`` was given
    (delete the object once the operation has succeeded).  (A plain class with value
    equality rather than a dataclass: importing dataclasses costs a
    client-side verb ~10 ms.)
    """

    __slots__ = ("args", "count", "delete", "fn", "items", "name", "op", "parties", "verb")

    def __init__(
        self,
        verb: str,
        op: str,
        name: str = "",
        count: int | None = None,  # -c: counter INIT / latch COUNT
        parties: int | None = None,  # -p
        args: tuple[Any, ...] = (),
        items: tuple[tuple[str, Any], ...] | None = None,
        fn: str | None = None,
        delete: bool = False,  # --delete: then delete the object
    ) -> None:
        self.verb = verb
        self.op = op
        self.name = name
        self.count = count
        self.parties = parties
        self.args = args
        self.items = items
        self.fn = fn
        self.delete = delete

    def _fields(self) -> tuple[Any, ...]:
        return (self.verb, self.op, self.name, self.count, self.parties, self.args, self.items, self.fn, self.delete)

    def __eq__(self, other: object) -> bool:
        return type(other) is Command and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Command({fields})"


def _to_int(text: str, what: str, minimum: int | None = None) -> int:
    if not _is_int(text):
        raise UsageError(f"{what} {text!r} is not an integer")
    n = int(text)
    if minimum is not None and n < minimum:
        raise UsageError(f"{what} must be {minimum} or more, not {n}")
    return n


def _to_fn(text: str, what: str) -> str:
    if text not in MERGE_NAMES:
        raise UsageError(f"{what}: unknown merge function {text!r}; one of: {', '.join(sorted(MERGE_NAMES))}")
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
    (``merge-all -1 a=1 b=2 -2 sum``).  ``--delete``, anywhere, takes no value:
    the object is deleted once the operation has succeeded (``treemap -n R
    top -1 10 --delete``: a script's last read and its clean-up in one call).
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
    delete = False
    i = 1
    while i < len(argv):
        word = argv[i]
        if word in ("-h", "--help"):
            return Command(verb, "help")
        if word == "--delete":
            delete, last_flag = True, None
            i += 1
            continue
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
    return Command(verb, op, name, count, parties, tuple(args), items, fn, delete and op != "delete")


_STDIN_OPS = frozenset({"put-all", "putAll", "put_all", "merge-all", "mergeAll", "merge_all"})
_STDIN_VERBS = frozenset({"map", "treemap"})


def wants_stdin(argv: Sequence[str]) -> bool:
    """Whether the verb call ``argv`` reads its standard input (``map -n K merge-all -2 sum``).

    Only ``put-all``/``merge-all`` of ``map``/``treemap`` with no ``-1`` list do;
    the bash functions apply the same rule.
    """
    if not argv or argv[0] not in _STDIN_VERBS:
        return False
    rest = argv[1:]
    return "-1" not in rest and any(a in _STDIN_OPS for a in rest)


# --------------------------------------------------------------------------- output


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


def usage_failure(argv: Sequence[str], exc: UsageError) -> tuple[int, str, str]:
    """What a verb prints for bad usage: exit status 2, the problem, then the verb's usage."""
    verb = argv[0] if argv else ""
    prefix = f"{verb}: " if verb in VERBS else ""
    return 2, "", f"{prefix}{exc}\n" + (f"{usage(verb)}\n" if verb in VERBS else "")
