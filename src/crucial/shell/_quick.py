"""``sshell CMD`` in a few milliseconds: the common case without click, the DSO client or an output queue.

``sshell true`` is a process of its own, and scripts run it by the hundred
(``xargs -P 50``).  The usual way (:mod:`.sshell`) imports click, the DSO
client, the object library and the compute layer (~65 ms), then sends the
command's output through a DSO queue to a worker it forks from itself.  On
the local backend that worker is this machine's child anyway, so in the
common case -- ``sshell [-e KEY=VALUE]... CMD`` with no other option, the local backend, the DSO
given by ``CRUCIAL_DSO``/``CRUCIAL_TOKEN`` (or the per-user node already
running) and no other setting -- this module does the same with what the
interpreter has built in::

    sshell CMD ──► handshake with the DSO node (it is there, the token is good)
       │  fork: the handshaken connection goes to the worker
       └─► worker: tied to sshell (die_with_parent), a listening socket for the verbs,
           bash -c CMD (stdin /dev/null) ──► stdout/stderr chunks ──► written to sshell's fds 1 and 2
           first verb call ──► the verb server (._verbserver) starts, on that socket; the call
                               goes over the handshaken connection; the DSO client loads at the second
       waitpid ──► exit with the command's status

What the command sees is what the usual way gives it: the verb functions
and ``CRUCIAL_IPC_PORT``, ``SSHELL_ID``, ``SSHELL_SHARED`` (created),
``CRUCIAL_DSO``/``CRUCIAL_TOKEN``, stdin on ``/dev/null``, SIGINT and SIGPIPE
at their defaults; its output arrives chunk by chunk, bytes exactly; the exit
statuses are the same (127, 128+N, 141 when sshell's reader goes away, 130 on
Ctrl-C), and killing sshell kills the command's tree.
``tests/test_sshell_quick.py`` runs commands both ways and compares.  One
difference: a reader that stops reading holds the command up (as with any
local process) instead of being given up on after 60 s.

:func:`run` returns ``None`` -- and :func:`main` hands the arguments to
:mod:`.sshell` -- for anything else: an option other than ``-e``, another backend, a config
file, any other ``CRUCIAL_*`` setting, several DSO addresses, no running
per-user node, a node that refuses the handshake.  Nothing has run then, so
every error is reported by the usual way, worded as it always was.
"""

from __future__ import annotations

import os
import select
import sys

from . import _thin
from ._procs import EXIT_FAILURE, die_with_parent, exit_status, kill_descendants
from ._verbenv import IPC_PORT_ENV, IPC_SECRET_ENV, env_assignment, function_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["main", "run"]

_SIGPIPE, _SIGXFSZ = 13, 25  # Linux's numbers (the quick path only runs where /proc and fork do)
_CLOSED_OUTPUT = 128 + _SIGPIPE


