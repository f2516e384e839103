"""Functions shipped by value, pickled once while nothing they capture can have changed.

A cloud thread's function usually comes from the caller's script, which
workers cannot import, so it travels by value: cloudpickle writes its code,
defaults, closure and the globals it reads -- ~40-130 us per start, most of
what starting a cloud thread costs, and ``parallel_for`` starts the same
function over and over.  cloudpickle captures the *values* of those globals
at each start, so the bytes may be reused only while every captured value
is provably the same: this module caches a function's bytes when all it
captures is immutable (numbers, strings, tuples of them, modules and
functions that travel by reference, other such functions) and checks, at
each start, that each captured object is still the very same object::

    start(f) ──► frozen(f)? ──no──► cloudpickle (as before)
                    │ yes: its captures (by identity)
                    ▼
            cached bytes, same captures? ──yes──► reuse ──► Task(fn=Shipped(bytes, reusable))
                    │ no
                    └──► cloudpickle, remember

A worker may also keep the function it unpickled from such bytes
(``reusable``) when the function cannot change its own globals (no
``global`` statement in its code or in the functions it calls).
"""

from __future__ import annotations

import threading
import types
import weakref
from typing import Any, NamedTuple

__all__ = ["Shipped", "pickled", "unpickled"]

_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None), range, type(Ellipsis)})
_STORES = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})


class Shipped(NamedTuple):
    """A function pickled by value (cloudpickle's bytes), as it travels in a task."""

    data: bytes
    reusable: bool  # the worker may keep the function it unpickles (see the module docstring)


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.extend(_code_objects(const))
    return out


class _Recipe:
    """Where a function's captures come from, and what they were when its bytes were made.

    ``sources`` are ``(container, key)`` pairs read with ``container[key]``
    (a globals dict and a name; a function's ``__dict__`` view for its
    attributes) or cells; ``captured`` the objects read then, compared by
    identity at the next start -- a few dict lookups instead of a walk.
    """

    __slots__ = ("captured", "shipped", "sources")

    def __init__(self) -> None:
        self.sources: list[tuple[Any, Any]] = []
        self.captured: list[Any] = []
        self.shipped: Shipped | None = None

    def read(self) -> list[Any]:
        out = []
        for container, key in self.sources:
            if key is _CELL:
                out.append(container.cell_contents)
            elif key is _ATTRS:
                out.append(tuple(container.__dict__) or None)
            else:
                out.append(container.get(key, _MISSING))
        return out

    def same(self) -> bool:
        try:
            now = self.read()
        except ValueError:  # a cell emptied since
            return False
        return all(a is b for a, b in zip(now, self.captured, strict=True))


_CELL, _ATTRS, _MISSING = object(), object(), object()


def _recipe(fn: Any, by_reference: Any) -> tuple[_Recipe, bool] | None:
    """How to check ``fn``'s captures, and whether it writes globals; None if it captures mutable state."""
    recipe = _Recipe()
    writes = [False]
    if not _walk(fn, by_reference, recipe, writes, set()):
        return None
    recipe.captured = recipe.read()
    return recipe, writes[0]


def _walk(fn: Any, by_reference: Any, recipe: _Recipe, writes: list[bool], seen: set[int]) -> bool:
    if type(fn) is not types.FunctionType:
        return False
    if id(fn) in seen:
        return True
    seen.add(id(fn))
    if fn.__dict__:  # attributes set on the function: state it carries
        return False
    attrs = {"__code__": fn.__code__, "__defaults__": fn.__defaults__, "__kwdefaults__": fn.__kwdefaults__}
    for name in attrs:  # rebinding any of them is a change
        recipe.sources.append((_FunctionAttrs(fn), name))
    recipe.sources.append((fn, _ATTRS))
    kwdefaults = fn.__kwdefaults__ or {}
    for value in (*(fn.__defaults__ or ()), *kwdefaults.values()):
        if not _value(value, by_reference, recipe, writes, seen):
            return False
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            return False
        recipe.sources.append((cell, _CELL))
        if not _value(value, by_reference, recipe, writes, seen):
            return False
    import dis  # only when a function is first seen (dis imports ~3 ms of modules)

    names = fn.__globals__
    for code in _code_objects(fn.__code__):
        if any(ins.opname in _STORES for ins in dis.get_instructions(code)):
            writes[0] = True
        for name in code.co_names:
            recipe.sources.append((names, name))  # absent now (a builtin, an attribute name) must stay absent
            if name in names and not _value(names[name], by_reference, recipe, writes, seen):
                return False
    return True


class _FunctionAttrs:
    """``fn.__code__`` and friends read as ``container[name]``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self.fn, name, default)


def _value(value: Any, by_reference: Any, recipe: _Recipe, writes: list[bool], seen: set[int]) -> bool:
    t = type(value)
    if t in _IMMUTABLE:
        return True
    if t is tuple or t is frozenset:
        return all(_value(v, by_reference, recipe, writes, seen) for v in value)
    if t is types.ModuleType or t is types.BuiltinFunctionType or isinstance(value, type):
        return bool(by_reference(value))
    if t is types.FunctionType:
        return bool(by_reference(value)) or _walk(value, by_reference, recipe, writes, seen)
    return False


_cache: weakref.WeakKeyDictionary[Any, _Recipe] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def pickled(fn: Any, by_reference: Any, dumps: Any) -> Shipped | None:
    """``fn``'s bytes (``dumps(fn)``), reused while its captures are the same; None when it captures mutable state."""
    if type(fn) is not types.FunctionType:
        return None
    with _lock:
        recipe = _cache.get(fn)
    if recipe is not None and recipe.same():
        return recipe.shipped
    made = _recipe(fn, by_reference)
    if made is None:
        with _lock:
            _cache.pop(fn, None)
        return None
    recipe, writes = made
    recipe.shipped = Shipped(dumps(fn), not writes)
    with _lock:
        _cache[fn] = recipe
    return recipe.shipped


_loaded: dict[bytes, Any] = {}
_MAX_LOADED = 64


def unpickled(shipped: Shipped, loads: Any) -> Any:
    """The function of ``shipped``; a worker keeps a reusable one for its next invocations."""
    if not shipped.reusable:
        return loads(shipped.data)
    fn = _loaded.get(shipped.data)
    if fn is None:
        fn = loads(shipped.data)
        if len(_loaded) >= _MAX_LOADED:
            _loaded.pop(next(iter(_loaded)))
        _loaded[shipped.data] = fn
    return fn
