"""The ``crucial`` joblib backend: scikit-learn trained on cloud threads (real worker processes, a real DSO node)."""

from __future__ import annotations

import ast
import difflib
import os
import re
from pathlib import Path

import pytest

import crucial
import crucial.compute.executor

joblib = pytest.importorskip("joblib")
sklearn = pytest.importorskip("sklearn")

import numpy as np  # noqa: E402
from joblib import Parallel, delayed, parallel_config  # noqa: E402
from scipy import sparse  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

import crucial.integrations.joblib as crucial_joblib  # noqa: E402  (registers "crucial")
from crucial.examples import randomforest  # noqa: E402
from crucial.examples.original import randomforest as original_randomforest  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=300, random_state=0)


def test_registered():
    assert joblib.parallel.BACKENDS["crucial"] is crucial_joblib.CrucialBackend


def test_tasks_run_in_worker_processes(dso1):
    with parallel_config(backend="crucial"):
        pids = Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4))
    assert len(pids) == 4
    assert os.getpid() not in pids


def test_errors_propagate(dso1):
    with parallel_config(backend="crucial"), pytest.raises(ZeroDivisionError):
        Parallel(n_jobs=2)(delayed(lambda i: 1 // i)(i) for i in range(3))


def test_random_forest_matches_loky(dso1, data, monkeypatch):
    X, y = data
    submitted = []
    submit = crucial_joblib.CrucialBackend.submit

    def counting(self, func, callback=None):
        submitted.append(func)
        return submit(self, func, callback)

    monkeypatch.setattr(crucial_joblib.CrucialBackend, "submit", counting)
    with parallel_config(backend="loky"):
        expected = RandomForestClassifier(n_estimators=20, n_jobs=2, random_state=0).fit(X, y).predict(X)
    with parallel_config(backend="crucial"):
        forest = RandomForestClassifier(n_estimators=20, n_jobs=2, random_state=0).fit(X, y)
    assert len(forest.estimators_) == 20
    assert submitted  # the trees were built by cloud functions, not joblib's threads
    assert (forest.predict(X) == expected).all()


def test_cross_val_score(dso1, data):
    X, y = data
    expected = cross_val_score(DecisionTreeClassifier(random_state=0), X, y, cv=3)
    with parallel_config(backend="crucial"):
        scores = cross_val_score(DecisionTreeClassifier(random_state=0), X, y, cv=3, n_jobs=3)
    assert list(scores) == list(expected)


def test_effective_n_jobs():
    backend = crucial_joblib.CrucialBackend(max_workers=8)
    assert backend.effective_n_jobs(-1) == 8
    assert backend.effective_n_jobs(-2) == 7
    assert backend.effective_n_jobs(3) == 3
    with pytest.raises(ValueError):
        backend.effective_n_jobs(0)


# -- large inputs go once, by reference ---------------------------------------------------


def _row_sum(X, i):
    """A task reading its input; reports which worker ran it and what that worker fetched so far."""
    return float(X[i].sum()), os.getpid(), crucial_joblib.worker_stats()["fetches"], bool(X.flags.writeable)


@pytest.fixture
def task_sizes(monkeypatch):
    """The real bytes of every task the executor ships (a spy around ``prepare``, which still does the work)."""
    sizes: list[int] = []
    prepare = crucial.compute.executor.prepare

    def spying(fn, args, kwargs):
        data = prepare(fn, args, kwargs)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(crucial.compute.executor, "prepare", spying)
    return sizes


def test_large_inputs_go_once_by_reference(dso1, task_sizes):
    X = np.random.default_rng().random((1000, 300))  # 2.4 MB, fresh content: no worker has it cached
    with parallel_config(backend="loky"):
        expected = Parallel(n_jobs=2)(delayed(_row_sum)(X, i) for i in range(8))
    backend = crucial_joblib.CrucialBackend()
    with parallel_config(backend=backend):
        out = Parallel(n_jobs=2, batch_size=1)(delayed(_row_sum)(X, i) for i in range(8))
    assert [r[0] for r in out] == [r[0] for r in expected]
    assert len(task_sizes) == 8 and max(task_sizes) < 20_000 < X.nbytes  # each task carries a reference, not X
    assert backend.uploads.stats["uploads"] == 1 and backend.uploads.stats["uploaded_bytes"] == X.nbytes
    (key,) = backend.uploads.history
    digest = key.rsplit("/", 1)[1]
    for _, pid, fetches, writeable in out:
        assert pid != os.getpid() and fetches[digest] == 1  # a warm worker fetched X once, whatever it ran
        assert not writeable  # shared between a worker's tasks: read-only, as loky's memmaps
    with pytest.raises(crucial.ObjectNotFoundError):  # the Parallel call ended: the upload is gone
        crucial.AtomicByteArray.attach(key).length()


def test_max_nbytes_sets_the_threshold(dso1, task_sizes):
    X = np.random.default_rng().random((1000, 300))  # 2.4 MB
    backend = crucial_joblib.CrucialBackend()
    with parallel_config(backend=backend, max_nbytes=None):  # as loky's: None turns it off
        Parallel(n_jobs=2, batch_size=1)(delayed(_row_sum)(X, i) for i in range(2))
    assert backend.uploads.stats["uploads"] == 0 and min(task_sizes) > X.nbytes
    with parallel_config(backend=backend, max_nbytes="4M"):  # joblib's spelling; X is below it
        Parallel(n_jobs=2, batch_size=1)(delayed(_row_sum)(X, i) for i in range(2))
    assert backend.uploads.max_nbytes == 4 * 1024**2 and backend.uploads.stats["uploads"] == 0
    with parallel_config(backend=backend, max_nbytes="100K"):
        Parallel(n_jobs=2, batch_size=1)(delayed(_row_sum)(X, i) for i in range(2))
    assert backend.uploads.stats["uploads"] == 1


def _nnz_per_row(m, rows):
    return m[rows].getnnz(axis=1).tolist()


def test_sparse_and_inline_compute(dso1, task_sizes):
    """The arrays inside a sparse matrix go by reference too; ``compute="inline"`` resolves them in the caller."""
    m = sparse.random(2000, 2000, density=0.1, format="csr", random_state=np.random.default_rng())  # data 3.2 MB, indices 1.6
    backend = crucial_joblib.CrucialBackend(compute="inline")
    with parallel_config(backend=backend):
        out = Parallel(n_jobs=2, batch_size=1)(delayed(_nnz_per_row)(m, slice(i, i + 500)) for i in range(0, 2000, 500))
    assert [n for part in out for n in part] == m.getnnz(axis=1).tolist()
    assert backend.uploads.stats["uploads"] == 2  # data and indices (indptr is small)
    assert max(task_sizes) < 20_000
    fetched = crucial_joblib.worker_stats()["fetches"]  # inline: this process is the worker
    assert all(fetched[key.rsplit("/", 1)[1]] == 1 for key in backend.uploads.history)


# -- model selection ------------------------------------------------------------------------


def test_grid_search_matches_loky(dso1, data):
    X, y = data
    grid = {"max_depth": [2, 4, None], "min_samples_leaf": [1, 5]}
    with parallel_config(backend="loky"):
        expected = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, n_jobs=2).fit(X, y)
    with parallel_config(backend="crucial"):
        search = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3, n_jobs=2).fit(X, y)
    assert search.best_params_ == expected.best_params_
    for name in ("mean_test_score", "split0_test_score", "split1_test_score", "split2_test_score", "rank_test_score"):
        assert list(search.cv_results_[name]) == list(expected.cv_results_[name])


