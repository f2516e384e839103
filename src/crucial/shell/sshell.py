"""``sshell``: run a shell command as one cloud function and stream its output back.

::

    client: sshell CMD                     DSO node                     worker (one cloud thread)
    ──────────────────                     ────────                     ─────────────────────────
    find the DSO (--dso, CRUCIAL_DSO,
      else this user's persistent node)
    Queue "sshell/<id>/out" ─────────────► created
    CloudThread(_execute).start() ───────────────────────────────────► run_shell("bash -c CMD")
    q.get(timeout) ◄─── (1|2, chunk) ◄──── put, while bash runs ◄──── stdout/stderr callbacks
      └► write to fd 1 / fd 2
    q.get() ◄────────── (0, status, stats) ◄──────────────────────────── bash exited
    exit(status)

The output travels through a bounded DSO queue, so the client writes each
chunk as soon as the command prints it (``get`` blocks on the node: no
polling) and a slow reader slows the command down instead of filling memory.
The exit status is the command's: 127 for a missing command, 128+N for a
signal, as bash reports them.  sshell's own failures use the codes of
``timeout(1)`` and ``env(1)``: 124 when ``--timeout`` expires, 125 when the
DSO or the backend fails, 2 for bad usage.

With no DSO configured (``--dso``, ``CRUCIAL_DSO`` or the config file) sshell
uses a *persistent per-user node* it starts on first use (``crucial server``
on 127.0.0.1, detached, with a random token) and records in
``~/.cache/crucial/dso``: every ``sshell`` of this user, and every command
they run, then share one DSO, as ``xargs -P`` pipelines need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import multiprocessing
import os
import pwd
import queue
import resource
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click

from ._procs import EXIT_FAILURE, EXIT_TIMEOUT, die_with_parent, kill_descendants
from ._verbenv import env_assignment

__all__ = ["Job", "main", "user_node", "stop_user_node"]


#: chunks the output queue holds before the command waits for the client
QUEUE_CHUNKS = 256
#: how long the function waits for a client that stopped reading before it drops the output
STALLED_CLIENT = 60.0
#: the client checks its invocation is alive this often while no output arrives
LIVENESS = 0.5
#: seconds a --timeout invocation gets past its deadline to report before the backend kills it
GRACE = 10.0


# --------------------------------------------------------------------------- the function


@dataclass(frozen=True)
class Job:
    """What one invocation runs; travels to the worker by pickle."""

    id: str
    command: str  # the bash command, or the script's name (its $0) when a script is given
    script: str | None = None  # a script's text, run by bash with its lines intact
    env: dict[str, str] = field(default_factory=dict)
    shared_dir: str | None = None
    timeout: float | None = None
    stream: bool = True  # False for --async: the output is dropped
    forked: bool = False  # the worker was forked by the sshell client (local backend): die with it

    @property
    def queue_key(self) -> str:
        return f"sshell/{self.id}/out"


def _execute(job: Job) -> int:
    """The cloud function: run the command, push its output to the job's queue, return its status."""
    from ..objects.containers import Queue
    from .ipc import run_shell

    if job.forked:
        die_with_parent()
    out = Queue(QUEUE_CHUNKS, key=job.queue_key) if job.stream else None
    stalled = threading.Event()

    def sink(fd: int) -> Callable[[bytes], None]:
        def push(chunk: bytes) -> None:
            if out is None or stalled.is_set() or not chunk:
                return
            try:
                out.put((fd, chunk), timeout=STALLED_CLIENT)
            except queue.Full:  # the client went away: run on, output dropped
                stalled.set()

        return push

    env = job_env(job)
    timed_out = threading.Event()
    start = time.perf_counter()
    with deadline(job.timeout, timed_out):
        status = run_shell(job.command, env=env, script=job.script, stdout=sink(1), stderr=sink(2))
    stats = run_stats(start, timed_out)
    if out is not None and not stalled.is_set():
        with contextlib.suppress(queue.Full):
            out.put((0, status, stats), timeout=STALLED_CLIENT)
    return EXIT_TIMEOUT if stats.get("timed_out") else status  # what `sshell --wait` reports for --async


def job_env(job: Job) -> dict[str, str]:
    """The variables the command gets besides the worker's own: ``-e``, ``SSHELL_*``, the DSO's address."""
    env = dict(job.env)
    env.setdefault("SSHELL_ID", job.id)
    # a command's own crucial programs reach the same DSO, the same way
    for name in ("CRUCIAL_DSO", "CRUCIAL_TOKEN", "CRUCIAL_TLS", "CRUCIAL_TLS_CA", "CRUCIAL_TLS_CERT", "CRUCIAL_TLS_KEY"):
        if name in os.environ:
            env.setdefault(name, os.environ[name])
    if job.shared_dir:
        os.makedirs(job.shared_dir, exist_ok=True)
        env.setdefault("SSHELL_SHARED", job.shared_dir)
    return env


