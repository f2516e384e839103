"""k-means (the seed's Listing 5, Figures 5c and 5d): crucial vs scikit-learn, Lithops + Redis and Spark MLlib.

    python benchmarks/kmeans.py [--quick | --smoke] [--runs N] [--points P] [--dim D] [--ks 25,200]
                                [--no-spark] [--no-lithops]

One data set per ``k`` (spark-perf's generator, ``crucial.examples._kmeans_data``:
``P`` points of ``D`` dimensions around ``k`` centres, 2 partitions of one
``.npy`` file each), the same initial centroids (``k`` points of the data)
and 10 Lloyd iterations with no early stop, 2 cores' worth of workers for
every system:

* **crucial**: ``crucial.examples.kmeans.fit`` -- 2 cloud threads on the
  warm ``local`` backend, the centroids a ``@crucial.shared`` object that
  aggregates the partial sums on the embedded DSO node, a ``crucial.Barrier``.
  The iterative phase is the slowest thread's 10 laps (loading excluded);
* **sklearn**: ``sklearn.cluster.KMeans(init=..., n_init=1, algorithm="lloyd",
  max_iter=10, tol=0)`` on the whole array in this process, 2 OpenMP threads
  (``threadpoolctl``); its ``fit`` (input checks and centring included);
* **lithops_redis**: the seed's PyWren comparison -- 2 Lithops functions
  (localhost backend, 2 worker processes) run the same NumPy loop; the shared
  state is in Redis: each function hands in its partial sums with **one Lua
  script** call (msgpack arrays; the last share of an iteration computes the
  centroids, the delta and the iteration counter inside Redis), reads the state
  back with one ``MGET`` and meets the others at the INCR + BLPOP barrier
  (``benchmarks/barrier.py``).  A barrier before the first iteration keeps
  function start-up out, as the seed's global barrier did;
* **spark**: Spark MLlib's ``KMeans`` (``org.apache.spark.mllib.clustering``,
  the RDD API the seed used) in local mode on 2 cores
  (``benchmarks/_spark.py``), on a cached RDD of the same points, started from
  the same centroids (``setInitialModel``), ``epsilon = 0``; the time of
  ``KMeans.run`` on the cached RDD.

Every system must end at the same centroids (to 1e-6; scikit-learn's only
when no cluster empties: it moves an empty cluster's centre where the others
keep it).  Systems alternate run by run; medians over ``--runs``.  The last
line of stdout is one JSON object with, for each ``k``,
``ratio_vs_sklearn_k<k>`` and ``ratio_vs_spark_k<k>`` = crucial's iterative
phase / the peer's (goal vs Spark: <= 1.0), ``ratio_vs_lithops_redis_k<k>``
= crucial's shared-state + barrier time per iteration on the critical path /
that of Lithops + Redis (Figure 5d; goal <= 0.5; see ``_common.access_times``),
with ``..._seed_mean_k<k>`` (the seed's own definition: the mean over all
workers, waits for the slowest included) and ``..._shared_state_only_k<k>``
beside it, and ``ratio_vs_<peer>`` = the largest over the ``k`` values.
Everything started is stopped at the end.
"""

from __future__ import annotations

import contextlib
import multiprocessing.util
import os
import sys
import tempfile
import time
import uuid
from typing import Any

from _common import (
    RedisBarrier,
    RedisServer,
    access_times,
    alternate,
    by_mode,
    emit,
    hiredis_version,
    lithops_tempdir,
    log,
    median,
    meta,
    parser,
    ratio,
)
from _common import terminate_as_interrupt as _sigterm

ITERATIONS = 10
PARTIES = 2  # the 2 cores: 2 cloud threads, 2 functions, 2 OpenMP threads, local[2]

# The seed's Lua update (Jonas et al.'s recommendation): one atomic script call per share.
# KEYS: iteration, centroids, delta, sums, counts, parts.  ARGV: iteration, part, sums, counts
# (msgpack arrays: k * dim and k numbers), parties.  A share for another iteration, or one
# handed in again, is ignored (0); the last share of an iteration moves the centroids (2).
LUA_UPDATE = """
if tonumber(redis.call('GET', KEYS[1])) ~= tonumber(ARGV[1]) then return 0 end
if redis.call('SADD', KEYS[6], ARGV[2]) == 0 then return 0 end
local sums = cmsgpack.unpack(ARGV[3])
local counts = cmsgpack.unpack(ARGV[4])
local old = redis.call('GET', KEYS[4])
if old then
  local s = cmsgpack.unpack(old)
  for i = 1, #sums do sums[i] = sums[i] + s[i] end
  local c = cmsgpack.unpack(redis.call('GET', KEYS[5]))
  for i = 1, #counts do counts[i] = counts[i] + c[i] end
end
if redis.call('SCARD', KEYS[6]) < tonumber(ARGV[5]) then
  redis.call('SET', KEYS[4], cmsgpack.pack(sums))
  redis.call('SET', KEYS[5], cmsgpack.pack(counts))
  return 1
end
local cent = cmsgpack.unpack(redis.call('GET', KEYS[2]))
local dim = #cent / #counts
local delta = 0
for j = 1, #counts do
  if counts[j] > 0 then
    local move = 0
    for i = (j - 1) * dim + 1, j * dim do
      local v = sums[i] / counts[j]
      move = move + (v - cent[i]) ^ 2
      cent[i] = v
    end
    if move > delta then delta = move end
  end
end
redis.call('SET', KEYS[2], cmsgpack.pack(cent))
redis.call('SET', KEYS[3], cmsgpack.pack(math.sqrt(delta)))
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
redis.call('INCR', KEYS[1])
return 2
"""

