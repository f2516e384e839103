"""Shared collections: list, dict, sorted dict, set, matrix and queue.

Node-side ``*State`` classes are the sequential reference model; proxies
forward to them.  Every method is one atomic step on the node that owns the
object, and every multi-element update (``extend``, ``update``,
``merge_all``, ``Matrix.merge``, ``sort``) is all-or-nothing: bad input or a
merge function that raises leaves the object as it was.

Functions passed to ``merge``/``merge_all``/``compute`` run on the node: give
a picklable function (cloudpickle carries lambdas) or a name from
:data:`MERGE_FUNCTIONS`.  Snapshots (``to_list``, ``copy``, iteration) are
copies taken in one call; later changes do not show in them.

Differences from ``list``/``dict``/``set``/``queue.Queue`` and from the Java
originals are listed in ``docs/objects.md``.
"""

from __future__ import annotations

import copy
import heapq
import operator
import queue
import reprlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from .._merge import MERGE_FUNCTIONS
from ._monitor import wait_until, waits
from ._proxy import Proxy

__all__ = ["MERGE_FUNCTIONS", "Dict", "List", "Matrix", "Queue", "Set", "SortedDict"]

MergeFn = str | Callable[[Any, Any], Any]


def merge_function(fn: MergeFn) -> Callable[[Any, Any], Any]:
    if isinstance(fn, str):
        try:
            return MERGE_FUNCTIONS[fn]
        except KeyError:
            raise ValueError(f"unknown merge function {fn!r}; named ones: {', '.join(sorted(MERGE_FUNCTIONS))}") from None
    if not callable(fn):
        raise TypeError(f"merge function must be callable or a name, not {type(fn).__name__}")
    return fn


