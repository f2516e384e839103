"""Which part of a cloud function does not pickle, and what to use instead.

``pickle`` says "cannot pickle '_thread.lock' object" and nothing more; a
program ported from threads meets it when its thread function uses a
module-level ``threading.Lock`` (pickled by value with the function, since
a worker cannot import the user's script).  :func:`culprit` finds the
argument, the thread attribute or the global -- following the functions the
target calls -- whose value fails, so the error can name it and say what to
use instead (:func:`hint`).  Pure apart from trying to pickle things.
"""

from __future__ import annotations

import functools
import inspect
import io
import queue
import socket
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from .. import protocol as P

__all__ = ["assigned_globals", "culprit", "hint"]

_LOCKS = (type(threading.Lock()), type(threading.RLock()))

#: (type, what to use instead), checked in order
_HINTS: list[tuple[tuple[type, ...], str]] = [
    (
        _LOCKS,
        "share a crucial.Lock / crucial.RLock (or `import crucial.threading as threading`, whose Lock is one), "
        "or move the lock into a @crucial.shared class",
    ),
    ((threading.Condition,), "share a crucial.Condition (or use crucial.threading.Condition)"),
    ((threading.Semaphore,), "share a crucial.Semaphore (or use crucial.threading.Semaphore)"),
    ((threading.Event,), "share a crucial.Event (or use crucial.threading.Event)"),
    ((threading.Barrier,), "share a crucial.Barrier (or use crucial.threading.Barrier)"),
    ((queue.Queue, queue.SimpleQueue), "share a crucial.Queue (or use crucial.queue.Queue)"),
    ((threading.Thread,), "a thread cannot travel: start it inside the function, or make it a crucial.threading.Thread"),
    ((io.IOBase, socket.socket), "open the file or socket inside the function instead of passing it"),
    ((types.GeneratorType,), "generators do not pickle: pass the data, or make the generator inside the function"),
    ((threading.local,), "use crucial.threading.local: per thread, cloud threads included"),
]


def hint(value: Any) -> str:
    """What to use instead of ``value`` in a cloud function."""
    for types_, text in _HINTS:
        if isinstance(value, types_):
            return text
    return "make it a shared object (crucial.Dict, a @crucial.shared class, ...) or create it inside the function"


def _pickles(value: Any) -> bool:
    try:
        P.pickle_bytes(value, code=[value])
    except Exception:
        return False
    return True


def _names(code: types.CodeType) -> Iterator[str]:
    """The global names a code object (and the functions nested in it) may read."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _globals_of(fn: types.FunctionType) -> Iterator[tuple[str, Any]]:
    seen = set()
    for name in _names(fn.__code__):
        if name in fn.__globals__ and name not in seen:
            seen.add(name)
            yield name, fn.__globals__[name]
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            yield f"{var} (a variable of the enclosing function)", cell.cell_contents
        except ValueError:  # an empty cell
            continue


def _by_value(fn: Any) -> bool:
    return isinstance(fn, types.FunctionType) and P.ships_by_value(fn)


def _in_function(fn: Callable[..., Any], depth: int, seen: set[int]) -> tuple[str, Any] | None:
    """The global of ``fn`` (or of a function it calls, by value) that does not pickle."""
    if not _by_value(fn) or id(fn) in seen or depth > 4:
        return None
    seen.add(id(fn))
    assert isinstance(fn, types.FunctionType)
    for name, value in _globals_of(fn):
        if _pickles(value):
            continue
        if isinstance(value, types.FunctionType) and _by_value(value):
            inner = _in_function(value, depth + 1, seen)
            if inner is not None:
                return f"{inner[0]} (which {fn.__qualname__}() calls)", inner[1]
        if inspect.isclass(value) and P.ships_by_value(value):
            for meth in vars(value).values():
                inner = _in_function(meth, depth + 1, seen) if isinstance(meth, types.FunctionType) else None
                if inner is not None:
                    return f"{inner[0]} (which {fn.__qualname__}() uses)", inner[1]
        return f"the global {name!r} of {fn.__qualname__}()", value
    return None


def _in_thread(run: Callable[..., Any], thread: Any) -> tuple[str, Any] | None:
    """What of a cloud thread does not pickle: an attribute, its target's arguments or globals, or run()'s globals."""
    target = getattr(thread, "_target", None)
    if target is not None:
        found = culprit(target, getattr(thread, "_args", ()), getattr(thread, "_kwargs", {}))
        if found is not None:
            return found
    for name, attr in vars(thread).items():
        if name not in ("_target", "_args", "_kwargs") and not _pickles(attr):
            return f"the thread's attribute {name!r}", attr
    return _in_function(run, 0, set())


def culprit(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any] | None:
    """``(what, value)``: the first part of the call that does not pickle, described; ``None`` if none is found."""
    if getattr(fn, "_crucial_thread_bootstrap", False) and len(args) == 2:
        return _in_thread(*args)
    for i, value in enumerate(args):
        if not _pickles(value):
            return f"argument {i + 1}", value
    for name, value in kwargs.items():
        if not _pickles(value):
            return f"keyword argument {name!r}", value
    target = getattr(fn, "__func__", fn)  # a bound method: its function
    found = _in_function(target, 0, set())
    if found is not None:
        return found
    if not _pickles(fn):
        return "the function itself", fn
    return None


def assigned_globals(fn: Any) -> list[str]:
    """The globals ``fn``'s own code assigns or deletes (``global total; total += 1``), in order."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        return []
    return list(_assigned(code))


@functools.lru_cache(maxsize=1024)
def _assigned(code: types.CodeType) -> tuple[str, ...]:
    """What :func:`assigned_globals` finds in ``code``: fixed per code object, and read at every thread start."""
    import dis

    names: list[str] = []
    for ins in dis.get_instructions(code):
        if ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL") and ins.argval not in names:
            names.append(str(ins.argval))
    return tuple(names)