STATE_KEYS = ("iteration", "centroids", "delta", "sums", "counts", "parts")


# --------------------------------------------------------------------------- Lithops + Redis


def redis_state(r: Any, keys: list[str], k: int) -> tuple[int, Any, float]:
    """(iteration, centroids, delta) with one MGET."""
    import msgpack
    import numpy as np

    iteration, centroids, delta = r.mget(keys[:3])
    return int(iteration), np.array(msgpack.unpackb(centroids), dtype=float).reshape(k, -1), float(msgpack.unpackb(delta))


def redis_set_up(r: Any, prefix: str, init: Any) -> list[str]:
    """The state keys of one run, holding iteration 0 and the initial centroids."""
    import msgpack

    keys = [f"{prefix}:{name}" for name in STATE_KEYS]
    r.delete(*keys)
    r.mset({keys[0]: 0, keys[1]: msgpack.packb(init.ravel().tolist()), keys[2]: msgpack.packb(float("inf"))})
    return keys


def redis_body(part: int, directory: str, port: int, prefix: str, keys: list[str], k: int) -> tuple[float, Any]:
    """One Lithops function: crucial's thread body with the shared state in Redis (its cost and Stopwatch)."""
    import msgpack
    import redis

    from crucial.examples import _kmeans_data as data
    from crucial.examples._blas import one_blas_thread
    from crucial.examples._timing import Stopwatch
    from crucial.examples.kmeans import assign

    r = redis.Redis(host="127.0.0.1", port=port)
    update = r.register_script(LUA_UPDATE)
    barrier = RedisBarrier(r, f"{prefix}:barrier", PARTIES)
    points = data.load_partition(directory, part)
    norms = (points**2).sum(axis=1)
    update(keys=keys, args=[-1, part, b"", b"", PARTIES])  # loads the script (a no-op call): not timed
    barrier.wait()  # start together: function start-up is not part of the iterations
    watch = Stopwatch()
    with one_blas_thread():
        iteration, centres, delta = redis_state(r, keys, k)
        while iteration < ITERATIONS and delta > 0.0:
            with watch.phase("compute"):
                sums, counts, _ = assign(points, norms, centres)
            with watch.phase("shared state"):
                update(
                    keys=keys,
                    args=[iteration, part, msgpack.packb(sums.ravel().tolist()), msgpack.packb(counts.tolist()), PARTIES],
                )
            with watch.phase("sync"):
                barrier.wait()
            with watch.phase("shared state"):
                iteration, centres, delta = redis_state(r, keys, k)
            watch.lap()
        return assign(points, norms, centres)[2], watch


def lithops_round(r: Any, port: int, directory: str, init: Any) -> dict[str, Any]:
    """One run of the Lithops + Redis k-means, its executor made and stopped around it (as ``invoke.py``)."""
    from lithops import FunctionExecutor

    config = {
        "lithops": {"backend": "localhost", "storage": "localhost", "data_cleaner": False},
        "localhost": {"runtime": sys.executable, "worker_processes": PARTIES},
    }
    prefix = f"bench-kmeans-{uuid.uuid4().hex[:8]}"
    keys = redis_set_up(r, prefix, init)
    k = len(init)
    with contextlib.redirect_stdout(sys.stderr):  # Lithops prints; stdout's last line is ours
        fexec = FunctionExecutor(config=config, log_level="WARNING")
        try:
            futures = fexec.map(redis_body, [(part, directory, port, prefix, keys, k) for part in range(PARTIES)])
            outcomes = fexec.get_result(futures)
        finally:
            fexec.__exit__(None, None, None)
    iteration, centres, _ = redis_state(r, keys, k)
    r.delete(*keys, *r.keys(f"{prefix}:barrier:*"))
    return {**access_times([w for _, w in outcomes]), "centroids": centres, "iterations": iteration}


