"""Availability under a crash and a join: the seed's Figure 8 on this machine.

    .venv/bin/python benchmarks/availability.py [--quick | --smoke] [--runs N] [--duration S] [--failure-timeout S]
                                                [--processes P] [--threads T] [--keys N] [--png PATH]

Each of the ``--runs`` timeline runs (3 by default, 1 with ``--quick`` and
``--smoke``) is a fresh cluster; the figures are the medians over the runs.

An etcd and three DSO nodes (``crucial server --etcd URL --rf 2``, each its
own process: no supervisor, so a killed node stays dead, as in the seed's
run) hold a persistent k-means model of 200 centroids, a
``@crucial.shared(persistent=True)`` class whose read methods are marked
``@crucial.readonly`` where crucial has it.  ``P`` client processes (spawn)
of ``T`` threads each -- 4 x 25 = 100 by default, the seed's 100 cloud
threads -- repeatedly run an inference (``model.predict(point)``: the
nearest of the 200 centroids, computed on the node that holds the model)
and timestamp every completed read.  At 1/3 of the run the model's primary
is ``kill -9``ed (the worst case: a node holding no replica of the model
would not disturb the readers at all); at 2/3 a new node joins with
``crucial server --join``.  A monitor polls every node's ``info`` (epoch,
view, hand-over) four times a second, so the stalls can be explained.

Then, for each placement ``crucial server`` offers (``--placement`` in its
``--help``; consistent hashing when it has none), a fresh 3-node cluster
with ``--keys`` persistent and as many ephemeral counters gets a fourth
node, and every node's objects are listed before and after the join: how
many keys gained a copy on a node that did not hold them (data moved) and,
for the persistent ones, how many changed primary.

The last line of stdout is one JSON object; the timeline goes to a PNG
(matplotlib: ``pip install 'crucial[plot]'``).  Node messages stay in a
temporary directory whose path is printed (kept with ``--keep-logs``).
"""

from __future__ import annotations

import array
import bisect
import contextlib
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import ProcessGroup, by_mode, cpu_seconds, emit, log, meta, parser
from _common import terminate_as_interrupt as _sigterm

import crucial

K, DIM = 200, 10
MODEL_KEY = "kmeans-model"
HASHING = "hash"  # the placement of a server without --placement (consistent hashing), named as --placement does


#: ``@crucial.readonly`` where crucial has it: a method that only reads may skip the round to the backups
readonly = getattr(crucial, "readonly", None)
READONLY_MARKED = readonly is not None


def _reads(fn: Any) -> Any:
    return readonly(fn) if readonly is not None else fn


@crucial.shared(persistent=True)
class KMeansModel:
    """A trained k-means model: ``k`` centroids of ``dim`` floats, one flat array (pickles as bytes)."""

    def __init__(self, k: int, dim: int, seed: int) -> None:
        rnd = random.Random(seed)
        self.k, self.dim = k, dim
        self.flat = array.array("d", (rnd.uniform(-10, 10) for _ in range(k * dim)))

    @_reads
    def predict(self, point: list[float]) -> int:
        """The index of the centroid nearest to ``point`` (one inference)."""
        flat, dim = self.flat, self.dim
        best, best_d = 0, math.inf
        for c in range(self.k):
            base = c * dim
            d = 0.0
            for j in range(dim):
                diff = flat[base + j] - point[j]
                d += diff * diff
            if d < best_d:
                best, best_d = c, d
        return best

    @_reads
    def centroids(self) -> list[list[float]]:
        return [list(self.flat[c * self.dim : (c + 1) * self.dim]) for c in range(self.k)]


# --------------------------------------------------------------------------- the nodes


