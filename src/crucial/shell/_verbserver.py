"""The verb server: serves IPC verb calls to shell commands (the protocol is in :mod:`.ipc`).

Apart from :mod:`.ipc` (its Python caller and :func:`.ipc.run_shell`, which
need ``subprocess``, ``selectors``, ``secrets`` …) so that a quick ``sshell``
worker (:mod:`._quick`) starts it on its command's first verb for almost
nothing: no ``socket`` (~6 ms: it loads ``selectors`` and ``enum``),
``threading`` (~3 ms: ``functools``, ``collections``), ``typing``, ``hmac``,
``queue`` or ``contextlib`` -- their C parts do the same work: ``_socket``,
``_thread`` (threads and locks; a thread's end is a lock it releases),
``_queue.SimpleQueue`` and ``_operator._compare_digest`` (what
``hmac.compare_digest`` is).  A LinkRun-like script starts one per
invocation, so these milliseconds are paid by the dozen.
"""

from __future__ import annotations

import _socket
import _thread
import os
from _operator import _compare_digest as compare_digest  # hmac.compare_digest: constant time
from _queue import SimpleQueue

from ._verbenv import IPC_PORT_ENV, IPC_SECRET_ENV, MAGIC, UNREACHABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType
    from typing import Any

    Lock = _thread.LockType
    Handler = Callable[[Sequence[str], str | None], Any]  # returns a VerbResult-like (code, out, err)

__all__ = ["MAX_ARG", "MAX_HEADER", "Reader", "VerbServer", "default_handler"]

MAX_HEADER = 4096
MAX_ARGS = 1 << 16
MAX_ARG = 1 << 26
_STDIN_WAIT = 600.0  # seconds a call waits for its (already sent) stdin connection


class _Result(tuple):  # (code, out, err), as verbs.VerbResult; no NamedTuple: typing stays unloaded
    __slots__ = ()

    def __new__(cls, code: int, out: str, err: str) -> _Result:
        return tuple.__new__(cls, (code, out, err))

    code = property(lambda self: self[0])
    out = property(lambda self: self[1])
    err = property(lambda self: self[2])


def default_handler(argv: Sequence[str], stdin: str | None) -> Any:
    from .verbs import run_verb  # the verbs (and the DSO client) load on the first call

    return run_verb(argv, stdin)


def _spawn(target: Callable[[], Any]) -> Lock:
    """Run ``target`` in a new (daemon-like) thread; the lock returned is released when it ends (its ``join``)."""
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            target()
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    return done


# -- the server ------------------------------------------------------------------


