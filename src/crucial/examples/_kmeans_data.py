"""The k-means example's data: spark-perf's generator, written as one ``.npy`` file per partition.

The seed (§3.4.2) clusters a dataset made by spark-perf's ``KMeansDataGenerator``
and split into one file per function, so that each function reads only its
own partition.  :func:`generate` does the same here: ``k`` centres, each at a
random point of the cube ``[-s, s]^dim`` with ``s`` a random integer in
``[-10, 10)`` (one per centre), random cluster weights, and every point a
centre picked by weight plus ``N(0, 1)`` noise in each dimension.  As in
spark-perf, the model comes from ``seed`` and each partition from its own
generator (``seed`` and its index), so partitions can be written (or, on a
cluster, generated) independently -- here per block of :data:`BLOCK` rows
rather than per partition, so that the points do not depend on how many
partitions they are split into: every system compared sees the same data.

A directory holds ``part-00000.npy`` ... (float64, one row per point),
``init.npy`` (the ``k`` initial centroids: distinct points of the data,
drawn from ``seed``, the same for every system that is compared) and
``meta.json`` (the parameters: :func:`ensure` reuses a directory whose
parameters match and rewrites one whose parameters do not).

Both the single-machine original and the crucial port import this module,
so the two files differ only where the port changes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

#: rows drawn from one generator (the unit of generation, independent of the partitioning)
BLOCK = 1 << 14

__all__ = [
    "ensure",
    "generate",
    "load_all",
    "load_init",
    "load_partition",
    "partition_sizes",
    "read_meta",
    "sklearn_reference",
]


def partition_sizes(points: int, partitions: int) -> list[int]:
    """Rows per partition: as equal as possible, the first ones one larger."""
    base, extra = divmod(points, partitions)
    return [base + (1 if i < extra else 0) for i in range(partitions)]


def _model(k: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """spark-perf's centres and cumulative cluster weights, from ``seed``."""
    rng = np.random.default_rng(seed)
    scale = rng.integers(-10, 10, size=k)  # rng.nextInt(20) - 10 in spark-perf
    weights = rng.random(k)
    cumulative = np.cumsum(weights / weights.sum())
    centres = (2 * rng.random((k, dim)) - 1) * scale[:, None]
    return centres, cumulative


def _block(centres: np.ndarray, cumulative: np.ndarray, seed: int, block: int) -> np.ndarray:
    """Rows ``[block * BLOCK, (block + 1) * BLOCK)``: a centre picked by weight, plus unit Gaussian noise."""
    rng = np.random.default_rng([seed, block])
    which = np.minimum(np.searchsorted(cumulative, rng.random(BLOCK)), len(centres) - 1)
    return centres[which] + rng.standard_normal((BLOCK, centres.shape[1]))


def _rows(centres: np.ndarray, cumulative: np.ndarray, seed: int, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of the data set, cut from the blocks that hold them."""
    first, last = start // BLOCK, (stop - 1) // BLOCK
    blocks = np.concatenate([_block(centres, cumulative, seed, b) for b in range(first, last + 1)])
    return blocks[start - first * BLOCK : stop - first * BLOCK]


def generate(directory: str | os.PathLike[str], points: int, dim: int, k: int, partitions: int, seed: int = 0) -> Path:
    """Write a dataset of ``points`` points in ``partitions`` files under ``directory``; return its path."""
    if min(points, dim, k, partitions) < 1:
        raise ValueError("points, dim, k and partitions must be positive")
    if points < k:
        raise ValueError(f"{points} points cannot seed {k} distinct initial centroids")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").unlink(missing_ok=True)  # a half-written directory is never reused
    for old in path.glob("part-*.npy"):
        old.unlink()
    centres, cumulative = _model(k, dim, seed)
    chosen = np.sort(np.random.default_rng([seed, 1 << 31]).choice(points, size=k, replace=False))
    init = np.empty((k, dim))
    first = 0
    for part, rows in enumerate(partition_sizes(points, partitions)):
        block = _rows(centres, cumulative, seed, first, first + rows)
        np.save(path / f"part-{part:05d}.npy", block)
        mine = chosen[(chosen >= first) & (chosen < first + rows)]
        init[np.searchsorted(chosen, mine)] = block[mine - first]
        first += rows
    np.save(path / "init.npy", init)
    meta = _meta(points, dim, k, partitions, seed)
    (path / "meta.json").write_text(json.dumps(meta) + "\n")
    return path


def _meta(points: int, dim: int, k: int, partitions: int, seed: int) -> dict[str, Any]:
    return {
        "generator": "spark-perf KMeansDataGenerator",
        "points": points,
        "dim": dim,
        "k": k,
        "partitions": partitions,
        "seed": seed,
    }


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters a directory was generated with; empty if it holds no (complete) data set."""
    try:
        meta = json.loads((Path(directory) / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def ensure(directory: str | os.PathLike[str], points: int, dim: int, k: int, partitions: int, seed: int = 0) -> Path:
    """``directory`` holding this dataset: reused when its parameters match, generated otherwise."""
    if read_meta(directory) == _meta(points, dim, k, partitions, seed):
        return Path(directory)
    return generate(directory, points, dim, k, partitions, seed)


def load_partition(directory: str | os.PathLike[str], part: int) -> np.ndarray:
    """One thread's points: the only file it reads."""
    return np.load(Path(directory) / f"part-{part:05d}.npy")


def load_init(directory: str | os.PathLike[str]) -> np.ndarray:
    return np.load(Path(directory) / "init.npy")


def load_all(directory: str | os.PathLike[str]) -> np.ndarray:
    """Every point, partitions in order (for the single-machine reference)."""
    parts = sorted(Path(directory).glob("part-*.npy"))
    return np.concatenate([np.load(p) for p in parts])


def sklearn_reference(directory: str | os.PathLike[str], iterations: int) -> tuple[np.ndarray, float, int]:
    """scikit-learn's Lloyd k-means from the same initial centroids: (centres, inertia, iterations).

    ``tol=0``: only ``iterations`` or an assignment that no longer changes
    stops it, as ``--threshold 0`` does for the examples.  (It moves an empty
    cluster's centre to a far point where the examples, like Spark MLlib,
    keep it in place; the data here rarely empties a cluster.)
    """
    from sklearn.cluster import KMeans

    init = load_init(directory)
    km = KMeans(n_clusters=len(init), init=init, n_init=1, algorithm="lloyd", max_iter=iterations, tol=0.0)
    km.fit(load_all(directory))
    return km.cluster_centers_, float(km.inertia_), int(km.n_iter_)
