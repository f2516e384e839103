"""The node's durable store (crucial.server._store) per fsync mode: commits/s and records/s.

    .venv/bin/python benchmarks/store.py [--quick | --smoke] [--runs N] [--seconds S] [--dir DIR]

For each of ``always``, ``batch``, ``never`` (the order alternates per run):

* sequential: one 64-byte CALL record per submit, the next submitted when
  the previous one's ``done()`` came -- one client's durable call rate, and
  the writer's own time per commit (``commit_us``, measured inside it; and
  ``commit_us_4_records`` with 4 records per commit);
* grouped: 4 records per submit, up to 256 submits in flight (a busy node:
  every event-loop turn submits what its calls produced) -- records/s and
  how many records one group commit wrote.

A baseline writes 64 bytes and ``os.fsync``s a plain file in a loop: the
disk's fsync rate, the ceiling of sequential ``always`` commits.  The data
dir is a temporary directory (or ``--dir``), so the figures are those of its
file system.  The last line of stdout is the JSON result (medians of the runs):
``raw_fsync_per_s``, ``<fsync>_commits_per_s``, ``<fsync>_commit_us``,
``<fsync>_commit_us_4_records``, ``<fsync>_records_per_s`` and
``<fsync>_records_per_commit`` for each fsync mode, and the ratios
``ratio_always_commits_vs_raw_fsync`` (how close sequential ``always``
commits come to the disk's fsync rate) and ``ratio_<fsync>_records_vs_never``
(what fsyncing costs grouped commits).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import by_mode, emit, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm

from crucial.server._records import Record, RecordKind
from crucial.server._store import FSYNC_MODES, Store

BODY = bytes(64)


def record(n: int) -> Record:
    return Record("AtomicInt", f"k{n % 16}", RecordKind.CALL, (1, n), (1, n - 1), BODY, ("client", n, 0, b"1"))


def sequential(store: Store, seconds: float, limit: int, per_submit: int = 1) -> tuple[float, float]:
    """Commits/s with one submit in flight, and the writer's mean time per commit (µs)."""
    done = threading.Event()
    before = store.stats()
    n, started = 0, time.perf_counter()
    while n < limit and time.perf_counter() - started < seconds:
        done.clear()
        store.submit([record(n * per_submit + i) for i in range(per_submit)], lambda err: done.set())
        if not done.wait(60):
            raise TimeoutError("a commit took over 60 s")
        n += 1
    elapsed = time.perf_counter() - started
    after = store.stats()
    commits = after["commits"] - before["commits"]
    return n / elapsed, (after["commit_s_total"] - before["commit_s_total"]) / max(commits, 1) * 1e6


def grouped(store: Store, seconds: float, limit: int, per_submit: int = 4, in_flight: int = 256) -> tuple[float, float]:
    """Records/s with many submits in flight, and records per commit."""
    window = threading.Semaphore(in_flight)
    before = store.stats()
    n, started = 0, time.perf_counter()
    while n < limit and time.perf_counter() - started < seconds:
        window.acquire()
        store.submit([record(i) for i in range(n, n + per_submit)], lambda err: window.release())
        n += per_submit
    store.flush(60)
    elapsed = time.perf_counter() - started
    commits = store.stats()["commits"] - before["commits"]
    return n / elapsed, n / max(commits, 1)


def raw_fsync(directory: Path, seconds: float, limit: int) -> float:
    path = directory / "raw-fsync"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        n, started = 0, time.perf_counter()
        while n < limit and time.perf_counter() - started < seconds:
            os.write(fd, BODY)
            os.fsync(fd)
            n += 1
        return n / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=None, help="length of each measurement (default 2; --quick 1)")
    p.add_argument("--dir", type=Path, default=None, help="where to make the data dirs (default: a temporary directory)")
    args = p.parse_args()
    runs = args.runs or by_mode(args, 5, 3, 1)
    limit = by_mode(args, 10**9, 10**9, 200)  # --smoke: a few hundred records per mode, whatever the disk
    seconds = args.seconds or by_mode(args, 2.0, 1.0, 5.0)
    samples: dict[str, dict[str, list[float]]] = {m: {} for m in FSYNC_MODES}
    raw: list[float] = []
    with _sigterm(), tempfile.TemporaryDirectory(dir=args.dir, prefix="crucial-store-bench-") as tmp:
        base = Path(tmp)
        for run in range(runs):
            order = FSYNC_MODES if run % 2 == 0 else FSYNC_MODES[::-1]
            raw.append(raw_fsync(base, seconds / 2, limit))
            for fsync in order:
                with Store.open(base / f"{fsync}-{run}", fsync=fsync) as store:
                    figures = {}
                    figures["commits_per_s"], figures["commit_us"] = sequential(store, seconds, limit // 4)
                    _, figures["commit_us_4_records"] = sequential(store, seconds / 4, limit // 4, per_submit=4)
                    figures["records_per_s"], figures["records_per_commit"] = grouped(store, seconds, limit)
                for name, value in figures.items():
                    samples[fsync].setdefault(name, []).append(value)
                log(f"run {run} {fsync}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    out: dict[str, Any] = {"benchmark": "store", "runs": runs, "raw_fsync_per_s": round(median(raw), 1)}
    for fsync in FSYNC_MODES:
        out.update({f"{fsync}_{name}": round(median(values), 1) for name, values in samples[fsync].items()})
    out["ratio_always_commits_vs_raw_fsync"] = ratio(out["always_commits_per_s"], out["raw_fsync_per_s"])
    for fsync in ("always", "batch"):
        out[f"ratio_{fsync}_records_vs_never"] = ratio(out[f"{fsync}_records_per_s"], out["never_records_per_s"])
    out["goals"] = {}  # no goal was set for the store: these figures say what each fsync mode costs
    out["labels"] = {
        "ratio_always_commits_vs_raw_fsync": "store, sequential commits with fsync always vs a write+fsync loop (commits/s)",
        "ratio_always_records_vs_never": "store, grouped records/s, fsync always vs never",
        "ratio_batch_records_vs_never": "store, grouped records/s, fsync batch vs never",
        "always_commit_us": "store, the writer's time per commit, fsync always (us)",
        "never_commit_us": "store, the writer's time per commit, fsync never (us)",
    }
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
