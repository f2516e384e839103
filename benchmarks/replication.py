"""Replicated persistent objects vs Redis replication (WAIT n, appendfsync always): latency and throughput.

    .venv/bin/python benchmarks/replication.py [--quick | --smoke] [--runs N] [--ops N] [--duration S]
                                               [--procs P] [--threads T] [--objects K] [--only latency|throughput]
    .venv/bin/python benchmarks/replication.py --profile DIR [--profile-seconds S]

The seed's replication table (§3.4, Table 2 and Figure 3) on this machine,
both systems in the same run, the order of the systems reversed on every
other repetition, medians over the repetitions:

* crucial: one cluster of 3 node processes (``LocalCluster(nodes=3, rf=2)``)
  holding ephemeral objects and persistent objects with ``rf`` = 1, 2 and 3;
  a second one with ``--data-dir`` and ``--fsync always`` for the durable
  row (``rf`` = 2, so two nodes write every call to disk).
* Redis: a redis-server alone (WAIT 0); a primary with one replica, each
  write followed by ``WAIT 1``; a primary with two replicas and ``WAIT 2``;
  and for the durable row a primary with one replica, both with
  ``appendonly yes`` + ``appendfsync always``, and ``WAIT 1``.  The WAIT is
  pipelined with its write (one round trip: the fastest way redis-py offers).

Latency: one client thread, ``ops`` sequential puts then gets of a 1 KB
``bytes`` value (``AtomicReference.set/get`` vs ``SET`` [+ ``WAIT n``] /
``GET``), as ``benchmarks/dso_latency.py`` does; medians of the per-call
latencies.  Throughput: ``threads`` client threads in ``procs`` processes,
each call an increment of one of ``objects`` counters chosen at random
(``AtomicInt.add_and_get(1)`` vs ``INCR`` [+ ``WAIT n``]), for ``duration``
seconds; at the end every counter is read back and the sum must equal the
increments made.

Besides wall figures, each row reports the CPU time that the server processes
(crucial nodes; redis-server primary and replicas) spent per call, from
``/proc/PID/stat`` before and after: on a shared machine it moves far less
than wall time.  ``--profile DIR`` instead profiles where an rf=2 call's time
goes (CPU per call of the primary and the backup, per thread; syscalls per
call with ``strace -c``; py-spy flame data) and writes it to DIR.

The last line of stdout is a JSON object with ``ratio_rf2_vs_rf1`` (latency,
goal <= 2.2), ``ratio_vs_redis_wait`` (throughput of rf=2 / Redis WAIT 1,
goal >= 1) and ``ratio_vs_redis_fsync`` (durable throughput / Redis
appendfsync always, goal >= 1), each the median of the per-repetition ratios;
``ratio_latency_<row>_vs_<peer>`` and ``ratio_throughput_<row>_vs_<peer>``
for each row against its Redis peer (crucial / Redis), and ``goals`` and
``labels`` as every benchmark has.  A ratio that was not measured (``--only``,
``--systems``, or a CPU time below the clock's tick in ``--smoke``) is left out.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Link, ProcessGroup, by_mode, emit, hiredis_version, log, median, meta, parser, redis_client
from _common import terminate_as_interrupt as _sigterm
from _replication_systems import (
    CRUCIAL,
    REDIS,
    CpuMeter,
    Systems,
    redis_writer,
    use_cluster,
)

__all__ = [
    "GOALS",
    "LABELS",
    "add_ratios",
    "counter_key",
    "goals",
    "main",
    "pair_key",
    "prepare_counters",
    "ratio_of_medians",
    "summarize",
    "table",
    "tp_worker",
]

VALUE_SIZE = 1024
# adjacent pairs of the table (crucial, its Redis peer); the order is reversed on every other repetition
ORDER = [
    "crucial-rf1",
    "redis",
    "crucial-rf2",
    "redis-wait1",
    "crucial-rf3",
    "redis-wait2",
    "crucial-durable",
    "redis-fsync",
    "crucial-ephemeral",
]
PAIRS = [
    ("crucial-rf1", "redis"),
    ("crucial-rf2", "redis-wait1"),
    ("crucial-rf3", "redis-wait2"),
    ("crucial-durable", "redis-fsync"),
]
#: the issue's goals: (figure, goal, what it says in words)
GOALS = [
    ("ratio_rf2_vs_rf1", "<= 2.2", "rf=2 latency <= 2.2 x rf=1 (the seed)"),
    ("ratio_vs_redis_wait", ">= 1.0", "rf=2 throughput >= Redis + 1 replica, WAIT 1"),
    ("ratio_vs_redis_fsync", ">= 1.0", "durable throughput >= Redis appendfsync always"),
]
#: what each figure compares, in words (the results table's "figure" column)
LABELS = {
    "ratio_rf2_vs_rf1": "latency p50, persistent rf=2 vs rf=1 (time)",
    "ratio_vs_redis_wait": "throughput, rf=2 increments vs Redis + 1 replica, INCR + WAIT 1 (ops/s)",
    "ratio_vs_redis_fsync": "throughput, rf=2 + fsync always vs Redis + 1 replica, appendfsync always, WAIT 1 (ops/s)",
    "ratio_rf3_vs_rf1": "latency p50, persistent rf=3 vs rf=1 (time)",
    "ratio_latency_rf1_vs_redis": "latency p50, 1 KB put+get, rf=1 vs Redis, WAIT 0 (time)",
    "ratio_latency_rf2_vs_redis_wait1": "latency p50, 1 KB put+get, rf=2 vs Redis + 1 replica, WAIT 1 (time)",
    "ratio_latency_durable_vs_redis_fsync": "latency p50, 1 KB put+get, rf=2 + fsync always vs Redis appendfsync always (time)",
    "ratio_throughput_ephemeral_vs_redis": "throughput, ephemeral objects vs Redis, no replication (ops/s)",
    "ratio_throughput_rf2_vs_rf1": "throughput, rf=2 vs rf=1: what replication costs crucial (ops/s)",
    "throughput_redis_wait1_vs_redis": "throughput, Redis WAIT 1 vs WAIT 0: what replication costs Redis (ops/s)",
}


def pair_key(kind: str, ours: str, peer: str) -> str:
    """``ratio_latency_rf2_vs_redis_wait1`` for ``("latency", "crucial-rf2", "redis-wait1")``."""
    return f"ratio_{kind}_{ours.removeprefix('crucial-')}_vs_{peer}".replace("-", "_")


# --------------------------------------------------------------------------- latency


def timed(op: Callable[[], Any], n: int) -> list[float]:
    """Latency of each of ``n`` sequential calls, in microseconds."""
    clock = time.perf_counter_ns
    out = [0.0] * n
    for i in range(n):
        t0 = clock()
        op()
        out[i] = (clock() - t0) / 1000.0
    return out


def latency_ops(systems: Systems, system: str, value: bytes) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], None]]:
    """(put, get, close) for one system."""
    if system in CRUCIAL:
        import crucial

        use_cluster(systems.dso(system))
        rf = CRUCIAL[system][1]
        options = {"persistent": True, "rf": rf} if rf is not None else {}
        ref = crucial.AtomicReference(None, key=f"lat-{system}", **options)
        return (lambda: ref.set(value)), ref.get, lambda: None
    r = redis_client(systems.redis[system].port)
    write = redis_writer(r, REDIS[system][2])
    key = f"lat-{system}"
    return (lambda: write(lambda c: c.set(key, value))), (lambda: r.get(key)), r.close


def measure_latency(systems: Systems, system: str, value: bytes, n: int, warmup: int) -> dict[str, Any]:
    put, get, close = latency_ops(systems, system, value)
    try:
        for _ in range(warmup):
            put()
            get()
        kind, key = ("AtomicReference", f"lat-{system}")
        meter = CpuMeter(systems.pids(system, kind, key))
        client0 = time.process_time()
        puts = timed(put, n)
        put_cpu, put_woken = meter.delta()
        client1 = time.process_time()
        gets = timed(get, n)
        get_cpu, get_woken = meter.delta()
        client2 = time.process_time()
        if get() != value:
            raise AssertionError(f"{system}: the value read back is not the value written")
    finally:
        close()
    return {
        "put_p50_us": median(puts),
        "get_p50_us": median(gets),
        "put_mean_us": sum(puts) / n,
        "get_mean_us": sum(gets) / n,
        "p50_us": (median(puts) + median(gets)) / 2,
        "put_server_cpu_us": {role: s * 1e6 / n for role, s in put_cpu.items()},
        "get_server_cpu_us": {role: s * 1e6 / n for role, s in get_cpu.items()},
        "server_cpu_us_per_op": (sum(put_cpu.values()) + sum(get_cpu.values())) * 1e6 / (2 * n),
        "client_cpu_us_per_op": (client2 - client0) * 1e6 / (2 * n),
        "server_wakeups_per_op": (put_woken + get_woken) / (2 * n),
        "put_client_cpu_us": (client1 - client0) * 1e6 / n,
    }


def run_latency(systems: Systems, names: list[str], runs: int, n: int, warmup: int) -> list[dict[str, dict[str, Any]]]:
    value = os.urandom(VALUE_SIZE)
    reps: list[dict[str, dict[str, Any]]] = []
    for rep in range(runs):
        order = names if rep % 2 == 0 else names[::-1]
        row: dict[str, dict[str, Any]] = {}
        for system in order:
            row[system] = measure_latency(systems, system, value, n, warmup)
        reps.append(row)
        log(f"latency {rep + 1}/{runs}: " + "  ".join(f"{s} {row[s]['p50_us']:.0f}" for s in names) + "  (p50 us, put+get / 2)")
    return reps


# --------------------------------------------------------------------------- throughput


def counter_key(system: str, i: int) -> str:
    return f"tp-{system}-{i}"


def make_increment(target: dict[str, Any], system: str, objects: int) -> tuple[Callable[[int], Any], Callable[[], None]]:
    """(increment(i), close) for one system, in a worker process."""
    if target["kind"] == "crucial":
        import crucial

        use_cluster(target["dso"])
        counters = [crucial.AtomicInt.attach(counter_key(system, i)) for i in range(objects)]
        return (lambda i: counters[i].add_and_get(1)), lambda: None
    r = redis_client(target["port"])
    write = redis_writer(r, target["wait"])
    keys = [counter_key(system, i) for i in range(objects)]
    return (lambda i: write(lambda c: c.incr(keys[i]))), r.close


def run_phase(link: Link, target: dict[str, Any], system: str, nthreads: int, objects: int, duration: float, seed: int) -> None:
    """This process's threads warm up, wait for every process, then increment random counters for ``duration`` s."""
    increment, close = make_increment(target, system, objects)
    ready = threading.Barrier(nthreads + 1)
    go = threading.Event()
    counts = [0] * nthreads
    made = [0] * nthreads  # every increment sent, also the warm-up and the one that crossed the deadline
    window = [0.0]
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        rng = random.Random(seed * 1000 + slot)
        try:
            for _ in range(3):  # warm up: this thread's connections
                made[slot] += 1
                increment(rng.randrange(objects))
        except BaseException as exc:
            errors.append(exc)
        ready.wait()
        go.wait()
        if errors:
            return
        deadline = window[0]
        clock = time.monotonic
        n = 0
        try:
            while True:
                made[slot] += 1
                increment(rng.randrange(objects))
                if clock() >= deadline:
                    break
                n += 1
        except BaseException as exc:
            errors.append(exc)
        counts[slot] = n

    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(nthreads)]
    for t in pool:
        t.start()
    ready.wait()
    link.start()  # every process is ready: start together
    window[0] = time.monotonic() + duration
    cpu = time.process_time()
    go.set()
    for t in pool:
        t.join()
    cpu = time.process_time() - cpu
    close()
    if errors:
        raise errors[0]
    link.report({"ops": sum(counts), "made": sum(made), "cpu": cpu})


