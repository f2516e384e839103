"""Logistic regression (crucial.examples.logreg and its single-machine original) on small sizes.

The port runs on real nodes and real local workers.  Both programs must
follow, iteration by iteration, what a single NumPy process computes with
the same algorithm written independently here (full-batch gradient descent
on the mean logistic loss, intercept last), and their final weights must
classify as well as scikit-learn's ``LogisticRegression`` (unpenalised) does.
A port thread whose worker dies is run again and resumes at the shared
iteration counter without losing or repeating an iteration.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crucial
from crucial.examples import _logreg_data as data
from crucial.examples import logreg
from crucial.examples.original import logreg as logreg_original
from crucial.testing import LocalCluster, unconfigured_env

POINTS, FEATURES, ITERATIONS, STEP = 3001, 6, 30, 1.0  # 3001: the partitions are uneven


def reference(x: np.ndarray, y: np.ndarray, iterations: int, step: float) -> tuple[np.ndarray, list[float], list[float]]:
    """One process, the whole data set: weights after ``iterations`` steps, loss and accuracy before each."""
    xb = np.column_stack([x, np.ones(len(y))])
    w = np.zeros(xb.shape[1])
    losses, accuracies = [], []
    for _ in range(iterations):
        z = xb @ w
        p = 1.0 / (1.0 + np.exp(-z))
        losses.append(float(np.mean(np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0.0) - y * z)))
        accuracies.append(float(np.mean((p > 0.5) == (y == 1.0))))
        w = w - step * xb.T @ (p - y) / len(y)
    return w, losses, accuracies


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(((x @ w[:-1] + w[-1]) > 0) == (y == 1.0)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data set in 3 partitions (the tests' thread count), generated once."""
    return data.generate(tmp_path_factory.mktemp("logreg"), POINTS, FEATURES, 3, seed=7)


def check_against_references(result: Any, directory: Path, iterations: int = ITERATIONS) -> None:
    x, y = data.load_all(directory)
    w, losses, accuracies = reference(x, y, iterations, STEP)
    assert len(result.losses) == len(result.accuracies) == iterations
    np.testing.assert_allclose(result.losses, losses, rtol=1e-9)
    np.testing.assert_allclose(result.weights, w, rtol=1e-9, atol=1e-12)
    assert result.accuracies == pytest.approx(accuracies, abs=1.5 / len(y))  # a point on the boundary may flip
    assert result.losses == sorted(result.losses, reverse=True)  # descent: the step is small enough
    from sklearn.linear_model import LogisticRegression

    sk = LogisticRegression(C=np.inf, max_iter=1000).fit(x, y)
    assert abs(accuracy(result.weights, x, y) - sk.score(x, y)) <= 0.01
    assert len(result.watches) == 3 and all(len(w.laps) == iterations for w in result.watches)


# -- the port, on real nodes --------------------------------------------------------------


def test_port_follows_the_numpy_reference_and_matches_sklearn(dso: LocalCluster, dataset: Path) -> None:
    result = logreg.fit(str(dataset), 3, ITERATIONS, STEP)
    check_against_references(result, dataset)


def test_original_follows_the_numpy_reference_and_matches_sklearn(dataset: Path) -> None:
    result = logreg_original.fit(str(dataset), 3, ITERATIONS, STEP)
    check_against_references(result, dataset)


def test_port_main_generates_data_and_prints_the_breakdown(dso1: LocalCluster, tmp_path: Path, capsys: Any) -> None:
    args = ["--points", "2000", "--features", "4", "--threads", "2", "--iterations", "12", "--data", str(tmp_path / "d")]
    result = logreg.main([*args, "--seed", "3"])
    out = capsys.readouterr().out
    assert "2,000 points x 4 features, 2 threads, 12 iterations\n" in out
    assert f"loss {result.losses[0]:.6f} -> {result.losses[-1]:.6f}, training accuracy" in out
    assert re.search(r"per iteration \(12 iterations, 2 threads\): compute [\d.]+ ms \(\d+%\), shared state [\d.]+ ms", out)
    assert re.search(r"sync [\d.]+ ms \(\d+%\)", out)
    assert result.losses[0] == pytest.approx(np.log(2.0))  # zero weights: every point at probability 1/2
    assert data.read_meta(tmp_path / "d") == {
        "points": 2000,
        "features": 4,
        "partitions": 2,
        "seed": 3,
        "separation": data.SEPARATION,
    }
    original = logreg_original.main([*args, "--seed", "3"])  # the directory is reused, not regenerated
    np.testing.assert_allclose(original.losses, result.losses, rtol=1e-12)
    assert 0 < result.iterating <= result.seconds


def test_model_sums_in_partition_order_and_ignores_repeats(dso1: LocalCluster, key: str) -> None:
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4) * 10.0 ** rng.integers(-8, 8, 4) for _ in range(3)]  # rounding depends on order
    weights = []
    for order in ([0, 1, 2], [2, 0, 1]):
        model = logreg.Model(3, 3, 0.5, key=f"{key}-{order[0]}")
        for part in order:
            assert model.contribute(0, part, grads[part], 1.0, 1, 10)
            assert model.contribute(0, part, grads[part], 1.0, 1, 10) is (part != order[-1])  # a retry replaces
        assert not model.contribute(0, 1, grads[1], 1.0, 1, 10)  # iteration 0 is over
        iteration, w = model.current()
        assert iteration == 1 and model.history() == ([0.1], [0.1])
        weights.append(w)
        model.delete()
    assert weights[0].tobytes() == weights[1].tobytes()
    assert weights[0] == pytest.approx(-(0.5 / 30) * (grads[0] + grads[1] + grads[2]))


