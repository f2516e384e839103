"""Serving IPC verbs to shell commands without a Python interpreter per call.

A shell command run by ``sshell`` calls verbs (``counter -n hits increment``)
thousands of times; starting Python for each would cost 100+ ms a call.
Instead the process that runs the command -- the cloud-function worker, or the
client -- runs a :class:`VerbServer`: a thread serving verb calls on a TCP
socket bound to 127.0.0.1, through this process's DSO client, whose
connections are already open.  :func:`bash_prelude` defines one bash
function per verb that forwards its arguments (and, for the operations that
read it, its standard input) to the server with bash's own ``/dev/tcp``, so
a call costs a loopback round trip and a DSO round trip, no fork.
:func:`run_shell` runs ``bash -c COMMAND`` with a server and the functions
in place, streaming the command's output as it goes.

The protocol (version 1)
------------------------

One request per connection; bash alone can speak it.  Every connection
starts with a header line of space-separated fields, the first two being
``CRUCIAL-IPC/1`` and the server's secret (a random hex string; it keeps
other users' processes on this machine from calling verbs through us).

A **call** connection::

    CRUCIAL-IPC/1 SECRET call ARGC TOKEN\\n
    ARG0\\0ARG1\\0...ARG{ARGC-1}\\0

``ARG0`` is the verb, the others are its arguments, each NUL-terminated (bash
strings cannot hold NUL, so no escaping is needed; ``printf '%s\\0' "$@"``
sends them).  ``TOKEN`` is ``-`` when the verb gets no standard input (the
verb sees ``stdin=None``).  The server answers::

    CODE OUTLEN ERRLEN\\n
    <ERRLEN bytes of stderr><OUTLEN bytes of stdout>

and closes the connection.  Lengths are in bytes (the bash side reads them
with ``LC_ALL=C read -N``), and the output comes last so that a large one can
also be copied with ``cat``.

Standard input needs a second connection, because bash cannot half-close a
``/dev/tcp`` socket to signal its end.  Before the call, the function opens a
**stdin** connection::

    CRUCIAL-IPC/1 SECRET stdin TOKEN\\n
    <the bytes of stdin, until the connection closes>

and closes it at the end of its input (no answer is sent).  The call then
names the same ``TOKEN`` (any word the caller chooses, unique among its
concurrent calls; the functions use ``$BASHPID.$RANDOM.$RANDOM``), and the
server waits for that input to be complete before it runs the verb.

When stdin is read
------------------

A verb called with nothing piped must not block, and a verb inside
``while read line; do ...; done < file`` must not swallow the loop's input.
So the functions (and ``crucial ipc``) send standard input only when the
operation reads it -- ``put-all``/``merge-all`` (or ``putAll``/``mergeAll``)
of ``map``/``treemap`` given no ``-1`` -- and standard input is not a
terminal; otherwise the verb gets ``stdin=None``.  See :func:`wants_stdin`.

Exit codes: the verb's own; 70 when the server cannot be reached or
answers nothing (the function prints why on stderr).
"""

from __future__ import annotations

import contextlib
import hmac
import io
import os
import queue
import secrets
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from ._grammar import wants_stdin
from ._procs import exit_status
from ._verbenv import IPC_PORT_ENV, IPC_SECRET_ENV, MAGIC, UNREACHABLE, VERB_NAMES, bash_functions, bash_prelude, function_env

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "IPC_PORT_ENV",
    "IPC_SECRET_ENV",
    "UNREACHABLE",
    "VERB_NAMES",
    "VerbServer",
    "bash_functions",
    "bash_prelude",
    "call",
    "exit_status",
    "run_here_or_served",
    "run_shell",
    "wants_stdin",
]

_MAX_HEADER = 4096
_MAX_ARGS = 1 << 16
_MAX_ARG = 1 << 26
_STDIN_WAIT = 600.0  # seconds a call waits for its (already sent) stdin connection

Handler = Callable[[Sequence[str], "str | None"], Any]  # returns a VerbResult-like (code, out, err)
Writer = Callable[[bytes], Any] | IO[Any]


class _Result(NamedTuple):
    code: int
    out: str
    err: str


def _default_handler(argv: Sequence[str], stdin: str | None) -> Any:
    from .verbs import run_verb  # the verbs (and the DSO client) load on the first call

    return run_verb(argv, stdin)


# -- the server ------------------------------------------------------------------


