"""k-means clustering with plain threads on one machine: the original that ``crucial.examples.kmeans`` ports.

The seed's Listing 5 before the move to serverless: ``--threads`` threads,
each owning one partition of the points (one ``.npy`` file, read by that
thread only), run Lloyd's iterations in lockstep, starting together at a
barrier once every partition is loaded.  Per iteration a thread
assigns its points to the nearest centroid, hands its partial sums and
counts to the shared ``GlobalCentroids`` object -- which aggregates them and,
once every thread's share is in, computes the new centroids, the largest
centre move (the convergence delta) and advances the iteration counter --
and waits at a ``threading.Barrier``.  It stops after ``--iterations``
iterations or once no centre moved more than ``--threshold``.

The shared object protects itself with a ``threading.Lock``; NumPy releases
the GIL in the matrix products, so the threads use several cores.

    python -m crucial.examples.original.kmeans --points 200000 --dim 20 --k 25 --threads 2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

try:
    import numpy as np
except ImportError:  # numpy is an optional extra of crucial
    raise SystemExit("the k-means example needs numpy: pip install 'crucial[examples]'") from None

from crucial.examples import _kmeans_data as data
from crucial.examples._blas import one_blas_thread
from crucial.examples._timing import Stopwatch, breakdown, plot_functions

#: rows of a partition whose distances to all centroids are computed at once (bounds the memory)
CHUNK = 4096


class GlobalCentroids:
    """Listing 5's shared state: the centroids, the convergence delta and the iteration counter.

    Threads hand in their partial sums with :meth:`update`; the call that
    completes an iteration computes the new centroids, the delta and the
    next iteration number in the same step, so the three always agree: a
    thread that starts over reads where the computation stands with one
    :meth:`get`.  Shares are kept per partition, so handing one in twice
    (a retried thread) replaces it instead of counting it twice, and they
    are summed in partition order, so the result does not depend on who
    came first.
    """

    def __init__(self, centroids: Any, parties: int) -> None:
        self._lock = threading.Lock()
        self.centroids = np.array(centroids, dtype=float)
        self.parties = parties
        self.iteration = 0  # iterations completed: where a (re)started thread resumes
        self.delta = math.inf  # how far the last iteration moved the centre that moved most
        self.sizes = np.zeros(len(self.centroids), dtype=np.int64)  # points per cluster, last iteration
        self._shares: dict[int, tuple[Any, Any]] = {}

    def cluster_sizes(self) -> Any:
        """Points per cluster in the last iteration (a cluster left empty keeps its centre)."""
        with self._lock:
            return self.sizes.copy()

    def get(self) -> tuple[int, Any, float]:
        """(iteration, centroids, delta): everything a thread needs to run the next iteration."""
        with self._lock:
            return self.iteration, self.centroids.copy(), self.delta

    def update(self, iteration: int, part: int, sums: Any, counts: Any) -> bool:
        """Hand in partition ``part``'s sums and counts for ``iteration``; ``False`` if that iteration is over."""
        if not 0 <= part < self.parties:
            raise ValueError(f"partition {part} is not one of the {self.parties}")
        with self._lock:
            if iteration != self.iteration:
                return False
            self._shares[part] = (np.asarray(sums, dtype=float), np.asarray(counts, dtype=np.int64))
            if len(self._shares) == self.parties:
                self._complete()
            return True

    def _complete(self) -> None:
        """The last share of an iteration is in: new centroids (an empty cluster keeps its centre)."""
        sums = sum(self._shares[p][0] for p in range(self.parties))
        counts = sum(self._shares[p][1] for p in range(self.parties))
        moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], self.centroids)
        self.delta = float(np.sqrt(((moved - self.centroids) ** 2).sum(axis=1)).max())
        self.centroids, self.sizes = moved, counts
        self.iteration += 1
        self._shares.clear()


def assign(points: Any, norms: Any, centroids: Any) -> tuple[Any, Any, float]:
    """The local step: partial sums and counts per nearest centroid, and the points' cost."""
    k = len(centroids)
    sums = np.zeros_like(centroids)
    counts = np.zeros(k, dtype=np.int64)
    cost = 0.0
    half_sq = 0.5 * (centroids**2).sum(axis=1)
    for start in range(0, len(points), CHUNK):
        block = points[start : start + CHUNK]
        scores = block @ centroids.T  # |x - c|^2 = |x|^2 - 2 (x.c - |c|^2 / 2)
        scores -= half_sq
        labels = scores.argmax(axis=1)
        here = np.bincount(labels, minlength=k)  # the block's points per cluster
        starts = np.cumsum(here) - here  # where each cluster's points begin once sorted by label
        sums[here > 0] += np.add.reduceat(block[labels.argsort(kind="stable")], starts[here > 0])
        counts += here
        best = scores[np.arange(len(block)), labels]
        cost += float(np.maximum(norms[start : start + CHUNK] - 2 * best, 0.0).sum())
    return sums, counts, cost


