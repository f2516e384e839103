"""Logistic regression, 100 iterations on 2 cores: crucial (cloud threads + a shared model) vs Spark MLlib and scikit-learn.

    python benchmarks/logreg.py [--quick | --smoke] [--runs N] [--points P] [--features F] [--iterations I] [--no-spark]

The seed's Figure 5a (section 3.4.2) on one machine.  One data set
(``crucial.examples._logreg_data``: P labelled points, F features, two
partitions of ``.npy``), and every system trains a logistic regression with
an intercept and no regularisation on it:

* **crucial**: ``crucial.examples.logreg.fit`` -- two cloud threads on the
  ``local`` backend, each reading its partition; per iteration each computes
  its partition's gradient with NumPy, adds it to the ``@crucial.shared``
  model with one call (the last one takes the step on the node), waits at a
  ``crucial.Barrier`` and reads the new weights.  Full-batch gradient
  descent, constant step.  Warm: embedded DSO node, fork server and two
  workers exist before timing.  The workers run NumPy's BLAS on one thread
  (``OPENBLAS_NUM_THREADS=1``: one core per cloud thread, as one core per
  Spark task).  Timed: the **iterative phase**, from the barrier that starts
  the iterations once both partitions are loaded to the last step (the
  slower thread's laps); also start to join.
* **spark**: ``pyspark.mllib.classification.LogisticRegressionWithSGD.train``
  -- the seed's peer, still in pyspark 4 (deprecated) -- in local mode,
  ``local[2]``, on an RDD of ``LabeledPoint`` in 2 partitions cached before
  timing, with ``iterations=I, miniBatchFraction=1.0`` (every iteration a
  full pass: broadcast the weights, ``treeAggregate`` the gradient and
  loss, step on the driver), ``regParam=0, regType=None, intercept=True,
  convergenceTol=0`` (so exactly I iterations).  The same work per iteration
  as crucial; only the step schedule differs (``step / sqrt(t)``) and the
  intercept starts at 1.  Timed: the iterative phase as ``T(I) - T(0)``, two
  calls on the same cached RDD, with I and with 0 iterations -- each call
  first converts the Python RDD to JVM objects and validates it, which
  ``T(0)`` measures; also ``T(I)`` whole.  One warm-up call first (JIT).
* **sklearn**: ``LogisticRegression(C=inf, max_iter=I, tol=0)`` (L-BFGS, one
  process; BLAS on both cores) on the whole data set in memory: up to I
  L-BFGS iterations, each at least one full pass.  Timed: ``fit``.
* **numpy**: the same gradient descent as crucial in one process on the
  whole data set (BLAS on both cores); its final weights must equal
  crucial's to 1e-9 (checked).
* **threading**: ``crucial.examples.original.logreg.fit``, the
  single-machine original of the port (2 threads, BLAS on one thread each,
  its faster setting).
* **lithops_redis**: the seed's PyWren-style peer, as in ``kmeans.py``: 2
  Lithops localhost functions run the same gradient on their partitions
  with the model in Redis -- one Lua script call per share (the last one
  steps the weights inside Redis), the INCR + BLPOP barrier, one ``MGET`` of
  the state (``benchmarks/_logreg_redis.py``).  Compared on the shared-state
  access per iteration on the critical path (``_common.access_times``; goal
  ``ratio_vs_lithops_redis`` <= 0.5), and its weights must equal crucial's.

Systems alternate run by run.  The last line of stdout is a JSON object with
the medians and ``ratio_vs_<peer>`` = crucial's iterative phase / the peer's
(< 1: crucial is faster; goal ``ratio_vs_spark`` <= 1.0),
``ratio_vs_<peer>_wall`` with crucial's start-to-join, the final mean
logistic loss of each system, and crucial's per-iteration breakdown.
scikit-learn's L-BFGS converges in about a dozen iterations where gradient
descent takes its I, so ``ratio_vs_sklearn`` compares two algorithms as
much as two systems; ``ratio_vs_sklearn_per_iteration`` divides each time by
its own iteration count.
"""

from __future__ import annotations

import contextlib
import multiprocessing.util
import os
import statistics
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from _common import access_times, alternate, by_mode, emit, environ, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm

