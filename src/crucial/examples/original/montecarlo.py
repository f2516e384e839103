"""Monte Carlo estimate of pi by threads sharing one counter: the single-machine original.

Every thread throws random points at the unit square, counts those inside
the quarter circle and adds its count to one counter, a small class that
guards its state with a ``threading.Lock``.  The ratio of hits to points
tends to pi/4.  ``--mode executor`` runs the same estimators as tasks of a
``concurrent.futures.ThreadPoolExecutor`` instead of plain threads.

``crucial.examples.montecarlo`` is this program moved to cloud threads and a
shared counter; ``benchmarks/porting.py`` counts the lines that differ.

    python -m crucial.examples.original.montecarlo --threads 4 --points 1000000
    python -m crucial.examples.original.montecarlo --mode executor
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from crucial.examples._timing import plot_functions


class Counter:
    """The hits of every thread: the total, and each addition on its own.

    The total is a read-modify-write, so the lock makes each addition atomic;
    the list of additions lets the program check that no update was lost.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.additions: list[int] = []

    def add(self, count: int) -> int:
        with self.lock:
            self.total += count
            self.additions.append(count)
            return self.total

    def take(self) -> tuple[int, list[int]]:
        """The total and the additions so far, leaving the counter at zero for the next run."""
        with self.lock:
            taken = self.total, self.additions
            self.total, self.additions = 0, []
            return taken


class PiEstimator:
    """One thread's share of the points; every estimator adds to the one class-level counter."""

    hits = Counter()

    def __init__(self, points: int, seed: int) -> None:
        self.points = points
        self.seed = seed

    def __call__(self) -> int:
        rand = random.Random(self.seed).random
        count = 0
        for _ in range(self.points):
            x, y = rand(), rand()
            if x * x + y * y <= 1.0:
                count += 1
        self.hits.add(count)  # one update of the shared state per thread
        return count


@dataclasses.dataclass
class Result:
    estimate: float
    counter: int  # the counter's total at the end
    counts: list[int]  # what each thread added, in the order they added it
    threads: int
    points: int  # in all
    seconds: float


def with_threads(tasks: list[PiEstimator]) -> None:
    """Fork-join with one thread per estimator."""
    threads = [threading.Thread(target=task) for task in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def with_executor(tasks: list[PiEstimator]) -> None:
    """The same fork-join as tasks of an executor; ``result()`` re-raises a task's exception."""
    with ThreadPoolExecutor(max_workers=len(tasks)) as ex:
        for future in [ex.submit(task) for task in tasks]:
            future.result()


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("threads", "executor"), default="threads", help="threads (default) or executor tasks")
    parser.add_argument("--threads", type=int, default=4, help="threads (default 4)")
    parser.add_argument("--points", type=int, default=1_000_000, help="points per thread (default 1e6)")
    parser.add_argument("--seed", type=int, default=0, help="thread i draws from random.Random(seed + i)")
    parser.add_argument("--plot", metavar="PATH", help="draw a timeline of the cloud functions to PATH (crucial[plot])")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.points < 1:
        parser.error("--threads and --points must be positive")
    return args


def main(argv: list[str] | None = None) -> Result:
    args = parse(argv)
    PiEstimator.hits.take()  # start from zero, whatever an earlier run left
    tasks = [PiEstimator(args.points, args.seed + i) for i in range(args.threads)]
    start = time.perf_counter()
    run = with_threads if args.mode == "threads" else with_executor
    run(tasks)
    elapsed = time.perf_counter() - start
    hits, counts = PiEstimator.hits.take()
    total = args.threads * args.points
    estimate = 4.0 * hits / total

    what = "threads" if args.mode == "threads" else "executor tasks"
    print(f"pi ~= {estimate:.6f} from {total:,} points by {args.threads} {what}")
    print(f"the shared counter holds the sum of the threads' counts: {len(counts) == args.threads and hits == sum(counts)}")
    print(f"{total / elapsed:,.0f} points/s ({elapsed:.2f} s wall)")
    plot_functions(args.plot)
    return Result(estimate, hits, counts, args.threads, total, elapsed)


if __name__ == "__main__":
    main()
