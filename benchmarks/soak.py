"""Soak: mixed load on a 3-node cluster (rf=2) while one node restarts every minute.

    python benchmarks/soak.py [--quick | --smoke] [--minutes 10] [--workers 4] [--rate 300] [--restart-every 60]

(``--quick``: one minute, a restart every 15 s; ``--smoke``: 24 s, a restart
every 6 s -- both only check the machinery; the figures worth reading come
from the full ten minutes.)

What runs, all at once, for ``--minutes``:

* ``--workers`` threads calling objects of every built-in type and a
  ``@crucial.shared`` class, persistent (rf=2) and ephemeral, at ``--rate``
  calls per second in all; each thread owns its objects, so it knows what
  every persistent object must hold at the end;
* cloud threads: every few seconds a ``ServerlessExecutor.map`` whose
  functions add to a persistent counter (local backend, worker processes);
* shell verbs: ``crucial ipc ...`` subprocesses, one after the other;
* every ``--restart-every`` seconds one node restarts: ``kill -9`` (the
  supervisor starts it again), and every third time a graceful
  ``crucial cluster remove`` followed by ``crucial cluster add``.  Node 0
  (the *witness*) is never restarted, so its RSS shows growth over the
  whole run.

Errors: any exception raised to a caller, ``CallInterruptedError``
included (the client retries internally for up to ``failover_timeout``).
Ephemeral objects live on one node and are lost with it, as documented: an
``ObjectLostError`` (or a ``CallInterruptedError`` while waiting) on an
ephemeral object whose node was killed is counted apart, as ``lost``, and
the object is made again.  At the end every persistent object is checked
against what its thread saw acknowledged (``lost_writes``: goal 0).

Printed: errors (goal 0) by kind with the first messages, node RSS at start
(after a warm-up) and end (goal: the witness flat within 10 %), p50/p99
latency of the object calls per minute, and a JSON line (the last line).
The machine this runs on may be shared: latency is only comparable within
a run.
"""

from __future__ import annotations

import atexit
import collections
import faulthandler
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from _common import by_mode, emit, meta, parser

import crucial
from crucial.exceptions import CallInterruptedError, ConnectError, CrucialError, ObjectLostError
from crucial.testing import LocalCluster, unconfigured_env

TOKEN = "soak-token"


@crucial.shared(persistent=True)
class Tally:
    """A user class, replicated by state (passive replication)."""

    def __init__(self) -> None:
        self.total = 0
        self.log: list[int] = []

    def add(self, n: int) -> int:
        self.total += n
        self.log = [*self.log, n][-8:]  # a little state besides the total
        return self.total


def add_to(key: str, n: int) -> int:
    """A cloud thread's body."""
    return int(crucial.AtomicInt(key=key, persistent=True).add_and_get(n))