# --------------------------------------------------------------------------- crucial, scikit-learn, Spark


def crucial_round(directory: str) -> dict[str, Any]:
    from crucial.examples import kmeans

    result = kmeans.fit(directory, PARTIES, ITERATIONS, 0.0)  # stops early only if nothing moves, as epsilon = 0
    out = access_times(result.watches)
    assert abs(out["iterating"] - result.iterating) < 1e-9
    return {**out, "centroids": result.centroids, "iterations": result.iterations, "empty": int((result.sizes == 0).sum())}


def sklearn_round(points: Any, init: Any) -> dict[str, Any]:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    km = KMeans(n_clusters=len(init), init=init, n_init=1, algorithm="lloyd", max_iter=ITERATIONS, tol=0.0)
    with threadpool_limits(limits=PARTIES):
        t0 = time.perf_counter()
        km.fit(points)
        seconds = time.perf_counter() - t0
    return {"iterating": seconds, "centroids": km.cluster_centers_, "iterations": int(km.n_iter_)}


class SparkKMeans:
    """MLlib's KMeans on a cached JVM RDD of the data set: only ``KMeans.run`` is timed."""

    def __init__(self, spark: Any, directory: str, init: Any) -> None:
        from pyspark.mllib.common import _py2java
        from pyspark.mllib.linalg import DenseVector

        from crucial.examples import _kmeans_data as data

        sc = spark.sparkContext
        self.jvm = sc._jvm
        rows = sc.parallelize(range(PARTIES), PARTIES).flatMap(lambda part: data.load_partition(directory, part))
        self.jrdd = _py2java(sc, rows.map(DenseVector)).rdd()  # the vectors live in the JVM from here on
        self.jrdd.persist(self.jvm.org.apache.spark.storage.StorageLevel.MEMORY_ONLY())
        self.count = self.jrdd.count()
        self.init = self.jvm.org.apache.spark.mllib.clustering.KMeansModel(_py2java(sc, [DenseVector(c) for c in init]))
        self.k = len(init)

    def run(self, iterations: int = ITERATIONS) -> dict[str, Any]:
        import numpy as np

        alg = self.jvm.org.apache.spark.mllib.clustering.KMeans()
        alg.setK(self.k).setMaxIterations(iterations).setEpsilon(0.0).setInitialModel(self.init)
        t0 = time.perf_counter()
        model = alg.run(self.jrdd)
        seconds = time.perf_counter() - t0
        centres = np.array([list(v.toArray()) for v in model.clusterCenters()])
        return {"iterating": seconds, "centroids": centres, "iterations": int(model.numIter())}

    def close(self) -> None:
        self.jrdd.unpersist(True)


# --------------------------------------------------------------------------- main


def describe(outcome: dict[str, Any]) -> str:
    text = f"{outcome['iterating']:7.3f} s iterating"
    if "access" in outcome:
        access, mean = 1e3 * outcome["access"], 1e3 * outcome["access_mean"]
        text += f", shared state + sync {access:.2f} ms per iteration on the critical path (mean over workers {mean:.2f})"
    return text


