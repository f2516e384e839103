"""``sshell --pipe 'cmdA | cmdB | cmdC'``: every stage of a pipeline is its own cloud function.

The seed's Figure 12 rewrites ``cmdA | cmdB`` in two ways; both are here,
without its ``nc``, ``tail -f``/``sed`` and ``EOF``-line tricks:

``tcp`` (the default, when functions can reach each other)
    Stage *i+1* listens on a TCP port of the address functions see each other
    at and publishes ``host:port`` in a rendezvous (a :class:`SharedFuture`
    keyed by the pipe's id and the link's number); stage *i* waits for it,
    connects, and its command's stdout is copied into the socket.  Stage *i+1*'s
    bash reads the socket itself as its stdin.  When stage *i*'s stdout closes
    the socket is shut down for writing: the reader sees EOF after the last
    byte (a last line without a newline is not lost).

``dir`` (when they cannot: only a shared file system)
    Stage *i* writes its stdout as numbered chunk files in
    ``$SSHELL_SHARED/<pipe-id>/<i>/`` and announces each name in a bounded DSO
    queue; an ``EOF`` marker file and a ``None`` end the stream.  Stage *i+1*
    blocks on the queue (on the node: no polling), copies each chunk to its
    command's stdin and deletes it.  The queue's bound keeps at most
    :data:`LINK_CHUNKS` chunks on disk: a slow reader slows the writer down.

Either way a reader that stops reading (``head -1``, ``false``) makes the
writer's command die of SIGPIPE, as in a local pipeline, and every stage
ends: the stage functions never wait for one another except on data.  Each
stage's stderr, the last stage's stdout and every stage's exit status travel
to the client in one bounded DSO queue; the client's exit status is the last
stage's (or, with ``--pipefail``, the last non-zero one, as bash's
``set -o pipefail``).

:func:`split_pipeline` finds the stages: the top-level ``|`` of the command,
outside quotes, ``$(…)``, ``(…)``, ``{ …; }``, backquotes and compound
commands (``if``/``case``/``for``/``while``/``until``/``select``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PipeSyntaxError", "Stage", "execute_stage", "run_pipe", "split_pipeline"]

#: chunks a ``dir`` link holds (files on the shared file system) before the writer waits
LINK_CHUNKS = 16
#: seconds a stage waits for its neighbour's address or connection (a stage that never started)
RENDEZVOUS = 300.0
#: while it waits for the previous stage to connect, a stage checks this often whether the client gave up
ABORT_CHECK = 1.0
VIA = ("tcp", "dir")

# --------------------------------------------------------------------------- splitting


class PipeSyntaxError(ValueError):
    """The command is not a pipeline sshell can split (the message says why)."""


_OPENERS = {"if": "fi", "case": "esac", "for": "done", "while": "done", "until": "done", "select": "done", "{": "}"}
_CLOSERS = {"fi", "esac", "done", "}"}
_AFTER = {"do", "then", "else", "elif", "!", "time", "in"}  # words after which a command starts again
_WORD_END = set(" \t\n;&|()<>")


def split_pipeline(command: str) -> list[str]:
    """The stages of ``command``: its text between top-level ``|``, each stripped.

    Raises :class:`PipeSyntaxError` for what sshell cannot run stage by stage:
    ``|&``, and a top-level ``||``, ``&&``, ``;``, ``&`` or newline (``a | b; c``
    is ``{ a | b; }; c`` in bash: group such lists with ``{ …; }`` inside a
    stage), an empty stage, unbalanced quotes or brackets.
    """
    stages: list[str] = []
    start = 0
    i, n = 0, len(command)
    nest: list[str] = []  # closers expected, innermost last
    command_start = True  # the next word is in command position (a keyword may open a compound command)

    def bad(what: str) -> PipeSyntaxError:
        return PipeSyntaxError(f"{what} at offset {i} of the pipeline: {command!r}")

    while i < n:
        c = command[i]
        if c in " \t":
            i += 1
            continue
        if c == "\n" or c == ";":
            if not nest:
                raise bad("a top-level ';' or newline (group the list with '{ ...; }' inside one stage)")
            i += 1
            if command.startswith(";;", i - 1):  # case ... ;; : the next pattern is not a command
                i += 1
            command_start = True
            continue
        if c == "|":
            if command.startswith("||", i):
                if not nest:
                    raise bad("a top-level '||'")
                i += 2
            elif command.startswith("|&", i):
                raise bad("'|&' (write 2>&1 | instead)")
            else:
                if not nest:
                    stage = command[start:i].strip()
                    if not stage:
                        raise bad("an empty stage")
                    stages.append(stage)
                    start = i + 1
                i += 1
            command_start = True
            continue
        if c == "&":
            if command.startswith("&&", i):
                if not nest:
                    raise bad("a top-level '&&'")
                i += 2
            elif command.startswith("&>", i):
                i += 2
                command_start = False
                continue
            else:
                if not nest:
                    raise bad("a top-level '&' (background job)")
                i += 1
            command_start = True
            continue
        if c in "<>":
            i += 1
            while i < n and command[i] in "<>&|":  # >>, >&, <&, >|, <<<, <>
                i += 1
            continue
        if c == "(":
            nest.append(")")
            i += 1
            command_start = True
            continue
        if c == ")" and nest and nest[-1] == "esac":  # the end of a case pattern: a command follows
            i += 1
            command_start = True
            continue
        if c == ")":
            if not nest or nest[-1] != ")":
                raise bad("an unbalanced ')'")
            nest.pop()
            i += 1
            command_start = False
            continue
        if c == "#" and (i == 0 or command[i - 1] in " \t\n;&|()"):
            while i < n and command[i] != "\n":
                i += 1
            continue
        # a word: read it whole (quotes, escapes, $(...), ${...}, `...` included)
        begin = i
        i = _skip_word(command, i, bad)
        word = command[begin:i]
        if command_start and word in _OPENERS:
            nest.append(_OPENERS[word])
            command_start = True
        elif command_start and word in _CLOSERS and nest and nest[-1] == word:
            nest.pop()
            command_start = False
        else:
            command_start = word in _AFTER
    if nest:
        raise PipeSyntaxError(f"unbalanced {nest[-1]!r} missing in the pipeline: {command!r}")
    stage = command[start:].strip()
    if not stage:
        raise PipeSyntaxError(f"an empty stage at the end of the pipeline: {command!r}")
    stages.append(stage)
    return stages


def _skip_word(s: str, i: int, bad: Callable[[str], PipeSyntaxError]) -> int:
    """The index after the word starting at ``i``."""
    n = len(s)
    while i < n and s[i] not in _WORD_END:
        i = _skip_unit(s, i, bad)
    return i


def _skip_unit(s: str, i: int, bad: Callable[[str], PipeSyntaxError]) -> int:
    """Skip one character, escape, quoted string or substitution starting at ``i``."""
    n = len(s)
    c = s[i]
    if c == "\\":
        return i + 2
    if c == "'":
        end = s.find("'", i + 1)
        if end < 0:
            raise bad("an unterminated single quote")
        return end + 1
    if c == '"':
        i += 1
        while i < n and s[i] != '"':
            if s[i] == "\\":
                i += 2
            elif (s[i] == "$" and s.startswith(("$(", "${"), i)) or s[i] == "`":
                i = _skip_unit(s, i, bad)
            else:
                i += 1
        if i >= n:
            raise bad("an unterminated double quote")
        return i + 1
    if c == "`":
        i += 1
        while i < n and s[i] != "`":
            i += 2 if s[i] == "\\" else 1
        if i >= n:
            raise bad("an unterminated backquote")
        return i + 1
    if s.startswith(("$(", "${", "<(", ">("), i):
        closer = "}" if s[i + 1] == "{" else ")"
        opener = s[i + 1]
        depth, i = 1, i + 2
        while i < n and depth:
            ch = s[i]
            if ch in "\\'\"`" or s.startswith(("$(", "${"), i):
                i = _skip_unit(s, i, bad)
                continue
            if ch == opener:
                depth += 1
            elif ch == closer:
                depth -= 1
            i += 1
        if depth:
            raise bad(f"an unterminated '{s[i - 1] if i else ''}{opener}'")
        return i
    return i + 1


# --------------------------------------------------------------------------- one stage (the cloud function)


@dataclass(frozen=True)
class Stage:
    """What one stage's invocation runs; travels to the worker by pickle."""

    job: Any  # a crucial.shell.sshell.Job: the stage's command, environment, timeout
    pipe_id: str
    index: int
    count: int
    via: str = "tcp"
    host: str | None = None  # the address to listen at (tcp); None: the one that routes to the DSO
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def first(self) -> bool:
        return self.index == 0

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