THREADS = 2
STEP = 1.0
SYSTEMS = ("crucial", "spark", "sklearn", "numpy", "threading", "lithops_redis")


def mean_loss(w: Any, x: Any, y: Any) -> float:
    """Mean logistic loss of weights ``w`` (intercept last): the figure every system is judged by."""
    import numpy as np

    z = x @ w[:-1] + w[-1]
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


# --------------------------------------------------------------------------- one run per system


def crucial_run(directory: str, iterations: int) -> dict[str, Any]:
    from crucial.examples import logreg
    from crucial.examples._timing import mean_per_iteration

    result = logreg.fit(directory, THREADS, iterations, STEP)
    phases = mean_per_iteration(result.watches)
    out = {"wall": result.seconds, "weights": result.weights, "phases": phases, **access_times(result.watches)}
    return out | {"iterating": result.iterating}


def threading_run(directory: str, iterations: int) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from crucial.examples.original import logreg as original

    with threadpool_limits(1):
        result = original.fit(directory, THREADS, iterations, STEP)
    return {"iterating": result.iterating, "wall": result.seconds, "weights": result.weights}


def numpy_run(x: Any, y: Any, iterations: int) -> dict[str, Any]:
    """Full-batch gradient descent in one process, as crucial's threads do it together."""
    import numpy as np

    xb = np.column_stack([x, np.ones(len(y))])  # data preparation, not timed (as loading is not for the others)
    t0 = time.perf_counter()
    w = np.zeros(xb.shape[1])
    for _ in range(iterations):
        z = xb @ w
        w = w - (STEP / len(y)) * (xb.T @ (np.exp(z - np.logaddexp(0.0, z)) - y))
    seconds = time.perf_counter() - t0
    return {"iterating": seconds, "wall": seconds, "weights": w}


def sklearn_run(x: Any, y: Any, iterations: int) -> dict[str, Any]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=np.inf, max_iter=iterations, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached, which is the point
        t0 = time.perf_counter()
        model.fit(x, y)
        seconds = time.perf_counter() - t0
    w = np.append(model.coef_[0], model.intercept_[0])
    return {"iterating": seconds, "wall": seconds, "weights": w, "n_iter": int(model.n_iter_[0])}


def spark_call(rdd: Any, iterations: int) -> tuple[float, Any]:
    """Seconds of one ``LogisticRegressionWithSGD.train`` call, and its weights (intercept last)."""
    import numpy as np
    from pyspark.mllib.classification import LogisticRegressionWithSGD

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "Deprecated in 2.0.0": it is the seed's peer
        t0 = time.perf_counter()
        model = LogisticRegressionWithSGD.train(
            rdd,
            iterations=iterations,
            step=STEP,
            miniBatchFraction=1.0,
            regParam=0.0,
            regType=None,
            intercept=True,
            convergenceTol=0.0,
        )
        seconds = time.perf_counter() - t0
    return seconds, np.append(model.weights.toArray(), model.intercept)


def spark_run(rdd: Any, iterations: int) -> dict[str, Any]:
    setup, _ = spark_call(rdd, 0)
    whole, w = spark_call(rdd, iterations)
    return {"iterating": whole - setup, "wall": whole, "weights": w, "setup": setup}


# --------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def spark_rdd(x: Any, y: Any) -> Iterator[Any]:
    """A local[2] session and the data as a cached RDD of LabeledPoint in 2 partitions (loaded before timing)."""
    from _spark import spark_session
    from pyspark.mllib.regression import LabeledPoint

    with spark_session(cores=THREADS) as spark:
        t0 = time.perf_counter()
        rdd = spark.sparkContext.parallelize([LabeledPoint(float(label), row) for label, row in zip(y, x, strict=True)], THREADS)
        rdd.cache().count()
        log(f"  spark: data cached in {time.perf_counter() - t0:.1f} s")
        yield rdd


def warm_crucial(directory: str) -> None:
    """Embedded node, fork server and two workers with one BLAS thread each, before timing."""
    from crucial.compute import get_backend

    with environ(OPENBLAS_NUM_THREADS="1"):  # the fork server (and every worker forked from it) starts with it
        for _ in range(3):
            crucial_run(directory, 5)
            if get_backend("local").size >= THREADS:
                break


