"""Throughput of many client threads on many objects: crucial vs Redis (simple and complex ops).

    python benchmarks/dso_throughput.py [--quick | --smoke] [--runs N] [--duration S]
                                        [--procs P] [--threads T] [--objects K] [--nodes N] [--only simple|complex]

``threads`` (200) client threads spread over ``procs`` (4) spawned processes
hammer ``objects`` (800) objects for ``duration`` (10) seconds; thread ``g``
cycles over objects ``g, g + threads, g + 2*threads, ...``.  Two operations:

* simple: one multiplication -- ``crucial.AtomicInt.multiply_and_get(1)``
  vs Redis ``INCR`` (the nearest one-command update Redis has);
* complex: 10 000 float multiplications -- a ``@crucial.shared`` user method
  vs a Lua script run with ``EVALSHA`` (redis-py ``register_script``) doing
  the same loop.

crucial runs as many node processes as the machine has cores; Redis is one
redis-server.  Phases alternate (crucial then Redis in even runs, Redis
then crucial in odd ones) and repeat ``runs`` times;
the last line of stdout is a JSON object with the median ops/s and
``ratio_vs_redis_simple`` / ``ratio_vs_redis_complex`` = crucial / Redis
(goal: >= 1.0 for both).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from _common import (
    Link,
    ProcessGroup,
    RedisServer,
    alternate,
    by_mode,
    crucial_cluster,
    emit,
    hiredis_version,
    log,
    median,
    meta,
    parser,
    ratio,
    redis_client,
)
from _common import terminate_as_interrupt as _sigterm

import crucial

MULTIPLICATIONS = 10_000
FACTOR = 1.0000001

# the same loop, in Lua, on the Redis side
LUA_MULTIPLY = """
local v = tonumber(redis.call('GET', KEYS[1])) or 1.0
local f = tonumber(ARGV[2])
for i = 1, tonumber(ARGV[1]) do v = v * f end
redis.call('SET', KEYS[1], tostring(v))
return tostring(v)
"""


@crucial.shared
class Multiplier:
    """The complex op: ``n`` multiplications in one atomic method call, on the node."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def multiply(self, n: int, factor: float) -> float:
        v = self.value
        for _ in range(n):
            v *= factor
        self.value = v
        return v


def _ops(system: str, kind: str, keys: list[str], state: dict[str, Any]) -> list[Any]:
    """One zero-argument callable per key of this thread."""
    if system == "crucial":
        if kind == "simple":
            ints = [crucial.AtomicInt(1, key=f"tp-int-{k}") for k in keys]
            return [(lambda o=o: o.multiply_and_get(1)) for o in ints]
        n = MULTIPLICATIONS if kind == "complex" else 0  # "empty": the same user method with no work (scaleout.py)
        mults = [Multiplier(1.0, key=f"tp-mul-{k}") for k in keys]
        return [(lambda o=o: o.multiply(n, FACTOR)) for o in mults]
    r = state["redis"]
    if kind == "simple":
        return [(lambda k=k: r.incr(f"tp-int-{k}")) for k in keys]
    script = state["script"]
    n = MULTIPLICATIONS if kind == "complex" else 0
    return [(lambda k=k: script(keys=[f"tp-mul-{k}"], args=[n, FACTOR])) for k in keys]


def run_phase(
    link: Link, system: str, kind: str, mine: list[int], objects: int, threads: int, duration: float, state: dict[str, Any]
):
    """This process's threads warm up, wait for all processes, then run ops for ``duration`` seconds."""
    ready = threading.Barrier(len(mine) + 1)
    go = threading.Event()
    counts = [0] * len(mine)
    window = [0.0, 0.0]
    errors: list[BaseException] = []

    def run(slot: int, g: int) -> None:
        try:
            ops = _ops(system, kind, [str(k) for k in range(g, objects, threads)], state)
            for op in ops:  # warm up: creates the objects, opens the connection
                op()
        except BaseException as exc:
            errors.append(exc)
            ops = []
        ready.wait()
        go.wait()
        if not ops:
            return
        deadline = window[1]
        clock = time.monotonic
        n = 0
        while True:
            for op in ops:
                op()
                if clock() >= deadline:
                    counts[slot] = n
                    return
                n += 1

    pool = [threading.Thread(target=run, args=(i, g), daemon=True) for i, g in enumerate(mine)]
    for t in pool:
        t.start()
    ready.wait()
    if errors:
        raise errors[0]
    link.start()  # every process is ready: start together
    window[0] = time.monotonic()
    window[1] = window[0] + duration
    go.set()
    for t in pool:
        t.join()
    link.report({"ops": sum(counts), "elapsed": time.monotonic() - window[0]})