def tp_worker(
    link: Link, nprocs: int, threads: int, objects: int, duration: float, phases: list[str], targets: dict[str, Any]
) -> None:
    """One client process: its share of the threads, phase after phase."""
    mine = len([g for g in range(threads) if g % nprocs == link.index])
    for i, system in enumerate(phases):
        run_phase(link, targets[system], system, mine, objects, duration, seed=i * 100 + link.index)


def prepare_counters(systems: Systems, system: str, objects: int) -> None:
    """Create the counters (at 0) before the first phase, so no phase pays for creating them."""
    if system in CRUCIAL:
        import crucial

        use_cluster(systems.dso(system))
        rf = CRUCIAL[system][1]
        options = {"persistent": True, "rf": rf} if rf is not None else {}

        def create(i: int) -> None:
            crucial.AtomicInt(0, key=counter_key(system, i), **options).get()

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(objects)))
        return
    r = redis_client(systems.redis[system].port)
    try:
        r.mset({counter_key(system, i): 0 for i in range(objects)})
        redis_writer(r, REDIS[system][2])(lambda c: c.ping())
    finally:
        r.close()


def counter_total(systems: Systems, system: str, objects: int) -> int:
    if system in CRUCIAL:
        import crucial

        use_cluster(systems.dso(system))
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            return sum(pool.map(lambda i: crucial.AtomicInt.attach(counter_key(system, i)).get(), range(objects)))
    r = redis_client(systems.redis[system].port)
    try:
        return sum(int(v) for v in r.mget([counter_key(system, i) for i in range(objects)]))
    finally:
        r.close()


