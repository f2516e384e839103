"""Complex-op scale-out: ops/s of 1, 2, 4 ... nodes, with the cores held fixed and with a core per node, vs Redis.

    python benchmarks/scaleout.py [--quick | --smoke] [--runs N] [--nodes 1,2,4] [--fixed-cores C]
                                  [--procs P] [--threads T] [--duration S]

The complex op of ``dso_throughput.py``: 10 000 float multiplications in one
atomic call -- a ``@crucial.shared`` method on a node, a Lua script
(``EVALSHA``) in Redis.  Its cost is the interpreter's (CPython runs the
loop about 2x slower than Lua), so one node loses to Redis; what crucial
offers instead is scale-out: objects spread over nodes by consistent
hashing, one process -- one core -- each, where Redis runs every script on
its one thread.  For each ``N`` in ``--nodes``:

* **scaled**: ``N`` nodes, node ``i`` pinned to core ``i`` (``taskset``'s
  ``sched_setaffinity``), the client processes on the other cores when there
  are any (else on all of them);
* **fixed**: the same ``N`` nodes all pinned to the first ``--fixed-cores``
  cores (default 1): more processes, no more CPU -- what scale-out is *not*;
* **redis**: one redis-server (unpinned: it uses one core whatever it is
  given) under the same clients, once per run.

``procs`` client processes x ``threads`` threads call on ``objects`` objects
for ``duration`` seconds (as ``dso_throughput.py``).  The node processes'
CPU time (their per-process CPU clocks) over the phase, divided by the calls,
gives **node CPU per call**.  One more phase per run calls the same method
with no multiplications on one node: its node CPU per call is the **node's
overhead per call** -- decoding, dispatch, the user method's frame, reply,
the event loop and the socket calls, what crucial adds around the user's
code (``method_cpu_us``, the loop timed alone in this process, is shown
beside it).

Phases alternate their order run by run.  The last line of stdout is a JSON
object with ``crucial_<mode>_<N>_ops_s``, ``redis_ops_s``,
``ratio_vs_redis_<mode>_<N>`` (crucial / Redis ops/s: higher is better),
``node_cpu_us_per_call_<mode>_<N>``, ``node_overhead_us_per_call`` and
``method_cpu_us``.  The goal -- ``ratio_vs_redis_scaled_<N>`` >= 1.0 for
some ``N`` -- needs a machine with at least 8 cores (nodes on their own
cores, clients on others); on fewer, the figures show the trend and the
JSON says ``"goal_applies": false``.  How to run it there: docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from _common import (
    ProcessGroup,
    RedisServer,
    alternate,
    by_mode,
    cpu_seconds,
    crucial_cluster,
    emit,
    log,
    median,
    meta,
    parser,
    ratio,
)
from _common import terminate_as_interrupt as _sigterm
from dso_throughput import FACTOR, MULTIPLICATIONS, worker

GOAL_CORES = 8


def method_cpu_us(reps: int = 200) -> float:
    """CPU microseconds of the user method's body alone (``Multiplier.multiply``'s loop, in this interpreter)."""
    _loop(MULTIPLICATIONS, FACTOR)
    samples = []
    for _ in range(5):
        t0 = time.thread_time()
        for _ in range(reps):
            _loop(MULTIPLICATIONS, FACTOR)
        samples.append((time.thread_time() - t0) / reps * 1e6)
    return min(samples)


def _loop(n: int, factor: float) -> float:
    v = 1.0  # as Multiplier.multiply: v = self.value; the loop; self.value = v
    for _ in range(n):
        v *= factor
    return v


def node_pids(cluster: Any) -> list[int]:
    """The node processes of a LocalCluster (its supervisor's children, or the one node itself)."""
    import psutil

    proc = psutil.Process(cluster.proc.pid)
    children = proc.children()
    return [c.pid for c in children] if children else [proc.pid]


@contextlib.contextmanager
def pinned_cluster(nodes: int, cores: list[int], mode: str, fixed: int) -> Iterator[tuple[Any, list[int]]]:
    """``nodes`` nodes; ``scaled``: node i on core i; ``fixed``: all on the first ``fixed`` cores."""
    with crucial_cluster(nodes) as cluster:
        pids = node_pids(cluster)
        for i, pid in enumerate(sorted(pids)):
            os.sched_setaffinity(pid, {cores[i % len(cores)]} if mode == "scaled" else set(cores[:fixed]))
        yield cluster, pids


def client_cores(cores: list[int], nodes: int, mode: str) -> set[int]:
    """Where the clients run: the cores the nodes do not use, when there are any."""
    used = nodes if mode == "scaled" else 0
    rest = cores[used:]
    return set(rest) if rest else set(cores)


def phase(
    system: str, args: Any, cores: list[int], nodes: int = 0, mode: str = "", redis_port: int = 0, kind: str = "complex"
) -> dict[str, float]:
    """One measurement: ops/s (and for crucial the nodes' CPU seconds)."""
    phases = [(system, kind)]
    with contextlib.ExitStack() as stack:
        pids: list[int] = []
        dso = ""
        env: dict[str, str] = {}
        if system == "crucial":
            cluster, pids = stack.enter_context(pinned_cluster(nodes, cores, mode, args.fixed_cores))
            dso, env = cluster.dso, cluster.env_vars()
        wargs = (args.procs, args.threads, args.objects, args.duration, phases, dso, redis_port)
        group = stack.enter_context(ProcessGroup(args.procs, 1, worker, wargs, env=env))
        for p in group.procs:
            os.sched_setaffinity(p.pid, client_cores(cores, nodes, mode) if system == "crucial" else set(cores))
        group.start_phase()
        cpu0 = cpu_seconds(*pids)
        reports = group.collect()
        cpu1 = cpu_seconds(*pids)
    ops = sum(r["ops"] for r in reports)
    return {"ops_s": ops / args.duration, "calls": ops, "node_cpu_s": cpu1 - cpu0}


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    cores = sorted(os.sched_getaffinity(0))
    default_nodes = ",".join(str(n) for n in (1, 2, 4, 8, 16) if n <= len(cores)) or "1"
    p.add_argument("--nodes", default=None, help=f"node counts (default {default_nodes}: up to the cores; --smoke 1,2)")
    p.add_argument("--fixed-cores", type=int, default=1, help="cores of the 'fixed' series (default 1)")
    p.add_argument("--procs", type=int, default=None, help="client processes (default 4; --smoke 2)")
    p.add_argument("--threads", type=int, default=None, help="client threads in all (default 64; --smoke 4)")
    p.add_argument("--objects", type=int, default=None, help="objects (default 256; --smoke 8)")
    p.add_argument("--duration", type=float, default=None, help="seconds per phase (default 5, --quick 2, --smoke 0.3)")
    args = p.parse_args()
    sizes = [int(n) for n in (args.nodes or by_mode(args, default_nodes, default_nodes, "1,2")).split(",") if n]
    runs = args.runs or by_mode(args, 3, 1, 1)
    args.procs = args.procs or by_mode(args, 4, 4, 2)
    args.threads = args.threads or by_mode(args, 64, 64, 4)
    args.objects = args.objects or by_mode(args, 256, 256, 8)
    args.duration = args.duration or by_mode(args, 5.0, 2.0, 0.3)
    load_before = round(os.getloadavg()[0], 2)
    method = method_cpu_us(by_mode(args, 200, 100, 10))
    log(f"{len(cores)} cores; the method alone: {method:.1f} us of CPU per call")

    phases = [("redis", 0, "")] + [("crucial", n, mode) for n in sizes for mode in ("scaled", "fixed")]
    phases.append(("crucial", 1, "empty"))
    results: dict[str, list[dict[str, float]]] = {}
    with _sigterm(), RedisServer() as rs:
        for run in range(runs):
            for system, n, mode in alternate(phases, run):
                name = "redis" if system == "redis" else f"{mode}_{n}"
                kind = "empty" if mode == "empty" else "complex"
                r = phase(system, args, cores, n, "scaled" if mode == "empty" else mode, rs.port, kind)
                results.setdefault(name, []).append(r)
                extra = ""
                if system == "crucial":
                    extra = f", node CPU {r['node_cpu_s'] / max(r['calls'], 1) * 1e6:.1f} us per call"
                log(f"run {run + 1}/{runs} {name:10s} {r['ops_s']:9.0f} ops/s{extra}")

    out: dict[str, Any] = {"benchmark": "scaleout", "cores": len(cores), "nodes": sizes, "fixed_cores": args.fixed_cores}
    out.update({"procs": args.procs, "threads": args.threads, "objects": args.objects, "duration_s": args.duration})
    out.update({"runs": runs, "multiplications": MULTIPLICATIONS, "method_cpu_us": round(method, 1)})
    out["redis_ops_s"] = round(median([r["ops_s"] for r in results["redis"]]), 1)
    for name, rs_ in results.items():
        if name == "redis":
            continue
        per_call = median([r["node_cpu_s"] / max(r["calls"], 1) * 1e6 for r in rs_])
        if name.startswith("empty"):
            out["node_overhead_us_per_call"] = round(per_call, 1)
            out["empty_calls_s"] = round(median([r["ops_s"] for r in rs_]), 1)
            continue
        ops = median([r["ops_s"] for r in rs_])
        out[f"crucial_{name}_ops_s"] = round(ops, 1)
        out[f"ratio_vs_redis_{name}"] = ratio(ops, out["redis_ops_s"])
        out[f"node_cpu_us_per_call_{name}"] = round(per_call, 1)
    out["goal_applies"] = len(cores) >= GOAL_CORES
    best = max(sizes)
    out["goals"] = {f"ratio_vs_redis_scaled_{best}": ">= 1.0"} if out["goal_applies"] else {}
    out["labels"] = {f"ratio_vs_redis_scaled_{n}": f"complex ops/s, {n} node(s) on {n} core(s), vs Redis + Lua" for n in sizes}
    out["labels"]["node_overhead_us_per_call"] = "node CPU per call outside the user method (us)"
    out["loadavg_1m_before"] = load_before
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
