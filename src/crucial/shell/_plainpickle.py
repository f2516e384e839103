"""The pickles of plain values, written and read without the ``pickle`` module.

A client-side verb (:mod:`._thin`) sends one call of builtin scalars and
tuples and reads back one plain value; importing ``_pickle`` (and the
``functools``/``collections`` it pulls in) would be ~1-3 ms of a call that
aims at a few milliseconds above the interpreter's own start-up.  So:

* :func:`dumps` writes protocol-2 opcodes for ``None``, ``bool``, ``int``,
  ``float``, ``str``, ``bytes``, ``tuple`` and ``dict`` -- any ``pickle.loads``
  reads them;
* :func:`loads` reads what ``pickle.dumps`` writes for such values (and
  lists, at any protocol, framing and memo included), and hands anything
  else -- an opcode it does not know -- to the real ``pickle``.

``tests/test_shell_thin.py`` round-trips generated values through both.
"""

from __future__ import annotations

import _struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Unpicklable", "dumps", "loads"]


class Unpicklable(TypeError):
    """A value this subset does not write (the caller uses ``pickle``)."""


def dumps(obj: Any) -> bytes:
    """Protocol-2 pickle of a plain value (raises :class:`Unpicklable` for anything else)."""
    out: list[bytes] = [b"\x80\x02"]
    _write(obj, out)
    out.append(b".")
    return b"".join(out)


def _write(obj: Any, out: list[bytes]) -> None:
    t = type(obj)
    if obj is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"\x88" if obj else b"\x89")
    elif t is int:
        if 0 <= obj < 256:
            out.append(b"K" + obj.to_bytes(1, "little"))
        elif -(2**31) <= obj < 2**31:
            out.append(b"J" + obj.to_bytes(4, "little", signed=True))
        else:
            data = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            if len(data) > 255:
                raise Unpicklable("an int of more than 255 bytes")
            out.append(b"\x8a" + len(data).to_bytes(1, "little") + data)
    elif t is float:
        out.append(b"G" + _struct.pack(">d", obj))
    elif t is str:
        try:
            data = obj.encode("utf-8")
        except UnicodeEncodeError:  # surrogates (undecodable argv bytes): pickle writes those its own way
            raise Unpicklable("a str with surrogates") from None
        out.append(b"X" + len(data).to_bytes(4, "little") + data)
    elif t is bytes:
        out.append((b"C" + len(obj).to_bytes(1, "little") if len(obj) < 256 else b"B" + len(obj).to_bytes(4, "little")) + obj)
    elif t is tuple:
        if len(obj) <= 3:
            for x in obj:
                _write(x, out)
            out.append((b")", b"\x85", b"\x86", b"\x87")[len(obj)])
        else:
            out.append(b"(")
            for x in obj:
                _write(x, out)
            out.append(b"t")
    elif t is dict:
        out.append(b"}")
        if obj:
            out.append(b"(")
            for k, v in obj.items():
                _write(k, out)
                _write(v, out)
            out.append(b"u")
    else:
        raise Unpicklable(f"a {t.__name__}")


class _Other(Exception):
    """An opcode this reader does not know."""


def loads(data: bytes) -> Any:
    """The value of a pickle of plain data; anything else is read by the ``pickle`` module."""
    try:
        return _read(data)
    except (_Other, IndexError, ValueError, UnicodeDecodeError):
        import pickle

        return pickle.loads(data)


_MARK = object()


def _read(data: bytes) -> Any:
    stack: list[Any] = []
    memo: list[Any] = []
    i, n = 0, len(data)
    while i < n:
        op = data[i]
        i += 1
        if op == 0x80:  # PROTO
            i += 1
        elif op == 0x95:  # FRAME
            i += 8
        elif op == 0x2E:  # STOP
            return stack.pop()
        elif op == 0x4B:  # BININT1
            stack.append(data[i])
            i += 1
        elif op == 0x4D:  # BININT2
            stack.append(int.from_bytes(data[i : i + 2], "little"))
            i += 2
        elif op == 0x4A:  # BININT
            stack.append(int.from_bytes(data[i : i + 4], "little", signed=True))
            i += 4
        elif op == 0x8A:  # LONG1
            size = data[i]
            stack.append(int.from_bytes(data[i + 1 : i + 1 + size], "little", signed=True))
            i += 1 + size
        elif op == 0x47:  # BINFLOAT
            stack.append(_struct.unpack(">d", data[i : i + 8])[0])
            i += 8
        elif op in (0x8C, 0x58, 0x8D, 0x43, 0x42, 0x8E):  # SHORT_BINUNICODE, BINUNICODE(8), SHORT_BINBYTES, BINBYTES(8)
            width = 1 if op in (0x8C, 0x43) else 4 if op in (0x58, 0x42) else 8
            size = int.from_bytes(data[i : i + width], "little")
            i += width
            raw = data[i : i + size]
            if len(raw) != size:
                raise _Other("truncated")
            stack.append(raw.decode("utf-8", "surrogatepass") if op in (0x8C, 0x58, 0x8D) else bytes(raw))
            i += size
        elif op == 0x4E:  # NONE
            stack.append(None)
        elif op in (0x88, 0x89):  # NEWTRUE, NEWFALSE
            stack.append(op == 0x88)
        elif op == 0x5D:  # EMPTY_LIST
            stack.append([])
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
        elif op == 0x7D:  # EMPTY_DICT
            stack.append({})
        elif op == 0x28:  # MARK
            stack.append(_MARK)
        elif op in (0x85, 0x86, 0x87):  # TUPLE1-3
            size = op - 0x84
            last = tuple(stack[-size:])
            del stack[-size:]
            stack.append(last)
        elif op in (0x74, 0x65, 0x75):  # TUPLE, APPENDS, SETITEMS: what follows the last MARK
            mark = len(stack) - 1 - stack[::-1].index(_MARK)
            items = stack[mark + 1 :]
            del stack[mark:]
            if op == 0x74:
                stack.append(tuple(items))
            elif op == 0x65:
                stack[-1].extend(items)
            else:
                stack[-1].update(zip(items[::2], items[1::2], strict=True))
        elif op == 0x61:  # APPEND
            value = stack.pop()
            stack[-1].append(value)
        elif op == 0x73:  # SETITEM
            value = stack.pop()
            key = stack.pop()
            stack[-1][key] = value
        elif op == 0x94:  # MEMOIZE
            memo.append(stack[-1])
        elif op == 0x68:  # BINGET
            stack.append(memo[data[i]])
            i += 1
        elif op == 0x6A:  # LONG_BINGET
            stack.append(memo[int.from_bytes(data[i : i + 4], "little")])
            i += 4
        else:
            raise _Other(f"opcode {op:#x}")
    raise _Other("no STOP")