@contextlib.contextmanager
def deadline(timeout: float | None, timed_out: threading.Event) -> Iterator[None]:
    """Kill this process's descendants (the command's tree) if the block runs past ``timeout`` seconds."""
    if timeout is None:
        yield
        return

    def expire() -> None:
        timed_out.set()
        kill_descendants()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def run_stats(start: float, timed_out: threading.Event) -> dict[str, Any]:
    """What ``--debug`` reports about an invocation that started at ``start`` (``perf_counter``)."""
    return {
        "duration_ms": (time.perf_counter() - start) * 1000,
        "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "command_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "timed_out": timed_out.is_set(),
    }


# --------------------------------------------------------------------------- finding the DSO


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crucial"


def _read_node_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _reachable(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _alive(info: dict[str, str]) -> bool:
    dso = info.get("CRUCIAL_DSO", "")
    return bool(dso) and all(_reachable(a) for a in dso.split(","))


def user_node(start: bool = True, timeout: float = 30.0) -> tuple[str, str] | None:
    """This user's persistent DSO node as ``(address, token)``, started detached if it is not running.

    The node is recorded in ``~/.cache/crucial/dso`` (``$XDG_CACHE_HOME``
    honoured; mode 0600, since it holds the token); a file lock makes sure
    that fifty sshells starting at once start one node, not fifty.
    """
    path = _cache_dir() / "dso"
    info = _read_node_file(path)
    if _alive(info):
        return info["CRUCIAL_DSO"], info.get("CRUCIAL_TOKEN", "")
    if not start:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.parent / "dso.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _read_node_file(path)  # another sshell may have started it while we waited
        if _alive(info):
            return info["CRUCIAL_DSO"], info.get("CRUCIAL_TOKEN", "")
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIAL_")}
        env["CRUCIAL_TOKEN"] = token
        with open(path.parent / "dso.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "crucial.server", "--host", "127.0.0.1", "--port", "0"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,  # outlives this sshell and its terminal
                cwd="/",
            )
        assert proc.stdout is not None
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline().decode()
        finally:
            timer.cancel()
            proc.stdout.close()  # a single node prints nothing after its address
        if not line.startswith("CRUCIAL_DSO="):
            raise click.ClickException(f"the per-user DSO node did not start; see {path.parent / 'dso.log'}")
        address = line.strip().split("=", 1)[1]
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"CRUCIAL_DSO={address}\nCRUCIAL_TOKEN={token}\nPID={proc.pid}\n")
        os.replace(tmp, path)
        return address, token


def stop_user_node() -> bool:
    """Stop this user's persistent node; ``True`` if one was running."""
    path = _cache_dir() / "dso"
    info = _read_node_file(path)
    with contextlib.suppress(OSError):
        path.unlink()
    pid = int(info.get("PID", "0") or 0)
    if pid and _alive(info):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
            return True
    return False


def _resolve_dso(dso: str | None) -> tuple[tuple[str, ...], str | None, str]:
    """(addresses, token, where they came from)."""
    from ..config import load_config

    config = load_config()
    if dso:
        return tuple(a.strip() for a in dso.split(",") if a.strip()), config.token, "--dso"
    if config.dso:
        return config.dso, config.token, "CRUCIAL_DSO" if os.environ.get("CRUCIAL_DSO") else "the config file"
    node = user_node()
    assert node is not None
    return (node[0],), node[1] or None, f"the per-user node ({_cache_dir() / 'dso'})"


# --------------------------------------------------------------------------- the client


