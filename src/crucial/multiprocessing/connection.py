"""``multiprocessing.Pipe``: two connected ends, through one DSO object.

::

    parent, child = Pipe()          # duplex: each end sends and receives
    reader, writer = Pipe(False)    # one way: writer.send(x) -> reader.recv()

What one end sends the other receives, in order; ``recv`` and ``poll`` wait
on the node.  Closing an end is its EOF: the other end's ``recv`` raises
``EOFError`` once it has read what was sent before, and its ``send`` raises
``BrokenPipeError``.  Objects are pickled as for any DSO call (cloudpickle);
there is no file descriptor (``fileno()`` raises), so ``connection.wait``
does not take them.
"""

from __future__ import annotations

import io
from typing import Any

from ..objects._dropin import PipeEnds

__all__ = ["Connection", "Pipe"]


class Connection:
    """One end of a :func:`Pipe`; it pickles (a cloud process given it holds the same end)."""

    def __init__(self, ends: PipeEnds, end: int, readable: bool = True, writable: bool = True) -> None:
        self._ends = ends
        self._end = end
        self._readable = readable
        self._writable = writable
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def readable(self) -> bool:
        return self._readable

    @property
    def writable(self) -> bool:
        return self._writable

    def _check(self, readable: bool = False, writable: bool = False) -> None:
        if self._closed:
            raise OSError("handle is closed")
        if readable and not self._readable:
            raise OSError("connection is write-only")
        if writable and not self._writable:
            raise OSError("connection is read-only")

    def send(self, obj: Any) -> None:
        self._check(writable=True)
        self._ends.send(self._end, obj)

    def recv(self) -> Any:
        self._check(readable=True)
        return self._ends.recv(self._end)

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether there is something to ``recv`` (waiting up to ``timeout`` seconds; ``None``: for ever)."""
        self._check(readable=True)
        return bool(self._ends.poll(self._end, timeout))

    def send_bytes(self, buf: bytes | bytearray | memoryview, offset: int = 0, size: int | None = None) -> None:
        data = bytes(memoryview(buf).cast("B"))
        if offset < 0 or offset > len(data):
            raise ValueError("offset out of bounds")
        size = len(data) - offset if size is None else size
        if size < 0 or offset + size > len(data):
            raise ValueError("size out of bounds" if size >= 0 else "size is negative")
        self.send(_Bytes(data[offset : offset + size]))

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        data = self.recv()
        if not isinstance(data, _Bytes):
            raise OSError("recv_bytes() got an object sent with send(), not send_bytes()")
        if maxlength is not None and len(data) > maxlength:
            self.close()
            raise OSError("bad message length")
        return bytes(data)

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        data = self.recv_bytes()
        view = memoryview(buf).cast("B")
        if offset < 0 or offset + len(data) > len(view):
            raise ValueError("buffer too small")  # multiprocessing raises BufferTooShort
        view[offset : offset + len(data)] = data
        return len(data)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a crucial pipe has no file descriptor")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._ends.close(self._end)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<crucial.multiprocessing.Connection end {self._end} of {self._ends.key!r}{' closed' if self._closed else ''}>"


class _Bytes(bytes):
    """What ``send_bytes`` sends: ``recv_bytes`` tells it from an object sent with ``send``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Bytes, (bytes(self),))


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """``multiprocessing.Pipe(duplex=True)``: ``(conn1, conn2)``; one way, ``conn1`` receives and ``conn2`` sends."""
    ends = PipeEnds()
    if duplex:
        return Connection(ends, 0), Connection(ends, 1)
    return Connection(ends, 0, readable=True, writable=False), Connection(ends, 1, readable=False, writable=True)
