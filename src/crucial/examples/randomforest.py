"""A random forest trained on cloud threads: scikit-learn with the ``crucial`` joblib backend.

The port of ``crucial.examples.original.randomforest`` (the seed's §3.4.4
ports the Smile random forest to cloud threads), changed in two lines:
``import crucial.integrations.joblib`` registers the backend, and
``parallel_config(backend="crucial")`` replaces ``"loky"``.  Each joblib
batch of trees is built by a cloud function; the training matrix goes to
the DSO once, by reference, instead of being pickled into every batch.
The program prints the fit time, the held-out accuracy and the out-of-bag
score -- the same as the original's for the same ``--seed`` -- with a
timing breakdown.

    python -m crucial.examples.randomforest --samples 20000 --features 40 --trees 100 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from crucial.examples._timing import plot_functions

try:
    from joblib import parallel_config
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split
except ImportError:  # pragma: no cover - an optional extra
    raise SystemExit("this example needs scikit-learn: pip install 'crucial[examples]'") from None

import crucial.integrations.joblib  # noqa: F401  (registers the joblib backend "crucial")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000, help="rows of the generated dataset (default 20000)")
    parser.add_argument("--features", type=int, default=40, help="columns of the generated dataset (default 40)")
    parser.add_argument("--trees", type=int, default=100, help="trees in the forest (default 100)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="trees built at once (default: the cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the forest (default 0)")
    parser.add_argument("--plot", metavar="PATH", help="draw a timeline of the cloud functions to PATH (crucial[plot])")
    args = parser.parse_args(argv)
    if min(args.samples, args.features, args.trees) < 1 or args.samples < 8 or args.features < 4:
        parser.error("--samples must be at least 8, --features at least 4, --trees positive")
    return args


def make_data(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """The dataset, split 3:1 into training and held-out rows."""
    informative = max(2, args.features // 2)
    X, y = make_classification(
        n_samples=args.samples, n_features=args.features, n_informative=informative, n_redundant=0, random_state=args.seed
    )
    return train_test_split(X, y, test_size=0.25, random_state=args.seed)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse(argv)
    times: dict[str, float] = {}
    start = time.perf_counter()
    X_train, X_test, y_train, y_test = make_data(args)
    times["data"] = time.perf_counter() - start

    forest = RandomForestClassifier(n_estimators=args.trees, n_jobs=args.jobs, oob_score=True, random_state=args.seed)
    start = time.perf_counter()
    with parallel_config(backend="crucial"):  # the trees are built by cloud functions
        forest.fit(X_train, y_train)
    times["fit"] = time.perf_counter() - start

    start = time.perf_counter()
    accuracy = float((forest.predict(X_test) == y_test).mean())
    times["predict"] = time.perf_counter() - start

    rows, cols = X_train.shape
    print(f"{args.trees} trees on {rows:,} x {cols} training rows ({args.jobs} jobs): fit in {times['fit']:.2f} s")
    print(f"held-out accuracy {accuracy:.4f} on {len(y_test):,} rows, out-of-bag score {forest.oob_score_:.4f}")
    print("time: " + ", ".join(f"{name} {sec:.2f} s" for name, sec in times.items()))
    plot_functions(args.plot)
    return {"accuracy": accuracy, "oob_score": float(forest.oob_score_), **{f"{k}_s": v for k, v in times.items()}}


if __name__ == "__main__":
    main()