class VerbServer:
    """Serve verb calls on ``127.0.0.1:port`` from this process, in threads that keep their DSO connections.

    The DSO client keeps a connection per calling thread, so a request is
    handled by a long-lived worker thread (one more is started when all are
    busy, e.g. waiting on a barrier), never by a thread made for it.
    ``handler(argv, stdin)`` defaults to :func:`crucial.shell.verbs.run_verb`.
    """

    def __init__(self, handler: Handler | None = None, *, secret: str | None = None) -> None:
        self._handler: Handler = handler or default_handler
        self.secret = secret or os.urandom(16).hex()  # secrets.token_hex(16), without importing secrets
        self.port = 0
        self._sock: _socket.socket | None = None
        self._accepter: Lock | None = None  # released when the accepting thread ends
        self._jobs: SimpleQueue[_socket.socket | None] = SimpleQueue()
        self._lock = _thread.allocate_lock()
        self._idle = 0
        self._workers: list[Lock] = []  # one per worker thread, released when it ends
        self._stopping = False
        self._inputs: dict[str, bytes] = {}  # stdin connections' data by token
        self._waiting: dict[str, list[Lock]] = {}  # calls waiting for a token's stdin: a held lock each

    # -- life cycle

    def start(self, listening: _socket.socket | None = None) -> int:
        """Bind 127.0.0.1 on a free port (or serve on ``listening``, bound and listening), start serving; the port.

        ``listening`` is how the quick ``sshell`` path (:mod:`._quick`) hands
        over the socket whose port the command already has, on its first verb.
        """
        if self._sock is not None:
            return self.port
        if listening is not None:
            sock = listening
        else:
            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", 0))
                sock.listen(128)
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping = False
        self._accepter = _spawn(lambda: self._accept_loop(sock))  # not self._sock: stop() may come first
        return self.port

    def stop(self) -> None:
        """Stop accepting, let the worker threads end once their call returns (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._stopping = True
        try:  # wake accept(): closing alone does not, on Linux
            waker = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
            try:
                waker.settimeout(1)
                waker.connect(("127.0.0.1", self.port))
            finally:
                waker.close()
        except OSError:
            pass
        if self._accepter is not None and self._accepter.acquire(timeout=5):
            self._accepter.release()
        sock.close()
        with self._lock:
            workers, self._workers = self._workers, []
            self._inputs.clear()
            waiting, self._waiting = self._waiting, {}
        for locks in waiting.values():  # calls waiting for their stdin: it will not come
            for lock in locks:
                lock.release()
        for _ in workers:
            self._jobs.put(None)

    def env(self) -> dict[str, str]:
        """Variables that tell ``crucial ipc`` (and :func:`call`) where this server is."""
        return {IPC_PORT_ENV: str(self.port), IPC_SECRET_ENV: self.secret}

    def __enter__(self) -> VerbServer:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- threads

    def _accept_loop(self, sock: _socket.socket) -> None:
        while True:
            try:
                fd, _ = sock._accept()  # type: ignore[attr-defined]  # socket.socket.accept, without the socket module
            except OSError:
                return
            conn = _socket.socket(fileno=fd)
            if self._stopping:
                conn.close()
                return
            with self._lock:
                if self._idle:
                    self._idle -= 1
                else:
                    self._workers.append(_spawn(self._work))
            self._jobs.put(conn)

    def _work(self) -> None:
        while True:
            conn = self._jobs.get()
            if conn is None:
                return
            try:
                self._serve(conn)
            except Exception:  # a caller that went away; nothing to answer
                pass
            finally:
                conn.close()
            with self._lock:
                if self._stopping:
                    return
                self._idle += 1

    def _serve(self, conn: _socket.socket) -> None:
        reader = Reader(conn)
        header = reader.until(b"\n", MAX_HEADER)
        fields = (header or b"").decode("ascii", "replace").split()
        if len(fields) < 3 or fields[0] != MAGIC or not compare_digest(fields[1], self.secret):
            return
        if fields[2] == "stdin" and len(fields) == 4:
            data = reader.rest()
            with self._lock:
                if self._sock is not None:
                    self._inputs[fields[3]] = data
                    for lock in self._waiting.pop(fields[3], ()):
                        lock.release()
            return
        if fields[2] != "call" or len(fields) != 5 or not fields[3].isdigit() or int(fields[3]) > MAX_ARGS:
            return
        argv: list[str] = []
        for _ in range(int(fields[3])):
            arg = reader.until(b"\0", MAX_ARG)
            if arg is None:
                return  # the caller hung up mid-request
            argv.append(arg.decode("utf-8", "surrogateescape"))
        stdin: str | None = None
        token = fields[4]
        if token != "-":
            got = self._input(token)
            if got is None:
                return
            stdin = got.decode("utf-8", "surrogateescape")
        result = self._run(argv, stdin)
        out = result.out.encode("utf-8", "surrogateescape")
        err = result.err.encode("utf-8", "surrogateescape")
        conn.sendall(b"%d %d %d\n" % (result.code, len(out), len(err)) + err + out)
        try:
            conn.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def _input(self, token: str) -> bytes | None:
        """The stdin sent under ``token``, once complete (waiting up to ``_STDIN_WAIT`` s); None if it never comes."""
        with self._lock:
            got = self._inputs.pop(token, None)
            if got is not None or self._sock is None:
                return got
            arrived = _thread.allocate_lock()
            arrived.acquire()
            self._waiting.setdefault(token, []).append(arrived)
        if not arrived.acquire(timeout=_STDIN_WAIT):
            with self._lock:
                locks = self._waiting.get(token, [])
                if arrived in locks:
                    locks.remove(arrived)
                    if not locks:
                        del self._waiting[token]
        with self._lock:
            return self._inputs.pop(token, None)

    def _run(self, argv: list[str], stdin: str | None) -> _Result:
        try:
            code, out, err = self._handler(argv, stdin)
            return _Result(int(code), out or "", err or "")
        except Exception as exc:  # the verb layer reports its errors itself; this is a bug or a crash
            return _Result(UNREACHABLE, "", f"{argv[0] if argv else 'verb'}: internal error: {type(exc).__name__}: {exc}\n")


class Reader:
    """Buffered reads from a socket: up to a separator, or everything until EOF."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def until(self, sep: bytes, limit: int) -> bytes | None:
        """The bytes before the next ``sep`` (consumed), or None at EOF or past ``limit`` bytes."""
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return out
            if len(self.buf) > limit:
                return None
            start = len(self.buf)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def rest(self) -> bytes:
        """Everything until the peer closes."""
        while chunk := self.sock.recv(1 << 20):
            self.buf += chunk
        return bytes(self.buf)
