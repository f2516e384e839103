"""The examples ported through the drop-in modules compute what their single-machine originals compute.

``crucial.examples.dropin.<name>`` is ``crucial.examples.original.<name>``
with its imports pointed at ``crucial.threading`` / ``crucial.concurrent``
and ``@shared`` on the classes its threads share
(``tests/test_porting.py`` checks that nothing else differs); each runs here
as ``python -m`` against the session's node, beside its original.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crucial.testing import unconfigured_env


def run(module: str, *args: str, cwd: Path, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", f"crucial.examples.{module}", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


@pytest.fixture
def both(cluster, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = unconfigured_env(cluster.env_vars())

    def run_both(name: str, *args: str) -> tuple[list[str], list[str]]:
        return run(f"original.{name}", *args, cwd=tmp_path, env=env), run(f"dropin.{name}", *args, cwd=tmp_path, env=env)

    return run_both


@pytest.mark.parametrize("mode", ["threads", "executor"])
def test_montecarlo(both, mode: str) -> None:  # type: ignore[no-untyped-def]
    original, dropin = both("montecarlo", "--mode", mode, "--threads", "3", "--points", "20000", "--seed", "3")
    assert dropin[:2] == original[:2]  # the estimate from the same points, and every thread's count in the counter
    assert dropin[1].endswith("True")


def test_mandelbrot(both, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    both("mandelbrot", "--rows", "24", "--cols", "30", "--workers", "3", "--out", "same.png")
    # both wrote same.png in turn: compare the drop-in's with a fresh original
    dropin_png = (tmp_path / "same.png").read_bytes()
    args = ("--rows", "24", "--cols", "30", "--workers", "3", "--out", "o.png")
    run("original.mandelbrot", *args, cwd=tmp_path, env=unconfigured_env())
    assert dropin_png == (tmp_path / "o.png").read_bytes()


def test_logreg(both) -> None:  # type: ignore[no-untyped-def]
    original, dropin = both("logreg", "--points", "600", "--features", "4", "--threads", "2", "--iterations", "3")
    assert dropin[:2] == original[:2]  # the same losses and accuracy
    assert any(line.startswith("per iteration (3 iterations, 2 threads)") for line in dropin)  # the trainers' watches came back


def test_kmeans(both) -> None:  # type: ignore[no-untyped-def]
    original, dropin = both("kmeans", "--points", "2000", "--dim", "3", "--k", "3", "--threads", "2", "--iterations", "3")
    assert dropin[:2] == original[:2]


def test_santa(both) -> None:  # type: ignore[no-untyped-def]
    original, dropin = both("santa", "--deliveries", "2", "--elves", "4", "--reindeer", "3", "--work-delay", "0")
    for out in (original, dropin):
        assert out[0].startswith("2 deliveries and") and out[1] == "invariants OK: True"
