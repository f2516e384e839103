"""Barrier crossings with 8, 32 and 128 processes: ``crucial.Barrier`` vs the classic Redis barrier.

    python benchmarks/barrier.py [--quick | --smoke] [--runs N] [--crossings N] [--sizes 8,32,128]

``max(sizes)`` processes are spawned once; for each size the first ``parties``
of them cross a fresh barrier ``crossings`` times back to back, the others
sit the phase out.  Only the crossing loop is timed: every process has
connected and crossed a few warm-up times, and all start together on a
``multiprocessing`` barrier.  Time per crossing = (last end - first start) /
crossings, with ``time.monotonic`` (one clock for all processes).

* crucial: ``crucial.Barrier(parties, key=...).wait()`` on one node.
* Redis (redis-py + hiredis): each arrival ``INCR``s a generation counter
  key; the last arrival of a generation ``RPUSH``es ``parties - 1`` tokens to
  that generation's list, the others ``BLPOP`` it.

The last line of stdout is a JSON object with the median time per crossing
per system and size and ``ratio_vs_redis_<size>`` = crucial / Redis (goal:
<= 0.4 at 128).  The systems alternate their order run by run.  Workers import only what they use, to stay small.
"""

from __future__ import annotations

import time
from typing import Any

from _common import (
    Link,
    ProcessGroup,
    RedisBarrier,
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
)
from _common import terminate_as_interrupt as _sigterm

WARMUP = 3


def worker(link: Link, phases: list[tuple[str, int, str]], crossings: int, dso: str, port: int) -> None:
    """One participant: for each phase it takes part in, warm up, start with everyone, cross, report."""
    clients: dict[str, Any] = {}
    for system, parties, name in phases:
        barrier: Any = None
        if link.index < parties:
            if system == "crucial":
                if "crucial" not in clients:
                    import crucial

                    clients["crucial"] = crucial.connect(dso)
                import crucial

                barrier = crucial.Barrier(parties, key=name)
            else:
                if "redis" not in clients:
                    from _common import redis_client

                    clients["redis"] = redis_client(port, socket_timeout=None)  # waits may be long
                barrier = RedisBarrier(clients["redis"], name, parties)
            for _ in range(WARMUP):
                barrier.wait()
        link.start()
        if barrier is None:
            link.report(None)
            continue
        t0 = time.monotonic()
        for _ in range(crossings):
            barrier.wait()
        t1 = time.monotonic()
        link.report((t0, t1))
    for c in clients.values():
        c.close()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--crossings", type=int, default=None, help="timed crossings per run (default 200, --quick 20, --smoke 5)")
    p.add_argument("--sizes", default=None, help="numbers of participant processes (default 8,32,128; --smoke 2,4)")
    args = p.parse_args()
    sizes = [int(x) for x in (args.sizes or by_mode(args, "8,32,128", "8,32,128", "2,4")).split(",")]
    crossings = args.crossings or by_mode(args, 200, 20, 5)
    runs = args.runs or by_mode(args, 5, 2, 1)
    phases = [
        (system, size, f"bench-barrier-{system}-{size}-{run}")
        for run in range(runs)
        for size in sizes
        for system in alternate(("crucial", "redis"), run)
    ]

    per_crossing: dict[tuple[str, int], list[float]] = {}
    with _sigterm(), RedisServer() as rs, crucial_cluster(1) as cluster:
        nprocs = max(sizes)
        log(f"starting {nprocs} worker processes ...")
        t = time.monotonic()
        wargs = (phases, crossings, cluster.dso, rs.port)
        with ProcessGroup(nprocs, len(phases), worker, wargs, env=cluster.env_vars()) as group:
            for i, (system, size, _name) in enumerate(phases):
                group.start_phase()
                if i == 0:
                    log(f"workers ready after {time.monotonic() - t:.1f} s")
                spans = [x for x in group.collect() if x is not None]
                ms = (max(e for _, e in spans) - min(s for s, _ in spans)) / crossings * 1000
                per_crossing.setdefault((system, size), []).append(ms)
                log(f"phase {i + 1}/{len(phases)}: {system:8s} {size:4d} parties  {ms:8.3f} ms per crossing")

    out: dict[str, Any] = {"benchmark": "barrier", "crossings": crossings, "runs": runs, "sizes": sizes}
    for size in sizes:
        ours = median(per_crossing[("crucial", size)])
        peer = median(per_crossing[("redis", size)])
        out[f"crucial_{size}_ms"] = round(ours, 4)
        out[f"redis_{size}_ms"] = round(peer, 4)
        out[f"ratio_vs_redis_{size}"] = ratio(ours, peer)
    out["goals"] = {f"ratio_vs_redis_{max(sizes)}": "<= 0.4"} if max(sizes) >= 128 else {}
    out["labels"] = {f"ratio_vs_redis_{n}": f"barrier crossing, {n} processes, vs the INCR+BLPOP barrier (time)" for n in sizes}
    out["hiredis"] = hiredis_version()
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
