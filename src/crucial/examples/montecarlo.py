"""Monte Carlo estimate of pi by cloud threads sharing one counter.

The seed's Listing 1: every cloud thread throws random points at the unit
square, counts those inside the quarter circle, and adds its count to one
shared ``AtomicInt`` with a single ``add_and_get`` at the end.  The ratio of
hits to points tends to pi/4.  ``--mode executor`` runs the same estimators
through ``ServerlessExecutor.invoke_all`` instead: the seed's Listing 2.

With nothing configured, the first shared object starts an embedded DSO node
and the cloud threads run on the ``local`` backend (warm worker processes).

    python -m crucial.examples.montecarlo --threads 4 --points 1000000
    python -m crucial.examples.montecarlo --mode executor
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from dataclasses import dataclass

import crucial


class PiEstimator:
    """Listing 1, lines 1-17: a plain callable whose only shared state is ``counter``."""

    def __init__(self, counter: crucial.AtomicInt, iterations: int, seed: int) -> None:
        self.counter = counter  # the @Shared AtomicLong of line 5: a proxy, it travels with the thread
        self.iterations = iterations
        self.seed = seed

    def __call__(self) -> int:  # run(), lines 7-16
        rand = random.Random(self.seed).random
        count = 0
        for _ in range(self.iterations):
            x, y = rand(), rand()
            if x * x + y * y <= 1.0:
                count += 1
        self.counter.add_and_get(count)  # line 15: one call to the DSO per thread
        return count


@dataclass
class Result:
    estimate: float
    counter: int  # the shared counter at the end
    counts: list[int]  # what each cloud thread added
    threads: int
    points: int  # in all
    seconds: float


def with_threads(tasks: list[PiEstimator], backend: str | None) -> list[int]:
    """Listing 1, lines 19-24: fork-join with cloud threads."""
    threads = [crucial.CloudThread(target=task, backend=backend) for task in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [t.result() for t in threads]  # re-raises a thread's exception, if any


def with_executor(tasks: list[PiEstimator], backend: str | None) -> list[int]:
    """Listing 2: the same fork-join through the serverless executor."""
    with crucial.ServerlessExecutor(backend) as se:
        return [f.result() for f in se.invoke_all(tasks)]


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(prog="python -m crucial.examples.montecarlo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=("threads", "executor"),
        default="threads",
        help="Listing 1 (CloudThread, the default) or Listing 2 (ServerlessExecutor.invoke_all)",
    )
    parser.add_argument("--threads", type=int, default=4, help="cloud threads (default 4)")
    parser.add_argument("--points", type=int, default=1_000_000, help="points per cloud thread (default 1e6)")
    parser.add_argument("--backend", default=None, help="compute backend: local (default), inline, lithops")
    parser.add_argument("--seed", type=int, default=0, help="thread i draws from random.Random(seed + i)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.points < 1:
        parser.error("--threads and --points must be positive")

    counter = crucial.AtomicInt(0, key=f"montecarlo-{uuid.uuid4().hex}/counter")
    counter.get()  # the first call creates it (and starts the embedded node if none is configured)
    print(f"DSO nodes: {os.environ.get('CRUCIAL_DSO', '(from the configuration file)')}")
    tasks = [PiEstimator(counter, args.points, args.seed + i) for i in range(args.threads)]
    start = time.perf_counter()
    run = with_threads if args.mode == "threads" else with_executor
    counts = run(tasks, args.backend)
    elapsed = time.perf_counter() - start
    total = args.threads * args.points
    hits = counter.get()
    output = 4.0 * hits / total  # line 25
    counter.delete()

    what = "cloud threads" if args.mode == "threads" else "functions of ServerlessExecutor.invoke_all"
    print(f"pi ~= {output:.6f} from {total:,} points by {args.threads} {what}")
    print(f"the shared counter holds the sum of the threads' counts: {hits == sum(counts)}")
    print(f"{total / elapsed:,.0f} points/s ({elapsed:.2f} s wall)")
    return Result(output, hits, counts, args.threads, total, elapsed)


if __name__ == "__main__":
    main()
