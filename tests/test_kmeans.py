"""k-means (crucial.examples.kmeans and its single-machine original) on small sizes.

The port runs on real nodes (one and three) and real local workers.  From
the same initial centroids both programs must end where scikit-learn's
Lloyd ``KMeans`` ends, to 1e-6.  A cloud thread that fails once in
iteration 2 -- its code raises before it hands in its share, or its worker
dies just after -- and is run again (``crucial.Retry``) must resume at the
shared iteration counter -- its second run does only the iterations that
were left -- and the result must still match.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crucial
from crucial.examples import _kmeans_data as data
from crucial.examples import kmeans
from crucial.examples.original import kmeans as kmeans_original
from crucial.testing import LocalCluster, unconfigured_env

POINTS, DIM, K, THREADS, ITERATIONS = 3001, 4, 5, 3, 8  # 3001: the partitions are uneven


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One data set in 3 partitions (the tests' thread count), generated once."""
    return str(data.generate(tmp_path_factory.mktemp("kmeans"), POINTS, DIM, K, THREADS, seed=5))


def check_against_sklearn(result: Any, directory: str, iterations: int = ITERATIONS) -> None:
    """Same centres and cost as scikit-learn from the same initial centroids, after as many iterations."""
    centres, inertia, _ = data.sklearn_reference(directory, iterations)
    assert (result.sizes > 0).all()  # no empty cluster: there the two would differ by design
    np.testing.assert_allclose(result.centroids, centres, rtol=0, atol=1e-6)
    assert result.cost == pytest.approx(inertia, rel=1e-9)
    assert result.iterations == iterations


# -- correctness: the port on real nodes, and the original --------------------------------


def test_port_matches_sklearn(dso: LocalCluster, dataset: str) -> None:
    result = kmeans.fit(dataset, THREADS, ITERATIONS, 0.0)
    check_against_sklearn(result, dataset)
    assert result.delta > 0  # still moving: all 8 iterations ran
    assert len(result.watches) == THREADS and all(len(w.laps) == ITERATIONS for w in result.watches)


def test_original_matches_sklearn(dataset: str) -> None:
    result = kmeans_original.fit(dataset, THREADS, ITERATIONS, 0.0)
    check_against_sklearn(result, dataset)


def test_threshold_stops_both_when_the_centres_settle(dso1: LocalCluster, dataset: str) -> None:
    port = kmeans.fit(dataset, THREADS, 100, 0.01)
    original = kmeans_original.fit(dataset, THREADS, 100, 0.01)
    assert ITERATIONS < port.iterations == original.iterations < 100
    assert port.delta == original.delta <= 0.01
    np.testing.assert_array_equal(port.centroids, original.centroids)
    check_against_sklearn(port, dataset, port.iterations)


# -- resuming after a retry --------------------------------------------------------------


class FailsOnceAt:
    """Stands in for the GlobalCentroids proxy; fails once, in ``iteration``, around handing in the share.

    ``how`` is ``"raise"`` (the thread's code raises before handing in its
    share) or ``"exit"`` (its worker process dies just after handing it in,
    before the barrier).  The flag lives in the DSO: the retry runs in a
    fresh invocation, and only the first attempt must fail.  Travels by value
    (this module is not installed).
    """

    def __init__(self, inner: Any, iteration: int, how: str, failed: crucial.AtomicBool) -> None:
        self.inner = inner
        self.iteration = iteration
        self.how = how
        self.failed = failed

    def get(self) -> Any:
        return self.inner.get()

    def update(self, iteration: int, part: int, sums: Any, counts: Any) -> bool:
        fails = iteration == self.iteration and not self.failed.get()
        if fails and self.how == "raise":
            self.failed.set(True)
            raise RuntimeError(f"partition {part} fails in iteration {iteration}")
        counted = bool(self.inner.update(iteration, part, sums, counts))
        if fails:
            self.failed.set(True)
            os._exit(3)  # the worker dies with its share handed in
        return counted


def start_threads(directory: str, failing: int, how: str, retry: crucial.Retry | None) -> tuple[Any, Any, list[Any], Any]:
    """What ``kmeans.fit`` does, with thread ``failing`` given a centroids object that fails once in iteration 2."""
    centroids = kmeans.GlobalCentroids(data.load_init(directory), THREADS)
    barrier = crucial.Barrier(THREADS)
    failed = crucial.AtomicBool(False)
    flaky = FailsOnceAt(centroids, 2, how, failed)
    threads = [
        crucial.CloudThread(
            target=kmeans.cluster,
            args=(part, directory, flaky if part == failing else centroids, barrier, ITERATIONS, 0.0),
            retry=retry,
        )
        for part in range(THREADS)
    ]
    for t in threads:
        t.start()
    return centroids, barrier, threads, failed