def out_key(pipe_id: str) -> str:
    return f"sshell/pipe/{pipe_id}/out"


def addr_key(pipe_id: str, link: int) -> str:
    """The rendezvous of link ``link`` (stage ``link`` → stage ``link+1``): the reader's ``host:port``."""
    return f"sshell/pipe/{pipe_id}/{link}/addr"


def chunks_key(pipe_id: str, link: int) -> str:
    return f"sshell/pipe/{pipe_id}/{link}/chunks"


def closed_key(pipe_id: str, link: int) -> str:
    return f"sshell/pipe/{pipe_id}/{link}/closed"


def link_dir(shared_dir: str, pipe_id: str, link: int) -> str:
    return os.path.join(shared_dir, pipe_id, str(link))


class _ReaderGone(Exception):
    """The next stage stopped reading: the writer's command must get SIGPIPE."""


def _own_address() -> str:
    """The address of the interface that routes to the DSO: the one other functions can reach us at."""
    dso = os.environ.get("CRUCIAL_DSO", "").split(",")[0]
    host = dso.rpartition(":")[0] or "8.8.8.8"
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))  # UDP: no packet is sent
        return str(s.getsockname()[0])
    return socket.gethostbyname(socket.gethostname())


def execute_stage(stage: Stage) -> int:
    """The cloud function of one stage: link to the neighbours, run the command, report its status."""
    from ..objects.containers import Queue
    from ..objects.synchronization import SharedFuture
    from ._procs import die_with_parent
    from .sshell import QUEUE_CHUNKS, STALLED_CLIENT, deadline, job_env, run_stats

    job = stage.job
    if job.forked:
        die_with_parent()
    out = Queue(QUEUE_CHUNKS, key=out_key(stage.pipe_id))
    stalled = threading.Event()

    def report(item: tuple[Any, ...]) -> None:
        if stalled.is_set():
            return
        try:
            out.put(item, timeout=STALLED_CLIENT)
        except queue.Full:  # the client went away: run on, output dropped
            stalled.set()

    env = job_env(job)
    env["SSHELL_PIPE_ID"] = stage.pipe_id
    env["SSHELL_PIPE_STAGE"] = str(stage.index)
    timed_out = threading.Event()
    start = time.perf_counter()
    status = 125
    try:
        with contextlib.ExitStack() as stack:
            # 1. publish where we read from (never blocks), 2. reach the next stage, 3. accept the previous one:
            # no stage waits for another one's step 3, so no cycle, hence no deadlock
            stdin: Any = subprocess.DEVNULL
            feed: tuple[Callable[[Any], None], Callable[[], None]] | None = None
            listener = None
            connected = False
            if not stage.first and stage.via == "tcp":
                host = stage.host or _own_address()
                listener = stack.enter_context(socket.create_server((host, 0), backlog=1))
                port = listener.getsockname()[1]
                SharedFuture(key=addr_key(stage.pipe_id, stage.index - 1)).set(f"{host}:{port}")
            send: Callable[[bytes], None]
            finish: Callable[[], None]
            if stage.last:

                def send(data: bytes) -> None:
                    report((1, data))

                def finish() -> None:
                    pass

            elif stage.via == "tcp":
                where = SharedFuture(key=addr_key(stage.pipe_id, stage.index)).get(timeout=RENDEZVOUS)
                host, _, port = str(where).rpartition(":")
                sock = stack.enter_context(socket.create_connection((host, int(port)), timeout=RENDEZVOUS))
                sock.settimeout(None)
                connected = True

                def send(data: bytes) -> None:
                    try:
                        sock.sendall(data)
                    except OSError as exc:  # EPIPE, ECONNRESET: the reader closed
                        raise _ReaderGone from exc

                def finish() -> None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)

            else:
                send, finish = _dir_writer(stage)
            if listener is not None:
                conn = accept_previous(listener, stage)
                conn.settimeout(None)
                stack.enter_context(conn)
                listener.close()
                stdin = conn.fileno()
            elif not stage.first:  # dir
                stdin = subprocess.PIPE
                feed = _dir_reader(stage)
            with deadline(job.timeout, timed_out):
                status = _run(job.command, env, stdin, feed, send, finish, lambda data: report((2, data)))
    except Exception as exc:
        report((2, f"sshell: stage {stage.index + 1} ({job.command}): {type(exc).__name__}: {exc}\n".encode()))
        _unblock_neighbours(stage, connected)
        report((0, stage.index, 125, run_stats(start, timed_out), True))
        return 125
    report((0, stage.index, status, run_stats(start, timed_out), False))
    return status


