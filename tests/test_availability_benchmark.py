"""benchmarks/availability.py --smoke: it runs, its JSON line has every figure, its timeline is a real picture.

The figures themselves (stalls, throughput) are measurements, not asserted
here; what must hold whatever the machine's load is asserted: no read
failed across the crash and the join, the keys survived the join with two
copies each, and the reads/s series covers the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crucial.testing import unconfigured_env

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("matplotlib", reason="the timeline needs matplotlib: pip install 'crucial[plot]'")


def test_smoke_run_reports_every_figure_and_draws_the_timeline(tmp_path: Path) -> None:
    png = tmp_path / "availability.png"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "availability.py"), "--smoke", "--png", str(png)],
        capture_output=True,
        text=True,
        timeout=240,
        env=unconfigured_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    for key in ("failed_reads", "longest_stall_s", "throughput_after_join_vs_before_crash", "failure_timeout_s"):
        assert key in result, f"{key} missing from {sorted(result)}"
    assert result["failed_reads"] == 0, result["failures"]
    assert result["reads"] > 0 and len(result["per_second"]) == result["duration_s"]
    assert sum(result["per_second"]) <= result["reads"]
    assert 0 < result["longest_stall_s"] <= result["duration_s"]
    assert result["crash_at_s"] < result["join_at_s"] < result["duration_s"]

    moved = result["keys_moved_on_join"]  # one entry per placement `crucial server` offers
    assert "hash" in moved, moved
    for placement, figures in moved.items():
        for population in ("persistent", "ephemeral"):
            counted = figures[population]
            assert counted["keys"] > 0 and 0 <= counted["moved"] <= counted["keys"], (placement, figures)
        assert figures["values_intact"] and figures["wrong_copies_after"] == 0, (placement, figures)
    # about half the persistent keys gain a copy on the 4th node (rf=2 of 4): never none
    assert moved["hash"]["persistent"]["moved"] > 0, moved
    if "anchored" in moved:  # a scale-up moves no anchored (ephemeral) object
        assert moved["anchored"]["ephemeral"]["moved"] == 0, moved

    import matplotlib.image

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(str(png))
    assert pixels.shape[0] >= 200 and pixels.shape[1] >= 400, pixels.shape
    assert pixels.std() > 0.01, "the timeline is blank"
    assert result["png"] == str(png)