def run_throughput(
    systems: Systems, names: list[str], runs: int, procs: int, threads: int, objects: int, duration: float
) -> list[dict[str, dict[str, Any]]]:
    phases = [s for rep in range(runs) for s in (names if rep % 2 == 0 else names[::-1])]
    targets = {s: systems.target(s) for s in names}
    for system in names:
        prepare_counters(systems, system, objects)
    pids = {s: systems.pids(s, "AtomicInt", counter_key(s, 0)) for s in names}
    made: dict[str, int] = dict.fromkeys(names, 0)
    reps: list[dict[str, dict[str, Any]]] = [{} for _ in range(runs)]
    wargs = (procs, threads, objects, duration, phases, targets)
    with ProcessGroup(procs, len(phases), tp_worker, wargs) as group:
        for i, system in enumerate(phases):
            group.start_phase()
            meter = CpuMeter(pids[system])  # crucial: all three nodes (objects are everywhere)
            reports = group.collect()
            cpu, woken = meter.delta()
            ops = sum(x["ops"] for x in reports)
            made[system] += sum(x["made"] for x in reports)
            reps[i // len(names)][system] = {
                "ops_s": ops / duration,
                "server_cpu_us_per_op": sum(cpu.values()) * 1e6 / max(ops, 1),
                "client_cpu_us_per_op": sum(x["cpu"] for x in reports) * 1e6 / max(ops, 1),
                "server_wakeups_per_op": woken / max(ops, 1),
            }
            log(f"throughput {i + 1}/{len(phases)}: {system:18s} {ops / duration:9.0f} ops/s")
    for system in names:
        total = counter_total(systems, system, objects)
        if total != made[system]:
            raise AssertionError(f"{system}: the counters hold {total} increments, the clients made {made[system]}")
    return reps