def accept_previous(listener: socket.socket, stage: Stage) -> socket.socket:
    """The previous stage's connection, or an error once the pipeline is over.

    If the previous stage never started (its invocation failed), nobody
    connects: the client then aborts the pipeline by deleting its links, so
    the wait checks its own link every ``ABORT_CHECK`` seconds (it raises
    ``ObjectNotFoundError`` once deleted) and ends within a second or so
    instead of at ``RENDEZVOUS``.
    """
    from ..objects.synchronization import SharedFuture

    link = SharedFuture.attach(addr_key(stage.pipe_id, stage.index - 1))
    end = time.monotonic() + RENDEZVOUS
    listener.settimeout(ABORT_CHECK)
    while True:
        try:
            conn, _ = listener.accept()
            return conn
        except TimeoutError:
            if time.monotonic() > end:
                raise TimeoutError(f"stage {stage.index} did not connect within {RENDEZVOUS:g} s") from None
            link.done()  # ObjectNotFoundError once the client has given up on the pipeline


def _unblock_neighbours(stage: Stage, connected: bool) -> None:
    """A stage that failed before its command ran: let the stages next to it end rather than wait."""
    from ..objects.synchronization import SharedFuture

    if stage.via != "tcp":
        return  # dir links: the client deletes their queues, which wakes their waiters
    with contextlib.suppress(Exception):
        if not stage.first:  # the writer waits for our address: make it fail
            SharedFuture(key=addr_key(stage.pipe_id, stage.index - 1)).set_exception(
                ConnectionError(f"stage {stage.index + 1} failed")
            )
    with contextlib.suppress(Exception):
        if not stage.last and not connected:  # the reader waits for our connection: connect and close (EOF)
            where = SharedFuture(key=addr_key(stage.pipe_id, stage.index)).get(timeout=0)
            host, _, port = str(where).rpartition(":")
            socket.create_connection((host, int(port)), timeout=5).close()


