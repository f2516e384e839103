"""Labelled points for the logistic regression examples, written as one ``.npy`` file per partition.

The generator follows Spark MLlib's ``LogisticRegressionDataGenerator`` (the
one spark-perf's logistic regression test drives, and so the seed's data): a
point's label is 0 or 1 and its features are standard normal noise around a
mean that depends on the label.  The two class means are :data:`SEPARATION`
apart whatever the number of features, so the classes overlap by the same
amount (the best possible accuracy is about 89 %) in every size: separable-ish
with noise, as a classifier's test data should be.

Each partition is ``part-NNNNN.npy``, an ``(rows, 1 + features)`` float64
array whose column 0 is the label: a thread memory-maps or reads only its own
file, as the seed's cloud threads read only their own S3 object.  Point ``i``
is the same whatever the number of partitions (rows come from fixed blocks,
each with its own random stream), so the data of a run with 2 threads and of
one with 8 are the same points, split differently.  ``meta.json`` says what
the directory holds, so a directory is reused only for the same request.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SEPARATION", "ensure", "generate", "load_all", "load_partition", "partition_bounds", "read_meta"]

#: distance between the two class means, in standard deviations of the noise
SEPARATION = 2.5
#: rows drawn from one random stream; fixed, so the points do not depend on the partitioning
BLOCK = 1 << 14
_META = "meta.json"


def partition_bounds(points: int, partitions: int) -> list[tuple[int, int]]:
    """Rows ``[start, stop)`` of each partition: contiguous, sizes differing by at most one (as ``np.array_split``)."""
    size, extra = divmod(points, partitions)
    bounds, start = [], 0
    for p in range(partitions):
        stop = start + size + (p < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def _block(seed: int, index: int, features: int) -> np.ndarray:
    """Rows ``index * BLOCK ...`` of the data set: label column then features."""
    rng = np.random.default_rng([seed, index])
    labels = rng.integers(0, 2, size=BLOCK).astype(np.float64)
    shift = SEPARATION / math.sqrt(features)  # per feature: the means are SEPARATION apart in all
    x = rng.standard_normal((BLOCK, features)) + (labels[:, None] - 0.5) * shift
    return np.column_stack([labels, x])


def _rows(seed: int, start: int, stop: int, features: int) -> np.ndarray:
    """Rows ``[start, stop)``, drawn block by block (only the blocks they overlap)."""
    first, last = start // BLOCK, (stop - 1) // BLOCK
    rows = np.concatenate([_block(seed, b, features) for b in range(first, last + 1)])
    return rows[start - first * BLOCK : stop - first * BLOCK]


def generate(directory: str | Path, points: int, features: int, partitions: int, seed: int = 0) -> Path:
    """Write ``partitions`` partition files of ``points`` labelled points in all; return the directory."""
    if min(points, features, partitions) < 1:
        raise ValueError("points, features and partitions must be positive")
    if partitions > points:
        raise ValueError(f"{partitions} partitions of {points} points: some would be empty")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / _META).unlink(missing_ok=True)  # a half-written directory is never taken for a finished one
    for old in out.glob("part-*.npy"):
        old.unlink()
    for p, (start, stop) in enumerate(partition_bounds(points, partitions)):
        np.save(out / f"part-{p:05d}.npy", _rows(seed, start, stop, features))
    meta = {"points": points, "features": features, "partitions": partitions, "seed": seed, "separation": SEPARATION}
    (out / _META).write_text(json.dumps(meta))
    return out


def read_meta(directory: str | Path) -> dict[str, Any] | None:
    """What ``directory`` holds, or ``None`` when it holds no finished data set."""
    try:
        meta: dict[str, Any] = json.loads((Path(directory) / _META).read_text())
    except (OSError, ValueError):
        return None
    return meta


def ensure(directory: str | Path, points: int, features: int, partitions: int, seed: int = 0) -> Path:
    """The directory, (re)generating its data unless it already holds exactly this request."""
    wanted = {"points": points, "features": features, "partitions": partitions, "seed": seed, "separation": SEPARATION}
    if read_meta(directory) == wanted:
        return Path(directory)
    return generate(directory, points, features, partitions, seed)


def load_partition(directory: str | Path, part: int) -> tuple[np.ndarray, np.ndarray]:
    """Partition ``part``: features ``(rows, features)`` and labels ``(rows,)``, both float64."""
    rows = np.load(Path(directory) / f"part-{part:05d}.npy")
    return np.ascontiguousarray(rows[:, 1:]), np.ascontiguousarray(rows[:, 0])


def load_all(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole data set, partitions in order (for the references: NumPy, scikit-learn, Spark)."""
    meta = read_meta(directory)
    if meta is None:
        raise FileNotFoundError(f"{directory}: no logistic regression data set (no {_META})")
    parts = [load_partition(directory, p) for p in range(meta["partitions"])]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
