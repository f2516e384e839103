"""The ``crucial`` joblib backend: scikit-learn trained on cloud threads (real worker processes, a real DSO node)."""

from __future__ import annotations

import os

import pytest

joblib = pytest.importorskip("joblib")
sklearn = pytest.importorskip("sklearn")

from joblib import Parallel, delayed, parallel_config  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

import crucial.integrations.joblib as crucial_joblib  # noqa: E402  (registers "crucial")


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