class _Missing:
    """Sentinel for "no value given" (node-local: it never crosses the wire)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _hashable(value: Any, what: str) -> None:
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"{what} must be hashable, not {type(value).__name__}") from None


def _materialize(values: Any, what: str) -> list[Any]:
    """A client-side list of ``values`` (generators do not pickle)."""
    if isinstance(values, (list, tuple)):
        return list(values)
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{what} takes an iterable, not {type(values).__name__}") from None


# --------------------------------------------------------------------------- List


class ListState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset(
        {"contains", "count", "get", "getitem", "index", "index_of", "last_index_of", "len", "slice", "sub_list", "to_list"}
    )

    def __init__(self, data: Iterable[Any] | None = None) -> None:
        self.data: list[Any] = [] if data is None else _materialize(data, "List")

    def _index(self, i: Any, what: str = "index") -> int:
        i = _int(i, f"List {what}")
        if not -len(self.data) <= i < len(self.data):
            raise IndexError(f"List {what} {i} out of range for length {len(self.data)}")
        return i

    def getitem(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self.data[index]
        return self.data[self._index(index)]

    def get(self, i: int) -> Any:
        return self.data[self._index(i)]

    def setitem(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            self.data[index] = _materialize(value, "List slice assignment")
        else:
            self.data[self._index(index)] = value

    def set(self, i: int, value: Any) -> Any:
        """Replace element ``i`` and return the old one (Java's ``set``)."""
        i = self._index(i)
        old, self.data[i] = self.data[i], value
        return old

    def delitem(self, index: int | slice) -> None:
        if isinstance(index, slice):
            del self.data[index]
        else:
            del self.data[self._index(index)]

    def append(self, value: Any) -> None:
        self.data.append(value)

    add = append

    def extend(self, values: Iterable[Any]) -> None:
        self.data.extend(_materialize(values, "List.extend"))

    def insert(self, i: int, value: Any) -> None:
        """Insert before ``i``; like ``list.insert`` an index past either end inserts at that end."""
        self.data.insert(_int(i, "List.insert index"), value)

    def remove(self, value: Any) -> None:
        try:
            self.data.remove(value)
        except ValueError:
            raise ValueError(f"List.remove(x): {_short.repr(value)} not in List") from None

    def pop(self, i: int = -1) -> Any:
        if not self.data:
            raise IndexError("pop from empty List")
        return self.data.pop(self._index(i, "pop index"))

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        try:
            return self.data.index(value, start, len(self.data) if stop is None else stop)
        except ValueError:
            raise ValueError(f"{_short.repr(value)} is not in List") from None

    def index_of(self, value: Any) -> int:
        """Java's ``indexOf``: the first index of ``value``, or -1."""
        try:
            return self.data.index(value)
        except ValueError:
            return -1

    def last_index_of(self, value: Any) -> int:
        for i in range(len(self.data) - 1, -1, -1):
            if self.data[i] == value:
                return i
        return -1

    def count(self, value: Any) -> int:
        return self.data.count(value)

    def contains(self, value: Any) -> bool:
        return value in self.data

    def len(self) -> int:
        return len(self.data)

    def sub_list(self, i: int, j: int) -> list[Any]:
        """Elements ``i`` (inclusive) to ``j`` (exclusive), checked as Java's ``subList``."""
        _int(i, "sub_list start")
        _int(j, "sub_list end")
        if not 0 <= i <= j <= len(self.data):
            raise IndexError(f"sub_list({i}, {j}) out of range: need 0 <= start <= end <= {len(self.data)}")
        return self.data[i:j]

    def to_list(self) -> list[Any]:
        return list(self.data)

    def clear(self) -> None:
        self.data.clear()

    def sort(self, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Sort on the node; on a failed comparison the list is left unchanged (unlike ``list.sort``)."""
        if key is not None and not callable(key):
            raise TypeError(f"sort key must be callable or None, not {type(key).__name__}")
        try:
            self.data = sorted(self.data, key=key, reverse=bool(reverse))
        except TypeError as exc:
            raise TypeError(f"List.sort: elements are not mutually comparable: {exc}") from None

    def reverse(self) -> None:
        self.data.reverse()

    slice = sub_list


class List(Proxy):
    """A shared ``list``.

    ``l[i]``, ``l[i:j]``, ``l[i] = v``, ``del l[i]``, ``v in l`` and
    ``len(l)`` work, each one call; iterating takes a snapshot.  Beyond
    ``list``: Java's ``add``/``set`` (returns the old element)/``index_of``
    (-1 if absent)/``sub_list``, and ``to_list()`` for a snapshot.
    """

    _impl = ListState

    def __init__(
        self,
        data: Iterable[Any] | None = None,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(
            None if data is None else _materialize(data, "List"), key=key, force_new=force_new, persistent=persistent, rf=rf
        )

    def __getitem__(self, index: int | slice) -> Any:
        return self._call("getitem", index)

    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            value = _materialize(value, "List slice assignment")
        self._call("setitem", index, value)

    def __delitem__(self, index: int | slice) -> None:
        self._call("delitem", index)

    def __contains__(self, value: Any) -> bool:
        return self._call("contains", value)

    def __len__(self) -> int:
        return self._call("len")

    def __iter__(self) -> Iterator[Any]:
        return iter(self._call("to_list"))

    def get(self, i: int) -> Any:
        return self._call("get", i)

    def set(self, i: int, value: Any) -> Any:
        """Replace element ``i``; returns the old element."""
        return self._call("set", i, value)

    def append(self, value: Any) -> None:
        self._call("append", value)

    def add(self, value: Any) -> None:
        """Same as ``append``."""
        self._call("append", value)

    def extend(self, values: Iterable[Any]) -> None:
        self._call("extend", _materialize(values, "List.extend"))

    def insert(self, i: int, value: Any) -> None:
        self._call("insert", i, value)

    def remove(self, value: Any) -> None:
        """Remove the first ``value``; ValueError if absent."""
        self._call("remove", value)

    def pop(self, i: int = -1) -> Any:
        return self._call("pop", i)

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The first index of ``value``; ValueError if absent."""
        return self._call("index", value, start, stop)

    def index_of(self, value: Any) -> int:
        """The first index of ``value``, or -1 (Java's ``indexOf``)."""
        return self._call("index_of", value)

    def last_index_of(self, value: Any) -> int:
        return self._call("last_index_of", value)

    def count(self, value: Any) -> int:
        return self._call("count", value)

    def contains(self, value: Any) -> bool:
        return self._call("contains", value)

    def sub_list(self, i: int, j: int) -> list[Any]:
        """A copy of elements ``i..j-1``; IndexError unless ``0 <= i <= j <= len``."""
        return self._call("sub_list", i, j)

    def to_list(self) -> list[Any]:
        return self._call("to_list")

    def clear(self) -> None:
        self._call("clear")

    def sort(self, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Sort on the node (``key`` must be picklable)."""
        self._call("sort", key, reverse)

    def reverse(self) -> None:
        self._call("reverse")

    def slice(self, i: int, j: int) -> list[Any]:
        """Same as ``sub_list``."""
        return self._call("sub_list", i, j)


# --------------------------------------------------------------------------- Dict


class DictState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"contains", "copy", "get", "getitem", "items", "keys", "len", "values"})

    def __init__(self, data: Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None = None) -> None:
        self.data: dict[Any, Any] = dict(data or {})

    def _check_key(self, key: Any) -> None:
        _hashable(key, f"{self._what} key")

    def _check_keys(self, keys: Iterable[Any]) -> None:
        for k in keys:
            self._check_key(k)

    _what = "Dict"

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(key, default)

    def getitem(self, key: Any) -> Any:
        return self.data[key]

    def put(self, key: Any, value: Any) -> Any:
        """Set ``key`` and return the previous value (``None`` if absent), as Java's ``put``."""
        self._check_key(key)
        old = self.data.get(key)
        self.data[key] = value
        return old

    def setitem(self, key: Any, value: Any) -> None:
        self._check_key(key)
        self.data[key] = value

    def delitem(self, key: Any) -> None:
        del self.data[key]

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        if default is _MISSING:
            return self.data.pop(key)
        return self.data.pop(key, default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._check_key(key)
        return self.data.setdefault(key, default)

    def put_if_absent(self, key: Any, value: Any) -> Any:
        """Set ``key`` only if absent; return the present value, or ``None`` if it set it."""
        self._check_key(key)
        if key in self.data:
            return self.data[key]
        self.data[key] = value
        return None

    def update(self, other: Mapping[Any, Any]) -> None:
        if not isinstance(other, Mapping):
            raise TypeError(f"{self._what}.update takes a mapping, not {type(other).__name__}")
        self._check_keys(other)
        self.data.update(other)

    def contains(self, key: Any) -> bool:
        return key in self.data

    def len(self) -> int:
        return len(self.data)

    def keys(self) -> list[Any]:
        return list(self.data)

    def values(self) -> list[Any]:
        return list(self.data.values())

    def items(self) -> list[tuple[Any, Any]]:
        return list(self.data.items())

    def copy(self) -> dict[Any, Any]:
        return dict(self.data)

    def clear(self) -> None:
        self.data.clear()

    def merge(self, key: Any, value: Any, fn: MergeFn = "sum") -> Any:
        """``data[key] = fn(data[key], value)`` or ``value`` if absent (Java ``Map.merge``); returns it."""
        f = merge_function(fn)
        self._check_key(key)
        old = self.data.get(key, _MISSING)
        new = value if old is _MISSING else f(old, value)
        self.data[key] = new
        return new

    def merge_all(self, other: Mapping[Any, Any], fn: MergeFn = "sum") -> None:
        """``merge`` every item of ``other`` in one atomic call: if ``fn`` raises, nothing changes."""
        f = merge_function(fn)
        if not isinstance(other, Mapping):
            raise TypeError(f"{self._what}.merge_all takes a mapping, not {type(other).__name__}")
        self._check_keys(other)
        data = self.data
        updates = {}
        for k, v in other.items():
            old = data.get(k, _MISSING)
            updates[k] = v if old is _MISSING else f(old, v)
        data.update(updates)


class Dict(Proxy):
    """A shared ``dict``, with Java's ``put``/``merge`` and an atomic ``merge_all``.

    ``d[k]``, ``d[k] = v``, ``del d[k]``, ``k in d`` and ``len(d)`` work; each
    is one call.  Iterating takes a snapshot (one call for all keys).
    """

    _impl = DictState

    def __init__(
        self,
        data: Mapping[Any, Any] | None = None,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(data, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._call("get", key, default)

    def __getitem__(self, key: Any) -> Any:
        return self._call("getitem", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._call("setitem", key, value)

    def __delitem__(self, key: Any) -> None:
        self._call("delitem", key)

    def __contains__(self, key: Any) -> bool:
        return self._call("contains", key)

    def __len__(self) -> int:
        return self._call("len")

    def __iter__(self) -> Iterator[Any]:
        return iter(self._call("keys"))

    def contains(self, key: Any) -> bool:
        return self._call("contains", key)

    def put(self, key: Any, value: Any) -> Any:
        """Set ``key``; returns the previous value or ``None`` (Java's ``put``)."""
        return self._call("put", key, value)

    def pop(self, key: Any, *default: Any) -> Any:
        return self._call("pop", key, *default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._call("setdefault", key, default)

    def put_if_absent(self, key: Any, value: Any) -> Any:
        """Set ``key`` if absent; returns the present value, or ``None`` if it set it."""
        return self._call("put_if_absent", key, value)

    def update(self, other: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        self._call("update", dict(other))

    def keys(self) -> list[Any]:
        return self._call("keys")

    def values(self) -> list[Any]:
        return self._call("values")

    def items(self) -> list[tuple[Any, Any]]:
        return self._call("items")

    def copy(self) -> dict[Any, Any]:
        return self._call("copy")

    def clear(self) -> None:
        self._call("clear")

    def merge(self, key: Any, value: Any, fn: MergeFn = "sum") -> Any:
        """``d[key] = fn(d[key], value)``, or ``value`` if absent; returns the new value."""
        return self._call("merge", key, value, fn)

    def merge_all(self, other: Mapping[Any, Any] | Iterable[tuple[Any, Any]], fn: MergeFn = "sum") -> None:
        """``merge`` every item of ``other``, atomically (all or nothing)."""
        self._call("merge_all", dict(other), fn)


# --------------------------------------------------------------------------- SortedDict


class SortedDictState(DictState):
    """A dict kept in key order (``sortedcontainers.SortedDict``); keys must be mutually comparable."""

    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset(
        {
            "contains",
            "copy",
            "get",
            "getitem",
            "items",
            "keys",
            "len",
            "values",
            "ceiling_key",
            "first_key",
            "floor_key",
            "head",
            "higher_key",
            "last_key",
            "lower_key",
            "sub",
            "tail",
            "top",
        }
    )

    _what = "SortedDict"
    data: Any  # a sortedcontainers.SortedDict (a dict subclass, untyped)

    def __init__(self, data: Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None = None) -> None:
        try:
            from sortedcontainers import SortedDict as _SortedDict  # on the node, when first used

            self.data = _SortedDict(data or {})
        except TypeError as exc:
            raise TypeError(f"SortedDict keys must be hashable and mutually comparable: {exc}") from None

    def _incomparable(self, key: Any, exc: Exception) -> TypeError:
        return TypeError(f"SortedDict key {_short.repr(key)} ({type(key).__name__}) cannot be ordered with its keys: {exc}")

    def _check_key(self, key: Any) -> None:
        _hashable(key, "SortedDict key")
        if self.data and key not in self.data:
            try:
                self.data.bisect_left(key)  # compares without inserting
            except TypeError as exc:
                raise self._incomparable(key, exc) from None

    def _check_keys(self, keys: Iterable[Any]) -> None:
        keys = list(keys)
        for k in keys:
            self._check_key(k)
        try:
            sorted(keys)
        except TypeError as exc:
            raise TypeError(f"SortedDict keys must be mutually comparable: {exc}") from None

    def _items(self, keys: Iterable[Any]) -> list[tuple[Any, Any]]:
        data = self.data
        return [(k, data[k]) for k in keys]

    def _range(self, lo: Any, hi: Any, inclusive: tuple[bool, bool], probe: Any) -> list[tuple[Any, Any]]:
        try:
            return self._items(self.data.irange(lo, hi, inclusive))
        except TypeError as exc:
            raise self._incomparable(probe, exc) from None

    def first_key(self) -> Any:
        if not self.data:
            raise KeyError("first_key of an empty SortedDict")
        return self.data.peekitem(0)[0]

    def last_key(self) -> Any:
        if not self.data:
            raise KeyError("last_key of an empty SortedDict")
        return self.data.peekitem(-1)[0]

    def _neighbour(self, key: Any, right: bool, offset: int) -> Any:
        data = self.data
        try:
            i = data.bisect_right(key) if right else data.bisect_left(key)
        except TypeError as exc:
            raise self._incomparable(key, exc) from None
        i += offset
        return data.peekitem(i)[0] if 0 <= i < len(data) else None

    def floor_key(self, key: Any) -> Any:
        """The greatest key ``<= key``, or ``None``."""
        return self._neighbour(key, True, -1)

    def lower_key(self, key: Any) -> Any:
        """The greatest key ``< key``, or ``None``."""
        return self._neighbour(key, False, -1)

    def ceiling_key(self, key: Any) -> Any:
        """The least key ``>= key``, or ``None``."""
        return self._neighbour(key, False, 0)

    def higher_key(self, key: Any) -> Any:
        """The least key ``> key``, or ``None``."""
        return self._neighbour(key, True, 0)

    def head(self, to_key: Any, inclusive: bool = False) -> list[tuple[Any, Any]]:
        return self._range(None, to_key, (True, bool(inclusive)), to_key) if to_key is not None else self._none_bound()

    def tail(self, from_key: Any, inclusive: bool = True) -> list[tuple[Any, Any]]:
        return self._range(from_key, None, (bool(inclusive), True), from_key) if from_key is not None else self._none_bound()

    def sub(self, from_key: Any, to_key: Any, from_inclusive: bool = True, to_inclusive: bool = False) -> list[tuple[Any, Any]]:
        if from_key is None or to_key is None:
            self._none_bound()
        try:
            backwards = to_key < from_key
        except TypeError as exc:
            raise TypeError(f"SortedDict.sub: bounds {from_key!r} and {to_key!r} cannot be compared: {exc}") from None
        if backwards:
            raise ValueError(f"SortedDict.sub: from_key {from_key!r} is greater than to_key {to_key!r}")
        return self._range(from_key, to_key, (bool(from_inclusive), bool(to_inclusive)), from_key)

    def _none_bound(self) -> list[tuple[Any, Any]]:
        raise TypeError("SortedDict range bounds must be keys, not None (use items() for all of them)")

    def top(self, k: int, by: str = "value", reverse: bool = True) -> list[tuple[Any, Any]]:
        """The first ``k`` items ranked by value (ties by ascending key) or by key; largest first by default."""
        _int(k, "top k")
        if k < 0:
            raise ValueError(f"top k must be >= 0, not {k}")
        if by == "key":
            return self._items(islice(self.data.irange(reverse=bool(reverse)), k))
        if by != "value":
            raise ValueError(f"top by must be 'value' or 'key', not {by!r}")
        pick = heapq.nlargest if reverse else heapq.nsmallest
        try:  # both are stable: equal values keep ascending key order
            return pick(k, self.data.items(), key=operator.itemgetter(1))
        except TypeError as exc:
            raise TypeError(f"SortedDict.top(by='value'): values are not mutually comparable: {exc}") from None

    def pop_first(self) -> tuple[Any, Any]:
        if not self.data:
            raise KeyError("pop_first from an empty SortedDict")
        return self.data.popitem(0)

    def pop_last(self) -> tuple[Any, Any]:
        if not self.data:
            raise KeyError("pop_last from an empty SortedDict")
        return self.data.popitem(-1)


class SortedDict(Dict):
    """A shared dict kept in key order (Java's ``TreeMap``; the original CRUCIAL's ``AtomicTreeMap``).

    The :class:`Dict` API (``keys``/``items``/iteration come in key order)
    plus ``first_key``/``last_key``, ``floor_key``/``ceiling_key``/
    ``lower_key``/``higher_key``, the ranges ``head``/``tail``/``sub`` and
    ``top`` (lists of ``(key, value)`` items), ``pop_first``/``pop_last``.
    Keys must be mutually comparable: a key that cannot be ordered with the
    others is a TypeError and changes nothing.
    """

    _impl = SortedDictState

    def first_key(self) -> Any:
        """The smallest key; KeyError if empty."""
        return self._call("first_key")

    def last_key(self) -> Any:
        """The largest key; KeyError if empty."""
        return self._call("last_key")

    def floor_key(self, key: Any) -> Any:
        return self._call("floor_key", key)

    def ceiling_key(self, key: Any) -> Any:
        return self._call("ceiling_key", key)

    def lower_key(self, key: Any) -> Any:
        return self._call("lower_key", key)

    def higher_key(self, key: Any) -> Any:
        return self._call("higher_key", key)

    def head(self, to_key: Any, inclusive: bool = False) -> list[tuple[Any, Any]]:
        """Items with key ``< to_key`` (``<=`` if ``inclusive``), in key order (Java ``headMap``)."""
        return self._call("head", to_key, inclusive)

    def tail(self, from_key: Any, inclusive: bool = True) -> list[tuple[Any, Any]]:
        """Items with key ``>= from_key`` (``>`` unless ``inclusive``), in key order (Java ``tailMap``)."""
        return self._call("tail", from_key, inclusive)

    def sub(self, from_key: Any, to_key: Any, from_inclusive: bool = True, to_inclusive: bool = False) -> list[tuple[Any, Any]]:
        """Items with ``from_key <= key < to_key`` (Java ``subMap``); ValueError if ``from_key > to_key``."""
        return self._call("sub", from_key, to_key, from_inclusive, to_inclusive)

    def top(self, k: int, by: str = "value", reverse: bool = True) -> list[tuple[Any, Any]]:
        """The top ``k`` items: by value (ties by ascending key) or by key, largest first unless ``reverse=False``."""
        return self._call("top", k, by, reverse)

    def pop_first(self) -> tuple[Any, Any]:
        """Remove and return the item with the smallest key; KeyError if empty."""
        return self._call("pop_first")

    def pop_last(self) -> tuple[Any, Any]:
        """Remove and return the item with the largest key; KeyError if empty."""
        return self._call("pop_last")


# --------------------------------------------------------------------------- Set


class SetState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"contains", "len", "to_set"})

    def __init__(self, data: Iterable[Any] | None = None) -> None:
        self.data: set[Any] = set() if data is None else self._elements(data)

    def _elements(self, values: Iterable[Any]) -> set[Any]:
        values = _materialize(values, "Set")
        for v in values:
            _hashable(v, "Set elements")
        return set(values)

    def add(self, value: Any) -> bool:
        """Add ``value``; ``True`` if it was absent (Java's ``add``)."""
        _hashable(value, "Set elements")
        if value in self.data:
            return False
        self.data.add(value)
        return True

    def discard(self, value: Any) -> bool:
        """Remove ``value`` if present; ``True`` if it was (Java's ``remove``)."""
        _hashable(value, "Set elements")
        if value in self.data:
            self.data.remove(value)
            return True
        return False

    def remove(self, value: Any) -> None:
        _hashable(value, "Set elements")
        if value not in self.data:
            raise KeyError(value)
        self.data.remove(value)

    def contains(self, value: Any) -> bool:
        try:
            return value in self.data
        except TypeError:  # unhashable: it cannot be an element
            return False

    def len(self) -> int:
        return len(self.data)

    def update(self, values: Iterable[Any]) -> None:
        self.data |= self._elements(values)

    def to_set(self) -> set[Any]:
        return set(self.data)

    def clear(self) -> None:
        self.data.clear()

    def pop(self) -> Any:
        if not self.data:
            raise KeyError("pop from an empty Set")
        return self.data.pop()


class Set(Proxy):
    """A shared ``set``: ``add``, ``discard``, ``remove``, ``update``, ``pop``, ``v in s``, ``len(s)``.

    ``add``/``discard`` return whether they changed the set (Java's
    ``add``/``remove``) instead of ``None``.  Iterating takes a snapshot.
    """

    _impl = SetState

    def __init__(
        self,
        data: Iterable[Any] | None = None,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(
            None if data is None else _materialize(data, "Set"), key=key, force_new=force_new, persistent=persistent, rf=rf
        )

    def __contains__(self, value: Any) -> bool:
        return self._call("contains", value)

    def __len__(self) -> int:
        return self._call("len")

    def __iter__(self) -> Iterator[Any]:
        return iter(self._call("to_set"))

    def add(self, value: Any) -> bool:
        return self._call("add", value)

    def discard(self, value: Any) -> bool:
        return self._call("discard", value)

    def remove(self, value: Any) -> None:
        """Remove ``value``; KeyError if absent."""
        self._call("remove", value)

    def contains(self, value: Any) -> bool:
        return self._call("contains", value)

    def update(self, values: Iterable[Any]) -> None:
        """Add every element of ``values``, atomically."""
        self._call("update", _materialize(values, "Set.update"))

    def to_set(self) -> set[Any]:
        return self._call("to_set")

    def clear(self) -> None:
        self._call("clear")

    def pop(self) -> Any:
        """Remove and return an arbitrary element; KeyError if empty."""
        return self._call("pop")


# --------------------------------------------------------------------------- Matrix

_IMMUTABLE = (int, float, complex, bool, str, bytes, type(None), frozenset)


class MatrixState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"get", "get_col", "get_row", "shape", "to_list"})

    def __init__(self, rows: int, cols: int, fill: Any = 0) -> None:
        for name, n in (("rows", rows), ("cols", cols)):
            _int(n, f"Matrix {name}")
            if n < 0:
                raise ValueError(f"Matrix {name} must be >= 0, not {n}")
        self.rows, self.cols = rows, cols
        if isinstance(fill, _IMMUTABLE):
            self.cells = [[fill] * cols for _ in range(rows)]
        else:  # a mutable fill: one copy per element, not one shared object
            self.cells = [[copy.deepcopy(fill) for _ in range(cols)] for _ in range(rows)]

    def _crucial_same_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        rows = args[0] if args else kwargs.get("rows")
        cols = args[1] if len(args) > 1 else kwargs.get("cols")
        if (rows, cols) != (self.rows, self.cols):
            return f"matrix exists with shape {(self.rows, self.cols)}, not {(rows, cols)}"
        return None

    def _at(self, i: Any, j: Any) -> tuple[int, int]:
        _int(i, "Matrix row index")
        _int(j, "Matrix column index")
        if not (-self.rows <= i < self.rows and -self.cols <= j < self.cols):
            raise IndexError(f"Matrix index ({i}, {j}) out of range for shape {(self.rows, self.cols)}")
        return i, j

    def _row(self, i: Any) -> int:
        i = _int(i, "Matrix row index")
        if not -self.rows <= i < self.rows:
            raise IndexError(f"Matrix row {i} out of range for shape {(self.rows, self.cols)}")
        return i

    def _check_row(self, values: Any, what: str) -> list[Any]:
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"{what} must be a list or tuple, not {type(values).__name__}")
        if len(values) != self.cols:
            raise ValueError(f"{what} has {len(values)} elements; the matrix has {self.cols} columns")
        return list(values)

    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def get(self, i: int, j: int) -> Any:
        i, j = self._at(i, j)
        return self.cells[i][j]

    def set(self, i: int, j: int, value: Any) -> None:
        i, j = self._at(i, j)
        self.cells[i][j] = value

    def compute(self, i: int, j: int, fn: Callable[[Any], Any]) -> Any:
        """``m[i][j] = fn(m[i][j])``; returns the new value."""
        i, j = self._at(i, j)
        if not callable(fn):
            raise TypeError(f"Matrix.compute needs a callable, not {type(fn).__name__}")
        new = self.cells[i][j] = fn(self.cells[i][j])
        return new

    def merge_at(self, i: int, j: int, value: Any, fn: MergeFn = "sum") -> Any:
        """``m[i][j] = fn(m[i][j], value)``; returns the new value (Java's ``compute(i, j, f, v)``)."""
        i, j = self._at(i, j)
        f = merge_function(fn)
        new = self.cells[i][j] = f(self.cells[i][j], value)
        return new

    def merge(self, other: list[list[Any]], fn: MergeFn = "sum") -> None:
        """Element-wise ``m[i][j] = fn(m[i][j], other[i][j])`` over a same-shape list of rows; all or nothing."""
        f = merge_function(fn)
        if not isinstance(other, (list, tuple)):
            raise TypeError(f"Matrix.merge takes a list of rows, not {type(other).__name__}")
        if len(other) != self.rows:
            raise ValueError(f"Matrix.merge: got {len(other)} rows, the matrix has shape {(self.rows, self.cols)}")
        rows = [self._check_row(r, f"Matrix.merge row {n}") for n, r in enumerate(other)]
        self.cells = [[f(a, b) for a, b in zip(mine, theirs, strict=True)] for mine, theirs in zip(self.cells, rows, strict=True)]

    def apply(self, fn: Callable[[Any], Any]) -> None:
        """``m[i][j] = fn(m[i][j])`` for every element, atomically (Java's ``forEach``)."""
        if not callable(fn):
            raise TypeError(f"Matrix.apply needs a callable, not {type(fn).__name__}")
        self.cells = [[fn(v) for v in row] for row in self.cells]

    def get_row(self, i: int) -> list[Any]:
        return list(self.cells[self._row(i)])

    def set_row(self, i: int, values: list[Any]) -> None:
        i = self._row(i)
        self.cells[i] = self._check_row(values, f"Matrix.set_row({i}) values")

    def get_col(self, j: int) -> list[Any]:
        _int(j, "Matrix column index")
        if not -self.cols <= j < self.cols:
            raise IndexError(f"Matrix column {j} out of range for shape {(self.rows, self.cols)}")
        return [row[j] for row in self.cells]

    def to_list(self) -> list[list[Any]]:
        return [list(row) for row in self.cells]


class Matrix(Proxy):
    """A shared 2-D matrix: ``Matrix(rows, cols, fill=0, key=...)``.

    Element operations (``get``, ``set``, ``compute``, ``merge_at``) and whole
    matrix ones (``merge`` of a same-shape list of rows, ``apply``) are each
    one atomic step.  Indices may be negative, as in Python; out of range is
    an IndexError naming the index and the shape.  Attaching with a
    different shape is an :class:`~crucial.exceptions.ObjectCreationError`.
    """

    _impl = MatrixState

    def __init__(
        self,
        rows: int,
        cols: int,
        fill: Any = 0,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(rows, cols, fill, key=key, force_new=force_new, persistent=persistent, rf=rf)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        rows, cols = self._call("shape")
        return (rows, cols)

    def get(self, i: int, j: int) -> Any:
        return self._call("get", i, j)

    def set(self, i: int, j: int, value: Any) -> None:
        self._call("set", i, j, value)

    def compute(self, i: int, j: int, fn: Callable[[Any], Any]) -> Any:
        """``m[i][j] = fn(m[i][j])`` on the node; returns the new value."""
        return self._call("compute", i, j, fn)

    def merge_at(self, i: int, j: int, value: Any, fn: MergeFn = "sum") -> Any:
        """``m[i][j] = fn(m[i][j], value)``; returns the new value."""
        return self._call("merge_at", i, j, value, fn)

    def merge(self, other: list[list[Any]] | Matrix, fn: MergeFn = "sum") -> None:
        """Element-wise ``fn(mine, theirs)`` with a same-shape list of rows (or another Matrix)."""
        rows = other.to_list() if isinstance(other, Matrix) else other
        self._call("merge", rows, fn)

    def apply(self, fn: Callable[[Any], Any]) -> None:
        """Replace every element ``v`` with ``fn(v)``, atomically."""
        self._call("apply", fn)

    def get_row(self, i: int) -> list[Any]:
        return self._call("get_row", i)

    def set_row(self, i: int, values: list[Any]) -> None:
        """Replace row ``i``; ``values`` must have ``cols`` elements."""
        self._call("set_row", i, list(values) if isinstance(values, tuple) else values)

    def get_col(self, j: int) -> list[Any]:
        return self._call("get_col", j)

    def to_list(self) -> list[list[Any]]:
        """A snapshot, as a list of rows."""
        return self._call("to_list")


# --------------------------------------------------------------------------- Queue


def _queue_timeout(block: bool, timeout: float | None) -> float | None:
    """queue.Queue's (block, timeout) pair to a wait_until timeout."""
    if not block:
        return 0  # queue ignores timeout when not blocking
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return timeout


class QueueState:
    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = _int(maxsize, "Queue maxsize")
        self.items: deque[Any] = deque()
        self.unfinished = 0
        self.getters = 0  # calls waiting in get()
        self.putters = 0  # calls waiting in put()

    def _crucial_same_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        maxsize = args[0] if args else kwargs.get("maxsize", 0)
        if maxsize != self.maxsize:
            return f"queue exists with maxsize={self.maxsize}, not {maxsize}"
        return None

    def _full(self) -> bool:
        return 0 < self.maxsize <= len(self.items)

    @waits
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        t = _queue_timeout(block, timeout)
        if self._full():
            self.putters += 1
            try:
                ok = wait_until(lambda: not self._full(), t)
            finally:
                self.putters -= 1
            if not ok:
                raise queue.Full(f"queue full (maxsize={self.maxsize})" + (f" after {timeout} s" if block else ""))
        self._put(item)
        self.unfinished += 1

    @waits
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        t = _queue_timeout(block, timeout)
        if not self.items:
            self.getters += 1
            try:
                ok = wait_until(lambda: bool(self.items), t)
            finally:
                self.getters -= 1
            if not ok:
                raise queue.Empty("queue empty" + (f" after {timeout} s" if block else ""))
        return self._get()

    # the order, as queue.Queue's subclasses override it (crucial.queue.LifoQueue, PriorityQueue)
    def _put(self, item: Any) -> None:
        self.items.append(item)

    def _get(self) -> Any:
        return self.items.popleft()

    def qsize(self) -> int:
        return len(self.items)

    def empty(self) -> bool:
        return not self.items

    def full(self) -> bool:
        return self._full()

    def get_maxsize(self) -> int:
        return self.maxsize

    def task_done(self) -> None:
        if self.unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished -= 1

    @waits
    def join(self, timeout: float | None = None) -> bool:
        return wait_until(lambda: self.unfinished == 0, _queue_timeout(True, timeout))

    def statistics(self) -> dict[str, int]:
        return {
            "qsize": len(self.items),
            "maxsize": self.maxsize,
            "unfinished_tasks": self.unfinished,
            "getters_waiting": self.getters,
            "putters_waiting": self.putters,
        }


class Queue(Proxy):
    """``queue.Queue`` shared by processes: ``Queue(maxsize=0, key=...)``.

    ``put``/``get`` wait on the node (no polling) and raise the stdlib
    ``queue.Full``/``queue.Empty`` on timeout or when not blocking.
    ``join(timeout=None)`` returns ``True`` when every item was marked
    ``task_done``, ``False`` on timeout.  ``maxsize <= 0`` means unbounded.
    """

    _impl = QueueState

    def __init__(
        self,
        maxsize: int = 0,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(maxsize, key=key, force_new=force_new, persistent=persistent, rf=rf)

    @property
    def maxsize(self) -> int:
        return self._call("get_maxsize")

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._call("put", item, block, timeout)

    def put_nowait(self, item: Any) -> None:
        self._call("put", item, False, None)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._call("get", block, timeout)

    def get_nowait(self) -> Any:
        return self._call("get", False, None)

    def qsize(self) -> int:
        return self._call("qsize")

    def empty(self) -> bool:
        return self._call("empty")

    def full(self) -> bool:
        return self._call("full")

    def task_done(self) -> None:
        self._call("task_done")

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every item put was marked ``task_done``; ``False`` on timeout."""
        return self._call("join", timeout)

    def statistics(self) -> dict[str, int]:
        """qsize, maxsize, unfinished_tasks and the numbers of blocked getters and putters."""
        return self._call("statistics")
