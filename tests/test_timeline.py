"""Timelines: what every executor (and Pool) records per function, and the plot of it (issue 14, item 7)."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import crucial
from crucial.compute.timeline import Timeline, recorded
from crucial.testing import unconfigured_env


def _work(i: int) -> int:
    if i == 3:
        raise ValueError("three")
    return i


def _hold(ev: Any) -> None:
    ev.wait(60)


def test_executor_records_every_task(dso1) -> None:
    with crucial.ServerlessExecutor(max_workers=2) as ex:
        futures = [ex.submit(_work, i) for i in range(5)]
        assert list(ex.map(_work, [10, 11], chunksize=2)) == [10, 11]
        for f in futures:
            f.exception()
    calls = ex.timeline.calls
    assert [c.name for c in calls] == ["_work"] * 6
    assert [c.status for c in calls] == ["done", "done", "done", "error", "done", "done"]
    for c in calls:
        assert c.submitted <= c.started <= c.finished  # type: ignore[operator]
        assert c.worker and ":" in c.worker and c.attempts == 1 and c.duration is not None
    assert ex.timeline.summary()["statuses"] == {"done": 5, "error": 1}
    assert all(any(c is r for r in recorded().calls) for c in calls)  # the process's timeline has them too


def test_cancelled_and_queued_tasks(dso1) -> None:
    ev = crucial.Event()
    ex = crucial.ServerlessExecutor(max_workers=1)
    running = ex.submit(_hold, ev)
    queued = ex.submit(_work, 1)
    assert [c.status for c in ex.timeline.calls] == ["running", "queued"]
    ex.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled() and ex.timeline.calls[1].status == "cancelled"
    ev.set()
    running.result(60)
    assert ex.timeline.calls[0].status == "done"


def test_cloud_threads_are_recorded(dso1) -> None:
    t = crucial.CloudThread(target=_work, args=(1,), name="recorded-thread")
    t.start()
    t.join()
    mine = [c for c in recorded().calls if c.name == "recorded-thread"]
    assert len(mine) == 1 and mine[0].status == "done" and mine[0].worker


def test_timeline_keeps_the_last_calls() -> None:
    tl = Timeline(maxlen=3)
    for i in range(5):
        tl.add(f"f{i}")
    assert [c.name for c in tl.calls] == ["f2", "f3", "f4"] and tl.dropped == 2


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_draws_a_png(dso1, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib import image

    with crucial.ServerlessExecutor(max_workers=3) as ex:
        for f in [ex.submit(time.sleep, 0.01 * (i % 4)) for i in range(12)]:
            f.result(60)
    out = ex.plot(str(tmp_path / "run.png"))
    data = Path(out).read_bytes()
    width, height = _png_size(data)
    assert (width, height) == (1000, 700)
    pixels = image.imread(str(out))[..., :3]
    assert pixels.std() > 0.05, "the image is blank"
    greenish = (pixels[..., 1] > 0.4) & (pixels[..., 0] < 0.3) & (pixels[..., 2] < 0.3)
    assert greenish.sum() > 100, "no bar of a finished call was drawn"
    with pytest.raises(ValueError, match="nothing to plot"):
        Timeline().plot(tmp_path / "empty.png")


def test_plot_without_matplotlib_names_the_extra(dso1, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tl = Timeline()
    tl.add("f")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(crucial.ConfigError, match=r"crucial\[plot\]"):
        tl.plot(tmp_path / "x.png")


def test_example_takes_plot(cluster, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "timeline.png"
    done = subprocess.run(
        [sys.executable, "-m", "crucial.examples.montecarlo", "--threads", "3", "--points", "2000", "--plot", str(png)],
        env=unconfigured_env(cluster.env_vars()),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "timeline of 3 cloud functions on" in done.stdout
    assert _png_size(png.read_bytes()) == (1000, 700)


def test_timeline_is_thread_safe() -> None:
    tl = Timeline()
    threads = [threading.Thread(target=lambda: [tl.add("x") for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tl.calls) == 2000
