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
import io
import os
import secrets
import selectors
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from ._grammar import wants_stdin
from ._procs import exit_status
from ._verbenv import IPC_PORT_ENV, IPC_SECRET_ENV, MAGIC, UNREACHABLE, VERB_NAMES, bash_functions, bash_prelude, function_env
from ._verbserver import MAX_HEADER, Reader, VerbServer, default_handler

if TYPE_CHECKING:
    pass

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

Writer = Callable[[bytes], Any] | IO[Any]


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
        reader = Reader(s)
        header = reader.until(b"\n", MAX_HEADER)
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
    code, out, err = default_handler(argv, stdin)
    return code, out, err