def java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        return out.stderr.splitlines()[0] if out.stderr else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------- main


def measure(args: Any, directory: str, x: Any, y: Any, runs: int) -> dict[str, list[dict[str, Any]]]:
    """``runs`` runs of every system, in alternating order; the first run of each system is preceded by a warm-up."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in args.systems}
    with contextlib.ExitStack() as stack:
        rdd = stack.enter_context(spark_rdd(x, y)) if "spark" in args.systems else None
        redis, port = None, 0
        if "lithops_redis" in args.systems:
            from _common import RedisServer, lithops_tempdir, redis_client

            multiprocessing.util.get_temp_dir()  # made now, not under Lithops' private TMPDIR (removed before exit)
            port = stack.enter_context(RedisServer()).port
            redis = redis_client(port)
            stack.enter_context(lithops_tempdir())
        log("warming up: spark (one call), crucial (node, fork server, workers), threading, sklearn ...")
        if rdd is not None:
            spark_call(rdd, by_mode(args, 10, 2, 1))
        warm_crucial(directory)
        threading_run(directory, 5)
        sklearn_run(x, y, 5)
        for run in range(runs):
            for system in alternate(args.systems, run):
                if system == "crucial":
                    r = crucial_run(directory, args.iterations)
                elif system == "spark":
                    r = spark_run(rdd, args.iterations)
                elif system == "sklearn":
                    r = sklearn_run(x, y, args.iterations)
                elif system == "numpy":
                    r = numpy_run(x, y, args.iterations)
                elif system == "lithops_redis":
                    from _logreg_redis import lithops_run

                    r = lithops_run(redis, port, directory, args.features, args.iterations, STEP)
                else:
                    r = threading_run(directory, args.iterations)
                r["loss"] = mean_loss(r["weights"], x, y)
                out[system].append(r)
                extra = f" (T(0) {r['setup']:.2f} s)" if "setup" in r else ""
                if "access" in r:
                    extra += f", shared state + sync {1e3 * r['access']:.2f} ms per iteration on the critical path"
                log(
                    f"run {run + 1}/{runs} {system:9s} iterating {r['iterating']:7.3f} s, wall {r['wall']:7.3f} s{extra}, "
                    f"final loss {r['loss']:.6f}"
                )
            check(out, x, y)
    return out


def check(out: dict[str, list[dict[str, Any]]], x: Any, y: Any) -> None:
    """crucial, the threading original, one NumPy process and Lithops + Redis run the same algorithm: the same weights."""
    import numpy as np

    for system in ("threading", "numpy", "lithops_redis"):
        if out.get(system) and out["crucial"]:
            a, b = out["crucial"][-1]["weights"], out[system][-1]["weights"]
            if not np.allclose(a, b, rtol=1e-9, atol=1e-12):
                raise RuntimeError(f"crucial and {system} disagree on the weights: {a[:3]} vs {b[:3]}")


def summarise(args: Any, runs: int, out: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "logreg", "points": args.points, "features": args.features, "threads": THREADS}
    result.update({"iterations": args.iterations, "step": STEP, "runs": runs})
    for system, rs in out.items():
        result[f"{system}_iterating_s"] = round(median([r["iterating"] for r in rs]), 4)
        result[f"{system}_wall_s"] = round(median([r["wall"] for r in rs]), 4)
        result[f"{system}_final_loss"] = round(statistics.fmean(r["loss"] for r in rs), 6)
    if "spark" in out:
        result["spark_setup_s"] = round(median([r["setup"] for r in out["spark"]]), 4)
    result["sklearn_n_iter"] = out["sklearn"][-1]["n_iter"]
    phases = out["crucial"][0]["phases"].keys()
    result["crucial_ms_per_iteration"] = {p: round(1e3 * median([r["phases"][p] for r in out["crucial"]]), 3) for p in phases}
    for peer in args.systems[1:]:
        if peer == "lithops_redis":  # as kmeans.py: what the shared state and its barrier add per iteration
            for system in ("crucial", peer):
                for name in ("access", "access_mean", "shared_state"):
                    result[f"{system}_{name}_ms"] = round(1e3 * median([r[name] for r in out[system]]), 3)
            result[f"ratio_vs_{peer}"] = ratio(result["crucial_access_ms"], result[f"{peer}_access_ms"])
            result[f"ratio_vs_{peer}_seed_mean"] = ratio(result["crucial_access_mean_ms"], result[f"{peer}_access_mean_ms"])
            continue
        result[f"ratio_vs_{peer}"] = ratio(result["crucial_iterating_s"], result[f"{peer}_iterating_s"])
        result[f"ratio_vs_{peer}_wall"] = ratio(result["crucial_wall_s"], result[f"{peer}_wall_s"])
    # L-BFGS stops long before max_iter; per iteration (each about one full pass) is the closer comparison of the machinery
    per_sk = result["sklearn_iterating_s"] / result["sklearn_n_iter"]
    result["ratio_vs_sklearn_per_iteration"] = ratio(result["crucial_iterating_s"] / args.iterations, per_sk)
    return result


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=None, help="labelled points (default 100000; --quick 5000, --smoke 500)")
    p.add_argument("--features", type=int, default=None, help="features per point (default 100, as the seed; --smoke 10)")
    p.add_argument("--iterations", type=int, default=None, help="iterations (default 100, as the seed; --quick 50, --smoke 5)")
    p.add_argument("--no-spark", action="store_true", help="skip the Spark peer")
    p.add_argument("--no-lithops", action="store_true", help="skip the Lithops + Redis peer")
    args = p.parse_args()
    args.points = args.points or by_mode(args, 100_000, 5_000, 500)
    args.features = args.features or by_mode(args, 100, 100, 10)
    args.iterations = args.iterations or by_mode(args, 100, 50, 5)
    skip = {"spark"} if args.no_spark else set()
    args.systems = [s for s in SYSTEMS if s not in skip | ({"lithops_redis"} if args.no_lithops else set())]
    runs = args.runs or by_mode(args, 5, 3, 1)  # --quick: 3, so each system goes first once and the median means something
    if min(args.points, args.features, args.iterations, runs) < 1:
        p.error("--points, --features, --iterations and --runs must be positive")
    load_before = round(os.getloadavg()[0], 2)

    from _spark import ensure_pyspark

    spark_version = None if args.no_spark else ensure_pyspark()
    from crucial.client._default import stop_embedded
    from crucial.compute import get_backend
    from crucial.examples import _logreg_data as data

    with _sigterm(), tempfile.TemporaryDirectory(prefix=f"bench-logreg-{uuid.uuid4().hex[:6]}-") as tmp:
        try:
            t0 = time.perf_counter()
            directory = str(data.generate(tmp, args.points, args.features, THREADS, seed=0))
            x, y = data.load_all(directory)
            seconds = time.perf_counter() - t0
            log(f"data: {args.points:,} points x {args.features} features in {THREADS} partitions ({seconds:.1f} s)")
            out = measure(args, directory, x, y, runs)
        finally:
            get_backend("local").close()
            stop_embedded()

    result = summarise(args, runs, out)
    result["crucial_blas_threads_per_worker"] = 1
    result["pyspark"] = spark_version
    result["java"] = None if args.no_spark else java_version()
    result["loadavg_1m_before"] = load_before  # other load on the machine skews both sides
    result["goals"] = {"ratio_vs_spark": "<= 1.0"} if "spark" in args.systems else {}
    if "lithops_redis" in args.systems:
        result["goals"]["ratio_vs_lithops_redis"] = "<= 0.5"
    names = {"spark": "Spark MLlib SGD local[2]", "sklearn": "scikit-learn L-BFGS", "numpy": "one NumPy process"}
    names["threading"] = "the threading original"
    result["labels"] = {
        f"ratio_vs_{p}": f"logistic regression, iterating, vs {names[p]} (time)" for p in names if p in args.systems
    }
    if "lithops_redis" in args.systems:
        result["labels"]["ratio_vs_lithops_redis"] = "logistic regression vs Lithops + Redis: shared-state access per iteration"
    result.update(meta(args))
    emit(result)


if __name__ == "__main__":
    main()
