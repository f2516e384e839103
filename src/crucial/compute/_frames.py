"""Length-prefixed messages on a pipe, read with as few system calls as possible.

The framing is :class:`multiprocessing.connection.Connection`'s (a 4-byte
big-endian signed length, or -1 and an 8-byte length for 2 GiB and more), so
either end may still use a ``Connection``.  What differs is the reading: a
``Connection`` reads the header, then the body (two ``read`` calls, and in a
thread two releases of the GIL); :func:`read_messages` reads whatever the pipe
holds in one call and cuts it into messages.  The local backend's monitor thread
reads every reply this way, while the program's main thread competes with it
for the GIL to start more invocations.
"""

from __future__ import annotations

import os
import struct

__all__ = ["frame", "read_messages", "write_all"]

_CHUNK = 1 << 16
_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


def frame(data: bytes) -> bytes:
    """``data`` with its length in front, as ``Connection.send_bytes`` writes it."""
    n = len(data)
    if n > 0x7FFFFFFF:
        return _SHORT.pack(-1) + _LONG.pack(n) + data
    return _SHORT.pack(n) + data


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: one ``write`` unless the pipe is full or a signal cuts it short."""
    sent = os.write(fd, data)
    if sent < len(data):
        view = memoryview(data)
        while sent < len(data):
            sent += os.write(fd, view[sent:])


def read_messages(fd: int) -> list[bytes] | None:
    """Read once from ``fd`` (it is readable) and return the messages it held; None at the end of the pipe.

    A message cut short by the read is completed with blocking reads of
    exactly what is missing, as ``Connection.recv_bytes`` would wait for it:
    the writer is in the middle of writing it.
    """
    data = os.read(fd, _CHUNK)
    if not data:
        return None
    messages = []
    at = 0
    while at < len(data):
        if len(data) - at < 12:  # perhaps a header cut short
            data = data[at:] + _read_exactly(fd, max(0, 4 - (len(data) - at)))
            at = 0
        (n,) = _SHORT.unpack_from(data, at)
        start = at + 4
        if n == -1:
            if len(data) < at + 12:
                data = data[at:] + _read_exactly(fd, 12 - (len(data) - at))
                at = 0
            (n,) = _LONG.unpack_from(data, at + 4)
            start = at + 12
        end = start + n
        if end > len(data):
            messages.append(data[start:] + _read_exactly(fd, end - len(data)))
            break
        messages.append(data[start:end])
        at = end
    return messages


def _read_exactly(fd: int, n: int) -> bytes:
    if n <= 0:
        return b""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise EOFError("the pipe closed in the middle of a message")
        got += k
    return bytes(buf)
