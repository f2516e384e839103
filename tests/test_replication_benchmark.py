"""benchmarks/replication.py: its --smoke run end to end, and the parsers of its profile.

The smoke run starts everything the full run does (two crucial clusters,
four Redis deployments with replicas and an append-only file, worker
processes), with tiny sizes: its figures mean nothing, its JSON line's keys
and its correctness checks (the value read back, the counters' sums) do.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"


def _load(name: str) -> ModuleType:
    """benchmarks/ is not a package: load a script as a module (its helpers import _common from there)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_smoke_run_prints_the_table_the_ratios_and_the_goals() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pytest.importorskip("redis", reason="redis-py is not installed (pip install -e '.[bench]')")
    out = subprocess.run(
        [sys.executable, str(BENCH / "replication.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("ratio_rf2_vs_rf1", "ratio_vs_redis_wait", "ratio_vs_redis_fsync"):
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0, (key, result[key])
    systems = {
        "crucial-rf1",
        "crucial-rf2",
        "crucial-rf3",
        "crucial-durable",
        "redis",
        "redis-wait1",
        "redis-wait2",
        "redis-fsync",
    }
    assert systems <= set(result["latency"]) and systems <= set(result["throughput"])
    for row in result["latency"].values():
        assert row["put_p50_us"] > 0 and row["get_p50_us"] > 0
    # the backups of rf=2 and rf=3 objects, and the Redis replicas, are where the script says they are
    assert set(result["latency"]["crucial-rf2"]["put_server_cpu_us"]) == {"primary", "backup1", "idle1"}
    assert set(result["latency"]["crucial-rf3"]["put_server_cpu_us"]) == {"primary", "backup1", "backup2"}
    assert set(result["latency"]["redis-wait2"]["put_server_cpu_us"]) == {"primary", "replica1", "replica2"}
    for row in result["throughput"].values():
        assert row["ops_s"] > 0
    assert set(result["goals_met"]) == {"ratio_rf2_vs_rf1", "ratio_vs_redis_wait", "ratio_vs_redis_fsync"}
    assert result["goals"] == {"ratio_rf2_vs_rf1": "<= 2.2", "ratio_vs_redis_wait": ">= 1.0", "ratio_vs_redis_fsync": ">= 1.0"}
    for ours, peer in (("rf1", "redis"), ("rf2", "redis_wait1"), ("rf3", "redis_wait2"), ("durable", "redis_fsync")):
        for kind in ("latency", "throughput"):  # each row against its Redis peer, crucial / Redis
            assert result[f"ratio_{kind}_{ours}_vs_{peer}"] > 0
    assert result["ratio_throughput_rf2_vs_redis_wait1"] == result["ratio_vs_redis_wait"]
    assert result["mode"] == "smoke" and result["runs"] == 2
    for text in ("goal: rf=2 latency <= 2.2 x rf=1", "goal: rf=2 throughput >= Redis + 1 replica, WAIT 1", "crucial-durable"):
        assert text in out.stderr


def test_ratios_are_medians_of_same_repetition_ratios() -> None:
    rb = _load("replication")
    reps = [
        {"a": {"x": 2.0}, "b": {"x": 1.0}},
        {"a": {"x": 9.0}, "b": {"x": 3.0}},  # a slow repetition for both: its ratio still counts as 3
        {"a": {"x": 4.0}, "b": {"x": 1.0}},
    ]
    assert rb.ratio_of_medians(reps, "a", "b", "x") == 3.0
    assert rb.ratio_of_medians(reps, "a", "missing", "x") is None
    summary = rb.summarize(
        [{"a": {"x": 1.0, "r": {"p": 10.0}}}, {"a": {"x": 3.0, "r": {"p": 50.0}}}, {"a": {"x": 2.0, "r": {"p": 20.0}}}]
    )
    assert summary == {"a": {"x": 2.0, "r": {"p": 20.0}}}


def test_goals_report_each_verdict_and_what_was_not_measured() -> None:
    rb = _load("replication")
    out = {"ratio_rf2_vs_rf1": 2.3, "ratio_vs_redis_wait": 1.2}
    lines = rb.goals(out)
    assert out["goals_met"] == {"ratio_rf2_vs_rf1": False, "ratio_vs_redis_wait": True, "ratio_vs_redis_fsync": None}
    assert "NOT met" in lines[0] and lines[1].endswith("-> met") and "not measured" in lines[2]


def test_cpu_seconds_counts_this_process_work() -> None:
    rb = _load("_replication_systems")
    import os
    import time

    before = rb.cpu_seconds(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    spent = rb.cpu_seconds(os.getpid()) - before
    assert 0.15 <= spent <= 5.0  # clock ticks: 10 ms resolution; the loop burnt 200 ms of CPU
    threads = _load("_replication_profile").thread_cpu(os.getpid())
    assert set(threads) == {"main user", "main sys", "other user", "other sys"}
    assert threads["main user"] + threads["main sys"] >= spent  # this loop ran on the main thread


def test_strace_summary_is_parsed_into_calls_per_syscall() -> None:
    prof = _load("_replication_profile")
    text = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.10    0.120000          12     10000           write
 30.00    0.080000           8     10000           read
 20.00    0.050000           5      9990           epoll_pwait
  4.90    0.010000          10       100        12 futex
------ ----------- ----------- --------- --------- ----------------
100.00    0.260000                 30090        12 total
"""
    assert prof.parse_strace(text) == {"write": 10000, "read": 10000, "epoll_pwait": 9990, "futex": 100}


def test_pyspy_collapsed_stacks_are_summarised_by_function_and_bucket() -> None:
    prof = _load("_replication_profile")
    text = "\n".join(
        [
            "run (a/loop.py:10);handle_call (b/_node.py:20);dumps (c/protocol.py:5) 30",
            "run (a/loop.py:10);handle_call (b/_node.py:21) 10",
            "run (a/loop.py:10);PeerLink._write (d/_peers.py:3);write (libc.so.6) 45",
            "run (a/loop.py:10);_Connection.send (b/_node.py:9);write (libc.so.6) 15",
        ]
    )
    s = prof.summarize_pyspy(text)
    assert s["samples"] == 100
    assert "run (loop.py)" not in s["inclusive_pct"]  # in every sample: the event loop itself, left out
    assert s["inclusive_pct"]["handle_call (_node.py)"] == 40.0  # two lines of one function, counted once per stack
    assert s["self_pct"] == {"write (libc.so.6)": 60.0, "dumps (protocol.py)": 30.0, "handle_call (_node.py)": 10.0}
    assert s["buckets_pct"] == {
        "write(): REPLICATE to a backup": 45.0,
        "pickle / unpickle": 30.0,
        "write(): reply to a client / ack to the primary": 15.0,
        "call dispatch and the method (_node.py, _runtime.py, objects)": 10.0,
    }
