"""``multiprocessing.Value`` and ``Array`` on DSO nodes.

A ``Value`` is an :class:`~crucial.AtomicReference` holding a number (or a
``c_char``), converted as its ctypes type converts it (``'i'`` wraps at 32
bits, ``'f'`` rounds to a float32); an ``Array`` is a :class:`~crucial.List`
of such numbers, of fixed length.  With ``lock=True`` (the default) each
comes with a shared ``RLock``: ``get_lock()``, ``acquire()``/``release()``,
``with v:`` -- what ``v.value += 1`` needs to be atomic, as with
``multiprocessing`` (where it is not atomic either).  Each ``.value`` read or
write and each item access is one call to the node.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from multiprocessing import sharedctypes as _stdlib
from typing import Any

from ..objects.atomics import AtomicReference
from ..objects.containers import List
from .synchronize import RLock

__all__ = ["Array", "RawArray", "RawValue", "Value"]

#: typecode -> ctypes type, as multiprocessing's (its stubs do not declare it)
typecode_to_type: dict[str, Any] = _stdlib.typecode_to_type  # type: ignore[attr-defined]


def _ctype(typecode_or_type: Any) -> Any:
    if isinstance(typecode_or_type, str):
        try:
            return typecode_to_type[typecode_or_type]
        except KeyError:
            raise TypeError(f"bad typecode {typecode_or_type!r} (one of {''.join(sorted(typecode_to_type))})") from None
    if isinstance(typecode_or_type, type) and issubclass(typecode_or_type, ctypes._SimpleCData):
        return typecode_or_type
    raise TypeError(f"Value/Array take a typecode or a simple ctypes type, not {typecode_or_type!r}")


def _convert(ctype: Any, value: Any) -> Any:
    """``value`` as the ctypes type would hold it (raises TypeError as ctypes does)."""
    return ctype(value).value


class _Synchronized:
    """The lock half of a synchronized Value or Array (``multiprocessing.sharedctypes.Synchronized``)."""

    _lock: Any

    def get_lock(self) -> Any:
        if self._lock is None:
            raise AttributeError("a Raw value has no lock")
        return self._lock

    def acquire(self, *args: Any) -> bool:
        return bool(self.get_lock().acquire(*args))

    def release(self) -> None:
        self.get_lock().release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Value(_Synchronized):
    def __init__(self, ctype: Any, value: Any, lock: Any) -> None:
        self._type = ctype
        self._ref = AtomicReference(_convert(ctype, value))
        self._lock = lock

    @property
    def value(self) -> Any:
        return self._ref.get()

    @value.setter
    def value(self, v: Any) -> None:
        self._ref.set(_convert(self._type, v))

    def get_obj(self) -> _Value:
        return self

    def __repr__(self) -> str:
        return f"<Synchronized wrapper for {self._type.__name__}({self.value!r})>"


class _Array(_Synchronized):
    def __init__(self, ctype: Any, values: list[Any], lock: Any) -> None:
        self._type = ctype
        self._len = len(values)
        self._list = List(values)
        self._lock = lock

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._list[index]
        return self._list.get(self._index(index))

    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            values = [_convert(self._type, v) for v in value]
            if len(values) != len(range(*index.indices(self._len))):
                raise ValueError("Can only assign sequence of same size")
            self._list[index] = values
        else:
            self._list.set(self._index(index), _convert(self._type, value))

    def _index(self, i: int) -> int:
        if not isinstance(i, int):
            raise TypeError(f"array indices must be integers, not {type(i).__name__}")
        if not -self._len <= i < self._len:
            raise IndexError("invalid index")
        return i % self._len

    def __iter__(self) -> Iterator[Any]:
        return iter(self._list.to_list())

    def get_obj(self) -> _Array:
        return self

    def __repr__(self) -> str:
        return f"<SynchronizedArray wrapper for {self._type.__name__}[{self._len}]>"


def _lock_of(lock: Any) -> Any:
    if lock is True:
        return RLock()
    if lock is False or lock is None:
        return None
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


def Value(typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
    """``multiprocessing.Value(typecode_or_type, *args, lock=True)``: ``.value``, ``get_lock()``."""
    ctype = _ctype(typecode_or_type)
    return _Value(ctype, args[0] if args else ctype().value, _lock_of(lock))


def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    return Value(typecode_or_type, *args, lock=False)


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
    """``multiprocessing.Array(typecode_or_type, size_or_initializer, *, lock=True)``: items, slices, ``len``."""
    ctype = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        values = [ctype().value] * size_or_initializer
    else:
        values = [_convert(ctype, v) for v in size_or_initializer]
    return _Array(ctype, values, _lock_of(lock))


def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    return Array(typecode_or_type, size_or_initializer, lock=False)