def _run(
    command: str,
    env: dict[str, str],
    stdin: Any,
    feed: tuple[Callable[[Any], None], Callable[[], None]] | None,
    send: Callable[[bytes], None],
    finish: Callable[[], None],
    err: Callable[[bytes], None],
) -> int:
    """``bash -c command`` with the verbs served, stdin given, stdout to ``send`` then ``finish``, stderr to ``err``."""
    from ._procs import exit_status
    from ._verbenv import function_env
    from .ipc import VerbServer

    with VerbServer() as srv:
        full_env = dict(os.environ)
        full_env.update(env)
        full_env.update(function_env(srv.port, srv.secret))
        full_env.update(srv.env())
        proc = subprocess.Popen(
            ["bash", "-c", command], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env
        )
        feeder = None
        errors: list[BaseException] = []
        try:
            if feed is not None:

                def run_feed() -> None:
                    try:
                        feed[0](proc.stdin)
                    except BaseException as exc:
                        errors.append(exc)

                feeder = threading.Thread(target=run_feed, name="sshell-pipe-feed", daemon=True)
                feeder.start()
            _pump(proc, send, finish, err)
        except BaseException:
            proc.kill()
            raise
        finally:
            code = proc.wait()
            if feed is not None:
                feed[1]()  # the command ended: the writer may stop
        if feeder is not None:
            feeder.join()
            if errors:
                raise errors[0]
        return exit_status(code)