# --------------------------------------------------------------------------- results


def summarize(reps: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per system, the median over the repetitions of each field (role dicts: per role)."""
    out: dict[str, dict[str, Any]] = {}
    for system, first in reps[0].items():
        row: dict[str, Any] = {}
        for f, sample in first.items():
            values = [r[system][f] for r in reps if system in r]
            if isinstance(sample, dict):
                row[f] = {role: _round(median([v[role] for v in values])) for role in sample}
            else:
                row[f] = _round(median(values))
        out[system] = row
    return out


def _round(x: float) -> float:
    return round(x, 1) if abs(x) >= 10 else round(x, 3)


def ratio_of_medians(reps: list[dict[str, dict[str, Any]]], ours: str, peer: str, field: str) -> float | None:
    """The median over repetitions of ours/peer, both measured in the same repetition."""
    values = [r[ours][field] / r[peer][field] for r in reps if ours in r and peer in r and r[peer][field]]
    return round(median(values), 3) if values else None


def table(lat: dict[str, Any] | None, tp: dict[str, Any] | None) -> str:
    """The seed's table on this machine: latency (p50) and throughput, with the CPU each op cost."""
    head = ("system", "put p50", "get p50", "srv CPU", "srv wake", "ops/s", "srv CPU", "cli CPU", "srv wake")
    units = ("", "us", "us", "us/op", "ups/op", "", "us/op", "us/op", "ups/op")
    lines = [f"{head[0]:18s}" + "".join(f"{h:>9s}" for h in head[1:]), f"{units[0]:18s}" + "".join(f"{u:>9s}" for u in units[1:])]
    for system in ORDER:
        a = (lat or {}).get(system)
        b = (tp or {}).get(system)
        if a is None and b is None:
            continue
        left = " " * 36
        if a:
            left = "".join(f"{a[k]:9.0f}" for k in ("put_p50_us", "get_p50_us", "server_cpu_us_per_op"))
            left += f"{a['server_wakeups_per_op']:9.2f}"
        right = ""
        if b:
            right = "".join(f"{b[k]:9.0f}" for k in ("ops_s", "server_cpu_us_per_op", "client_cpu_us_per_op"))
            right += f"{b['server_wakeups_per_op']:9.2f}"
        lines.append(f"{system:18s}{left}{right}")
    return "\n".join(lines)


def goals(out: dict[str, Any]) -> list[str]:
    """A line per goal for the log; ``out["goals_met"]``: met, not met, or None (not measured)."""
    lines = []
    for key, goal, text in GOALS:
        v = out.get(key)
        bound = float(goal[2:])
        ok = None if v is None else bool(v <= bound if goal.startswith("<=") else v >= bound)
        verdict = "not measured" if ok is None else ("met" if ok else "NOT met")
        lines.append(f"goal: {text}: {key} = {v} -> {verdict}")
        out.setdefault("goals_met", {})[key] = ok
    return lines


def add_ratios(out: dict[str, Any], ratios: dict[str, float | None]) -> None:
    """Put the measured ratios in ``out``; one that could not be measured is left out, not reported as null."""
    out.update({key: value for key, value in ratios.items() if value is not None})


# --------------------------------------------------------------------------- main


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=None, help="sequential puts and gets per latency run (default 5000)")
    p.add_argument("--duration", type=float, default=None, help="seconds per throughput phase (default 5)")
    p.add_argument("--procs", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--threads", type=int, default=None, help="client threads in all (default 200)")
    p.add_argument("--objects", type=int, default=800, help="counters (default 800)")
    p.add_argument("--only", choices=["latency", "throughput"], default=None)
    p.add_argument("--systems", default=None, help="comma-separated subset of: " + ",".join(ORDER))
    p.add_argument("--profile", metavar="DIR", default=None, help="profile rf=2 calls instead (see docs/benchmarks.md)")
    p.add_argument("--profile-seconds", type=float, default=10.0, help="seconds per profiler (default 10)")
    p.add_argument("--loads", default="sequential,concurrent", help="with --profile: sequential,concurrent")
    args = p.parse_args()
    if args.profile:
        from _replication_profile import profile

        with _sigterm():
            wanted = args.systems.split(",") if args.systems else None
            profile(Path(args.profile), args.profile_seconds, wanted, tuple(args.loads.split(",")))
        return

    runs, n, warmup, duration, threads, procs, objects = by_mode(
        args,
        full=(3, 5000, 500, 5.0, 200, args.procs, args.objects),
        quick=(2, 300, 50, 1.0, 64, 4, args.objects),
        smoke=(2, 30, 10, 0.3, 4, 2, 20),
    )
    runs = args.runs or runs
    n = args.ops or n
    duration = args.duration or duration
    threads = args.threads or threads
    names = [s for s in ORDER if args.systems is None or s in args.systems.split(",")]
    unknown = set(args.systems.split(",")) - set(ORDER) if args.systems else set()
    if unknown:
        p.error(f"unknown systems: {sorted(unknown)}")

    started = time.monotonic()
    out: dict[str, Any] = {"benchmark": "replication"}
    lat = tp = None
    with _sigterm(), Systems(names) as systems:
        took = time.monotonic() - started
        log(f"started {len(systems.clusters)} crucial clusters and {len(systems.redis)} Redis deployments in {took:.1f} s")
        if args.only != "throughput":
            lat_reps = run_latency(systems, names, runs, n, warmup)
            lat = summarize(lat_reps)
            out["latency"] = lat
            out["latency_ops_per_run"] = n
            add_ratios(
                out,
                {
                    "ratio_rf2_vs_rf1": ratio_of_medians(lat_reps, "crucial-rf2", "crucial-rf1", "p50_us"),
                    "ratio_rf3_vs_rf1": ratio_of_medians(lat_reps, "crucial-rf3", "crucial-rf1", "p50_us"),
                    "ratio_rf2_vs_rf1_cpu": ratio_of_medians(lat_reps, "crucial-rf2", "crucial-rf1", "server_cpu_us_per_op"),
                }
                | {pair_key("latency", ours, peer): ratio_of_medians(lat_reps, ours, peer, "p50_us") for ours, peer in PAIRS},
            )
        if args.only != "latency":
            tp_names = [s for s in names if s != "crucial-ephemeral" or not (args.quick or args.smoke)]
            tp_reps = run_throughput(systems, tp_names, runs, procs, threads, objects, duration)
            tp = summarize(tp_reps)
            out["throughput"] = tp
            out.update({"threads": threads, "processes": procs, "objects": objects, "duration_s": duration})
            add_ratios(
                out,
                {
                    "ratio_vs_redis_wait": ratio_of_medians(tp_reps, "crucial-rf2", "redis-wait1", "ops_s"),
                    "ratio_vs_redis_fsync": ratio_of_medians(tp_reps, "crucial-durable", "redis-fsync", "ops_s"),
                }
                | {pair_key("throughput", ours, peer): ratio_of_medians(tp_reps, ours, peer, "ops_s") for ours, peer in PAIRS}
                | {  # what replication costs each system, apart from their unreplicated speeds (Redis / Redis: no ratio_)
                    "ratio_throughput_rf2_vs_rf1": ratio_of_medians(tp_reps, "crucial-rf2", "crucial-rf1", "ops_s"),
                    "throughput_redis_wait1_vs_redis": ratio_of_medians(tp_reps, "redis-wait1", "redis", "ops_s"),
                    "ratio_throughput_ephemeral_vs_redis": ratio_of_medians(tp_reps, "crucial-ephemeral", "redis", "ops_s"),
                },
            )
    out["runs"] = runs
    out["value_bytes"] = VALUE_SIZE
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    log(table(lat, tp))
    for line in goals(out):
        log(line)
    out["goals"] = {key: goal for key, goal, _ in GOALS if key in out}
    out["labels"] = {key: label for key, label in LABELS.items() if key in out}
    out["hiredis"] = hiredis_version()
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
