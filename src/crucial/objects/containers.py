"""Shared collections: list, dict, sorted dict, set, matrix and queue.

Node-side ``*State`` classes are the sequential reference model; proxies
forward to them.  Functions passed to ``merge``/``merge_all``/``compute``
run on the node: give a picklable function or a name from :data:`MERGE_FUNCTIONS`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._proxy import Proxy

__all__ = ["MERGE_FUNCTIONS", "Dict"]

#: named merge functions, usable where a function is expected (``"sum"`` …)
MERGE_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "sum": operator.add,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "min": min,
    "max": max,
    "replace": lambda old, new: new,
    "keep": lambda old, new: old,
    "concat": operator.add,
    "union": lambda old, new: old | new,
}


def merge_function(fn: str | Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    if isinstance(fn, str):
        try:
            return MERGE_FUNCTIONS[fn]
        except KeyError:
            raise ValueError(f"unknown merge function {fn!r}; named ones: {', '.join(sorted(MERGE_FUNCTIONS))}") from None
    if not callable(fn):
        raise TypeError(f"merge function must be callable or a name, not {type(fn).__name__}")
    return fn


_MISSING = ("crucial.missing",)


class DictState:
    def __init__(self, data: Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None = None) -> None:
        self.data: dict[Any, Any] = dict(data or {})

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(key, default)

    def getitem(self, key: Any) -> Any:
        return self.data[key]

    def put(self, key: Any, value: Any) -> Any:
        """Set ``key`` and return the previous value (``None`` if absent), as Java's ``put``."""
        old = self.data.get(key)
        self.data[key] = value
        return old

    def setitem(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def delitem(self, key: Any) -> None:
        del self.data[key]

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        if default is _MISSING:
            return self.data.pop(key)
        return self.data.pop(key, default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self.data.setdefault(key, default)

    def put_if_absent(self, key: Any, value: Any) -> Any:
        """Set ``key`` only if absent; return the present value, or ``None`` if it set it."""
        if key in self.data:
            return self.data[key]
        self.data[key] = value
        return None

    def update(self, other: Mapping[Any, Any]) -> None:
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

    def merge(self, key: Any, value: Any, fn: str | Callable[[Any, Any], Any] = "sum") -> Any:
        """``data[key] = fn(data[key], value)`` or ``value`` if absent (Java ``Map.merge``); returns it."""
        f = merge_function(fn)
        old = self.data.get(key, _MISSING)
        new = value if old is _MISSING else f(old, value)
        self.data[key] = new
        return new

    def merge_all(self, other: Mapping[Any, Any], fn: str | Callable[[Any, Any], Any] = "sum") -> None:
        """``merge`` every item of ``other`` in one atomic call."""
        f = merge_function(fn)
        data = self.data
        for k, v in other.items():
            old = data.get(k, _MISSING)
            data[k] = v if old is _MISSING else f(old, v)


class Dict(Proxy):
    """A shared ``dict``, with Java's ``put``/``merge`` and an atomic ``merge_all``.

    ``d[k]``, ``d[k] = v``, ``del d[k]``, ``k in d`` and ``len(d)`` work; each
    is one call.  Iterating takes a snapshot (one call for all keys).
    """

    _impl = DictState

    def __init__(self, data: Mapping[Any, Any] | None = None, *, key: str | None = None, force_new: bool = False) -> None:
        super().__init__(data, key=key, force_new=force_new)

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

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._call("keys"))

    def put(self, key: Any, value: Any) -> Any:
        return self._call("put", key, value)

    def pop(self, key: Any, *default: Any) -> Any:
        return self._call("pop", key, *default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._call("setdefault", key, default)

    def put_if_absent(self, key: Any, value: Any) -> Any:
        return self._call("put_if_absent", key, value)

    def update(self, other: Mapping[Any, Any]) -> None:
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

    def merge(self, key: Any, value: Any, fn: str | Callable[[Any, Any], Any] = "sum") -> Any:
        return self._call("merge", key, value, fn)

    def merge_all(self, other: Mapping[Any, Any], fn: str | Callable[[Any, Any], Any] = "sum") -> None:
        self._call("merge_all", dict(other), fn)