def worker(link: Link, nprocs: int, threads: int, objects: int, duration: float, phases: list[Any], dso: str, port: int):
    """One client process: its share of the threads, phase after phase."""
    mine = [g for g in range(threads) if g % nprocs == link.index]
    if dso:  # (benchmarks/scaleout.py runs its Redis phases without a cluster)
        crucial.connect(dso)  # defaults, as users get them: the threads share one connection per node
    r = redis_client(port)
    state: dict[str, Any] = {"redis": r, "script": r.register_script(LUA_MULTIPLY)}
    for system, kind in phases:
        run_phase(link, system, kind, mine, objects, threads, duration, state)
    r.close()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10, --quick 2)")
    p.add_argument("--procs", type=int, default=None, help="client processes (default 4, --smoke 2)")
    p.add_argument("--threads", type=int, default=None, help="client threads in all (default 200, --smoke 4)")
    p.add_argument("--objects", type=int, default=None, help="objects (default 800, --smoke 8)")
    p.add_argument("--nodes", type=int, default=os.cpu_count() or 2, help="crucial node processes (default: cores)")
    p.add_argument("--only", choices=["simple", "complex"], default=None, help="run one of the two operations")
    args = p.parse_args()
    duration = args.duration or by_mode(args, 10.0, 2.0, 0.3)
    runs = args.runs or by_mode(args, 3, 2, 1)
    args.procs = args.procs or by_mode(args, 4, 4, 2)
    args.threads = args.threads or by_mode(args, 200, 200, 4)
    args.objects = args.objects or by_mode(args, 800, 800, 8)
    kinds = [args.only] if args.only else ["simple", "complex"]
    phases = [(system, kind) for run in range(runs) for kind in kinds for system in alternate(("crucial", "redis"), run)]

    results: dict[tuple[str, str], list[float]] = {}
    with _sigterm(), RedisServer() as rs, crucial_cluster(args.nodes) as cluster:
        wargs = (args.procs, args.threads, args.objects, duration, phases, cluster.dso, rs.port)
        log(f"{args.nodes} crucial nodes, redis on port {rs.port}; {args.threads} threads in {args.procs} processes")
        with ProcessGroup(args.procs, len(phases), worker, wargs, env=cluster.env_vars()) as group:
            for i, (system, kind) in enumerate(phases):
                group.start_phase()
                reports = group.collect()
                ops = sum(x["ops"] for x in reports)
                rate = ops / duration
                results.setdefault((system, kind), []).append(rate)
                log(f"phase {i + 1}/{len(phases)}: {system:8s} {kind:8s} {rate:10.0f} ops/s")

    out: dict[str, Any] = {
        "benchmark": "dso_throughput",
        "threads": args.threads,
        "processes": args.procs,
        "objects": args.objects,
        "crucial_nodes": args.nodes,
        "duration_s": duration,
        "runs": runs,
        "multiplications": MULTIPLICATIONS,
    }
    for kind in kinds:
        ours = median(results[("crucial", kind)])
        peer = median(results[("redis", kind)])
        out[f"crucial_{kind}_ops_s"] = round(ours, 1)
        out[f"redis_{kind}_ops_s"] = round(peer, 1)
        out[f"ratio_vs_redis_{kind}"] = ratio(ours, peer)
    # the complex op's goal is scale-out's (scaleout.py: on >= 8 cores); here one node per core of this machine
    out["goals"] = {"ratio_vs_redis_simple": ">= 1.0"} if "simple" in kinds else {}
    out["labels"] = {
        f"ratio_vs_redis_{kind}": {
            "simple": f"throughput, one multiplication, {args.threads} threads in {args.procs} processes vs Redis INCR (ops/s)",
            "complex": f"throughput, 10 000 multiplications in a user method vs Lua, {args.nodes} nodes (ops/s)",
        }[kind]
        for kind in kinds
    }
    out["hiredis"] = hiredis_version()
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