@pytest.mark.parametrize(
    ("how", "retry", "resumes_at"),
    [
        ("raise", crucial.Retry(count=1, backoff=0.0, user_errors=True), 2),  # its share of iteration 2 is missing
        ("exit", crucial.Retry(count=1, backoff=0.0), 3),  # its share is in: iteration 2 completes without it
    ],
    ids=["raises-before-its-share", "worker-dies-after-its-share"],
)
def test_a_retried_thread_resumes_at_the_shared_iteration_counter(
    dso1: LocalCluster, dataset: str, how: str, retry: crucial.Retry, resumes_at: int
) -> None:
    centroids, _, threads, failed = start_threads(dataset, 1, how, retry)
    outcomes = [t.result(timeout=60) for t in threads]
    assert failed.get()  # it did fail once
    iteration, final, delta = centroids.get()
    result = kmeans.Result(iteration, delta, sum(c for c, _ in outcomes), final, centroids.cluster_sizes(), [], 0.0)
    check_against_sklearn(result, dataset)  # no iteration lost, no share counted twice
    laps = [len(w.laps) for _, w in outcomes]
    assert laps[1] == ITERATIONS - resumes_at  # the second attempt started at the shared counter, not at 0
    assert laps[0] >= ITERATIONS and laps[2] >= ITERATIONS  # the others may redo the iteration that lacked a share


def test_without_retry_a_failure_breaks_the_barrier_instead_of_hanging(dso1: LocalCluster, dataset: str) -> None:
    _, barrier, threads, _ = start_threads(dataset, 0, "raise", None)
    with pytest.raises(RuntimeError, match="partition 0 fails in iteration 2"):
        kmeans.gather([t.future for t in threads], barrier)
    for t in threads[1:]:
        assert isinstance(t.exception(timeout=60), threading.BrokenBarrierError)  # woken, not left waiting


# -- the shared object ---------------------------------------------------------------------


def test_shares_are_summed_in_partition_order_and_a_repeat_replaces(dso1: LocalCluster, key: str) -> None:
    rng = np.random.default_rng(1)
    sums = [rng.standard_normal((2, 3)) * 10.0 ** rng.integers(-8, 8, (2, 3)) for _ in range(3)]  # order-dependent rounding
    counts = [np.array([1, 2]), np.array([3, 0]), np.array([2, 2])]
    finals = []
    for order in ([0, 1, 2], [2, 0, 1]):
        c = kmeans.GlobalCentroids(np.zeros((2, 3)), 3, key=f"{key}-{order[0]}")
        for i, part in enumerate(order):
            if i < 2:  # handed in twice (a retried thread): the second share replaces the first
                assert c.update(0, part, sums[part] * 7, counts[part])
            assert c.update(0, part, sums[part], counts[part])
            assert c.get()[0] == (1 if i == 2 else 0)  # the last share completes the iteration
        assert not c.update(0, 1, sums[1], counts[1])  # iteration 0 is over: a late share is ignored
        iteration, centres, delta = c.get()
        assert iteration == 1 and list(c.cluster_sizes()) == [6, 4]
        total = sums[0] + sums[1] + sums[2]
        np.testing.assert_allclose(centres, total / np.array([[6], [4]]), rtol=1e-12)
        assert delta == pytest.approx(float(np.sqrt((centres**2).sum(axis=1)).max()))
        finals.append(centres)
        c.delete()
    assert finals[0].tobytes() == finals[1].tobytes()


def test_an_empty_cluster_keeps_its_centre_and_bad_partitions_are_refused(dso1: LocalCluster, key: str) -> None:
    c = kmeans.GlobalCentroids([[1.0, 1.0], [5.0, 5.0]], 1, key=key)
    with pytest.raises(ValueError, match="partition 1 is not one of the 1"):
        c.update(0, 1, np.zeros((2, 2)), np.zeros(2, dtype=int))
    assert c.update(0, 0, np.array([[4.0, 2.0], [0.0, 0.0]]), np.array([2, 0]))
    iteration, centres, delta = c.get()
    assert iteration == 1 and centres.tolist() == [[2.0, 1.0], [5.0, 5.0]] and delta == 1.0
    c.delete()


def test_the_original_object_behaves_the_same_without_a_node() -> None:
    c = kmeans_original.GlobalCentroids([[1.0, 1.0], [5.0, 5.0]], 2)
    assert c.update(0, 1, np.array([[4.0, 2.0], [0.0, 0.0]]), np.array([2, 0]))
    assert c.update(0, 1, np.array([[2.0, 2.0], [0.0, 0.0]]), np.array([1, 0]))  # replaces
    assert c.update(0, 0, np.array([[0.0, 0.0], [9.0, 9.0]]), np.array([0, 1]))
    assert not c.update(0, 0, np.zeros((2, 2)), np.zeros(2))
    iteration, centres, delta = c.get()
    assert iteration == 1 and centres.tolist() == [[2.0, 2.0], [9.0, 9.0]] and delta == pytest.approx(np.sqrt(32))


# -- command line ----------------------------------------------------------------------------


