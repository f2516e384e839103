"""Monte Carlo estimate of pi by several processes sharing DSO objects.

Each worker process throws random points at the unit square and adds the
hits inside the quarter circle to one shared ``Counter`` -- one call per
batch, the seed's Listing 1.  A shared ``Barrier`` makes every worker wait
until all have added their share, after which each reads the same final
tally; a ``@shared`` class keeps per-worker statistics on the node.

With no ``CRUCIAL_DSO`` set, the first shared object starts an embedded node
that the worker processes reach through the environment it exports.

    python -m crucial.examples.montecarlo --workers 4 --points 2000000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import time

import crucial


@crucial.shared
class RunStats:
    """Per-worker statistics, updated on the node one call at a time."""

    def __init__(self) -> None:
        self.points: dict[int, int] = {}
        self.seconds: dict[int, float] = {}

    def report(self, worker: int, points: int, seconds: float) -> int:
        self.points[worker] = self.points.get(worker, 0) + points
        self.seconds[worker] = self.seconds.get(worker, 0.0) + seconds
        return len(self.points)

    def summary(self) -> dict[str, float]:
        return {"workers": len(self.points), "points": sum(self.points.values()), "max_seconds": max(self.seconds.values())}


def worker(index: int, points: int, batch: int, run: str, parties: int) -> tuple[int, float]:
    hits = crucial.Counter(key=f"{run}/hits")
    stats = RunStats(key=f"{run}/stats")
    done = crucial.Barrier(parties, key=f"{run}/done")
    rng = random.Random(index)
    start = time.perf_counter()
    left = points
    while left:
        n = min(batch, left)
        inside = sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
        hits.increment(inside)
        left -= n
    stats.report(index, points, time.perf_counter() - start)
    done.wait(timeout=600)  # everyone has added their hits past this point
    return index, 4.0 * hits.tally() / (points * parties)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m crucial.examples.montecarlo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--points", type=int, default=1_000_000, help="points per worker (default 1e6)")
    parser.add_argument("--batch", type=int, default=100_000, help="points per shared-counter update")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.points < 1 or args.batch < 1:
        parser.error("--workers, --points and --batch must be positive")

    run = f"montecarlo-{time.time_ns()}"
    client = crucial.connect()  # CRUCIAL_DSO if set, else an embedded node
    print(f"DSO nodes: {', '.join(client.nodes)}")
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        results = pool.starmap(worker, [(i, args.points, args.batch, run, args.workers) for i in range(args.workers)])
    elapsed = time.perf_counter() - start
    estimates = {est for _, est in results}
    summary = RunStats.attach(f"{run}/stats").summary()
    total = int(summary["points"])
    print(f"pi ~= {estimates.pop():.6f} from {total:,} points by {int(summary['workers'])} processes")
    print(f"every worker read the same tally after the barrier: {not estimates}")
    print(f"{total / elapsed:,.0f} points/s ({elapsed:.2f} s wall, slowest worker {summary['max_seconds']:.2f} s)")
    crucial.Counter.attach(f"{run}/hits").delete()
    RunStats.attach(f"{run}/stats").delete()
    crucial.Barrier.attach(f"{run}/done").delete()


if __name__ == "__main__":
    main()