class VerbServer:
    """Serve verb calls on ``127.0.0.1:port`` from this process, in threads that keep their DSO connections.

    The DSO client keeps a connection per calling thread, so a request is
    handled by a long-lived worker thread (one more is started when all are
    busy, e.g. waiting on a barrier), never by a thread made for it.
    ``handler(argv, stdin)`` defaults to :func:`crucial.shell.verbs.run_verb`.
    """

    def __init__(self, handler: Handler | None = None, *, secret: str | None = None) -> None:
        self._handler: Handler = handler or _default_handler
        self.secret = secret or secrets.token_hex(16)
        self.port = 0
        self._sock: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[socket.socket | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._workers: list[threading.Thread] = []
        self._stopping = False
        self._inputs: dict[str, bytes] = {}  # stdin connections' data by token
        self._inputs_cv = threading.Condition(self._lock)

    # -- life cycle

    def start(self, listening: socket.socket | None = None) -> int:
        """Bind 127.0.0.1 on a free port (or serve on ``listening``, bound and listening), start serving; the port.

        ``listening`` is how the quick ``sshell`` path (:mod:`._quick`) hands
        over the socket whose port the command already has, on its first verb.
        """
        if self._sock is not None:
            return self.port
        if listening is not None:
            sock = listening
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", 0))
                sock.listen(128)
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stopping = False
        self._accepter = threading.Thread(target=self._accept_loop, name=f"crucial-ipc-{self.port}", daemon=True)
        self._accepter.start()
        return self.port

    def stop(self) -> None:
        """Stop accepting, let the worker threads end once their call returns (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._stopping = True
        with contextlib.suppress(OSError):  # wake accept(): closing alone does not, on Linux
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        if self._accepter is not None:
            self._accepter.join(5)
        sock.close()
        with self._lock:
            workers, self._workers = self._workers, []
            self._inputs.clear()
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

    def _accept_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if self._stopping:
                conn.close()
                return
            with self._lock:
                if self._idle:
                    self._idle -= 1
                else:
                    worker = threading.Thread(target=self._work, name=f"crucial-ipc-{self.port}-worker", daemon=True)
                    self._workers.append(worker)
                    worker.start()
            self._jobs.put(conn)

    def _work(self) -> None:
        while True:
            conn = self._jobs.get()
            if conn is None:
                return
            try:
                with conn:
                    self._serve(conn)
            except Exception:  # a caller that went away; nothing to answer
                pass
            with self._lock:
                if self._stopping:
                    return
                self._idle += 1

    def _serve(self, conn: socket.socket) -> None:
        reader = _Reader(conn)
        header = reader.until(b"\n", _MAX_HEADER)
        fields = (header or b"").decode("ascii", "replace").split()
        if len(fields) < 3 or fields[0] != MAGIC or not hmac.compare_digest(fields[1], self.secret):
            return
        if fields[2] == "stdin" and len(fields) == 4:
            data = reader.rest()
            with self._inputs_cv:
                if self._sock is not None:
                    self._inputs[fields[3]] = data
                    self._inputs_cv.notify_all()
            return
        if fields[2] != "call" or len(fields) != 5 or not fields[3].isdigit() or int(fields[3]) > _MAX_ARGS:
            return
        argv: list[str] = []
        for _ in range(int(fields[3])):
            arg = reader.until(b"\0", _MAX_ARG)
            if arg is None:
                return  # the caller hung up mid-request
            argv.append(arg.decode("utf-8", "surrogateescape"))
        stdin: str | None = None
        token = fields[4]
        if token != "-":
            with self._inputs_cv:
                self._inputs_cv.wait_for(lambda: token in self._inputs or self._sock is None, _STDIN_WAIT)
                got = self._inputs.pop(token, None)
            if got is None:
                return
            stdin = got.decode("utf-8", "surrogateescape")
        result = self._run(argv, stdin)
        out = result.out.encode("utf-8", "surrogateescape")
        err = result.err.encode("utf-8", "surrogateescape")
        conn.sendall(b"%d %d %d\n" % (result.code, len(out), len(err)) + err + out)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)

    def _run(self, argv: list[str], stdin: str | None) -> _Result:
        try:
            code, out, err = self._handler(argv, stdin)
            return _Result(int(code), out or "", err or "")
        except Exception as exc:  # the verb layer reports its errors itself; this is a bug or a crash
            return _Result(UNREACHABLE, "", f"{argv[0] if argv else 'verb'}: internal error: {type(exc).__name__}: {exc}\n")


class _Reader:
    """Buffered reads from a socket: up to a separator, or everything until EOF."""

    def __init__(self, sock: socket.socket) -> None:
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


# -- a Python caller -------------------------------------------------------------


def call(
    argv: Sequence[str], stdin: str | None = None, *, port: int, secret: str, timeout: float | None = None
) -> tuple[int, str, str]:
    """Run one verb through the server at ``port`` (what the bash functions do); return (code, out, err).

    Raises ``OSError`` when the server cannot be reached or hangs up without an answer.
    """
    token = "-"
    if stdin is not None:
        token = f"py{os.getpid()}.{secrets.token_hex(6)}"
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"{MAGIC} {secret} stdin {token}\n".encode() + stdin.encode("utf-8", "surrogateescape"))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        args = b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in argv)
        s.sendall(f"{MAGIC} {secret} call {len(argv)} {token}\n".encode() + args)
        reader = _Reader(s)
        header = reader.until(b"\n", _MAX_HEADER)
        if header is None:
            raise ConnectionError(f"no answer from the crucial verb server at 127.0.0.1:{port}")
        code, olen, elen = (int(f) for f in header.split())
        data = reader.rest()
    if len(data) != olen + elen:
        raise ConnectionError(f"a truncated answer from the crucial verb server at 127.0.0.1:{port}")
    return code, data[elen:].decode("utf-8", "surrogateescape"), data[:elen].decode("utf-8", "surrogateescape")


# -- running a command -----------------------------------------------------------


def _sink(writer: Writer | None, default: IO[Any]) -> Callable[[bytes], Any]:
    """A callable taking bytes for a stream: a callback as is, or a file object (binary or text)."""
    target: Any = default if writer is None else writer
    if callable(target) and not hasattr(target, "write"):
        return target
    buffer = getattr(target, "buffer", None)  # a text stream over a binary one (sys.stdout)
    if buffer is not None:

        def write_buffer(data: bytes) -> None:
            target.flush()  # what was written as text first goes first
            buffer.write(data)
            buffer.flush()

        return write_buffer
    if isinstance(target, io.TextIOBase):

        def write_text(data: bytes) -> None:
            target.write(data.decode("utf-8", "replace"))

        return write_text

    def write_bytes(data: bytes) -> None:
        target.write(data)
        with contextlib.suppress(AttributeError, ValueError):
            target.flush()

    return write_bytes


def run_shell(
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    script: str | None = None,
    stdout: Writer | None = None,
    stderr: Writer | None = None,
    server: VerbServer | None = None,
    cwd: str | None = None,
) -> int:
    """Run ``bash -c command`` with the verbs served by this process; return its exit status as bash would.

    The verb functions reach bash through its environment (as ``export -f``
    leaves them), so the command's line numbers are its own and subshells,
    ``bash -c`` and ``xargs bash -c`` see them too; ``CRUCIAL_IPC_PORT`` and
    ``CRUCIAL_IPC_SECRET`` let ``crucial ipc`` in the command use the same
    server.  ``env`` is added to this process's environment.  ``script`` is
    the text of a script (``sshell -f FILE``) to run instead of ``command``,
    lines intact; ``command`` then names it (its ``$0``).

    The command's stdout and stderr go, chunk by chunk as they come, to
    ``stdout``/``stderr``: callables taking ``bytes``, or file objects
    (binary, or text ones like ``sys.stdout``; the default is this process's
    own).  Its stdin is ``/dev/null``.  The status is 127 for a command not
    found and 128+N for a death by signal N, as in bash; ``run_shell``
    returns once bash has exited and both streams are closed (a background
    job that keeps them open is waited for).  ``server``: a started
    :class:`VerbServer` to use (default: one for this call).
    """
    own = server is None
    srv = server or VerbServer()
    srv.start()
    try:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.update(function_env(srv.port, srv.secret))
        full_env.update(srv.env())
        if script is not None:
            argv = ["bash", "-c", script, command or "sshell"]
        else:
            argv = ["bash", "-c", command]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd
        )
        try:
            _pump(proc, _sink(stdout, sys.stdout), _sink(stderr, sys.stderr))
        except BaseException:
            proc.kill()
            raise
        finally:
            code = proc.wait()
        return exit_status(code)
    finally:
        if own:
            srv.stop()


def _pump(proc: subprocess.Popen[bytes], out: Callable[[bytes], Any], err: Callable[[bytes], Any]) -> None:
    """Copy the child's stdout and stderr to ``out``/``err`` as they come, until both close."""
    assert proc.stdout is not None and proc.stderr is not None
    sinks = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    with selectors.DefaultSelector() as sel:
        for fd in sinks:
            sel.register(fd, selectors.EVENT_READ)
        while sinks:
            for key, _ in sel.select():
                fd = key.fd
                data = os.read(fd, 65536)
                if data:
                    sinks[fd](data)
                else:
                    sel.unregister(fd)
                    del sinks[fd]
    proc.stdout.close()
    proc.stderr.close()


def run_here_or_served(argv: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
    """Run a verb through the server named by ``CRUCIAL_IPC_PORT``/``CRUCIAL_IPC_SECRET``, else in this process.

    What ``crucial ipc`` does: inside ``sshell`` the executor's warm server
    answers; on the client (or when that server is gone) the verb runs here.
    """
    port, secret = os.environ.get(IPC_PORT_ENV, ""), os.environ.get(IPC_SECRET_ENV, "")
    if port.isdigit() and secret:
        with contextlib.suppress(ConnectionRefusedError):  # only when nothing was sent: never run a verb twice
            return call(argv, stdin, port=int(port), secret=secret)
    code, out, err = _default_handler(argv, stdin)
    return code, out, err