def test_port_main_generates_data_checks_and_prints_the_breakdown(dso1: LocalCluster, tmp_path: Path, capsys: Any) -> None:
    args = ["--points", "2000", "--dim", "3", "--k", "4", "--threads", "2", "--iterations", "6", "--threshold", "0"]
    args += ["--data", str(tmp_path / "d"), "--seed", "3", "--check"]
    result = kmeans.main(args)
    out = capsys.readouterr().out
    assert "k-means: 2,000 points x 3 dimensions, k = 4, 2 threads\n" in out
    assert f"6 iterations, final delta {result.delta:.3g}, cost {result.cost:.6g}\n" in out
    assert re.search(r"per iteration \(6 iterations, 2 threads\): compute [\d.]+ ms \(\d+%\), shared state [\d.]+ ms", out)
    assert re.search(r"sync [\d.]+ ms \(\d+%\)", out)
    diff = float(re.search(r"max centre difference (\S+),", out).group(1))  # type: ignore[union-attr]
    assert diff < 1e-6
    assert data.read_meta(tmp_path / "d")["points"] == 2000
    stamp = (tmp_path / "d" / "part-00000.npy").stat().st_mtime_ns
    original = kmeans_original.main(args)  # the directory is reused, not regenerated
    assert (tmp_path / "d" / "part-00000.npy").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(original.centroids, result.centroids, rtol=0, atol=1e-12)
    assert 0 < result.iterating <= result.seconds


@pytest.mark.parametrize("program", [kmeans, kmeans_original], ids=["port", "original"])
def test_help(program: Any, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        program.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: python -m {program.__name__}" in out
    for option in ("--points", "--dim", "--k", "--threads", "--iterations", "--threshold", "--data", "--seed", "--check"):
        assert option in out


@pytest.mark.parametrize("program", [kmeans, kmeans_original], ids=["port", "original"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--points", "0"], "--points, --dim, --k and --threads must be positive"),
        (["--k", "-3"], "--points, --dim, --k and --threads must be positive"),
        (["--iterations", "-1"], "--iterations and --threshold cannot be negative"),
        (["--points", "10", "--k", "20"], "--points (10) must be at least --k (20) and --threads (2)"),
        (["--dim", "many"], "argument --dim: invalid int value: 'many'"),
    ],
)
def test_bad_sizes_are_usage_errors(program: Any, args: list[str], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        program.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_port_as_a_module_with_nothing_configured(tmp_path: Path) -> None:
    # __main__ runs the module; its workers import it by name; an embedded node starts and stops
    args = ["--points", "1500", "--dim", "3", "--k", "3", "--threads", "2", "--iterations", "4", "--data", str(tmp_path / "d")]
    cmd = [sys.executable, "-m", "crucial.examples.kmeans", *args]
    proc = subprocess.run(cmd, env=unconfigured_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "k-means: 1,500 points x 3 dimensions, k = 3, 2 threads" in proc.stdout
    assert "per iteration (" in proc.stdout


# -- the data ----------------------------------------------------------------------------------


def test_points_do_not_depend_on_the_partitioning(tmp_path: Path) -> None:
    points = data.BLOCK + 5  # rows from two blocks
    two = data.load_all(data.generate(tmp_path / "two", points, 3, 4, 2, seed=1))
    five = data.load_all(data.generate(tmp_path / "five", points, 3, 4, 5, seed=1))
    assert two.shape == (points, 3) and np.array_equal(two, five)
    assert np.array_equal(data.load_init(tmp_path / "two"), data.load_init(tmp_path / "five"))
    sizes = [len(data.load_partition(tmp_path / "five", p)) for p in range(5)]
    assert sizes == data.partition_sizes(points, 5) and max(sizes) - min(sizes) <= 1
    init = data.load_init(tmp_path / "two")
    assert len({tuple(row) for row in init}) == 4  # distinct points ...
    assert all((two == row).all(axis=1).any() for row in init)  # ... of the data
    other = data.load_all(data.generate(tmp_path / "other", points, 3, 4, 2, seed=2))
    assert not np.array_equal(two, other)


def test_ensure_reuses_only_the_same_request(tmp_path: Path) -> None:
    data.ensure(tmp_path, 100, 2, 3, 2)
    part = tmp_path / "part-00000.npy"
    stamp = part.stat().st_mtime_ns
    data.ensure(tmp_path, 100, 2, 3, 2)
    assert part.stat().st_mtime_ns == stamp
    data.ensure(tmp_path, 100, 2, 3, 4)  # another partitioning: regenerated, the old partitions gone
    assert sorted(p.name for p in tmp_path.glob("part-*.npy")) == [f"part-{p:05d}.npy" for p in range(4)]
    assert data.read_meta(tmp_path)["partitions"] == 4
    with pytest.raises(ValueError, match="cannot seed 5 distinct initial centroids"):
        data.generate(tmp_path, 3, 2, 5, 1)
    assert data.read_meta(tmp_path / "nothing") == {}
    with pytest.raises(ValueError, match="does not hold a data set of 3 partitions"):
        kmeans_original.fit(str(tmp_path), 3, 1, 0.0)
