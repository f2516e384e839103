"""Logistic regression by gradient descent, ported through the drop-in modules.

``crucial.examples.original.logreg`` with ``from crucial import shared,
threading`` for ``import threading`` and ``@shared`` on the model: the
trainers (``threading.Thread`` subclasses) become cloud threads, the
barrier a DSO barrier, and what a trainer leaves in its attributes comes
back when it ends, as a thread's would.  Nothing else changed.

    python -m crucial.examples.dropin.logreg --points 100000 --features 100 --threads 4 --iterations 100
"""

from __future__ import annotations

import argparse
import tempfile
from crucial import shared, threading
import time
from dataclasses import dataclass
from typing import Protocol

try:
    import numpy as np
except ImportError:  # NumPy comes with the examples extra
    raise SystemExit("this example needs NumPy: pip install 'crucial[examples]'") from None

from crucial.examples import _logreg_data as data
from crucial.examples._blas import one_blas_thread
from crucial.examples._timing import Stopwatch, breakdown, plot_functions

PROG = f"python -m {__spec__.name if __spec__ else __name__}"


def gradient(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Sums over the partition, at weights ``w`` (the last one is the intercept): gradient, loss, correct predictions.

    Sums rather than means, so the model adds the partitions' sums and
    divides once by the total count: uneven partitions weigh what they hold.
    """
    z = x @ w[:-1] + w[-1]
    softplus = np.logaddexp(0.0, z)  # log(1 + e^z) without overflow
    residual = np.exp(z - softplus) - y  # sigmoid(z) - y
    grad = np.append(x.T @ residual, residual.sum())
    loss = float(np.sum(softplus - y * z))
    correct = int(np.count_nonzero((z > 0) == (y > 0.5)))
    return grad, loss, correct


@shared
class Model:
    """The shared weights, the iteration counter and the history; it protects itself with a lock.

    A partition's sums go into the partition's own slot and the last
    contribution of an iteration adds the slots up *in partition order*: the
    weights are then the same whatever order the threads arrive in (floating
    point addition is not associative), and a thread that contributes twice
    (a retry) replaces its sums instead of adding them again.
    """

    def __init__(self, features: int, partitions: int, step: float) -> None:
        self._lock = threading.Lock()
        self.weights = np.zeros(features + 1)
        self.step = step
        self.iteration = 0
        self.losses: list[float] = []
        self.accuracies: list[float] = []
        self._slots: list[tuple[np.ndarray, float, int, int] | None] = [None] * partitions

    def contribute(self, iteration: int, part: int, grad: np.ndarray, loss: float, correct: int, count: int) -> bool:
        """Record partition ``part``'s sums for ``iteration``; ``False`` (ignored) once that iteration is over."""
        with self._lock:
            if iteration != self.iteration:
                return False
            self._slots[part] = (grad, loss, correct, count)
            if all(slot is not None for slot in self._slots):
                self._step()
            return True

    def _step(self) -> None:
        """Every partition is in: record the loss and accuracy, and move the weights down the mean gradient."""
        slots = [slot for slot in self._slots if slot is not None]
        count = sum(slot[3] for slot in slots)
        total = slots[0][0].copy()
        for slot in slots[1:]:
            total += slot[0]
        self.losses.append(sum(slot[1] for slot in slots) / count)
        self.accuracies.append(sum(slot[2] for slot in slots) / count)
        self.weights = self.weights - (self.step / count) * total  # a new array: readers keep theirs
        self.iteration += 1
        self._slots = [None] * len(self._slots)

    def current(self) -> tuple[int, np.ndarray]:
        """The iteration to run next and the weights to run it from."""
        with self._lock:
            return self.iteration, self.weights

    def history(self) -> tuple[list[float], list[float]]:
        """Loss and accuracy at the weights each iteration started from."""
        with self._lock:
            return list(self.losses), list(self.accuracies)


class BarrierLike(Protocol):
    """What a thread needs of its barrier: ``threading.Barrier.wait``."""

    def wait(self, timeout: float | None = None) -> int: ...


def train(model: Model, barrier: BarrierLike, directory: str, part: int, iterations: int) -> Stopwatch:
    """One thread: load partition ``part``, then iterate -- gradient, contribute, barrier, new weights."""
    x, y = data.load_partition(directory, part)  # this thread's partition only
    watch = Stopwatch()
    barrier.wait()  # every partition is loaded: the iterations start together
    with one_blas_thread():  # one core's worth of work per thread (OpenBLAS would start a thread per core in each)
        iteration, weights = model.current()  # the shared counter: a thread run again resumes where the others are
        while iteration < iterations:
            with watch.phase("compute"):
                grad, loss, correct = gradient(x, y, weights)
            with watch.phase("shared state"):
                model.contribute(iteration, part, grad, loss, correct, len(y))
            with watch.phase("sync"):
                barrier.wait()
            with watch.phase("shared state"):
                iteration, weights = model.current()
            watch.lap()
    return watch


class Trainer(threading.Thread):
    """The thread of one partition; its Stopwatch is kept as ``watch`` and returned by ``run``."""

    def __init__(self, model: Model, barrier: BarrierLike, directory: str, part: int, iterations: int) -> None:
        super().__init__(name=f"logreg-{part}")
        self.job = (model, barrier, directory, part, iterations)

    def run(self) -> Stopwatch:  # type: ignore[override]  # threading.Thread.run returns nothing
        self.watch = train(*self.job)
        return self.watch


@dataclass
class Result:
    weights: np.ndarray  # the last one is the intercept
    losses: list[float]  # mean logistic loss at the start of each iteration
    accuracies: list[float]  # training accuracy, likewise
    watches: list[Stopwatch]  # one per thread
    seconds: float  # start to join of the threads

    @property
    def iterating(self) -> float:
        """Seconds of the iterative phase: the slowest thread's laps (loading and start-up excluded)."""
        return max(sum(sum(lap.values()) for lap in w.laps) for w in self.watches)


def fit(directory: str, threads: int, iterations: int, step: float) -> Result:
    """Train on the data set in ``directory`` (one partition per thread) for ``iterations`` steps."""
    meta = data.read_meta(directory)
    if meta is None or meta["partitions"] != threads:
        raise ValueError(f"{directory} does not hold a data set of {threads} partitions")
    model = Model(meta["features"], threads, step)
    barrier = threading.Barrier(threads)
    workers = [Trainer(model, barrier, directory, part, iterations) for part in range(threads)]
    start = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    seconds = time.perf_counter() - start
    watches = [t.watch for t in workers]
    losses, accuracies = model.history()
    _, weights = model.current()
    return Result(weights, losses, accuracies, watches, seconds)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000, help="labelled points in all (default 100000)")
    parser.add_argument("--features", type=int, default=100, help="features per point (default 100, as the seed)")
    parser.add_argument("--threads", type=int, default=4, help="threads, one partition each (default 4)")
    parser.add_argument("--iterations", type=int, default=100, help="gradient descent steps (default 100)")
    parser.add_argument("--step", type=float, default=1.0, help="step size (default 1.0)")
    parser.add_argument("--data", default=None, help="data set directory, (re)generated if needed (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data generator (default 0)")
    parser.add_argument("--plot", metavar="PATH", help="draw a timeline of the cloud functions to PATH (crucial[plot])")
    args = parser.parse_args(argv)
    if min(args.points, args.features, args.threads, args.iterations) < 1:
        parser.error("--points, --features, --threads and --iterations must be positive")
    if args.threads > args.points:
        parser.error(f"--threads {args.threads} > --points {args.points}: some threads would have no points")
    if not args.step > 0:
        parser.error("--step must be positive")
    return args


def report(args: argparse.Namespace, result: Result) -> None:
    print(f"{args.points:,} points x {args.features} features, {args.threads} threads, {args.iterations} iterations")
    print(f"loss {result.losses[0]:.6f} -> {result.losses[-1]:.6f}, training accuracy {100 * result.accuracies[-1]:.2f} %")
    print(f"{result.iterating:.3f} s iterating ({result.seconds:.3f} s from start to join)")
    print(breakdown(result.watches))


def main(argv: list[str] | None = None) -> Result:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="logreg-") as tmp:
        directory = str(data.ensure(args.data or tmp, args.points, args.features, args.threads, args.seed))
        result = fit(directory, args.threads, args.iterations, args.step)
    report(args, result)
    plot_functions(args.plot)
    return result


if __name__ == "__main__":
    main()
