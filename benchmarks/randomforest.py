"""scikit-learn random forest fit on cloud threads (joblib backend "crucial") vs joblib's loky.

    python benchmarks/randomforest.py [--quick | --smoke] [--runs N] [--samples S] [--features F] [--trees 50,200]

Each run generates a classification problem (``make_classification``, seed =
the run's number, so every run ships new data and no worker has it cached)
and fits a ``RandomForestClassifier(n_estimators=T, n_jobs=2,
random_state=0)`` on it under ``parallel_config(backend=B)`` for each
backend B and tree count T; the clock covers ``fit`` only (no OOB score).
The two forests of a run must predict the same labels (checked).

* **crucial**: every joblib batch of trees is a cloud function on the
  ``local`` backend's warm worker processes; the training matrix (above
  joblib's ``max_nbytes``, "1M") is uploaded once per fit to the embedded
  DSO node and fetched once by each worker, by reference.  Warm: the node,
  the fork server and two workers exist before timing.
* **loky**: joblib's default process backend, reusable executor warmed up
  before timing; the training matrix is memory-mapped (``max_nbytes``).

Backends alternate run by run.  The last line of stdout is a JSON object
with the median fit seconds, the throughputs (trees fitted per second) and
``ratio_vs_loky_<T>`` = crucial throughput / loky throughput (= loky time /
crucial time; > 1: crucial is faster); ``ratio_vs_loky`` is the lower of
them (goal: >= 0.9).  ``paired_ratio_vs_loky_<T>`` is the median of the
runs' own ratios (each run's two fits are back to back), which a host whose
speed drifts between runs disturbs less.  Everything started is stopped.
"""

from __future__ import annotations

import os
import time
from typing import Any

from _common import alternate, by_mode, emit, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm

BACKENDS = ("crucial", "loky")
JOBS = 2


def make_data(samples: int, features: int, seed: int) -> tuple[Any, Any, Any]:
    """Training rows, labels, and rows to compare the forests' predictions on."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=samples + 500, n_features=features, n_informative=features // 2, n_redundant=0, random_state=seed
    )
    return X[:samples], y[:samples], X[samples:]


def fit(backend: Any, trees: int, X: Any, y: Any) -> tuple[float, Any]:
    """Seconds to fit the forest under ``backend``, and the forest."""
    from joblib import parallel_config
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=trees, n_jobs=JOBS, random_state=0)
    with parallel_config(backend=backend):
        t0 = time.perf_counter()
        forest.fit(X, y)
        return time.perf_counter() - t0, forest


def warm_up(crucial_backend: Any) -> None:
    """Start what both sides reuse: loky's executor; the DSO node, fork server and workers of crucial."""
    from crucial.compute import get_backend

    X, y, _ = make_data(2000, 10, 12345)
    for _ in range(3):
        fit("loky", 2 * JOBS, X, y)
        fit(crucial_backend, 2 * JOBS, X, y)
        if get_backend("local").size >= JOBS:
            break


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=None, help="training rows (default 20000; --quick 6000)")
    p.add_argument("--features", type=int, default=None, help="columns (default 40; --quick 48: X above 1 MiB)")
    p.add_argument("--trees", default=None, help="forest sizes (default 50,200; --smoke 4)")
    args = p.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    samples = args.samples or by_mode(args, 20_000, 6000, 300)
    features = args.features or by_mode(args, 40, 48, 8)
    sizes = [int(s) for s in (args.trees or by_mode(args, "50,200", "50,200", "4")).split(",") if s]
    runs = args.runs or by_mode(args, 7, 3, 1)
    seconds: dict[str, list[float]] = {f"{b}_{t}": [] for b in BACKENDS for t in sizes}

    import crucial.integrations.joblib as cj
    from crucial.client._default import stop_embedded
    from crucial.compute import get_backend

    crucial_backend = cj.CrucialBackend()  # one instance: its upload counters add up over the runs
    with _sigterm():
        try:
            log("warming up (loky's executor; crucial's node, fork server and workers) ...")
            warm_up(crucial_backend)
            workers = get_backend("local").stats["workers_started"]
            stats0 = dict(crucial_backend.uploads.stats)
            for run in range(runs):
                X, y, X_check = make_data(samples, features, seed=run)
                for trees in sizes:
                    predictions = {}
                    for name in alternate(BACKENDS, run):
                        sec, forest = fit(crucial_backend if name == "crucial" else name, trees, X, y)
                        predictions[name] = forest.predict(X_check)
                        seconds[f"{name}_{trees}"].append(sec)
                        log(f"run {run + 1}/{runs} {trees:4d} trees {name:8s} fit {sec:6.2f} s ({trees / sec:6.1f} trees/s)")
                    if not (predictions["crucial"] == predictions["loky"]).all():
                        raise RuntimeError(f"the forests of run {run + 1} ({trees} trees) predict differently")
            stats = {k: v - stats0.get(k, 0) for k, v in crucial_backend.uploads.stats.items()}
            stats["task_bytes_max"] = crucial_backend.uploads.stats["task_bytes_max"]
            workers_after = get_backend("local").stats["workers_started"]
        finally:
            get_backend("local").close()
            stop_embedded()

    out: dict[str, Any] = {"benchmark": "randomforest", "samples": samples, "features": features, "trees": sizes}
    out.update({"n_jobs": JOBS, "runs": runs, "ratio_is": "throughput (trees/s): crucial / loky = loky time / crucial time"})
    for key, values in seconds.items():
        out[f"{key}_fit_s"] = round(median(values), 4)
    for trees in sizes:
        for name in BACKENDS:
            out[f"{name}_{trees}_trees_s"] = round(trees / out[f"{name}_{trees}_fit_s"], 2)
        out[f"ratio_vs_loky_{trees}"] = ratio(out[f"crucial_{trees}_trees_s"], out[f"loky_{trees}_trees_s"])
        # the same, run by run (the two fits of a run are back to back): robust to the host's speed drifting
        pairs = zip(seconds[f"loky_{trees}"], seconds[f"crucial_{trees}"], strict=True)
        out[f"paired_ratio_vs_loky_{trees}"] = round(median([loky / ours for loky, ours in pairs]), 4)
    out["ratio_vs_loky"] = min(out[f"ratio_vs_loky_{t}"] for t in sizes)
    # what crucial shipped: one upload of X per fit, the rest by reference; batches = cloud functions
    out["crucial_fits"] = runs * len(sizes)
    out["crucial_uploads"] = stats["uploads"]
    out["crucial_uploaded_mb"] = round(stats["uploaded_bytes"] / 1e6, 1)
    out["crucial_batches"] = stats["tasks"]
    out["crucial_batch_bytes_max"] = stats["task_bytes_max"]
    out["crucial_workers_before_timing"] = workers
    out["crucial_workers_started"] = workers_after
    out["loadavg_1m_before"] = load_before
    out["goals"] = {"ratio_vs_loky": ">= 0.9"}
    out["labels"] = {
        f"ratio_vs_loky_{t}": f"random forest fit, {t} trees, crucial vs loky joblib backends (trees/s)" for t in sizes
    }
    out["labels"]["ratio_vs_loky"] = "random forest, the lower of the two (trees/s)"
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
