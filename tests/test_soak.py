"""benchmarks/soak.py --smoke: the soak's machinery, end to end, in about half a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crucial.testing import unconfigured_env

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"

#: errors the soak may still meet, each the subject of an xfail test in tests/test_soak_findings.py;
#: remove a kind here when its test passes
KNOWN = {"ephemeral: ObjectNotFoundError", "persistent: ObjectNotFoundError"}
#: the same absence, now named ObjectLostError when the key's owner in the views since its last complete
#: hand-over was a crashed node (a subclass of ObjectNotFoundError; for a persistent object the name is wrong:
#: with a restart every 6 s some persistent objects go missing from their primary -- docs/operations.md, "Soak")
KNOWN |= {"persistent: ObjectLostError"}
#: and one found after the merge with main, not reduced to a test yet (docs/operations.md, "Soak"): a call on one
#: persistent object that never gets its reply (the node shows a replicated write pending), other keys served
KNOWN |= {"persistent: CallTimeoutError"}


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
    assert set(result["error_kinds"]) <= KNOWN, result["error_samples"]
    # an object the final check cannot read: the same findings, met at the end
    assert all(
        any(f": {kind}: " in u for kind in ("ObjectNotFoundError", "ObjectLostError", "CallTimeoutError"))
        for u in result["unreadable"]
    ), result["unreadable"]
    assert result["per_minute"] and all(m["p99_ms"] >= m["p50_ms"] > 0 for m in result["per_minute"])
    assert result["rss_mb"]["witness_start"] > 0 and result["rss_mb"]["witness_end"] > 0
    assert "witness node RSS" in r.stdout and "minute 0:" in r.stdout