def _pump(
    proc: subprocess.Popen[bytes], send: Callable[[bytes], None], finish: Callable[[], None], err: Callable[[bytes], None]
) -> None:
    """Copy stdout to ``send`` and stderr to ``err`` until both close; a reader gone closes stdout (SIGPIPE)."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        open_fds = {out_fd, err_fd}
        while open_fds:
            for key, _ in sel.select():
                data = os.read(key.fd, 65536)
                if key.fd == err_fd:
                    if data:
                        err(data)
                        continue
                elif data:
                    try:
                        send(data)
                        continue
                    except _ReaderGone:
                        pass
                sel.unregister(key.fd)
                open_fds.discard(key.fd)
                if key.fd == out_fd:
                    proc.stdout.close()  # at once: a command still writing gets SIGPIPE, as in a local pipe
                    finish()
    proc.stdout.close()
    proc.stderr.close()


def _dir_writer(stage: Stage) -> tuple[Callable[[bytes], None], Callable[[], None]]:
    """stdout as numbered chunk files in the link's directory, announced in a bounded DSO queue."""
    from ..objects.containers import Queue
    from ..objects.synchronization import Event

    assert stage.job.shared_dir, "the dir pipe needs a shared directory"
    directory = link_dir(stage.job.shared_dir, stage.pipe_id, stage.index)
    os.makedirs(directory, exist_ok=True)
    chunks = Queue(LINK_CHUNKS, key=chunks_key(stage.pipe_id, stage.index))
    closed = Event(key=closed_key(stage.pipe_id, stage.index))
    count = 0
    gone = False

    def send(data: bytes) -> None:
        nonlocal count, gone
        if gone or closed.is_set():
            gone = True
            raise _ReaderGone
        count += 1
        name = f"{count:010d}"
        path = os.path.join(directory, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)  # complete before it is announced
        chunks.put(name)  # waits while the reader is LINK_CHUNKS behind

    def finish() -> None:
        with open(os.path.join(directory, "EOF"), "wb"):
            pass
        chunks.put(None)  # the reader consumes to the end, so this never waits for long

    return send, finish


def _dir_reader(stage: Stage) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """Feed the command's stdin with the previous stage's chunks, in order, until its end marker."""
    from ..objects.containers import Queue
    from ..objects.synchronization import Event

    link = stage.index - 1
    directory = link_dir(stage.job.shared_dir, stage.pipe_id, link)
    chunks = Queue(LINK_CHUNKS, key=chunks_key(stage.pipe_id, link))
    closed = Event(key=closed_key(stage.pipe_id, link))

    def feed(pipe: Any) -> None:
        gone = False
        try:
            while True:
                name = chunks.get()  # blocks on the node
                if name is None:
                    break
                path = os.path.join(directory, name)
                if not gone:
                    with open(path, "rb") as f:
                        data = f.read()
                    try:
                        pipe.write(data)
                        pipe.flush()
                    except (BrokenPipeError, ValueError):  # the command stopped reading (or ended)
                        gone = True
                        closed.set()  # the writer stops; we read on to its end marker, discarding
                with contextlib.suppress(OSError):
                    os.unlink(path)
        finally:
            with contextlib.suppress(OSError):
                pipe.close()
            shutil.rmtree(directory, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(directory))  # the pipe's directory, once its last link is gone

    return feed, closed.set


# --------------------------------------------------------------------------- the client


