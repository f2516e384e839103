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
    "logreg": {"ratio_vs_spark", "ratio_vs_sklearn", "ratio_vs_numpy", "ratio_vs_threading", "ratio_vs_lithops_redis"},
    "santa": {"p50_threads", "p50_cloud", "ratio_vs_threads"},
    "randomforest": {"ratio_vs_loky_4", "ratio_vs_loky"},
    "porting": {"montecarlo_pct", "kmeans_pct"},
    "scaleout": {"redis_ops_s", "crucial_scaled_2_ops_s", "ratio_vs_redis_scaled_2", "node_overhead_us_per_call"},
    "replication": {
        "ratio_rf2_vs_rf1",
        "ratio_vs_redis_wait",
        "ratio_vs_redis_fsync",
        "ratio_latency_rf2_vs_redis_wait1",
        "ratio_latency_durable_vs_redis_fsync",
        "latency",
        "throughput",
    },
    "store": {
        "raw_fsync_per_s",
        "always_commits_per_s",
        "never_commits_per_s",
        "always_records_per_s",
        "ratio_always_commits_vs_raw_fsync",
        "ratio_always_records_vs_never",
    },
    "coordinator": {
        "view_cas_p50_ms",
        "lease_refresh_p50_ms",
        "killed_member_gone_ttl1_median_s",
        "killed_member_gone_ttl3_median_s",
        "ratio_gone_vs_ttl1",
        "ratio_gone_vs_ttl3",
    },
    "dask_invoke": {"crucial_1_ms", "dask_1_ms", "crucial_64_ms", "dask_64_ms", "ratio_vs_dask_1", "ratio_vs_dask_64"},
    "availability": {"failed_reads", "longest_stall_s", "ratio_stall_vs_failure_timeout", "ratio_after_join_vs_before_crash"},
    "soak": {"errors", "lost_writes", "kills", "graceful_restarts", "ratio_witness_rss_end_vs_start"},
    "metrics_overhead": {"node_cpu_us_off", "node_cpu_us_on", "ratio_cpu_on_vs_off", "ratio_wall_on_vs_off", "scrape_s"},
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
@pytest.mark.timeout(600)  # a JVM, Lithops and a few process pools on 2 busy cores
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
    goals, labels = result["goals"], result["labels"]
    assert isinstance(goals, dict) and isinstance(labels, dict) and labels
    assert set(goals) <= set(result), f"{name}: goals for figures it did not report: {set(goals) - set(result)}"
    assert set(labels) <= set(result), f"{name}: labels for figures it did not report: {set(labels) - set(result)}"
    assert set(goals) <= set(labels), f"{name}: a goal without a label: {set(goals) - set(labels)}"
    ratios = {key: value for key, value in result.items() if key.startswith("ratio") and not key.endswith("_is")}
    assert ratios or name == "porting", f"{name}: no ratio_* figure"
    for key, value in ratios.items():  # tiny sizes: any number (a difference of two times may even be negative)
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{name}: {key} = {value!r}"


# -- benchmarks/report.py ---------------------------------------------------------------------

PAGE = "# Page\n\nbefore\n\n<!-- generated:benchmarks -->\nold table\n<!-- /generated -->\n\nafter\n"


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "report.py"), *args],
        cwd=BENCHMARKS.parent,
        env=unconfigured_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_report_writes_the_pages_and_the_chart_from_kept_results(tmp_path: Path) -> None:
    kept = tmp_path / "run.jsonl"
    meta = {"date": "2026-12-01T10:00:00Z", "commit": "abc1234", "mode": "quick", "cores": 2, "loadavg_1m_before": 0.5}
    lines = [
        {"benchmark": "dso_latency", "ratio_vs_redis": 0.8, "goals": {"ratio_vs_redis": "<= 0.85"}, **meta}
        | {"labels": {"ratio_vs_redis": "latency vs redis-py"}},
        {"benchmark": "invoke", "ratio_vs_processpool_64": 1.2, "ratio_vs_lithops_64": 0.001, **meta}
        | {"goals": {"ratio_vs_processpool_64": "<= 1.0"}, "labels": {"ratio_vs_processpool_64": "64 threads vs pool"}},
        {"benchmark": "kmeans", "error": "exit 1 after 3 s (log: x.log)"},
    ]
    kept.write_text("".join(json.dumps(line) + "\n" for line in lines))
    doc, readme, chart = tmp_path / "benchmarks.md", tmp_path / "README.md", tmp_path / "chart.png"
    doc.write_text(PAGE)
    readme.write_text("counts <!-- generated:porting -->3<!-- /generated --> lines\n" + PAGE)  # another region first
    earlier = tmp_path / "before.jsonl"
    earlier.write_text(json.dumps({"benchmark": "dso_latency", "ratio_vs_redis": 0.95, **meta, "commit": "0ld0000"}) + "\n")
    r = report("--from", str(kept), "--compare", str(earlier), "--doc", str(doc), "--readme", str(readme), "--chart", str(chart))
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert "| `dso_latency` | latency vs redis-py | 0.95 | 0.8 | ≤ 0.85 | yes |" in text  # before, now
    assert "at commit 0ld0000" in text and "| `invoke` | 64 threads vs pool | — | 1.2 |" in text
    assert text.startswith("# Page\n\nbefore\n\n<!-- generated:benchmarks -->\n") and text.endswith(
        "<!-- /generated -->\n\nafter\n"
    )
    assert "old table" not in text
    short = readme.read_text()  # README's tables have no before column
    assert short.startswith("counts <!-- generated:porting -->3<!-- /generated --> lines\n# Page") and "old table" not in short
    assert "| `dso_latency` | latency vs redis-py | 0.8 | ≤ 0.85 | yes |" in short
    assert "| `invoke` | 64 threads vs pool | 1.2 | ≤ 1.0 | no |" in short
    assert "| `kmeans` | did not run |" in text and "exit 1 after 3 s" in text
    assert "at commit abc1234" in text and "load average 0.5" in text
    assert "The DSO against Redis:" in readme.read_text() and "Cloud threads:" in readme.read_text()
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(600)
def test_report_runs_the_scripts_and_keeps_their_lines(tmp_path: Path) -> None:
    doc, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    doc.write_text(PAGE)
    readme.write_text("counts <!-- generated:porting -->3<!-- /generated --> lines\n" + PAGE)  # another region first
    out = tmp_path / "results"
    chart = tmp_path / "chart.png"
    r = report(
        "--smoke", "--only", "porting", "--results", str(out), "--doc", str(doc), "--readme", str(readme), "--chart", str(chart)
    )
    r.check_returncode()
    kept = list(out.glob("*-smoke.jsonl"))
    assert len(kept) == 1
    [line] = kept[0].read_text().splitlines()
    assert json.loads(line)["benchmark"] == "porting" and json.loads(line)["mode"] == "smoke"
    assert "porting montecarlo: lines changed" in doc.read_text()
    assert report("--only", "nonesuch").returncode == 2  # a typo is an error, not an empty report
