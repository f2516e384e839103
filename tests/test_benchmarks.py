"""Every script in benchmarks/ runs from the documented install: its ``--smoke`` run ends with its JSON line.

Each script is run as a user runs it (``python benchmarks/NAME.py --smoke``,
a process of its own, tiny sizes), with every peer it has -- Redis, Lithops,
Spark, the process pool -- so a missing dependency or a broken script fails
here rather than in front of a user.  The scripts are found, not listed: a
new ``benchmarks/NAME.py`` is tested as soon as it exists, and must accept
``--smoke`` and print ``{"benchmark": "NAME", ...}`` as its last line.

What a script needs beyond the ``test`` extra is read from its source: one
that starts a ``RedisServer`` needs Debian's ``redis-server`` (``.ci/run``
installs it; a developer without it sees the test skipped with that reason),
one that imports ``_spark`` needs Java.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crucial.testing import unconfigured_env

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))

#: keys a script's smoke line must hold beyond "benchmark", "mode" and its goals
EXPECTED: dict[str, set[str]] = {
    "dso_latency": {"crucial_mean_us", "redis_mean_us", "ratio_vs_redis"},
    "dso_throughput": {"crucial_simple_ops_s", "redis_simple_ops_s", "ratio_vs_redis_simple", "ratio_vs_redis_complex"},
    "barrier": {"crucial_4_ms", "redis_4_ms", "ratio_vs_redis_4"},
    "invoke": {"crucial_1_ms", "processpool_1_ms", "lithops_1_ms", "ratio_vs_processpool_4", "ratio_vs_lithops_4"},
    "montecarlo": {"crucial_2_points_s", "multiprocessing_2_points_s", "ratio_vs_multiprocessing_2", "ratio_vs_threading_2"},
    "sshell": {
        "counter_client_ms",
        "sshell_true_client_ms",
        "python_pass_client_ms",
        "python_S_pass_client_ms",
        "redis_cli_client_ms",
        "ratio_vs_redis_resp_inside",
        "ratio_stateful_vs_stateless",
    },
    "kmeans": {"ratio_vs_lithops_redis_k3", "ratio_vs_spark_k3", "ratio_vs_sklearn_k3"},
    "logreg": {"ratio_vs_spark", "ratio_vs_sklearn", "ratio_vs_numpy", "ratio_vs_threading"},
    "santa": {"p50_threads", "p50_cloud", "ratio_vs_threads"},
    "randomforest": {"ratio_vs_loky_4", "ratio_vs_loky"},
    "porting": {"montecarlo_pct", "kmeans_pct"},
}


def needs(name: str) -> str | None:
    """Why the script cannot run here (a missing program), or None."""
    source = (BENCHMARKS / f"{name}.py").read_text()
    if "RedisServer(" in source and not shutil.which("redis-server"):
        return "redis-server is not installed (Debian: apt-get install -y redis-server; .ci/run installs it)"
    if "_spark" in source and not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "Spark needs a Java 17+ runtime (Debian: apt-get install -y openjdk-17-jre-headless)"
    return None


def test_every_script_is_known() -> None:
    """A new benchmark gets its expected keys here (so its smoke test checks more than its name)."""
    assert set(SCRIPTS) == set(EXPECTED) | ({"report"} & set(SCRIPTS))


def run_smoke(name: str, *args: str) -> dict[str, Any]:
    env = unconfigured_env()
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--smoke", *args],
        cwd=BENCHMARKS.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name}.py --smoke exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{name}.py --smoke printed nothing on stdout:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", [s for s in SCRIPTS if s != "report"])
def test_smoke_run_prints_its_json_line(name: str) -> None:
    why = needs(name)
    if why:
        pytest.skip(why)
    result = run_smoke(name)
    assert result["benchmark"] == name
    assert result["mode"] == "smoke"
    missing = EXPECTED[name] - set(result)
    assert not missing, f"{name}: no {sorted(missing)} in {sorted(result)}"
    goals = result["goals"]
    assert isinstance(goals, dict)
    assert set(goals) <= set(result), f"{name}: goals for figures it did not report: {set(goals) - set(result)}"
    ratios = {key: value for key, value in result.items() if key.startswith("ratio") and not key.endswith("_is")}
    assert ratios or name == "porting", f"{name}: no ratio_* figure"
    for key, value in ratios.items():  # tiny sizes: any number (a difference of two times may even be negative)
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{name}: {key} = {value!r}"
