"""Helpers shared by the benchmarks: redis-server, crucial nodes, worker processes, results.

Everything here stays on 127.0.0.1 and everything started is stopped by the
``with`` blocks (also on Ctrl-C, SIGTERM or an exception).  Worker processes
are started with the "spawn" start method, so this module keeps its imports
light: crucial and redis-py are imported where they are used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


def log(*parts: object) -> None:
    """Progress goes to stderr; stdout's last line is the JSON result."""
    print(*parts, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(ours: float, peer: float) -> float:
    return round(ours / peer, 4) if peer else float("inf")


def emit(result: dict[str, Any]) -> None:
    """Print the result as one JSON object: the last line of stdout."""
    print(json.dumps(result), flush=True)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def meta(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """When, where and how the figures were measured: every result line ends with these."""
    out: dict[str, Any] = {}
    if args is not None:
        out["mode"] = mode(args)
    out.update(
        {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": git_commit(),
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
        }
    )
    return out


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark has: ``--quick``, ``--smoke`` and ``--runs``."""
    p = argparse.ArgumentParser(description=description)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a short run (under a minute) with figures worth reading")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, a few seconds: checks that the script and its peers run (the figures mean nothing)",
    )
    p.add_argument("--runs", type=int, default=None, help="repetitions per system (the medians are reported)")
    return p


def mode(args: argparse.Namespace) -> str:
    """``"smoke"``, ``"quick"`` or ``"full"``: how big this run is."""
    return "smoke" if getattr(args, "smoke", False) else "quick" if getattr(args, "quick", False) else "full"


def by_mode(args: argparse.Namespace, full: Any, quick: Any, smoke: Any) -> Any:
    """The setting for this run's size: ``by_mode(args, 30_000, 3000, 200)``."""
    return {"full": full, "quick": quick, "smoke": smoke}[mode(args)]


def alternate(systems: Sequence[str], run: int) -> list[str]:
    """The systems in run ``run``'s order: as given in even runs, reversed in odd ones.

    Whichever system goes first meets a colder cache and a different load, so
    the order alternates run by run and the medians see both.
    """
    return list(systems) if run % 2 == 0 else list(systems)[::-1]


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C, so ``finally`` blocks run."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# --------------------------------------------------------------------------- CPU time of other processes


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time so far of these processes (all their threads, those that ended too), summed.

    Read from Linux's per-process CPU clock (``clock_gettime`` on the clock id
    ``(~pid << 3) | 2``, CPUCLOCK_SCHED), in nanoseconds: ``/proc/PID/stat``
    counts in ticks of 10 ms, which made a few thousand calls' CPU a matter of
    one tick more or less.  Falls back to /proc where the clock cannot be read;
    a process that is gone counts 0.
    """
    total = 0.0
    for pid in pids:
        try:
            total += time.clock_gettime(((~pid) << 3) | 2)
        except OSError:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError):
                pass
    return total


# --------------------------------------------------------------------------- redis-server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def ensure_redis_server() -> str:
    """The path of Debian's redis-server, installing the package (as root) if missing."""
    path = shutil.which("redis-server")
    if path:
        return path
    if os.geteuid() != 0:
        raise SystemExit("redis-server is missing: run `apt-get install -y redis-server` as root")
    log("installing redis-server with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
    if subprocess.run(cmd, env=env, stdout=sys.stderr).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=sys.stderr, check=True)
        subprocess.run(cmd, env=env, stdout=sys.stderr, check=True)
    path = shutil.which("redis-server")
    if not path:
        raise SystemExit("redis-server still missing after apt-get install")
    return path


class RedisServer:
    """``with RedisServer() as rs: rs.port`` -- a private redis-server on 127.0.0.1, no persistence."""

    def __init__(self, start_timeout: float = 20.0) -> None:
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> RedisServer:
        exe = ensure_redis_server()
        for _attempt in range(5):  # the free port may be taken between probe and bind
            self.port = free_port()
            cmd = [exe, "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--appendonly", "no"]
            cmd += ["--protected-mode", "yes", "--daemonize", "no", "--loglevel", "notice", "--logfile", ""]
            cmd += ["--maxclients", "10000", "--dir", "/tmp"]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
            if self._wait_ready():
                threading.Thread(target=self._drain, daemon=True).start()
                return self
            self.stop()
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self) -> bool:
        assert self.proc is not None and self.proc.stdout is not None
        timer = threading.Timer(self.start_timeout, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stdout:
                if "Ready to accept connections" in line:
                    return True
            return False
        finally:
            timer.cancel()

    def _drain(self) -> None:
        proc = self.proc
        if proc is not None and proc.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                for _ in proc.stdout:
                    pass

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisBarrier:
    """The INCR + BLPOP barrier that Redis users write."""

    def __init__(self, r: Any, name: str, parties: int) -> None:
        self.r = r
        self.parties = parties
        self.counter = f"{name}:count"
        self.prefix = f"{name}:go:"

    def wait(self) -> None:
        n = self.r.incr(self.counter)
        generation = (n - 1) // self.parties
        if n % self.parties == 0:  # last arrival of this generation: release the others
            if self.parties > 1:
                self.r.rpush(f"{self.prefix}{generation}", *([b"1"] * (self.parties - 1)))
        else:
            self.r.blpop([f"{self.prefix}{generation}"], timeout=0)


@contextlib.contextmanager
def environ(**variables: str) -> Iterator[None]:
    """Set environment variables for the ``with`` block, and put back what was there."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def lithops_tempdir() -> Iterator[None]:
    """Lithops' localhost storage and runner in a private temporary directory, removed at the end.

    Lithops places them under ``tempfile.gettempdir()``, in this process and
    in each function's subprocess, so ``TMPDIR`` points at the private
    directory while the benchmark runs (set after crucial's fork server and
    the process pool have started, so they are not affected).
    """
    import tempfile

    tmp = tempfile.mkdtemp(prefix="crucial-bench-lithops-")
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, None
    try:
        with environ(TMPDIR=tmp):
            try:
                import lithops  # noqa: F401  (its paths are fixed at import, under TMPDIR)
            except ImportError:
                raise SystemExit("lithops is missing: pip install lithops (or run with --no-lithops)") from None
            yield
    finally:
        tempfile.tempdir = saved_tempdir
        shutil.rmtree(tmp, ignore_errors=True)


def access_times(watches: list[Any]) -> dict[str, float]:
    """The iterative phase (slowest worker's laps) and what the shared state costs per iteration.

    For the iterative applications (k-means, logistic regression) whose
    workers time each lap's ``compute``, ``shared state`` and ``sync`` phases
    with ``crucial.examples._timing.Stopwatch``:

    * ``access``: per iteration, the shared-state calls plus the barrier of the
      worker that reached the barrier **last** (the smallest ``shared state +
      sync`` of the iteration), averaged over the iterations.  That worker
      waits for no one, so this is what the store and its barrier add to the
      iteration's critical path; the other workers' extra ``sync`` is their
      wait for the slowest one's ``compute`` -- the same NumPy code in both
      systems, and on a busy 2-core machine mostly scheduling noise.  The
      ratio vs Lithops + Redis is computed on it;
    * ``access_mean``: the seed's own Figure 5d definition, the mean over all
      workers and iterations of the loop's time outside ``compute`` (waiting
      for the slowest worker included), reported beside it;
    * ``shared_state``: the mean shared-state calls alone per iteration and worker.
    """
    from crucial.examples._timing import mean_per_iteration

    mean = mean_per_iteration(watches)
    iterations = min(len(w.laps) for w in watches)
    last = [min(w.laps[i]["shared state"] + w.laps[i]["sync"] for w in watches) for i in range(iterations)]
    return {
        "iterating": max(sum(sum(lap.values()) for lap in w.laps) for w in watches),
        "access": sum(last) / max(iterations, 1),
        "access_mean": mean["shared state"] + mean["sync"],
        "shared_state": mean["shared state"],
    }


def redis_client(port: int, **kwargs: Any) -> Any:
    """A redis-py client the way users make one (hiredis parser when installed)."""
    import redis
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        log("warning: hiredis is not installed; redis-py uses its pure-Python parser")
    return redis.Redis(host=LOOPBACK, port=port, **kwargs)


def hiredis_version() -> str | None:
    try:
        import hiredis

        return str(hiredis.__version__)
    except ImportError:
        return None


# --------------------------------------------------------------------------- crucial


@contextlib.contextmanager
def crucial_cluster(nodes: int) -> Iterator[Any]:
    """Real crucial node processes on free loopback ports (``LocalCluster``)."""
    from crucial.testing import LocalCluster

    cluster = LocalCluster(nodes=nodes)
    cluster.start()
    try:
        for address in cluster.addresses:
            host = address.rsplit(":", 1)[0]
            if host not in (LOOPBACK, "localhost"):
                raise RuntimeError(f"crucial node listens on {address}, not loopback")
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- worker processes


class Link:
    """A worker's side of a :class:`ProcessGroup`: meet the others, report results."""

    def __init__(self, index: int, go: list[Any], done: list[Any], queue: Any) -> None:
        self.index = index
        self._go = go
        self._done = done
        self._phase = 0
        self._queue = queue

    def start(self) -> None:
        """Say "ready" and wait until every worker is: all start measuring together."""
        if self._phase >= len(self._go):
            raise RuntimeError(f"more phases than the {len(self._go)} the ProcessGroup was made for")
        self._queue.put((self.index, _READY, None))
        self._go[self._phase].wait()
        self._phase += 1

    def report(self, value: Any) -> None:
        """Send this phase's result; return when every worker has (so no one disturbs a phase in progress)."""
        self._queue.put((self.index, _RESULT, value))
        self._done[self._phase - 1].wait()


_READY, _RESULT, _FAILED = "ready", "result", "failed"


class ProcessGroup:
    """``n`` worker processes (spawn) that run ``phases`` phases in lockstep with the parent.

    ``target(link, *args)`` runs in each process.  For each phase it gets
    ready (connects, warms up), calls ``link.start()`` -- which returns once
    the parent's :meth:`start_phase` has seen every worker ready, so nobody
    measures before everybody is ready -- then measures and calls
    ``link.report(value)``; the parent's :meth:`collect` returns the ``n``
    values in index order.  A worker that raises makes :meth:`start_phase` /
    :meth:`collect` raise with its traceback; :meth:`stop` (also on leaving
    the ``with`` block) ends every worker.
    """

    def __init__(
        self, n: int, phases: int, target: Callable[..., Any], args: tuple[Any, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.n = n
        self.go = [self.ctx.Event() for _ in range(phases)]
        self.done = [self.ctx.Event() for _ in range(phases)]
        self.phase = 0
        self.queue = self.ctx.SimpleQueue()
        self.procs: list[Any] = []
        self.target = target
        self.args = args
        self.env = env or {}

    def start(self) -> ProcessGroup:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # spawned children inherit the parent's environment
        try:
            for i in range(self.n):
                sync = (self.go, self.done, self.queue)
                p = self.ctx.Process(target=_worker_main, args=(self.target, i, sync, self.args), daemon=True)
                p.start()
                self.procs.append(p)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return self

    def start_phase(self, timeout: float = 600.0) -> None:
        """Block until every worker is ready for the next phase; then let them all go at once."""
        self._gather(_READY, timeout)
        self.go[self.phase].set()
        self.phase += 1

    def collect(self, timeout: float = 600.0) -> list[Any]:
        """The ``n`` values the workers report for this phase, in index order."""
        values = self._gather(_RESULT, timeout)
        self.done[self.phase - 1].set()
        return values

    def _gather(self, kind: str, timeout: float) -> list[Any]:
        out: list[Any] = [None] * self.n
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < self.n:
            if self._poll(0.2):
                index, what, value = self.queue.get()
            else:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers did not report {kind!r} within {timeout} s")
                if any(p.exitcode is not None for p in self.procs) and not self._poll(1.0):
                    raise RuntimeError(f"a worker process exited (exit codes: {[p.exitcode for p in self.procs]})")
                continue
            if what == _FAILED:
                raise RuntimeError(f"worker {index} failed:\n{value}")
            if what != kind:
                raise RuntimeError(f"worker {index} is out of step: sent {what!r}, expected {kind!r}")
            out[index] = value
            seen += 1
        return out

    def _poll(self, timeout: float) -> bool:
        return bool(self.queue._reader.poll(timeout))

    def stop(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: workers are between phases or measuring; nothing to save
        deadline = time.monotonic() + 10
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join()
        self.procs.clear()

    def __enter__(self) -> ProcessGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _worker_main(target: Callable[..., Any], index: int, sync: tuple[Any, Any, Any], args: tuple[Any, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        target(Link(index, *sync), *args)
    except BaseException:
        import traceback

        sync[2].put((index, _FAILED, traceback.format_exc()))