class DiesOnce:
    """The model as one thread sees it: the first time it reaches ``at``, its worker process dies."""

    def __init__(self, model: Any, flag: Any, at: int, before_contributing: bool) -> None:
        self.model, self.flag, self.at, self.before = model, flag, at, before_contributing

    def current(self) -> Any:
        return self.model.current()

    def contribute(self, iteration: int, *sums: Any) -> bool:
        if iteration == self.at and self.before and self.flag.compare_and_set(False, True):
            os._exit(3)  # the worker dies: WorkerDiedError, a platform failure, retried
        done = self.model.contribute(iteration, *sums)
        if iteration == self.at and not self.before and self.flag.compare_and_set(False, True):
            os._exit(3)
        return done


class RetriedTrainer(logreg.Trainer):
    """A port thread that is run again (once more at most) when its worker dies."""

    def __init__(self, *job: Any) -> None:
        crucial.CloudThread.__init__(self, name=f"retried-{job[3]}", retry=crucial.Retry(count=1, backoff=0.0))
        self.job = job


@pytest.mark.parametrize("before_contributing", [True, False], ids=["dies-before-contributing", "dies-after"])
def test_a_thread_run_again_resumes_at_the_shared_counter(
    dso1: LocalCluster, dataset: Path, key: str, before_contributing: bool
) -> None:
    model = logreg.Model(FEATURES, 3, STEP, key=f"{key}/model")
    barrier = crucial.Barrier(3, key=f"{key}/barrier")
    flag = crucial.AtomicBool(False, key=f"{key}/died")
    views = [model, DiesOnce(model, flag, 7, before_contributing), model]
    threads = [RetriedTrainer(views[part], barrier, str(dataset), part, ITERATIONS) for part in range(3)]
    for t in threads:
        t.start()
    watches = [t.result(timeout=60) for t in threads]
    assert flag.get()  # it did die
    losses, _ = model.history()
    _, weights = model.current()
    x, y = data.load_all(dataset)
    w, reference_losses, _ = reference(x, y, ITERATIONS, STEP)
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-9)  # no iteration lost, none counted twice
    np.testing.assert_allclose(weights, w, rtol=1e-9, atol=1e-12)
    # the second attempt's laps: from iteration 7 on, or from 8 when its lost attempt's contribution completed 7
    assert len(watches[1].laps) in ({ITERATIONS - 7} if before_contributing else {ITERATIONS - 7, ITERATIONS - 8})
    for proxy in (model, barrier, flag):
        proxy.delete()


# -- command line -------------------------------------------------------------------------


@pytest.mark.parametrize("program", [logreg, logreg_original], ids=["port", "original"])
def test_help(program: Any, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        program.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: python -m {program.__name__}" in out
    for option in ("--points", "--features", "--threads", "--iterations", "--step", "--data", "--seed"):
        assert option in out


@pytest.mark.parametrize("program", [logreg, logreg_original], ids=["port", "original"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--points", "0"], "--points, --features, --threads and --iterations must be positive"),
        (["--iterations", "-1"], "must be positive"),
        (["--threads", "5", "--points", "3"], "--threads 5 > --points 3: some threads would have no points"),
        (["--step", "0"], "--step must be positive"),
        (["--points", "many"], "argument --points: invalid int value: 'many'"),
    ],
)
def test_bad_sizes_are_usage_errors(program: Any, args: list[str], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        program.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_port_as_a_module_with_nothing_configured(tmp_path: Path) -> None:
    # __main__: the model's class and the thread subclass travel by value; an embedded node starts
    args = ["--points", "1500", "--features", "3", "--threads", "2", "--iterations", "5", "--data", str(tmp_path / "d")]
    cmd = [sys.executable, "-m", "crucial.examples.logreg", *args]
    proc = subprocess.run(cmd, env=unconfigured_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1,500 points x 3 features, 2 threads, 5 iterations" in proc.stdout
    assert "per iteration (5 iterations, 2 threads)" in proc.stdout


# -- the data -----------------------------------------------------------------------------


def test_points_do_not_depend_on_the_partitioning(tmp_path: Path) -> None:
    points = data.BLOCK + 5  # rows from two random blocks
    two = data.load_all(data.generate(tmp_path / "two", points, 3, 2, seed=1))
    five = data.load_all(data.generate(tmp_path / "five", points, 3, 5, seed=1))
    assert two[0].shape == (points, 3) and two[1].shape == (points,)
    assert np.array_equal(two[0], five[0]) and np.array_equal(two[1], five[1])
    sizes = [len(data.load_partition(tmp_path / "five", p)[1]) for p in range(5)]
    assert sizes == [stop - start for start, stop in data.partition_bounds(points, 5)] and max(sizes) - min(sizes) <= 1
    assert set(np.unique(two[1])) == {0.0, 1.0} and 0.45 < two[1].mean() < 0.55
    other = data.load_all(data.generate(tmp_path / "other", points, 3, 2, seed=2))
    assert not np.array_equal(two[0], other[0])


def test_ensure_reuses_only_the_same_request(tmp_path: Path) -> None:
    data.ensure(tmp_path, 100, 2, 2)
    part = tmp_path / "part-00000.npy"
    stamp = part.stat().st_mtime_ns
    data.ensure(tmp_path, 100, 2, 2)
    assert part.stat().st_mtime_ns == stamp
    data.ensure(tmp_path, 100, 2, 4)  # another partitioning: regenerated, the old partitions gone
    assert sorted(p.name for p in tmp_path.glob("part-*.npy")) == [f"part-{p:05d}.npy" for p in range(4)]
    with pytest.raises(ValueError, match="partitions"):
        data.generate(tmp_path, 3, 2, 4)
    with pytest.raises(FileNotFoundError, match="no logistic regression data set"):
        data.load_all(tmp_path / "nothing")
