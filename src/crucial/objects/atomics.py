"""Atomics: int, bool, reference, byte array and counter.

Each type comes in two halves: ``*State``, the node-side class -- plain
Python, the sequential reference model the tests check histories against --
and the proxy users hold, whose methods forward to it.  Names are the
``snake_case`` forms of ``java.util.concurrent.atomic``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._proxy import Proxy

__all__ = [
    "AtomicBool",
    "AtomicByteArray",
    "AtomicInt",
    "AtomicReference",
    "Counter",
]


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


class AtomicIntState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"get"})

    def __init__(self, value: int = 0) -> None:
        self.value = _int(value, "initial value")

    def get(self) -> int:
        return self.value

    def set(self, value: int) -> None:
        self.value = _int(value, "value")

    def get_and_set(self, value: int) -> int:
        old, self.value = self.value, _int(value, "value")
        return old

    def add_and_get(self, delta: int) -> int:
        self.value += _int(delta, "delta")
        return self.value

    def get_and_add(self, delta: int) -> int:
        old = self.value
        self.value += _int(delta, "delta")
        return old

    def increment_and_get(self) -> int:
        self.value += 1
        return self.value

    def decrement_and_get(self) -> int:
        self.value -= 1
        return self.value

    def get_and_increment(self) -> int:
        self.value += 1
        return self.value - 1

    def get_and_decrement(self) -> int:
        self.value -= 1
        return self.value + 1

    def compare_and_set(self, expect: int, update: int) -> bool:
        update = _int(update, "update")  # a bad update is an error even when the compare fails
        if self.value == expect:
            self.value = update
            return True
        return False

    def update_and_get(self, fn: Callable[[int], int]) -> int:
        self.value = _int(fn(self.value), "result of fn")
        return self.value

    def multiply_and_get(self, factor: int) -> int:
        self.value *= _int(factor, "factor")
        return self.value


class AtomicInt(Proxy):
    """A shared integer (``AtomicLong``; Python ints do not overflow).

    ``AtomicInt(value=0, key=...)``.  Every method is one atomic step on the node.
    """

    _impl = AtomicIntState

    def __init__(
        self,
        value: int = 0,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(value, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def get(self) -> int:
        return self._call("get")

    def set(self, value: int) -> None:
        self._call("set", value)

    def get_and_set(self, value: int) -> int:
        return self._call("get_and_set", value)

    def add_and_get(self, delta: int) -> int:
        return self._call("add_and_get", delta)

    def get_and_add(self, delta: int) -> int:
        return self._call("get_and_add", delta)

    def increment_and_get(self) -> int:
        return self._call("increment_and_get")

    def decrement_and_get(self) -> int:
        return self._call("decrement_and_get")

    def get_and_increment(self) -> int:
        return self._call("get_and_increment")

    def get_and_decrement(self) -> int:
        return self._call("get_and_decrement")

    def compare_and_set(self, expect: int, update: int) -> bool:
        """Set to ``update`` if the value is ``expect``; ``True`` if it did."""
        return self._call("compare_and_set", expect, update)

    def update_and_get(self, fn: Callable[[int], int]) -> int:
        """Apply ``fn`` (a picklable function) on the node, atomically."""
        return self._call("update_and_get", fn)

    def multiply_and_get(self, factor: int) -> int:
        return self._call("multiply_and_get", factor)


class CounterState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"tally"})

    def __init__(self, value: int = 0) -> None:
        self.value = _int(value, "initial value")
        self.initial = self.value

    def increment(self, n: int = 1) -> int:
        self.value += _int(n, "n")
        return self.value

    def decrement(self, n: int = 1) -> int:
        self.value -= _int(n, "n")
        return self.value

    def tally(self) -> int:
        return self.value

    def reset(self) -> int:
        old, self.value = self.value, self.initial
        return old


class Counter(Proxy):
    """A shared counter: ``increment(n)``, ``decrement(n)``, ``tally()``, ``reset()``.

    ``reset()`` sets it back to its initial value and returns the old tally.
    (The original CRUCIAL's ``sshell counter`` verbs map one to one.)
    """

    _impl = CounterState

    def __init__(
        self,
        value: int = 0,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(value, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def increment(self, n: int = 1) -> int:
        return self._call("increment", n)

    def decrement(self, n: int = 1) -> int:
        return self._call("decrement", n)

    def tally(self) -> int:
        return self._call("tally")

    def reset(self) -> int:
        return self._call("reset")


class AtomicBoolState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"get"})

    def __init__(self, value: bool = False) -> None:
        self.value = bool(value)

    def get(self) -> bool:
        return self.value

    def set(self, value: bool) -> None:
        self.value = bool(value)

    def get_and_set(self, value: bool) -> bool:
        old, self.value = self.value, bool(value)
        return old

    def compare_and_set(self, expect: bool, update: bool) -> bool:
        if self.value == bool(expect):
            self.value = bool(update)
            return True
        return False

    def toggle_and_get(self) -> bool:
        self.value = not self.value
        return self.value


class AtomicBool(Proxy):
    """A shared boolean (``AtomicBoolean``)."""

    _impl = AtomicBoolState

    def __init__(
        self,
        value: bool = False,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(value, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def get(self) -> bool:
        return self._call("get")

    def set(self, value: bool) -> None:
        self._call("set", value)

    def get_and_set(self, value: bool) -> bool:
        return self._call("get_and_set", value)

    def compare_and_set(self, expect: bool, update: bool) -> bool:
        return self._call("compare_and_set", expect, update)

    def toggle_and_get(self) -> bool:
        return self._call("toggle_and_get")


class AtomicReferenceState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"get"})

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value

    def set(self, value: Any) -> None:
        self.value = value

    def get_and_set(self, value: Any) -> Any:
        old, self.value = self.value, value
        return old

    def compare_and_set(self, expect: Any, update: Any) -> bool:
        """Compares by equality (``==``): values arrive as copies, identity means nothing here."""
        if self.value == expect:
            self.value = update
            return True
        return False

    def update_and_get(self, fn: Callable[[Any], Any]) -> Any:
        self.value = fn(self.value)
        return self.value


class AtomicReference(Proxy):
    """A shared reference to any picklable value (``AtomicReference``).

    Unlike Java, ``compare_and_set`` compares by ``==``, since every value
    reaches the node as a copy.
    """

    _impl = AtomicReferenceState

    def __init__(
        self,
        value: Any = None,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(value, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def get(self) -> Any:
        return self._call("get")

    def set(self, value: Any) -> None:
        self._call("set", value)

    def get_and_set(self, value: Any) -> Any:
        return self._call("get_and_set", value)

    def compare_and_set(self, expect: Any, update: Any) -> bool:
        return self._call("compare_and_set", expect, update)

    def update_and_get(self, fn: Callable[[Any], Any]) -> Any:
        return self._call("update_and_get", fn)


class AtomicByteArrayState:
    #: methods that change nothing: a backup may serve them (reads with consistency="sequential")
    _crucial_readonly_methods = frozenset({"get", "length", "read"})

    def __init__(self, size_or_data: int | bytes = 0) -> None:
        if isinstance(size_or_data, int) and not isinstance(size_or_data, bool):
            if size_or_data < 0:
                raise ValueError("size must not be negative")
            self.data = bytearray(size_or_data)
        elif isinstance(size_or_data, (bytes, bytearray, memoryview)):
            self.data = bytearray(size_or_data)
        else:
            raise TypeError(f"AtomicByteArray takes a size or bytes, not {type(size_or_data).__name__}")

    def _index(self, i: int) -> int:
        _int(i, "index")
        if not -len(self.data) <= i < len(self.data):
            raise IndexError(f"index {i} out of range for AtomicByteArray of length {len(self.data)}")
        return i

    def length(self) -> int:
        return len(self.data)

    def get(self, i: int) -> int:
        return self.data[self._index(i)]

    def set(self, i: int, value: int) -> None:
        self.data[self._index(i)] = value

    def get_and_set(self, i: int, value: int) -> int:
        old = self.data[self._index(i)]
        self.data[i] = value
        return old

    def add_and_get(self, i: int, delta: int) -> int:
        """Adds modulo 256, as Java's byte arithmetic wraps (unsigned here)."""
        self.data[self._index(i)] = (self.data[i] + _int(delta, "delta")) % 256
        return self.data[i]

    def compare_and_set(self, i: int, expect: int, update: int) -> bool:
        if self.data[self._index(i)] == expect:
            self.data[i] = update
            return True
        return False

    def read(self, start: int = 0, stop: int | None = None) -> bytes:
        return bytes(self.data[start:stop])

    def write(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > len(self.data):
            raise IndexError(f"write of {len(data)} bytes at {offset} exceeds length {len(self.data)}")
        self.data[offset : offset + len(data)] = data


class AtomicByteArray(Proxy):
    """A shared fixed-length array of bytes (values 0..255), element-atomic."""

    _impl = AtomicByteArrayState

    def __init__(
        self,
        size_or_data: int | bytes = 0,
        *,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
    ) -> None:
        super().__init__(size_or_data, key=key, force_new=force_new, persistent=persistent, rf=rf)

    def __len__(self) -> int:
        return self._call("length")

    def length(self) -> int:
        return self._call("length")

    def get(self, i: int) -> int:
        return self._call("get", i)

    def set(self, i: int, value: int) -> None:
        self._call("set", i, value)

    def get_and_set(self, i: int, value: int) -> int:
        return self._call("get_and_set", i, value)

    def add_and_get(self, i: int, delta: int) -> int:
        return self._call("add_and_get", i, delta)

    def compare_and_set(self, i: int, expect: int, update: int) -> bool:
        return self._call("compare_and_set", i, expect, update)

    def read(self, start: int = 0, stop: int | None = None) -> bytes:
        return self._call("read", start, stop)

    def write(self, offset: int, data: bytes) -> None:
        self._call("write", offset, data)