def main() -> None:
    """The ``sshell`` console script: the quick way when it applies, else the usual one."""
    try:
        code = run(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    if code is None:
        from .sshell import main as usual

        usual()
        return
    os._exit(code)  # nothing buffered to flush: the worker wrote with os.write


def run(argv: Sequence[str]) -> int | None:
    """Run ``bash -c CMD`` as the local backend's worker would; its exit status, or None to go the usual way."""
    parsed = _parse(argv)
    if parsed is None or sys.platform != "linux":
        return None
    variables, words = parsed
    dso = _dso()
    if dso is None:
        return None
    address, token = dso
    try:
        conn = _thin._Connection(address, token)  # reachable, the token accepted, one node
    except _thin._Unusual:
        return None
    os.environ["CRUCIAL_DSO"] = address  # the command's, and the verb server's (as the usual worker points at its DSO)
    if token:
        os.environ["CRUCIAL_TOKEN"] = token
    command = " ".join(words)
    pid = os.fork()
    if pid == 0:
        _worker_main(command, variables, conn)
    conn.sock.close()  # the worker's now: its first verb's call goes over it
    try:
        _, status = os.waitpid(pid, 0)
    except KeyboardInterrupt:
        return 130  # the worker goes too: SIGINT from the terminal, or SIGTERM when we exit (die_with_parent)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        _say(f"sshell: the invocation failed: its worker died by signal {-code}\n")
        return EXIT_FAILURE
    return code


def _parse(argv: Sequence[str]) -> tuple[dict[str, str], list[str]] | None:
    """``[-e KEY=VALUE]... [--] CMD...`` as (variables, CMD's words); ``None`` for any other option or a bad
    ``-e`` (the usual way reports it), parsed as click parses the usual way's (no option after CMD's first word)."""
    variables: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-e", "--env"):
            if i + 1 == len(argv):
                return None
            item, i = argv[i + 1], i + 2
        elif arg.startswith("--env="):
            item, i = arg[len("--env=") :], i + 1
        elif arg.startswith("-e") and not arg.startswith("--"):
            item, i = arg[2:], i + 1
        else:
            return None
        pair = env_assignment(item)
        if pair is None:
            return None
        variables[pair[0]] = pair[1]
    words = list(argv[i:])
    return (variables, words) if words else None


def _dso() -> tuple[str, str | None] | None:
    """(address, token) of the DSO when the environment alone configures one node and the local backend."""
    if os.environ.get("CRUCIAL_BACKEND", "local") != "local" or not _thin._environment_only():
        return None
    if os.environ.get("CRUCIAL_DSO"):
        return _thin._settings()
    # the per-user node, when it is already running (starting it is the usual way's job)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        with open(os.path.join(base, "crucial", "dso")) as f:
            info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        return None
    address = info.get("CRUCIAL_DSO", "")
    if not address or "," in address:
        return None
    return address, info.get("CRUCIAL_TOKEN") or None


def _worker_main(command: str, variables: dict[str, str], conn: _thin._Connection) -> None:
    """The forked worker: run the command, exit with its status; never returns."""
    global _opened
    _opened = conn
    code = EXIT_FAILURE
    try:
        code = _worker(command, variables)
    except BrokenPipeError:  # sshell's stdout or stderr was closed (`sshell 'seq 1 1e9' | head`)
        kill_descendants()
        code = _CLOSED_OUTPUT
    except BaseException as exc:
        _say(f"sshell: the invocation failed: {type(exc).__name__}: {exc}\n")
    finally:
        os._exit(code)


def _worker(command: str, variables: dict[str, str]) -> int:
    """Run ``bash -c command`` with the verbs at hand, copy its output to fds 1 and 2; its exit status.

    Its environment, in the usual way's order: sshell's own < ``SSHELL_ID``, ``SSHELL_SHARED`` <
    ``-e`` < the verb functions and their server's variables."""
    die_with_parent()
    import _socket

    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    secret = os.urandom(16).hex()
    env = dict(os.environ)
    env["SSHELL_ID"] = _uuid4_hex()
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    shared = os.environ.get("CRUCIAL_SHARED_DIR") or f"/tmp/crucial-shared-{user}"
    os.makedirs(shared, exist_ok=True)
    env["SSHELL_SHARED"] = shared
    env.update(variables)
    env.update(function_env(port, secret))
    env[IPC_PORT_ENV], env[IPC_SECRET_ENV] = str(port), secret
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.posix_spawnp(
        "bash",
        ["bash", "-c", command],
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ],
        setsigdef=(_SIGPIPE, _SIGXFSZ),  # ignored here (Python ignores them), at their defaults for the command
    )
    os.close(out_w)
    os.close(err_w)
    try:
        _pump({out_r: 1, err_r: 2}, listener, secret)
    except BaseException:
        kill_descendants()
        raise
    _, status = os.waitpid(pid, 0)
    return exit_status(os.waitstatus_to_exitcode(status))


def _pump(sinks: dict[int, int], listener: Any, secret: str) -> None:
    """Copy each pipe to its fd until both close; start the verb server when the first verb call knocks."""
    poll = select.poll()
    for fd in sinks:
        poll.register(fd, select.POLLIN)
    knock = listener.fileno()
    poll.register(knock, select.POLLIN)
    server = None  # kept alive (its threads serve) until the worker exits
    while sinks:
        for fd, _ in poll.poll():
            if fd == knock:
                poll.unregister(knock)
                server = _verb_server(listener, secret)
                continue
            data = os.read(fd, 65536)
            if data:
                _write_all(sinks[fd], data)
            else:
                poll.unregister(fd)
                os.close(fd)
                del sinks[fd]
    del server


def _verb_server(listener: Any, secret: str) -> Any:
    """A :class:`._verbserver.VerbServer` on the socket the command already knows (it accepts the waiting call)."""
    from ._verbserver import VerbServer

    server = VerbServer(_thin_first, secret=secret)
    server.start(listener)
    return server


def _thin_first(argv: Sequence[str], stdin: str | None) -> tuple[int, str, str]:
    """The command's first verb over a connection of its own (:func:`._thin.run`); later ones the usual way.

    The first verb is often the only one (``sshell 'counter -n hits
    increment'``): it skips loading the DSO client (~25 ms), and its call
    goes over the connection sshell checked the node with (no second connect
    and handshake, unless the node closed it meanwhile).  A loop of verbs
    pays for the client once, at its second call, and then keeps the
    client's open connections (a thin call opens one each time).
    """
    global _first_done, _opened
    if not _first_done:
        _first_done = True
        opened, _opened = _opened, None
        result = _thin.run(argv, stdin, opened)
        if result is not None:
            return result
    from .verbs import run_verb

    return tuple(run_verb(argv, stdin))  # type: ignore[return-value]


_first_done = False
_opened: _thin._Connection | None = None  # the worker's: sshell's handshake, for the first verb


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _uuid4_hex() -> str:
    """``uuid.uuid4().hex`` without importing ``uuid``: the invocation id the usual way makes."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return b.hex()


def _say(text: str) -> None:
    try:
        os.write(2, text.encode(errors="replace"))
    except OSError:
        pass