def percentile(ordered: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of a sorted list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Record:
    """What every thread reports: latencies per minute, errors, losses (thread-safe)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.lock = threading.Lock()
        self.latency: dict[int, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.errors_per_minute: collections.Counter[int] = collections.Counter()
        self.samples: list[str] = []
        self.lost: collections.Counter[str] = collections.Counter()
        self.calls = 0

    def minute(self) -> int:
        return int((time.monotonic() - self.started) // 60)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.calls += 1
            self.latency[self.minute()].append(seconds)

    def error(self, where: str, exc: BaseException, what: str = "other") -> None:
        kind = f"{what}: {type(exc).__name__}"
        with self.lock:
            self.errors[kind] += 1
            self.errors_per_minute[self.minute()] += 1
            if len(self.samples) < 12:
                at = time.monotonic() - self.started
                tb = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.samples.append(f"t={at:.1f}s {where}: {tb[:400]}")

    def loss(self, what: str) -> None:
        with self.lock:
            self.lost[what] += 1


class Objects:
    """One worker's objects; persistent ones with what their acknowledged calls must have left."""

    def __init__(self, wid: int, run: str) -> None:
        self.p = f"soak-{run}-w{wid}"
        self.e = f"soak-{run}-w{wid}-e"
        self.acked: collections.Counter[str] = collections.Counter()  # increments acknowledged, per object
        self.interrupted: collections.Counter[str] = collections.Counter()  # CallInterruptedError: maybe applied
        self.failed: collections.Counter[str] = collections.Counter()  # another exception: should not be applied
        self.dict_keys: dict[str, int] = {}  # the last acknowledged value of each key
        self.dict_maybe: dict[str, set[int]] = {}  # values put since, whose callers got an exception
        self.appended = 0
        self.append_unsure = 0
        self.refs = 0
        self.ref_unsure = False
        self.make_persistent()
        self.ephemeral: dict[str, Any] = {}

    def make_persistent(self) -> None:
        p = self.p
        self.p_int = crucial.AtomicInt(0, key=p + "-int", persistent=True)
        self.p_counter = crucial.Counter(0, key=p + "-counter", persistent=True)
        self.p_dict = crucial.Dict(key=p + "-dict", persistent=True)
        self.p_list = crucial.List(key=p + "-list", persistent=True)
        self.p_set = crucial.Set(key=p + "-set", persistent=True)
        self.p_sorted = crucial.SortedDict(key=p + "-sorted", persistent=True)
        self.p_ref = crucial.AtomicReference(None, key=p + "-ref", persistent=True)
        self.p_bool = crucial.AtomicBool(False, key=p + "-bool", persistent=True)
        self.p_bytes = crucial.AtomicByteArray(16, key=p + "-bytes", persistent=True)
        self.p_matrix = crucial.Matrix(4, 4, key=p + "-matrix", persistent=True)
        self.p_tally = Tally(key=p + "-tally")

    def eph(self, name: str, make: Callable[[str], Any]) -> Any:
        obj = self.ephemeral.get(name)
        if obj is None:
            obj = self.ephemeral[name] = make(f"{self.e}-{name}")
        return obj


def _persistent_ops(o: Objects, rng: random.Random) -> None:
    """One operation on a persistent object; what it must leave is noted once it is acknowledged.

    A write whose caller got an exception may or may not have been applied:
    it is noted as such (``interrupted`` for CallInterruptedError, which says
    so; ``failed`` for any other exception, which should have meant "not
    applied" -- check() tells them apart).
    """
    choice = rng.randrange(9)
    if choice == 0:
        name, op = rng.choice([("int", o.p_int.add_and_get), ("counter", o.p_counter.increment), ("tally", o.p_tally.add)])
        try:
            op(1)
        except CallInterruptedError:
            o.interrupted[name] += 1
            raise
        except Exception:
            o.failed[name] += 1
            raise
        o.acked[name] += 1
    elif choice == 1:
        k = f"k{rng.randrange(200)}"
        v = rng.randrange(10**6)
        try:
            o.p_dict.put(k, v)
        except Exception:
            o.dict_maybe.setdefault(k, set()).add(v)
            raise
        o.dict_keys[k] = v
        o.dict_maybe.pop(k, None)
    elif choice == 2:
        try:
            if o.appended >= 500:  # keep it small: a lost clear shows as extra items, a lost append as missing ones
                o.p_list.clear()
                o.appended, o.append_unsure = 0, 0
            else:
                o.p_list.append(o.appended)
                o.appended += 1
        except Exception:
            o.append_unsure += 1
            raise
    elif choice == 3:
        o.p_set.add(rng.randrange(300))
        o.p_sorted.put(rng.randrange(300), rng.random())
    elif choice == 4:
        o.refs += 1
        o.ref_unsure = True
        o.p_ref.set(("ref", o.refs))
        o.ref_unsure = False
        if o.p_ref.get() != ("ref", o.refs):
            raise AssertionError("a persistent AtomicReference did not read back its last write")
    elif choice == 5:
        o.p_bool.toggle_and_get()
    elif choice == 6:
        o.p_bytes.write(rng.randrange(12), os.urandom(4))
        o.p_bytes.read()
    elif choice == 7:
        o.p_matrix.set(rng.randrange(4), rng.randrange(4), rng.random())
    else:
        o.p_dict.get(f"k{rng.randrange(200)}")
        len(o.p_list)


EPHEMERAL: list[tuple[str, Callable[[str], Any], Callable[[Any, random.Random], Any]]] = [
    ("int", lambda k: crucial.AtomicInt(0, key=k), lambda x, r: x.add_and_get(1)),
    ("dict", lambda k: crucial.Dict(key=k), lambda x, r: (x.put(r.randrange(50), r.random()), x.get(r.randrange(50)))),
    ("list", lambda k: crucial.List(key=k), lambda x, r: x.append(1) if len(x) < 200 else x.clear()),
    ("queue", lambda k: crucial.Queue(key=k), lambda x, r: (x.put(r.random()), x.get(timeout=5))),
    ("lock", lambda k: crucial.Lock(key=k), lambda x, r: (x.acquire(), x.release())),
    ("semaphore", lambda k: crucial.Semaphore(2, key=k), lambda x, r: (x.acquire(), x.release())),
    ("event", lambda k: crucial.Event(key=k), lambda x, r: (x.set(), x.is_set(), x.clear())),
    ("latch", lambda k: crucial.CountDownLatch(10**9, key=k), lambda x, r: x.count_down()),
    ("barrier", lambda k: crucial.Barrier(1, key=k), lambda x, r: x.wait(timeout=5)),
    ("future", lambda k: crucial.SharedFuture(key=k), lambda x, r: x.get(timeout=5) if x.done() else x.set(1)),
    ("counter", lambda k: crucial.Counter(key=k), lambda x, r: x.increment(1)),
]


def object_worker(wid: int, run: str, stop: threading.Event, rec: Record, rate: float, seed: int) -> Objects:
    rng = random.Random(seed)
    objs = Objects(wid, run)
    period = 1.0 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    while not stop.is_set():
        persistent = rng.random() < 0.5
        name = "persistent"
        t0 = time.perf_counter()
        try:
            if persistent:
                _persistent_ops(objs, rng)
            else:
                name, make, op = EPHEMERAL[rng.randrange(len(EPHEMERAL))]
                op(objs.eph(name, make), rng)
            rec.ok(time.perf_counter() - t0)
        except Exception as exc:
            if persistent:
                rec.error(f"worker {wid} persistent", exc, "persistent")
            else:
                if isinstance(exc, (ObjectLostError, CallInterruptedError)):
                    rec.loss(name)  # it lived on a node that was killed: documented
                else:
                    rec.error(f"worker {wid} {name}", exc, "ephemeral")
                objs.ephemeral[name] = make(f"{objs.e}-{name}-{rng.randrange(10**9)}")  # a new one, once
        if period:
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_at = time.monotonic()
    return objs


def cloud_threads(run: str, stop: threading.Event, rec: Record, every: float, acked: list[int]) -> None:
    key = f"soak-{run}-cloud"
    with crucial.ServerlessExecutor() as ex:
        while not stop.wait(every):
            try:
                done = list(ex.map(add_to, [key] * 8, [1] * 8, timeout=120))
                acked[0] += len(done)
            except Exception as exc:
                rec.error("cloud threads", exc, "cloud thread")


def verbs(run: str, stop: threading.Event, rec: Record, env: dict[str, str], every: float, counts: list[int]) -> None:
    name = f"soak-{run}-verbs"
    commands = [
        ["counter", "-n", name, "increment"],
        ["map", "-n", name + "-map", "put", "-1", "k", "-2", "v"],
        ["list", "-n", name + "-list", "add", "-1", "x"],
        ["counter", "-n", name, "tally"],
    ]
    i = 0
    while not stop.wait(every):
        cmd = commands[i % len(commands)]
        i += 1
        r = subprocess.run(
            [sys.executable, "-m", "crucial.cli", "ipc", *cmd], env=env, capture_output=True, text=True, timeout=180
        )
        counts[0] += 1
        if r.returncode != 0:
            if "ObjectLostError" in r.stderr:  # the verbs' objects are ephemeral
                rec.loss("verb")
                continue
            rec.error(f"verb {' '.join(cmd)}", RuntimeError(f"exit {r.returncode}: {r.stderr.strip()[-300:]}"), "verb")


class Restarter:
    """Every ``every`` seconds: kill -9 a node (not the witness), or, every third time, remove one and add another."""

    def __init__(self, cluster: LocalCluster, witness_pid: int, env: dict[str, str], log_dir: str, rec: Record) -> None:
        self.cluster = cluster
        self.witness_pid = witness_pid
        self.env = env
        self.log_dir = log_dir
        self.rec = rec
        self.events: list[str] = []
        self.added: dict[str, int] = {}  # nodes `crucial cluster add` started (no supervisor restarts them)
        self.kills = self.graceful = 0

    def note(self, text: str) -> None:
        line = f"t={time.monotonic() - self.rec.started:.1f}s {text}"
        self.events.append(line)
        print("  " + line, file=sys.stderr, flush=True)

    def pids(self) -> dict[str, int]:
        """The pid of every node in the view that answers (one killed a moment ago may be listed until its lease ends)."""
        out = {}
        with self.cluster.client() as client:
            for address in client.refresh():
                try:
                    out[address] = int(client.info(address)["pid"])
                except ConnectError:
                    continue
        return out

    def run(self, stop: threading.Event, every: float) -> None:
        n = 0
        while not stop.wait(every):
            n += 1
            try:
                if n % 3 == 0:
                    self.remove_and_add()
                else:
                    self.kill()
            except Exception as exc:
                self.rec.error("restarter", exc, "restarter")
                self.note(f"restart failed: {exc}")

    def kill(self) -> None:
        pids = self.pids()
        victims = [a for a, pid in pids.items() if pid != self.witness_pid and a not in self.added]
        if not victims:
            return
        address = victims[self.kills % len(victims)]
        os.kill(pids[address], signal.SIGKILL)
        self.kills += 1
        self.note(f"kill -9 {address} (pid {pids[address]})")

    def _cli(self, *args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "crucial.cli", *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if r.returncode != 0:
            raise RuntimeError(f"crucial {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
        return r.stdout.strip()

    def remove_and_add(self) -> None:
        pids = self.pids()
        if len(pids) < 3:
            self.note(f"graceful restart skipped: {len(pids)} nodes in the view")
            return
        candidates = [a for a in self.added if a in pids] or [a for a, p in pids.items() if p != self.witness_pid]
        address = candidates[0]
        self.note(f"crucial cluster remove {address}")
        self._cli("cluster", "remove", address)
        self.added.pop(address, None)
        seed = next(a for a in pids if a != address)
        out = self._cli("cluster", "add", "--dso", seed, "--log", os.path.join(self.log_dir, f"added-{self.graceful}.log"))
        new = out.split()[0]
        self.added[new] = int(out.split("pid ")[1].split(",")[0])
        self.graceful += 1
        self.note(f"crucial cluster add: {out}")

    def stop_added(self) -> None:
        """Kill the nodes ``crucial cluster add`` started (once: a pid is not ours after it)."""
        added, self.added = self.added, {}
        for pid in added.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def check(objs: Objects) -> tuple[list[str], list[str]]:
    """What each persistent object holds against what its worker saw: (lost or duplicated writes, applied failures).

    The first list must stay empty: an acknowledged write missing, or a write
    applied more often than it was sent.  The second holds writes whose caller
    got an exception other than CallInterruptedError -- which should mean
    "not applied" -- but which the object shows applied.
    """
    lost, applied = [], []
    for name, value in (("int", objs.p_int.get()), ("counter", objs.p_counter.tally()), ("tally", objs.p_tally.add(0))):
        acked, interrupted, failed = objs.acked[name], objs.interrupted[name], objs.failed[name]
        what = f"{objs.p}-{name}: {value}, acknowledged {acked} (+{interrupted} interrupted, +{failed} failed)"
        if not acked <= value <= acked + interrupted + failed:
            lost.append(what)
        elif value > acked + interrupted:
            applied.append(what)
    held = objs.p_dict.copy()
    for k, v in objs.dict_keys.items():
        if held.get(k) != v and held.get(k) not in objs.dict_maybe.get(k, ()):
            lost.append(f"{objs.p}-dict[{k!r}] = {held.get(k)!r}, acknowledged {v!r}")
    length = len(objs.p_list)
    if not objs.appended <= length <= objs.appended + objs.append_unsure:
        lost.append(f"{objs.p}-list has {length} items, {objs.appended} acknowledged (+{objs.append_unsure} unsure)")
    if objs.refs and not objs.ref_unsure and objs.p_ref.get() != ("ref", objs.refs):
        lost.append(f"{objs.p}-ref holds {objs.p_ref.get()!r}, acknowledged ('ref', {objs.refs})")
    return lost, applied


def _hung(cleanups: list[Callable[[], None]]) -> None:
    print("soak: still running long past its end; every thread's stack:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(all_threads=True)
    for cleanup in cleanups:
        cleanup()
    os._exit(3)


def main() -> None:
    p = parser(__doc__.split("\n")[0])  # --runs is accepted for the common interface: a soak is one run
    p.add_argument("--minutes", type=float, default=None, help="how long the load runs (default: 10; --quick 1; --smoke 0.4)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rate", type=float, default=None, help="object calls per second, all workers together (default 300)")
    p.add_argument("--restart-every", type=float, default=None, metavar="SECONDS", help="(default 60; --quick 15; --smoke 6)")
    p.add_argument("--warmup", type=float, default=None, metavar="SECONDS", help="load before the start RSS is taken")
    a = p.parse_args()
    # every size restarts a node at least three times: two kill -9 and one remove + add
    for name, full, quick, smoke in (
        ("minutes", 10.0, 1.0, 0.4),
        ("restart_every", 60.0, 15.0, 6.0),
        ("warmup", 30.0, 5.0, 2.0),
        ("rate", 300.0, 300.0, 150.0),
    ):
        if getattr(a, name) is None:
            setattr(a, name, by_mode(a, full, quick, smoke))
    duration = a.minutes * 60
    # every call has a timeout, so a call that never gets its reply is an error (CallTimeoutError) and not a
    # hung worker; and a soak that hangs anyway says where: every thread's stack on stderr, then exit
    call_timeout = by_mode(a, 60.0, 30.0, 15.0)
    hung: list[Callable[[], None]] = []
    watchdog = threading.Timer(a.warmup + duration + 4 * call_timeout + 120, _hung, (hung,))
    watchdog.daemon = True
    watchdog.start()
    run = f"{os.getpid()}-{int(time.time())}"
    log_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"crucial-soak-{run}")
    os.makedirs(log_dir, exist_ok=True)
    with LocalCluster(nodes=3, rf=2, token=TOKEN) as cluster:
        env = unconfigured_env(cluster.env_vars())
        for name, value in cluster.env_vars().items():  # cloud threads' workers inherit them
            os.environ[name] = value
        crucial.connect(cluster.dso, token=TOKEN, call_timeout=call_timeout)
        witness = cluster.addresses[0]
        pids = cluster.pids()
        rec = Record(time.monotonic())
        restarter = Restarter(cluster, pids[witness], env, log_dir, rec)
        hung.append(restarter.stop_added)  # a node started by crucial cluster add is no child of ours:
        atexit.register(restarter.stop_added)  # stopped also when the soak fails with an exception
        stop, stop_restarts = threading.Event(), threading.Event()
        results: dict[int, Objects] = {}

        def worker(i: int) -> None:
            results[i] = object_worker(i, run, stop, rec, a.rate / a.workers, seed=i)

        cloud_acked, verb_runs = [0], [0]
        threads = [threading.Thread(target=worker, args=(i,), name=f"worker-{i}") for i in range(a.workers)]
        threads.append(threading.Thread(target=cloud_threads, args=(run, stop, rec, 5.0, cloud_acked), name="cloud"))
        threads.append(threading.Thread(target=verbs, args=(run, stop, rec, env, 1.0, verb_runs), name="verbs"))
        print(f"soak: 3 nodes (rf 2) {','.join(cluster.addresses)}, {duration:.0f} s, witness {witness}", file=sys.stderr)
        for t in threads:
            t.start()
        stop.wait(a.warmup)
        rss_start = {a_: rss_mb(pid) for a_, pid in cluster.pids().items()}
        witness_start = rss_mb(pids[witness])
        restart_thread = threading.Thread(target=restarter.run, args=(stop_restarts, a.restart_every), name="restarter")
        restart_thread.start()
        rss_minutes: list[float | None] = []
        deadline = rec.started + duration
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 60.0))
            rss_minutes.append(rss_mb(pids[witness]))
            minute = rec.minute() - 1
            lat = sorted(rec.latency.get(minute, []))
            if lat:
                print(
                    f"  minute {minute}: {len(lat)} calls, p99 {percentile(lat, 99) * 1e3:.1f} ms, "
                    f"errors {rec.errors_per_minute.get(minute, 0)}, witness RSS {rss_minutes[-1]:.1f} MB",
                    file=sys.stderr,
                    flush=True,
                )
        stop_restarts.set()
        restart_thread.join()
        stop.set()
        for t in threads:
            t.join(timeout=300)
        # every node back in the view before the final check
        with cluster.client() as client:
            settle = time.monotonic() + 120
            while len(client.refresh()) < 3 and time.monotonic() < settle:
                time.sleep(0.5)
        end_pids = cluster.pids()
        rss_end = {a_: rss_mb(pid) for a_, pid in end_pids.items()}
        witness_end = rss_mb(pids[witness])
        problems, applied, unreadable = [], [], []
        for objs in results.values():
            try:
                lost_here, applied_here = check(objs)
            except CrucialError as exc:  # e.g. an object whose calls get no reply: neither lost nor kept
                unreadable.append(f"{objs.p}: {type(exc).__name__}: {exc}")
                continue
            problems += lost_here
            applied += applied_here
        try:
            cloud_total = crucial.AtomicInt(key=f"soak-{run}-cloud", persistent=True).get()
            if cloud_total < cloud_acked[0]:
                problems.append(f"cloud counter {cloud_total} < {cloud_acked[0]} acknowledged")
        except CrucialError as exc:
            unreadable.append(f"soak-{run}-cloud: {type(exc).__name__}: {exc}")
        restarter.stop_added()
        watchdog.cancel()
    minutes = [m for m in sorted(rec.latency) if m < math.ceil(a.minutes)]  # not the stragglers after the end
    per_minute = []
    for m in minutes:
        lat = sorted(rec.latency[m])
        per_minute.append(
            {
                "minute": m,
                "calls": len(lat),
                "p50_ms": round(percentile(lat, 50) * 1e3, 2),
                "p99_ms": round(percentile(lat, 99) * 1e3, 2),
                "errors": rec.errors_per_minute.get(m, 0),
            }
        )
    errors = sum(rec.errors.values())
    print("\nsoak results", file=sys.stderr)
    print(f"  calls {rec.calls:,}; errors {errors} {dict(rec.errors)}; ephemeral objects lost with their node {dict(rec.lost)}")
    for line in rec.samples:
        print(f"    {line}")
    print(f"  persistent objects checked: {len(problems)} lost or duplicated writes")
    for line in problems[:20]:
        print(f"    {line}")
    print(f"  persistent objects that could not be read back: {len(unreadable)}")
    for line in unreadable[:20]:
        print(f"    {line}")
    print(f"  writes applied although their caller got an error (not CallInterruptedError): {len(applied)}")
    for line in applied[:20]:
        print(f"    {line}")
    print(
        f"  restarts: {restarter.kills} kill -9, {restarter.graceful} remove + add; "
        f"cloud thread calls {cloud_acked[0]}, verbs run {verb_runs[0]}"
    )
    growth = (witness_end / witness_start - 1) * 100 if witness_start and witness_end else float("nan")
    print(f"  witness node RSS: {witness_start:.1f} MB after warm-up, {witness_end:.1f} MB at the end ({growth:+.1f} %)")
    print(f"  RSS at start: {', '.join(f'{k} {v:.1f} MB' for k, v in rss_start.items() if v)}")
    print(f"  RSS at end:   {', '.join(f'{k} {v:.1f} MB' for k, v in rss_end.items() if v)}")
    for m in per_minute:
        print(f"  minute {m['minute']}: {m['calls']:,} calls, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, errors {m['errors']}")
    first, last = (per_minute[0]["p99_ms"], per_minute[-1]["p99_ms"]) if per_minute else (0.0, 0.0)
    rss_ratio = round(witness_end / witness_start, 4) if witness_start and witness_end else float("nan")
    result = {
        "benchmark": "soak",
        "minutes": a.minutes,
        "calls": rec.calls,
        "errors": errors,
        "error_kinds": dict(rec.errors),
        "error_samples": rec.samples,
        "ephemeral_lost": dict(rec.lost),
        "lost_writes": len(problems),
        "problems": problems[:20],
        "applied_despite_error": applied[:20],
        "unreadable": unreadable[:20],
        "kills": restarter.kills,
        "graceful_restarts": restarter.graceful,
        "cloud_calls": cloud_acked[0],
        "verb_runs": verb_runs[0],
        "ratio_witness_rss_end_vs_start": rss_ratio,
        "ratio_p99_last_vs_first_minute": round(last / first, 4) if first else float("nan"),
        "rss_mb": {
            "witness_start": round(witness_start or 0, 1),
            "witness_end": round(witness_end or 0, 1),
            "witness_growth_pct": round(growth, 2),
            "start": {k: round(v, 1) for k, v in rss_start.items() if v},
            "end": {k: round(v, 1) for k, v in rss_end.items() if v},
            "witness_per_minute": [round(v, 1) for v in rss_minutes if v],
        },
        "per_minute": per_minute,
        "events": restarter.events,
        "goals": {"ratio_witness_rss_end_vs_start": "<= 1.1"},
        "labels": {
            "ratio_witness_rss_end_vs_start": "soak: RSS of a node never restarted, end / after warm-up",
            "ratio_p99_last_vs_first_minute": "soak: p99 call latency, last minute / first minute",
            "errors": "soak: errors raised to callers (goal 0)",
            "lost_writes": "soak: acknowledged writes lost (goal 0)",
        },
        **meta(a),
    }
    emit(result)


if __name__ == "__main__":
    main()
