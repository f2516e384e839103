"""The local backend's framing (compute._frames): Connection's format, read with one call where it can."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from crucial.compute._frames import frame, read_messages, write_all


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_a_connection_reads_what_frame_writes_and_back(pipe):
    r, w = pipe
    write_all(w, frame(b"task"))
    assert Connection(r, writable=False).recv_bytes() == b"task"
    r2, w2 = os.pipe()
    try:
        Connection(w2, readable=False).send_bytes(b"outcome")
        assert read_messages(r2) == [b"outcome"]
    finally:
        os.close(r2)


def test_several_messages_in_one_read(pipe):
    r, w = pipe
    write_all(w, frame(b"one") + frame(b"") + frame(b"three"))
    assert read_messages(r) == [b"one", b"", b"three"]


def test_the_end_of_the_pipe_is_none(pipe):
    r, w = pipe
    os.close(w)
    assert read_messages(r) is None


def test_a_message_cut_by_the_read_is_completed(pipe):
    r, w = pipe
    body = bytes(range(256)) * 1024  # 256 KiB: more than one read, more than the pipe holds
    writer = threading.Thread(target=write_all, args=(w, frame(body)))
    writer.start()
    try:
        assert read_messages(r) == [body]
    finally:
        writer.join()


class _Trickle:
    """``os`` as _frames uses it, but every read returns at most ``n`` bytes: every cut, deterministically."""

    def __init__(self, n: int) -> None:
        self.n = n

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, min(size, self.n))

    def readv(self, fd: int, buffers: list[memoryview]) -> int:
        return os.readv(fd, [buffers[0][: self.n]])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 13])
def test_headers_and_bodies_cut_anywhere_are_completed(pipe, monkeypatch: pytest.MonkeyPatch, n: int):
    from crucial.compute import _frames

    r, w = pipe
    long_form = struct.pack("!i", -1) + struct.pack("!Q", 4) + b"long"
    write_all(w, frame(b"first message") + long_form + frame(b"x" * 40))
    monkeypatch.setattr(_frames, "os", _Trickle(n))
    got: list[bytes] = []
    while len(got) < 3:
        messages = read_messages(r)
        assert messages is not None
        got += messages
    assert got == [b"first message", b"long", b"x" * 40]


def test_the_long_header_form(pipe):
    r, w = pipe
    write_all(w, struct.pack("!i", -1) + struct.pack("!Q", 5) + b"large")  # what a Connection writes past 2 GiB
    assert read_messages(r) == [b"large"]


def test_the_pipe_closing_mid_message_is_an_eof(pipe):
    r, w = pipe
    os.write(w, frame(b"complete")[:6])
    os.close(w)
    with pytest.raises(EOFError):
        read_messages(r)