class _Failure(Exception):
    """sshell itself failed: print the message, exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def _dso_errors(dso: tuple[str, ...], origin: str) -> Iterator[None]:
    from ..exceptions import AuthenticationError, ConnectError, CrucialError

    try:
        yield
    except (ConnectError, OSError) as exc:
        hint = "start one with `crucial server` and export the CRUCIAL_DSO it prints"
        if origin.startswith("the per-user"):
            hint = "run `sshell --stop-dso` and try again"
        raise _Failure(f"cannot reach the DSO at {','.join(dso)} (from {origin}): {exc}; {hint}") from exc
    except AuthenticationError as exc:
        raise _Failure(f"the DSO at {','.join(dso)} refused the token (set CRUCIAL_TOKEN): {exc}") from exc
    except CrucialError as exc:
        raise _Failure(f"{type(exc).__name__}: {exc}") from exc


def _connect(dso: tuple[str, ...], token: str | None, origin: str) -> None:
    import crucial

    with _dso_errors(dso, origin):
        crucial.connect(dso, token=token, connect_timeout=5.0).ping()


def _run(job: Job, backend: str | None, timeout: float | None, debug: bool, dso: tuple[str, ...], origin: str) -> int:
    """Invoke the job and stream its output; the command's exit status."""
    from ..exceptions import InvocationTimeoutError
    from ..objects.containers import Queue

    started = time.perf_counter()
    with _dso_errors(dso, origin):
        out = Queue(QUEUE_CHUNKS, key=job.queue_key, force_new=True) if job.stream else None
    if debug:
        _write(2, f"RequestId: {job.id}\n".encode())
    thread = _start(job, backend, timeout, dso, origin)
    if out is None:
        return 0
    status: int | None = None
    stats: dict[str, Any] = {}
    try:
        with _dso_errors(dso, origin):
            while status is None:
                try:
                    item = out.get(timeout=LIVENESS)
                except queue.Empty:
                    if thread.is_alive():
                        continue
                    if out.qsize():  # it ended while we waited: its last items are there
                        continue
                    exc = thread.exception()
                    if isinstance(exc, InvocationTimeoutError):
                        raise _Failure(f"the command ran past --timeout {timeout:g} s", EXIT_TIMEOUT) from exc
                    if exc is not None:
                        raise _Failure(f"the invocation failed: {type(exc).__name__}: {exc}") from exc
                    raise _Failure("the invocation ended without reporting its exit status")
                if item[0] == 0:
                    status, stats = item[1], item[2]
                else:
                    try:
                        _write(item[0], item[1])
                    except BrokenPipeError:  # our reader went away (`sshell seq 1 1e9 | head`)
                        return _closed_output()
    finally:
        if out is not None:
            with contextlib.suppress(Exception):
                out.delete()
    if stats.get("timed_out"):
        _write(2, f"sshell: the command ran past --timeout {timeout:g} s and was killed\n".encode())
        status = EXIT_TIMEOUT
    if debug:
        total = (time.perf_counter() - started) * 1000
        rss, cmd_rss = stats.get("rss_kb", 0) / 1024, stats.get("command_rss_kb", 0) / 1024
        _write(
            2,
            f"Duration: {stats.get('duration_ms', 0):.0f} ms Memory Used: {rss + cmd_rss:.0f} MB "
            f"(worker {rss:.0f} MB, command {cmd_rss:.0f} MB; {total:.0f} ms end to end)\n".encode(),
        )
    return status


def status_key(job_id: str) -> str:
    """The SharedFuture where an ``--async`` invocation's exit status waits for ``sshell --wait``."""
    return f"sshell/{job_id}/status"


def failure_status(exc: BaseException) -> int:
    """The exit status of an invocation that failed with ``exc``: 124 past its timeout, else 125."""
    from ..exceptions import InvocationTimeoutError

    return EXIT_TIMEOUT if isinstance(exc, InvocationTimeoutError) else EXIT_FAILURE


def _final_status(thread: Any) -> int:
    """An ``--async`` invocation's exit status, as ``sshell CMD`` would have exited."""
    exc = thread.exception()
    return int(thread.result()) if exc is None else failure_status(exc)


def _exit_with(run: Callable[[], int]) -> NoReturn:
    """Exit with ``run()``'s status; a failure is reported (with its code), Ctrl-C exits 130."""
    try:
        try:
            code = run()
        except _Failure as exc:
            click.echo(f"sshell: {exc}", err=True)
            code = exc.code
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BrokenPipeError:  # stdout or stderr was closed (`sshell --debug ls 2>&1 | head -1`)
        code = _closed_output()
    sys.exit(code)


def _closed_output() -> int:
    """Our reader went away: end quietly with 141, as a filter killed by SIGPIPE (`ls | head`) does.

    Python ignores SIGPIPE, so a write to a closed pipe raises instead; the
    streams are pointed at /dev/null so that nothing tries to report it (or
    to flush into the closed pipe) on the way out.
    """
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(null, fd)
    os.close(null)
    return 128 + signal.SIGPIPE


