"""Whole lines from concurrent workers: a worker's ``sys.stdout``/``sys.stderr`` write line by line.

Local workers inherit the program's stdout and stderr, so several cloud
threads print to one terminal or pipe at once.  A stock
``TextIOWrapper`` on a pipe is block-buffered: it flushes 8 KiB at a time,
cut anywhere, and a worker's buffer can tear through another's line (or wait
for the worker to exit).  :class:`LineWriter` keeps the unfinished line and
writes each run of complete lines with one ``os.write``, which a pipe
delivers whole up to ``PIPE_BUF`` (4 KiB on Linux), so lines printed by
concurrent workers never run together.  An unfinished line goes out when
the invocation ends (:meth:`flush`), or once it is longer than ``PIPE_BUF``.
"""

from __future__ import annotations

import io
import os
import select
import sys
import threading

__all__ = ["LineWriter", "line_buffer_caller"]

_PIPE_BUF = getattr(select, "PIPE_BUF", 512)


class LineWriter(io.TextIOBase):
    """A text stream on file descriptor ``fd`` that writes whole lines only (thread-safe)."""

    def __init__(self, fd: int, encoding: str = "utf-8", errors: str = "backslashreplace") -> None:
        super().__init__()
        self._fd = fd
        self._encoding = encoding
        self._errors = errors
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        with self._lock:
            text = self._partial + s
            cut = text.rfind("\n") + 1
            if cut == 0 and len(text) <= _PIPE_BUF:
                self._partial = text
                return len(s)
            if cut == 0:  # a very long line: it cannot be written whole anyway
                cut = len(text)
            self._partial = text[cut:]
            self._emit(text[:cut])
        return len(s)

    def flush(self) -> None:
        with self._lock:
            text, self._partial = self._partial, ""
            if text:
                self._emit(text)

    def _emit(self, text: str) -> None:
        data = text.encode(self._encoding, self._errors)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:  # the program's stdout is gone: its output with it
            pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def fileno(self) -> int:
        return self._fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return self._errors


_caller_done = False


def line_buffer_caller() -> None:
    """Make the program's stdout and stderr line-buffered, once, as it starts its first cloud function.

    Threads share one stdout buffer, so their lines come out in the order
    they were printed; cloud threads print from other processes, straight
    to the file.  A block-buffered stdout in the program (a pipe, a file)
    would hold back what the program printed *before* starting a thread
    until after the thread's lines.  Line buffering keeps the order, as
    ``multiprocessing`` keeps it by flushing before it forks.
    """
    global _caller_done
    if _caller_done:
        return
    _caller_done = True
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None or getattr(stream, "line_buffering", True):
            continue
        try:
            reconfigure(line_buffering=True)  # flushes what is buffered, too
        except (OSError, ValueError):
            pass