def cluster(part: int, directory: str, centroids: GlobalCentroids, barrier: Any, iterations: int, threshold: float) -> Any:
    """One thread (Listing 5's ``run()``): returns its partition's final cost and its Stopwatch."""
    points = data.load_partition(directory, part)  # this thread's file only
    norms = (points**2).sum(axis=1)
    watch = Stopwatch()
    barrier.wait()  # all loaded: iterate together (and a thread run again takes the wait its predecessor missed)
    with one_blas_thread():
        iteration, centres, delta = centroids.get()  # line 12: resume at the shared iteration counter
        while iteration < iterations and delta > threshold:  # line 21
            with watch.phase("compute"):
                sums, counts, _ = assign(points, norms, centres)  # line 16
            with watch.phase("shared state"):
                centroids.update(iteration, part, sums, counts)  # lines 17-18
            with watch.phase("sync"):
                barrier.wait()  # line 19
            with watch.phase("shared state"):
                iteration, centres, delta = centroids.get()  # lines 14 and 20
            watch.lap()
        return assign(points, norms, centres)[2], watch


@dataclass
class Result:
    iterations: int  # run, in all
    delta: float  # the last iteration's largest centre move
    cost: float  # sum of squared distances to the nearest final centroid (scikit-learn's inertia)
    centroids: Any
    sizes: Any  # points per cluster in the last iteration
    watches: list[Stopwatch]
    seconds: float  # the threads, start to end

    @property
    def iterating(self) -> float:
        """Seconds of the iterative phase: the slowest thread's laps (loading and start-up excluded)."""
        return max((sum(sum(lap.values()) for lap in w.laps) for w in self.watches), default=0.0)


def parse(argv: list[str] | None, prog: str, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--points", type=int, default=200_000, help="points in the dataset (default 200000)")
    parser.add_argument("--dim", type=int, default=20, help="dimensions of a point (default 20)")
    parser.add_argument("--k", type=int, default=25, help="clusters (default 25)")
    parser.add_argument("--threads", type=int, default=2, help="threads, one partition each (default 2)")
    parser.add_argument("--iterations", type=int, default=10, help="most iterations (default 10)")
    parser.add_argument("--threshold", type=float, default=1e-4, help="stop once no centre moves more (default 1e-4)")
    parser.add_argument("--data", default=None, help="directory of the partition files (reused; default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data and initial centroids")
    parser.add_argument("--check", action="store_true", help="compare with scikit-learn from the same initial centroids")
    parser.add_argument("--plot", metavar="PATH", help="draw a timeline of the cloud functions to PATH (crucial[plot])")
    args = parser.parse_args(argv)
    if min(args.points, args.dim, args.k, args.threads) < 1:
        parser.error("--points, --dim, --k and --threads must be positive")
    if args.iterations < 0 or args.threshold < 0:
        parser.error("--iterations and --threshold cannot be negative")
    if args.points < args.k or args.points < args.threads:
        parser.error(f"--points ({args.points}) must be at least --k ({args.k}) and --threads ({args.threads})")
    return args


def gather(futures: list[concurrent.futures.Future[Any]], barrier: Any) -> list[Any]:
    """The threads' results; on the first failure, break the barrier (the others would wait forever) and raise it."""
    done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
    for f in futures:
        if f in done and f.exception() is not None:
            barrier.abort()  # the others would wait at it forever
            f.result()  # re-raises the failure
    return [f.result() for f in futures]


def fit(directory: str, threads: int, iterations: int, threshold: float) -> Result:
    """Cluster the data set in ``directory`` (one partition per thread), starting from its initial centroids."""
    if data.read_meta(directory).get("partitions") != threads:
        raise ValueError(f"{directory} does not hold a data set of {threads} partitions")
    centroids = GlobalCentroids(data.load_init(directory), threads)
    barrier = threading.Barrier(threads)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as ex:  # all at once: they meet at the barrier
        futures = [ex.submit(cluster, part, directory, centroids, barrier, iterations, threshold) for part in range(threads)]
        outcomes = gather(futures, barrier)
    seconds = time.perf_counter() - start
    iteration, final, delta = centroids.get()
    sizes = centroids.cluster_sizes()
    cost = sum(c for c, _ in outcomes)
    return Result(iteration, delta, cost, final, sizes, [w for _, w in outcomes], seconds)


def report(args: argparse.Namespace, result: Result, directory: str) -> None:
    print(f"k-means: {args.points:,} points x {args.dim} dimensions, k = {args.k}, {args.threads} threads")
    print(f"{result.iterations} iterations, final delta {result.delta:.3g}, cost {result.cost:.6g}")
    print(f"{result.iterating:.3f} s iterating ({result.seconds:.3f} s from start to end of the threads)")
    print(breakdown(result.watches))
    if (result.sizes == 0).any():
        print(f"{int((result.sizes == 0).sum())} clusters were empty in the last iteration (they keep their centres)")
    if args.check:
        centres, inertia, _ = data.sklearn_reference(directory, result.iterations)
        diff = float(np.abs(centres - result.centroids).max())
        print(f"scikit-learn from the same initial centroids: max centre difference {diff:.2e}, inertia {inertia:.6g}")


def main(argv: list[str] | None = None) -> Result:
    args = parse(argv, f"python -m {__spec__.name if __spec__ else __name__}", __doc__.split("\n\n")[0])
    with tempfile.TemporaryDirectory(prefix="kmeans-") as tmp:
        directory = str(data.ensure(args.data or tmp, args.points, args.dim, args.k, args.threads, args.seed))
        result = fit(directory, args.threads, args.iterations, args.threshold)
        report(args, result, directory)
    plot_functions(args.plot)
    return result


if __name__ == "__main__":
    main()