def _wait_for(job_id: str, dso: tuple[str, ...], token: str | None, origin: str) -> int:
    """``--wait ID``: the exit status of the ``--async`` invocation ID, once it ends (collected once)."""
    from ..exceptions import ObjectNotFoundError
    from ..objects.synchronization import SharedFuture

    _connect(dso, token, origin)
    with _dso_errors(dso, origin):
        done = SharedFuture.attach(status_key(job_id))
        try:
            status = int(done.get())
        except ObjectNotFoundError:
            raise _Failure(
                f"no --async invocation {job_id!r} on the DSO at {','.join(dso)} (unknown id, or its status was collected)", 2
            ) from None
        done.delete()
    return status


def _fire_and_forget(
    job: Job, backend: str | None, timeout: float | None, dso: tuple[str, ...], token: str | None, origin: str
) -> int:
    """``--async``: a detached child invokes and waits; we exit once it says the invocation started.

    The waiter is needed on the local backend, whose workers are children of
    the invoking process; it owns no terminal and holds none of our streams,
    so ``parallel`` and ``$(...)`` return at once.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid:  # the parent: report what the child says (one line: the worker inherits the pipe)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            answer = pipe.readline().rstrip(b"\n")
        if answer == b"ok":
            click.echo(job.id)
            return 0
        raise _Failure(answer.decode(errors="replace") or "the detached invoker died before invoking")
    os.close(r)
    code = 0
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)  # before any worker exists: none may hold the caller's streams
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _connect(dso, token, origin)
        from ..objects.synchronization import SharedFuture

        with _dso_errors(dso, origin):
            done = SharedFuture(key=status_key(job.id))
            done.done()  # exists before the id is printed: `sshell --wait ID` may follow at once
        thread = _start(job, backend, timeout, dso, origin)
        os.write(w, b"ok\n")
        os.close(w)
        thread.join()
        done.set(_final_status(thread))
        for child in multiprocessing.active_children():  # the idle worker would wait for work forever
            child.kill()
    except _Failure as exc:
        os.write(w, str(exc).replace("\n", " ").encode() + b"\n")
        code = exc.code
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(w, f"{type(exc).__name__}: {exc}".replace("\n", " ").encode() + b"\n")
        code = EXIT_FAILURE
    finally:
        os._exit(code)


def _backend(name: str | None, workers: int = 1) -> Any:
    """The backend to use; ``local`` forks its one worker from this process.

    A forked worker starts warm without a fork server's fresh interpreter: it
    halves the CPU an ``sshell`` costs, which is what ``xargs -P 50`` pays for.
    """
    from ..compute import get_backend
    from ..compute._backend import _default_name

    name = name or _default_name()
    if name == "local":
        return get_backend("local", start_method="fork", max_workers=workers, idle_timeout=0)
    return get_backend(name)


def _start(
    job: Job,
    backend: str | None,
    timeout: float | None,
    dso: tuple[str, ...],
    origin: str,
    function: Callable[[Any], int] = _execute,
    make_arg: Callable[[Job], Any] = lambda job: job,
    workers: int = 1,
) -> Any:
    """Invoke ``function(make_arg(job))`` as a cloud thread (``_execute(job)`` by default)."""
    from ..compute import CloudThread

    chosen = _backend(backend, workers)
    if chosen.name == "local":
        job = dataclasses.replace(job, forked=True)
    limit = None if timeout is None else timeout + GRACE
    thread = CloudThread(function, (make_arg(job),), name=f"sshell-{job.id}", backend=chosen, timeout=limit)
    try:
        with _dso_errors(dso, origin):
            thread.start()
    except _Failure:
        raise
    except Exception as exc:
        raise _Failure(f"could not invoke the command on the {backend or 'configured'} backend: {exc}") from exc
    return thread


def _parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        pair = env_assignment(item)
        if pair is None:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE with a shell variable name", param_hint="-e/--env")
        env[pair[0]] = pair[1]
    return env


def _backend_names() -> list[str]:
    from ..compute._backend import BACKENDS

    return sorted(BACKENDS)


CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command(context_settings=CONTEXT | {"allow_interspersed_args": False})
@click.option(
    "--async", "async_", is_flag=True, help="Fire and forget: print the invocation id and exit 0; the output is dropped."
)
@click.option(
    "-f",
    "--file",
    "script",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="Run this bash script (its text is sent, lines intact) instead of CMD.",
)
@click.option(
    "--backend", type=click.Choice(_backend_names()), default=None, help="Compute backend [default: configured, else local]."
)
@click.option(
    "--dso", default=None, metavar="ADDR", help="DSO node(s) host:port[,...] [default: CRUCIAL_DSO, else the per-user node]."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Kill the command after this long (exit 124).",
)
@click.option(
    "-e", "--env", "env", multiple=True, metavar="KEY=VALUE", help="Set a variable in the command's environment (repeatable)."
)
@click.option(
    "--shared-dir",
    envvar="CRUCIAL_SHARED_DIR",
    default=None,
    metavar="DIR",
    help="Directory every invocation sees as $SSHELL_SHARED, created if missing "
    "[env: CRUCIAL_SHARED_DIR; default: /tmp/crucial-shared-$USER].",
)
@click.option("--debug", is_flag=True, help="Print the invocation id, duration and memory used to stderr.")
@click.option(
    "--pipe",
    is_flag=True,
    help="CMD is a pipeline 'a | b | c': run each stage as its own invocation, stage linked to stage.",
)
@click.option(
    "--pipe-via",
    type=click.Choice(["tcp", "dir"]),
    default="tcp",
    show_default=True,
    help="How --pipe stages are linked: TCP sockets met through a DSO rendezvous, or chunk files in $SSHELL_SHARED.",
)
@click.option(
    "--pipe-host",
    envvar="SSHELL_PIPE_HOST",
    default=None,
    metavar="HOST",
    help="The address a --pipe stage listens at, as the other functions reach it "
    "[env: SSHELL_PIPE_HOST; default: 127.0.0.1 on the local backend, else the address that routes to the DSO].",
)
@click.option("--pipefail", is_flag=True, help="With --pipe: exit with the last non-zero stage status (bash's pipefail).")
@click.option(
    "--wait",
    "wait_id",
    default=None,
    metavar="ID",
    help="Wait for the --async invocation ID to end and exit with its status (once per ID).",
)
@click.option("--stop-dso", is_flag=True, help="Stop this user's persistent DSO node (started by sshell) and exit.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def sshell(
    async_: bool,
    script: Path | None,
    backend: str | None,
    dso: str | None,
    timeout: float | None,
    env: tuple[str, ...],
    shared_dir: str | None,
    debug: bool,
    pipe: bool,
    pipe_via: str,
    pipe_host: str | None,
    pipefail: bool,
    wait_id: str | None,
    stop_dso: bool,
    command: tuple[str, ...],
) -> None:
    """Run a shell command (or -f FILE) as a cloud function; its output and exit status are the command's.

    CMD's words are joined with spaces and run by `bash -c`, as ssh does:
    quote what the local shell must not expand (sshell 'echo $HOSTNAME').
    """
    if stop_dso:
        click.echo("stopped" if stop_user_node() else "no per-user DSO node was running")
        return
    if wait_id is not None:
        if command or script is not None or async_ or pipe:
            raise click.UsageError("--wait ID takes no CMD, -f, --async or --pipe")
        _exit_with(lambda: _wait_for(wait_id, *_resolve_dso(dso)))
    if script is not None and command:
        raise click.UsageError("give either -f FILE or CMD, not both")
    if script is None and not command:
        raise click.UsageError("missing CMD (or -f FILE)")
    variables = _parse_env(env)
    stages: list[str] = []
    if pipe:
        from .pipes import PipeSyntaxError, split_pipeline

        if script is not None or async_:
            raise click.UsageError("--pipe takes CMD, and cannot be combined with -f or --async")
        try:
            stages = split_pipeline(" ".join(command))
        except PipeSyntaxError as exc:
            raise click.UsageError(f"--pipe: {exc}") from exc
    elif pipefail or pipe_via != "tcp":
        raise click.UsageError("--pipe-via and --pipefail go with --pipe")
    if script is not None:
        try:
            text = script.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {script}: {exc}", param_hint="-f/--file") from exc
    user = os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name
    job = Job(
        id=uuid.uuid4().hex,
        command=str(script) if script is not None else " ".join(command),  # a script's $0 is its name
        script=text if script is not None else None,
        env=variables,
        shared_dir=shared_dir or f"/tmp/crucial-shared-{user}",
        timeout=timeout,
        stream=not async_,
    )

    def invoke() -> int:
        addresses, token, origin = _resolve_dso(dso)
        if async_:
            return _fire_and_forget(job, backend, timeout, addresses, token, origin)
        _connect(addresses, token, origin)
        if not pipe:
            return _run(job, backend, timeout, debug, addresses, origin)
        from .pipes import run_pipe

        return run_pipe(
            stages,
            job,
            backend=backend,
            timeout=timeout,
            debug=debug,
            dso=addresses,
            origin=origin,
            via=pipe_via,
            host=pipe_host,
            pipefail=pipefail,
        )

    _exit_with(invoke)


def main(argv: list[str] | None = None) -> None:
    sshell.main(args=argv, prog_name="sshell")


if __name__ == "__main__":
    main()