def agree(name: str, ours: dict[str, Any], theirs: dict[str, Any], strict: bool) -> None:
    """Same iterations and centroids (to 1e-6) as crucial; a mismatch is an error when ``strict``."""
    import numpy as np

    diff = float(np.abs(ours["centroids"] - theirs["centroids"]).max())
    same = diff < 1e-6 and ours["iterations"] == theirs["iterations"]
    if not same:
        message = f"{name} disagrees with crucial: max centre difference {diff:.3g}, iterations {theirs['iterations']}"
        if strict:
            raise RuntimeError(message)
        log(f"  note: {message} (scikit-learn moves the centre of an empty cluster; crucial and MLlib keep it)")


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=None, help="points per data set (default 200000; --quick 20000, --smoke 2000)")
    p.add_argument("--dim", type=int, default=None, help="dimensions (default 100, as the seed; --quick 20, --smoke 5)")
    p.add_argument("--ks", default=None, help="values of k (default 25,200, as the seed's Figure 5c; --smoke 3)")
    p.add_argument("--no-spark", action="store_true", help="skip the Spark peer")
    p.add_argument("--no-lithops", action="store_true", help="skip the Lithops + Redis peer")
    args = p.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    points = args.points or by_mode(args, 200_000, 20_000, 2000)
    dim = args.dim or by_mode(args, 100, 20, 5)
    ks = [int(k) for k in (args.ks or by_mode(args, "25,200", "25,200", "3")).split(",") if k]
    runs = args.runs or by_mode(args, 5, 3, 1)  # --quick: 3, so each system goes first once and the median means something
    systems = ["crucial", "sklearn"] + ([] if args.no_lithops else ["lithops_redis"]) + ([] if args.no_spark else ["spark"])
    results: dict[str, list[dict[str, Any]]] = {f"{s}_k{k}": [] for s in systems for k in ks}

    from crucial.client._default import stop_embedded
    from crucial.compute import get_backend
    from crucial.examples import _kmeans_data as data

    with _sigterm(), contextlib.ExitStack() as stack:
        multiprocessing.util.get_temp_dir()  # made now, not under Lithops' private TMPDIR (removed before exit)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="crucial-bench-kmeans-"))
        stack.callback(stop_embedded)
        stack.callback(lambda: get_backend("local").close())
        redis, port = None, 0
        if not args.no_lithops:
            from _common import redis_client

            port = stack.enter_context(RedisServer()).port
            redis = redis_client(port)
            stack.enter_context(lithops_tempdir())
        spark = None
        if not args.no_spark:
            from _spark import ensure_pyspark, spark_session

            log(f"pyspark {ensure_pyspark()}: starting a local[{PARTIES}] session ...")
            spark = stack.enter_context(spark_session(cores=PARTIES))
        for k in ks:
            directory = str(data.generate(os.path.join(tmp, f"k{k}"), points, dim, k, PARTIES, seed=k))
            init, everything = data.load_init(directory), data.load_all(directory)
            log(f"k = {k}: {points:,} points x {dim} dimensions in {PARTIES} partitions; warming up ...")
            crucial_round(directory)  # embedded node, fork server, workers with NumPy imported
            sparkk = None
            if spark is not None:
                sparkk = SparkKMeans(spark, directory, init)
                stack.callback(sparkk.close)
                sparkk.run(by_mode(args, 3, 1, 1))  # the JIT
            for run in range(runs):
                order = alternate(systems, run)
                outcome: dict[str, dict[str, Any]] = {}
                for system in order:
                    if system == "crucial":
                        outcome[system] = crucial_round(directory)
                    elif system == "sklearn":
                        outcome[system] = sklearn_round(everything, init)
                    elif system == "lithops_redis":
                        outcome[system] = lithops_round(redis, port, directory, init)
                    else:
                        assert sparkk is not None
                        outcome[system] = sparkk.run()
                    results[f"{system}_k{k}"].append(outcome[system])
                    log(f"run {run + 1}/{runs} k={k} {system:14s} {describe(outcome[system])}")
                for system in systems[1:]:
                    agree(system, outcome["crucial"], outcome[system], strict=system != "sklearn")
            del everything

    out: dict[str, Any] = {"benchmark": "kmeans", "points": points, "dim": dim, "ks": ks, "iterations": ITERATIONS}
    out.update({"parties": PARTIES, "runs": runs})
    for key, values in results.items():
        out[f"{key}_iterating_s"] = round(median([v["iterating"] for v in values]), 4)
        if values and "access" in values[0]:
            for name in ("access", "access_mean", "shared_state"):
                out[f"{key}_{name}_ms"] = round(1e3 * median([v[name] for v in values]), 3)
    for k in ks:
        out[f"crucial_k{k}_empty_clusters"] = results[f"crucial_k{k}"][-1]["empty"]
        for peer in systems[1:]:
            if peer == "lithops_redis":
                out[f"ratio_vs_{peer}_k{k}"] = ratio(out[f"crucial_k{k}_access_ms"], out[f"{peer}_k{k}_access_ms"])
                for name, field in (("seed_mean", "access_mean"), ("shared_state_only", "shared_state")):
                    mine, theirs = out[f"crucial_k{k}_{field}_ms"], out[f"{peer}_k{k}_{field}_ms"]
                    out[f"ratio_vs_{peer}_{name}_k{k}"] = ratio(mine, theirs)
            else:
                out[f"ratio_vs_{peer}_k{k}"] = ratio(out[f"crucial_k{k}_iterating_s"], out[f"{peer}_k{k}_iterating_s"])
    for peer in systems[1:]:
        out[f"ratio_vs_{peer}"] = max(out[f"ratio_vs_{peer}_k{k}"] for k in ks)
    out["goals"] = {f"ratio_vs_spark_k{k}": "<= 1.0" for k in ks if "spark" in systems}
    names = {"spark": "Spark MLlib local[2] (time)", "sklearn": "scikit-learn lloyd (time)"}
    names["lithops_redis"] = "Lithops + Redis: shared-state access per iteration"
    out["labels"] = {f"ratio_vs_{peer}_k{k}": f"k-means, k = {k}, vs {names[peer]}" for k in ks for peer in systems[1:]}
    if "lithops_redis" in systems:
        out["goals"].update({f"ratio_vs_lithops_redis_k{k}": "<= 0.5" for k in ks})
    out["hiredis"] = hiredis_version()
    out["loadavg_1m_before"] = load_before
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