# -- the porting pair: examples/original/randomforest.py -> examples/randomforest.py ----------

SIZES = ["--samples", "600", "--features", "8", "--trees", "12", "--jobs", "2", "--seed", "3"]


def test_randomforest_example_matches_the_original(dso1, capsys):
    expected = original_randomforest.main(SIZES)
    capsys.readouterr()
    result = randomforest.main(SIZES)
    out = capsys.readouterr().out
    assert result["accuracy"] == expected["accuracy"] > 0.6
    assert result["oob_score"] == expected["oob_score"]
    assert "12 trees on 450 x 8 training rows (2 jobs)" in out and "out-of-bag score" in out
    assert re.search(r"time: data [\d.]+ s, fit [\d.]+ s, predict [\d.]+ s", out)


def _code_lines(path: Path) -> list[str]:
    """Source lines of code: no blank lines, comments or docstrings."""
    text = path.read_text()
    docstrings = {
        line
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }
    lines = text.splitlines()
    return [s.strip() for n, s in enumerate(lines, 1) if n not in docstrings and s.strip() and not s.strip().startswith("#")]


def test_randomforest_port_changes_few_lines():
    original, port = _code_lines(Path(original_randomforest.__file__)), _code_lines(Path(randomforest.__file__))
    changed = sum(1 for d in difflib.ndiff(original, port) if d.startswith("+ "))
    assert 0 < changed <= 0.05 * len(original), (changed, len(original))