def run_pipe(
    stages: list[str],
    job: Any,
    *,
    backend: str | None,
    timeout: float | None,
    debug: bool,
    dso: tuple[str, ...],
    origin: str,
    via: str = "tcp",
    host: str | None = None,
    pipefail: bool = False,
) -> int:
    """Run each stage as its own invocation, linked stage to stage; write their output; the pipeline's status."""
    import dataclasses

    from ..objects.containers import Queue
    from ..objects.synchronization import Event, SharedFuture
    from ._procs import EXIT_FAILURE, EXIT_TIMEOUT
    from .sshell import (
        LIVENESS,
        QUEUE_CHUNKS,
        _backend,
        _dso_errors,
        _Failure,
        _start,
        _write,
        failure_status,
    )

    if via not in VIA:
        raise _Failure(f"--pipe-via must be one of {', '.join(VIA)}, not {via!r}", 2)
    started = time.perf_counter()
    n = len(stages)
    pipe_id = job.id
    if host is None and _backend(backend, n).name in ("local", "inline"):
        host = "127.0.0.1"  # every function runs on this machine
    links: list[Any] = []
    with _dso_errors(dso, origin):
        out = Queue(QUEUE_CHUNKS, key=out_key(pipe_id), force_new=True)
        for link in range(n - 1):
            if via == "tcp":
                links.append(SharedFuture(key=addr_key(pipe_id, link), force_new=True))
            else:
                links.append(Queue(LINK_CHUNKS, key=chunks_key(pipe_id, link), force_new=True))
                links.append(Event(key=closed_key(pipe_id, link), force_new=True))
    if debug:
        _write(2, f"RequestId: {pipe_id} ({n} stages, via {via})\n".encode())
    threads = []
    statuses: dict[int, int] = {}
    stats: dict[int, dict[str, Any]] = {}
    aborted = False

    def abort() -> None:
        """Wake every stage waiting on a link (a stage failed, or sshell is giving up)."""
        nonlocal aborted
        if not aborted:
            aborted = True
            for obj in links:
                with contextlib.suppress(Exception):
                    obj.delete()

    try:
        for index, command in enumerate(stages):
            stage_job = dataclasses.replace(job, id=f"{pipe_id}-{index}", command=command, script=None)

            def make(j: Any, index: int = index) -> Stage:
                return Stage(job=j, pipe_id=pipe_id, index=index, count=n, via=via, host=host)

            threads.append(_start(stage_job, backend, timeout, dso, origin, execute_stage, make, workers=n))
        with _dso_errors(dso, origin):
            while len(statuses) < n:
                try:
                    item = out.get(timeout=LIVENESS)
                except queue.Empty:
                    if out.qsize():
                        continue
                    for index, thread in enumerate(threads):
                        if index not in statuses and not thread.is_alive():
                            exc = thread.exception()
                            why = f"{type(exc).__name__}: {exc}" if exc is not None else "it ended without a status"
                            _write(2, f"sshell: stage {index + 1} ({stages[index]}) failed: {why}\n".encode())
                            statuses[index] = failure_status(exc) if exc is not None else EXIT_FAILURE
                            abort()
                    continue
                if item[0] == 0:
                    _, index, status, stage_stats, failed = item
                    statuses[index], stats[index] = status, stage_stats
                    if failed:
                        abort()
                else:
                    try:
                        _write(item[0], item[1])
                    except BrokenPipeError:  # our reader went away
                        return 128 + signal.SIGPIPE
    finally:
        abort()
        with contextlib.suppress(Exception):
            out.delete()
        if via == "dir" and job.shared_dir:
            shutil.rmtree(os.path.join(job.shared_dir, pipe_id), ignore_errors=True)
    timed_out = [index for index in range(n) if stats.get(index, {}).get("timed_out")]
    for index in timed_out:
        _write(2, f"sshell: stage {index + 1} ran past --timeout {timeout:g} s and was killed\n".encode())
    if debug:
        for index in range(n):
            s = stats.get(index, {})
            rss = (s.get("rss_kb", 0) + s.get("command_rss_kb", 0)) / 1024
            _write(
                2,
                f"Stage {index + 1}: status {statuses.get(index)} Duration: {s.get('duration_ms', 0):.0f} ms "
                f"Memory Used: {rss:.0f} MB\n".encode(),
            )
        _write(2, f"Pipeline: {(time.perf_counter() - started) * 1000:.0f} ms end to end\n".encode())
    if timed_out:  # --timeout bounds the whole pipeline, as timeout(1) would
        return EXIT_TIMEOUT
    if pipefail:
        return next((statuses[i] for i in reversed(range(n)) if statuses[i]), 0)
    return statuses[n - 1]