def placements() -> list[str]:
    """The placements ``crucial server`` offers: the choices of its ``--placement`` option, if it has one."""
    out = subprocess.run([sys.executable, "-m", "crucial.server", "--help"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"crucial server --help failed: {out.stderr.strip()}")
    text = " ".join(out.stdout.split())  # click wraps long choice lists
    m = re.search(r"--placement\s+\[([^\]]+)\]", text)
    return [p.strip() for p in m.group(1).split("|")] if m else [HASHING]


class Cluster:
    """An etcd and node processes started one by one (``crucial server --etcd`` / ``--join``), on 127.0.0.1."""

    def __init__(
        self, workdir: Path, name: str, failure_timeout: float, rf: int, placement: str = HASHING, etcd: Any = None
    ) -> None:
        from crucial.server._etcd import EtcdProcess

        self.workdir = workdir
        self.name = name  # the cluster's name in etcd: clusters can share one
        self.failure_timeout = failure_timeout
        self.rf = rf
        self.placement = placement
        self.own_etcd = etcd is None
        self.etcd = EtcdProcess(workdir / "etcd") if etcd is None else etcd
        self.procs: dict[str, subprocess.Popen[str]] = {}  # address -> node process
        self._n = 0

    def start(self, nodes: int) -> Cluster:
        if self.own_etcd:
            self.etcd.start()
        started = [self._spawn() for _ in range(nodes)]  # all at once: each takes a while to import
        for proc, log_path in started:
            self._address(proc, log_path)
        self.wait_members(set(self.procs))
        return self

    def start_node(self, join: str | None = None) -> str:
        """One more node (joining through ``join``'s etcd when given); its address once it listens."""
        return self._address(*self._spawn(join))

    def _spawn(self, join: str | None = None) -> tuple[subprocess.Popen[str], Path]:
        from crucial.testing import unconfigured_env

        cmd = [sys.executable, "-m", "crucial.server", "--port", "0", "--watch-stdin"]
        cmd += ["--failure-timeout", str(self.failure_timeout), "--rf", str(self.rf)]
        cmd += ["--join", join] if join else ["--etcd", self.etcd.endpoint, "--cluster", self.name]
        if self.placement != HASHING:
            cmd += ["--placement", self.placement]
        self._n += 1
        log_path = self.workdir / f"{self.name}-node{self._n}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out, text=True, env=unconfigured_env()
            )
        return proc, log_path

    def _address(self, proc: subprocess.Popen[str], log_path: Path) -> str:
        """The address a node prints once it listens (then its output is drained, so it never blocks)."""
        assert proc.stdout is not None
        timer = threading.Timer(60, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline().strip()
        finally:
            timer.cancel()
        if not line.startswith("CRUCIAL_DSO="):
            proc.kill()
            raise RuntimeError(f"a node did not start (exit {proc.wait()}); see {log_path}")
        threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
        address = line.split("=", 1)[1]
        self.procs[address] = proc
        return address

    def live(self) -> list[str]:
        return [a for a, p in self.procs.items() if p.poll() is None]

    def infos(self, client: crucial.Client, objects: int = 0) -> dict[str, dict[str, Any]]:
        out = {}
        for address in self.live():
            with contextlib.suppress(crucial.CrucialError, OSError):
                out[address] = client.info(address, objects=objects)
        return out

    def wait_members(self, wanted: set[str], timeout: float = 60.0) -> None:
        """Until every live node's view has exactly ``wanted`` and its hand-over is complete."""
        client = self.client()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                infos = self.infos(client)
                if len(infos) == len(self.live()) and all(
                    set(i["nodes"]) == wanted and i["replication"]["handoff_complete"] for i in infos.values()
                ):
                    return
                time.sleep(0.1)
            raise RuntimeError(f"the view did not become {sorted(wanted)} within {timeout:g} s")
        finally:
            client.close()

    def primary(self, type_name: str, key: str) -> str:
        """The address of the primary of ``(type_name, key)`` in the current view."""
        client = self.client()
        try:
            client.nodes  # noqa: B018 -- fetch the view
            return client.core.route(type_name, key)
        finally:
            client.close()

    def client(self) -> crucial.Client:
        dso = tuple(self.live())
        return crucial.Client(dso, crucial.Config(dso=dso))

    def kill(self, address: str) -> None:
        proc = self.procs[address]
        proc.kill()  # SIGKILL, as kill -9
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()  # nodes exit when their stdin closes
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self.own_etcd:
            self.etcd.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- the readers


def reader_process(link: Any, dso: str, threads: int, duration: float) -> None:
    """One client process: ``threads`` threads read the model for ``duration`` s; report times and failures."""
    crucial.connect(dso)
    model = KMeansModel.attach(MODEL_KEY)
    done: list[array.array[float]] = [array.array("d") for _ in range(threads)]
    failed: list[list[tuple[float, str]]] = [[] for _ in range(threads)]
    slowest = [0.0] * threads
    model.predict([0.0] * DIM)  # connect and register the class before the clock starts
    start = threading.Barrier(threads + 1)

    def read(i: int) -> None:
        rnd = random.Random(link.index * 1000 + i)
        start.wait()
        end = time.monotonic() + duration
        stamps, errors = done[i], failed[i]
        while (t0 := time.monotonic()) < end:
            point = [rnd.uniform(-10, 10) for _ in range(DIM)]
            try:
                model.predict(point)
            except Exception as exc:  # every failure counts, whatever its type
                errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"[:300]))
                continue
            t1 = time.monotonic()
            stamps.append(t1)
            slowest[i] = max(slowest[i], t1 - t0)

    pool = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    link.start()
    start.wait()
    for t in pool:
        t.join()
    stamps = array.array("d")
    for d in done:
        stamps.extend(d)
    link.report({"stamps": stamps.tobytes(), "failed": [e for f in failed for e in f], "slowest": max(slowest)})


class Monitor:
    """Polls every node's info (when each view was first seen, when each hand-over completed) and, each
    second, the calls each node received and the CPU time the nodes and the readers used."""

    def __init__(self, cluster: Cluster, readers: list[int], t0: float, period: float = 0.25) -> None:
        self.cluster, self.readers, self.t0, self.period = cluster, readers, t0, period
        self.events: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self._seen: set[tuple[str, int, bool]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = self.cluster.client()
        next_sample = self.t0
        try:
            while not self._stop.wait(self.period):
                calls = {}
                for address in self.cluster.live():
                    try:
                        info = client.info(address)
                    except (crucial.CrucialError, OSError) as exc:
                        self._note(address, -1, False, error=type(exc).__name__)
                        continue
                    rep, cl = info["replication"], info.get("cluster") or {}
                    calls[address] = info["stats"]["calls"]
                    self._note(
                        address, info["epoch"], rep["handoff_complete"], nodes=len(info["nodes"]), suspended=cl.get("suspended")
                    )
                now = time.monotonic()
                if now >= next_sample:
                    next_sample += 1.0
                    nodes = sum(cpu_seconds(p.pid) for p in self.cluster.procs.values() if p.poll() is None)
                    readers = sum(cpu_seconds(pid) for pid in self.readers)
                    self.samples.append({"t": round(now - self.t0, 2), "calls": calls, "node_cpu": nodes, "reader_cpu": readers})
        finally:
            client.close()

    def _note(self, address: str, epoch: int, complete: bool, **extra: Any) -> None:
        if (address, epoch, complete) not in self._seen:
            self._seen.add((address, epoch, complete))
            t = round(time.monotonic() - self.t0, 2)
            self.events.append({"t": t, "node": address, "epoch": epoch, "handoff_complete": complete, **extra})

    def mark(self, what: str, **extra: Any) -> None:
        self.events.append({"t": round(time.monotonic() - self.t0, 2), "event": what, **extra})

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def longest_stall(stamps: list[float], start: float, end: float) -> tuple[float, float]:
    """The longest interval in [start, end] with no completed read: (length, where it began)."""
    inside = stamps[bisect.bisect_left(stamps, start) : bisect.bisect_right(stamps, end)]
    best, at, prev = 0.0, start, start
    for t in [*inside, end]:
        if t - prev > best:
            best, at = t - prev, prev
        prev = t
    return best, at


@dataclass
class Run:
    """What one timeline run recorded (times in seconds from the readers' start)."""

    duration: float
    stamps: list[float]  # every completed read, sorted
    failures: list[tuple[float, str]]
    slowest: float  # the longest single read
    events: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    t_kill: float
    t_join: float
    victim: str
    joined: str
    model_primary_after: str


def timeline(args: Any, workdir: Path, etcd: Any, name: str) -> Run:
    """The Figure 8 run: readers, a kill -9 of the model's primary at 1/3, a join at 2/3 (a fresh cluster each run)."""
    with Cluster(workdir, name, args.failure_timeout, rf=2, etcd=etcd) as cluster:
        cluster.start(3)
        dso = ",".join(cluster.live())
        crucial.connect(dso)
        KMeansModel(K, DIM, 42, key=MODEL_KEY).centroids()  # create it
        victim = cluster.primary(KMeansModel._type_name, MODEL_KEY)
        log(f"nodes {dso}; the model's primary {victim} is killed at {args.duration / 3:.0f} s")
        with ProcessGroup(args.processes, 1, reader_process, (dso, args.threads, args.duration)) as group:
            group.start_phase(timeout=120)
            t0 = time.monotonic()
            with Monitor(cluster, [p.pid for p in group.procs], t0) as monitor:
                time.sleep(max(0.0, t0 + args.duration / 3 - time.monotonic()))
                monitor.mark("kill -9", node=victim)
                t_kill = time.monotonic() - t0
                cluster.kill(victim)
                time.sleep(max(0.0, t0 + 2 * args.duration / 3 - time.monotonic()))
                t_join = time.monotonic() - t0
                monitor.mark("join started")
                joined = cluster.start_node(join=cluster.live()[0])
                monitor.mark("joined", node=joined)
                reports = group.collect(timeout=args.duration + 120)
                cluster.wait_members(set(cluster.live()))  # the monitor sees the join through, even past the run
        model_primary = cluster.primary(KMeansModel._type_name, MODEL_KEY)
    return Run(
        duration=args.duration,
        stamps=sorted(t - t0 for r in reports for t in array.array("d", r["stamps"])),
        failures=sorted(((t - t0, what) for r in reports for t, what in r["failed"]), key=lambda e: e[0]),
        slowest=max(r["slowest"] for r in reports),
        events=monitor.events,
        samples=monitor.samples,
        t_kill=t_kill,
        t_join=t_join,
        victim=victim,
        joined=joined,
        model_primary_after=model_primary,
    )


def analyse(run: Run) -> dict[str, Any]:
    """The figures of a run: failures, the longest stall, reads/s (and per node CPU second) by phase."""
    seconds = math.ceil(run.duration)
    per_s = [0] * seconds
    for t in run.stamps:
        if 0 <= t < seconds:
            per_s[int(t)] += 1
    stall, stall_at = longest_stall(run.stamps, 0.0, run.duration)
    third = run.duration / 3
    # steady windows: the second half of each third (warmed up; past the crash's / the join's disturbance)
    windows = {
        "before_crash": (third / 2, third),
        "after_crash": (1.5 * third, 2 * third),
        "after_join": (2.5 * third, 3 * third),
    }

    def median_rate(a: float, b: float) -> float:  # the median of the per-second counts of the whole seconds in [a, b)
        window = sorted(per_s[math.ceil(a) : int(b)])
        return float(window[len(window) // 2]) if window else 0.0

    def cpu_rate(a: float, b: float, what: str) -> float | None:  # CPU seconds per second the processes used in [a, b)
        inside = [x for x in run.samples if a <= x["t"] <= b]
        if len(inside) < 2:
            return None
        return round((inside[-1][what] - inside[0][what]) / (inside[-1]["t"] - inside[0]["t"]), 3)

    phases: dict[str, Any] = {}
    for name, (a, b) in windows.items():
        reads = sum(1 for t in run.stamps if a <= t < b) / (b - a)
        node_cpu = cpu_rate(a, b, "node_cpu")
        phases[name] = {
            "window_s": [round(a, 1), round(b, 1)],
            "reads_per_s_median": median_rate(a, b),
            "reads_per_s_mean": round(reads, 1),
            "node_cpu_per_s": node_cpu,
            "reader_cpu_per_s": cpu_rate(a, b, "reader_cpu"),
            "reads_per_node_cpu_s": round(reads / node_cpu, 1) if node_cpu else None,
        }
    before, after_join = phases["before_crash"]["reads_per_s_median"], phases["after_join"]["reads_per_s_median"]

    def first(pred: Any) -> float | None:  # the time of the first monitor event that matches
        return next((e["t"] for e in run.events if "epoch" in e and pred(e)), None)

    view_without = first(lambda e: e["t"] >= run.t_kill and e.get("nodes") == 2)
    view_with = first(lambda e: e["t"] >= run.t_join and e.get("nodes") == 3)
    # settled: every node of the view the join made has finished its hand-over
    after = [e for e in run.events if "epoch" in e and e["t"] >= run.t_join and e.get("nodes") == 3]
    epoch = after[0]["epoch"] if after else None  # the view the join made (a later one is another change)
    done: dict[str, float] = {}
    for e in after:
        if e["epoch"] == epoch and e["handoff_complete"]:
            done.setdefault(e["node"], e["t"])
    settled = max(done.values()) if len(done) == 3 else None
    # the crash: every read goes to the model's primary, so none completes from the kill until the failover
    # is through; the stall is the gap that holds the kill.  The join: the longest gap from its start until
    # a second after it has settled (in the view, hand-over done)
    i = bisect.bisect_left(run.stamps, run.t_kill)
    before_kill = run.stamps[i - 1] if i > 0 else 0.0
    after_kill = run.stamps[i] if i < len(run.stamps) else run.duration
    join_end = min(run.duration, run.t_join + (settled - run.t_join if settled is not None else 10.0) + 1.0)
    join_stall = longest_stall(run.stamps, run.t_join, join_end)
    between = longest_stall(run.stamps, after_kill + 1.0, run.t_join)
    views: dict[int, dict[str, Any]] = {}  # each view, when the monitor first saw it
    for e in run.events:
        if e.get("epoch", -1) > 0 and e["epoch"] not in views:
            views[e["epoch"]] = {"t": e["t"], "epoch": e["epoch"], "nodes": e.get("nodes")}
    lost_lease = sorted({e["node"] for e in run.events if e.get("suspended")})
    timings = {
        "kill_to_view_without_it_s": round(view_without - run.t_kill, 2) if view_without is not None else None,
        "join_start_to_view_with_it_s": round(view_with - run.t_join, 2) if view_with is not None else None,
        "join_start_to_handoff_done_s": round(settled - run.t_join, 2) if settled is not None else None,
    }
    degraded = phases["after_crash"]["reads_per_s_median"]
    return {
        "reads": len(run.stamps),
        "failed_reads": len(run.failures),
        "failures": [{"t": round(t, 2), "error": e} for t, e in run.failures[:20]],
        "longest_stall_s": round(stall, 3),
        "longest_stall_at_s": round(stall_at, 2),
        "stall_at_crash_s": round(after_kill - before_kill, 3),
        "stall_at_join_s": round(join_stall[0], 3),
        "stall_at_join_at_s": round(join_stall[1], 2),
        # the longest pauses with no crash or join in sight: what the machine's load (and the readers' own
        # waves) cause
        "longest_gap_before_crash_s": round(longest_stall(run.stamps, windows["before_crash"][0], before_kill)[0], 3),
        "longest_gap_between_crash_and_join_s": round(between[0], 3),
        **timings,
        "slowest_read_s": round(run.slowest, 3),
        "views": list(views.values()),
        # live nodes whose lease ran out (starved of CPU past the failure timeout): evicted, then rejoined
        "nodes_that_lost_their_lease": lost_lease,
        "throughput_after_join_vs_before_crash": round(after_join / before, 3) if before else None,
        "throughput_after_crash_vs_before_crash": round(degraded / before, 3) if before else None,
        "phases": phases,
        "crash_at_s": round(run.t_kill, 2),
        "join_at_s": round(run.t_join, 2),
        "killed": run.victim,
        "joined": run.joined,
        "model_primary_after_join": run.model_primary_after,
        "per_second": per_s,
        "events": run.events,
        "samples": run.samples,
    }


# --------------------------------------------------------------------------- keys moved by a join


POPULATION = crucial.AtomicInt


def holders(cluster: Cluster, keys: list[str]) -> tuple[dict[tuple[str, bool], set[str]], dict[str, str]]:
    """Which nodes (ids) hold each population object, by (key, persistent); the ring's primary of each key."""
    client = cluster.client()
    try:
        infos = cluster.infos(client, objects=20 * len(keys) + 1000)  # directory entries and others come too
        wanted = set(keys)
        held: dict[tuple[str, bool], set[str]] = {}
        for info in infos.values():
            for obj in info["listed"]:
                if obj["type"] == POPULATION._type_name and obj["key"] in wanted:
                    held.setdefault((obj["key"], obj["persistent"]), set()).add(info["node_id"])
        client.nodes  # noqa: B018 -- fetch the view
        view = client.core.view
        assert view is not None
        return held, {k: view.primary(POPULATION._type_name, k) for k in keys}
    finally:
        client.close()


def keys_moved(args: Any, workdir: Path, placement: str, etcd: Any) -> dict[str, Any]:
    """A 3-node cluster holding ``args.keys`` persistent and as many ephemeral counters gets a 4th node: what moved.

    Persistent objects follow the ring whatever the placement (their replicas must); a placement that
    anchors objects (``--placement anchored``) applies to ephemeral ones, hence both populations.
    """
    name = "keys-" + re.sub(r"[^A-Za-z0-9_-]", "-", placement)
    persistent = [f"pop-p-{i}" for i in range(args.keys)]
    ephemeral = [f"pop-e-{i}" for i in range(args.keys)]
    with Cluster(workdir, name, args.failure_timeout, rf=2, placement=placement, etcd=etcd) as cluster:
        cluster.start(3)
        crucial.connect(",".join(cluster.live()))
        for i, k in enumerate(persistent):
            POPULATION(i, key=k, persistent=True).get()
        for i, k in enumerate(ephemeral):
            POPULATION(i, key=k).get()
        wanted = {**{(k, True): 2 for k in persistent}, **{(k, False): 1 for k in ephemeral}}

        def complete(held: dict[tuple[str, bool], set[str]]) -> bool:
            return all(len(held.get(ref, ())) == n for ref, n in wanted.items())

        before, primary_before = holders(cluster, persistent + ephemeral)
        if not complete(before):
            raise RuntimeError("before the join, some population object is missing or has the wrong number of copies")
        t = time.monotonic()
        joined = cluster.start_node(join=cluster.live()[0])
        cluster.wait_members(set(cluster.live()))
        settle = time.monotonic() - t
        deadline = time.monotonic() + 60
        while True:  # the hand-over is complete; a new backup may still be receiving its state
            after, primary_after = holders(cluster, persistent + ephemeral)
            if complete(after) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        intact = [POPULATION.attach(k).get() for k in persistent] == list(range(args.keys))
        intact = intact and [POPULATION.attach(k).get() for k in ephemeral] == list(range(args.keys))

    def summary(keys: list[str], durable: bool) -> dict[str, Any]:
        moved = sum(1 for k in keys if after.get((k, durable), set()) - before[(k, durable)])  # a copy was sent
        n = len(keys)
        out: dict[str, Any] = {"keys": n, "moved": moved, "moved_fraction": round(moved / n, 4)}
        if durable:  # on the ring in every placement
            changed = sum(1 for k in keys if primary_after[k] != primary_before[k])
            out |= {"primary_moved": changed, "primary_moved_fraction": round(changed / n, 4)}
        return out

    return {
        # consistent hashing: rf/N of the persistent keys gain a copy, 1/N change primary; 1/N of the ephemeral move
        "persistent": summary(persistent, True) | {"expected_hashing": {"moved": 0.5, "primary_moved": 0.25}},
        "ephemeral": summary(ephemeral, False) | {"expected_hashing": {"moved": 0.25}},
        "wrong_copies_after": sum(1 for ref, n in wanted.items() if len(after.get(ref, ())) != n),
        "values_intact": intact,
        "join_settled_s": round(settle, 2),
        "joined": joined,
    }


# --------------------------------------------------------------------------- the figure and main


def plot(result: dict[str, Any], path: Path) -> None:
    """Reads/s per second, the crash and the join marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_s = result["per_second"]
    fig, ax = plt.subplots(figsize=(10, 4))
    top = max(per_s or [1])
    ax.step(range(len(per_s)), per_s, where="post", color="tab:blue", linewidth=1.2, label="successful reads in each second")
    marks = [
        (result["crash_at_s"], "kill -9 of the model's primary", "tab:red"),
        (result["join_at_s"], "a node joins", "tab:green"),
    ]
    for t, label, color in marks:
        ax.axvline(t, color=color, linestyle="--", linewidth=1)
        ax.annotate(label, (t, top * 1.03), color=color, ha="center", fontsize=9)
    in_view = result.get("join_start_to_view_with_it_s")
    if in_view is not None:
        ax.axvline(
            result["join_at_s"] + in_view, color="tab:green", linestyle=":", linewidth=1, label="the new node is in the view"
        )
    failed = [e["t"] for e in result["failures"]]
    if failed:
        ax.plot(failed, [0] * len(failed), "x", color="black", label=f"failed reads ({result['failed_reads']})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("inferences per second")
    ax.set_ylim(0, top * 1.12)
    ax.set_title(
        f"{result['clients']} clients, k-means model of {K} centroids, 3 nodes rf=2, "
        f"failure timeout {result['failure_timeout_s']:g} s"
    )
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: the scalar figures of each timeline run reported as their median over the runs (``per_run`` has them all)
MEDIANS = (
    "longest_stall_s",
    "stall_at_crash_s",
    "stall_at_join_s",
    "longest_gap_before_crash_s",
    "longest_gap_between_crash_and_join_s",
    "kill_to_view_without_it_s",
    "join_start_to_view_with_it_s",
    "join_start_to_handoff_done_s",
    "throughput_after_join_vs_before_crash",
    "throughput_after_crash_vs_before_crash",
)
#: what is kept of each run in ``per_run`` (the series and events are the plotted run's only)
PER_RUN = ("reads", "failed_reads", "longest_stall_at_s", "slowest_read_s", "nodes_that_lost_their_lease", *MEDIANS)


def combine(runs: list[dict[str, Any]], failure_timeout: float) -> dict[str, Any]:
    """One result from the runs: the last run's series and events, medians of the figures, failures summed."""
    out = dict(runs[-1])
    out["per_run"] = [{k: r[k] for k in PER_RUN} for r in runs]
    for key in MEDIANS:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    out["longest_stall_max_s"] = max(r["longest_stall_s"] for r in runs)
    out["reads"] = sum(r["reads"] for r in runs)
    out["failed_reads"] = sum(r["failed_reads"] for r in runs)
    out["failures"] = [f for r in runs for f in r["failures"]][:20]
    out["nodes_that_lost_their_lease"] = sorted({n for r in runs for n in r["nodes_that_lost_their_lease"]})
    out["ratio_stall_vs_failure_timeout"] = round(out["longest_stall_s"] / failure_timeout, 4)
    if out["throughput_after_join_vs_before_crash"] is not None:
        out["ratio_after_join_vs_before_crash"] = out["throughput_after_join_vs_before_crash"]
    return out


LABELS = {
    "failed_reads": "reads that failed across the kill -9 and the join (all runs)",
    "ratio_stall_vs_failure_timeout": "longest time with no completed read / the failure timeout (median of runs)",
    "ratio_after_join_vs_before_crash": "reads/s after the join / before the kill (median of runs)",
    "longest_stall_s": "longest time with no completed read, s (median of runs)",
    "stall_at_crash_s": "no read completes from the kill -9 until the failover, s (median of runs)",
    "stall_at_join_s": "longest gap while a node joins, s (median of runs)",
}


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=None, help="seconds of reading per run [default 180; --quick 30]")
    p.add_argument("--failure-timeout", type=float, default=3.0, help="the nodes' --failure-timeout [default 3, the server's]")
    p.add_argument("--processes", type=int, default=None, help="client processes [default 4]")
    p.add_argument("--threads", type=int, default=None, help="reader threads per process [default 25]")
    p.add_argument("--keys", type=int, default=None, help="persistent keys for the keys-moved measure [default 1000]")
    p.add_argument(
        "--png", type=Path, default=None, help="where the last run's timeline goes [default availability.png; --smoke: none]"
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the nodes' messages and etcd's data")
    args = p.parse_args()
    duration, processes, threads, keys, runs = by_mode(args, (180, 4, 25, 1000, 3), (30, 4, 25, 300, 1), (12, 2, 4, 40, 1))
    args.duration = args.duration or duration
    args.processes = args.processes or processes
    args.threads = args.threads or threads
    args.keys = args.keys or keys
    args.runs = args.runs or runs
    if args.smoke and args.failure_timeout == 3.0:
        args.failure_timeout = 1.0
    if args.png is None and not args.smoke:
        args.png = Path("availability.png")
    from crucial.server._etcd import EtcdProcess

    load_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="crucial-avail-"))
    log(f"availability: {args.runs} run(s) of {args.processes} x {args.threads} readers, {args.duration:g} s; logs in {workdir}")
    try:
        with _sigterm(), EtcdProcess(workdir / "etcd") as etcd:  # one etcd; each cluster has its own name in it
            runs = []
            for i in range(args.runs):
                runs.append(analyse(timeline(args, workdir, etcd, f"timeline-{i}")))
                log(f"run {i + 1}: " + json.dumps({k: runs[-1][k] for k in PER_RUN}))
            result = {"benchmark": "availability", **combine(runs, args.failure_timeout)}
            result.update(clients=args.processes * args.threads, failure_timeout_s=args.failure_timeout, duration_s=args.duration)
            result["runs"] = args.runs
            moved = {}
            for placement in placements():
                log(f"keys moved on a join: {placement}, {args.keys} keys")
                moved[placement] = keys_moved(args, workdir, placement, etcd)
            result["keys_moved_on_join"] = moved
        png = args.png or workdir / "availability.png"  # --smoke draws it too, then throws it away
        plot(result, png)
        result["png"] = str(args.png) if args.png else None
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    result["goals"] = {"failed_reads": "<= 0", "ratio_stall_vs_failure_timeout": "<= 2.0"}
    result["labels"] = {k: v for k, v in LABELS.items() if k in result}
    result.update(meta(args))
    result["crucial_source"] = str(Path(crucial.__file__).parent)
    result["reads_marked_readonly"] = READONLY_MARKED  # the code measured (PYTHONPATH may point elsewhere)
    result["load_average"] = {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]}
    log(json.dumps({k: v for k, v in result.items() if k not in ("per_second", "events", "samples")}, indent=1))
    emit(result)


if __name__ == "__main__":
    main()
