"""benchmarks/soak.py --smoke: the soak's machinery, end to end, in about half a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crucial.testing import unconfigured_env

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"

# Every finding of the soak is fixed (tests/test_soak_findings.py has no xfail left, and the membership fix of
# 7b53795 ended the persistent objects lost to two kills 6 s apart): a caller meets no error, and the final check
# reads every object.  Seven smoke runs since that fix met none.


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_soak_smoke(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(SOAK), "--smoke"],
        env=unconfigured_env({"TMPDIR": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}),
        capture_output=True,
        text=True,
        timeout=380,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "soak" and result["calls"] > 500
    assert result["kills"] >= 1 and result["graceful_restarts"] >= 1, result["events"]
    assert result["cloud_calls"] > 0 and result["verb_runs"] > 0
    assert result["lost_writes"] == 0, result["problems"]
    assert result["errors"] == 0 and not result["error_kinds"], result["error_samples"]
    assert result["unreadable"] == []
    assert result["per_minute"] and all(m["p99_ms"] >= m["p50_ms"] > 0 for m in result["per_minute"])
    assert result["rss_mb"]["witness_start"] > 0 and result["rss_mb"]["witness_end"] > 0
    assert "witness node RSS" in r.stdout and "minute 0:" in r.stdout
