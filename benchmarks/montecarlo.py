"""Monte Carlo pi (the seed's Listing 1): cloud threads + a shared AtomicInt vs threading and multiprocessing.

    python benchmarks/montecarlo.py [--quick | --smoke] [--runs N] [--points P] [--threads 1,2]

Each of ``n`` threads draws ``P`` random points in the unit square (its own
``random.Random(seed)``), counts those inside the quarter circle and adds
its hits to one shared counter **in one call**; the caller then reads the
counter and estimates pi.  The same code runs three ways:

* **crucial**: ``crucial.CloudThread`` on the default ``local`` backend,
  the counter a ``crucial.AtomicInt`` (``add_and_get``) on the embedded DSO
  node.  Measured **warm**: the embedded node, the fork server and ``n``
  workers (already connected to the node) exist before timing, and the
  pool does not grow during it (``crucial_workers_before_timing``);
* **threading**: ``threading.Thread``, the counter a plain ``int`` under a
  ``threading.Lock``;
* **multiprocessing**: a warm ``concurrent.futures.ProcessPoolExecutor``
  (default start method) of ``n`` processes, created and used before timing
  as crucial's workers are; the counter a ``multiprocessing.Value("q")``
  under its own lock, handed to the pool's processes when they start (its
  ``initializer``), reset to 0 before each round.

The clock runs from creating the threads to reading the final count; the
rate is ``n * P / seconds``.  The seeds are the same for every system, so
all three must count the same hits (checked).  Systems alternate run by
run.  The last line of stdout is a JSON object with the median points/s
over the runs and ``ratio_vs_<peer>_<n>`` = crucial / peer (goal:
``ratio_vs_multiprocessing_2`` >= 0.9).  Everything started is stopped.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import random
import threading
import time
import uuid
from typing import Any

from _common import alternate, by_mode, emit, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm


def count_hits(points: int, seed: int) -> int:
    """Points of ``points`` random ones that fall inside the quarter circle."""
    rnd = random.Random(seed).random
    hits = 0
    for _ in range(points):
        x = rnd()
        y = rnd()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


# --------------------------------------------------------------------------- the thread bodies


def crucial_body(points: int, seed: int, counter: Any) -> None:
    counter.add_and_get(count_hits(points, seed))


def threading_body(points: int, seed: int, box: list[int], lock: threading.Lock) -> None:
    hits = count_hits(points, seed)
    with lock:
        box[0] += hits


_shared_value: Any = None  # the pool's processes get the counter when they start


def _adopt_counter(value: Any) -> None:
    global _shared_value
    _shared_value = value


def mp_body(points: int, seed: int) -> None:
    hits = count_hits(points, seed)
    with _shared_value.get_lock():
        _shared_value.value += hits


# --------------------------------------------------------------------------- one round per system: (seconds, hits)


def crucial_round(n: int, points: int, seed0: int, prefix: str) -> tuple[float, int]:
    import crucial

    counter = crucial.AtomicInt(0, key=f"{prefix}-{seed0}-{n}", force_new=True)
    counter.get()  # exists before the clock starts, as the others' counters do
    try:
        t0 = time.perf_counter()
        threads = [crucial.CloudThread(target=crucial_body, args=(points, seed0 + i, counter)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        hits = counter.get()
        seconds = time.perf_counter() - t0
        for t in threads:
            t.result()  # re-raises a failure in the function
        return seconds, hits
    finally:
        counter.delete()


def threading_round(n: int, points: int, seed0: int) -> tuple[float, int]:
    box, lock = [0], threading.Lock()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=threading_body, args=(points, seed0 + i, box, lock)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with lock:
        hits = box[0]
    return time.perf_counter() - t0, hits


def mp_round(pool: cf.ProcessPoolExecutor, value: Any, n: int, points: int, seed0: int) -> tuple[float, int]:
    with value.get_lock():
        value.value = 0
    t0 = time.perf_counter()
    futures = [pool.submit(mp_body, points, seed0 + i) for i in range(n)]
    for f in futures:
        f.result()  # re-raises a failure in the function
    with value.get_lock():
        hits = value.value
    return time.perf_counter() - t0, hits


def warm_pool(n: int) -> tuple[cf.ProcessPoolExecutor, Any]:
    """``n`` pool processes, all started and holding the counter, before timing."""
    value = multiprocessing.Value("q", 0)
    pool = cf.ProcessPoolExecutor(max_workers=n, initializer=_adopt_counter, initargs=(value,))
    for _ in range(3):  # short rounds: every process of the pool starts (and imports this module)
        mp_round(pool, value, n, 50_000, 0)
    return pool, value


# --------------------------------------------------------------------------- main


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=None, help="points per thread (default 4e6; --quick 1e6, --smoke 2e4)")
    p.add_argument("--threads", default="1,2", help="thread counts (default 1,2: one and the 2 cores)")
    args = p.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    sizes = [int(s) for s in args.threads.split(",") if s]
    points = args.points or by_mode(args, 4_000_000, 1_000_000, 20_000)
    runs = args.runs or by_mode(args, 9, 3, 1)
    systems = ["crucial", "threading", "multiprocessing"]
    rates: dict[str, list[float]] = {f"{s}_{n}": [] for s in systems for n in sizes}
    prefix = f"bench-montecarlo-{uuid.uuid4().hex[:8]}"

    from crucial.client._default import stop_embedded
    from crucial.compute import get_backend

    pool: cf.ProcessPoolExecutor | None = None
    with _sigterm():
        try:
            log("warming the process pool and crucial (embedded node, fork server, workers connected to the node) ...")
            pool, value = warm_pool(max(sizes))
            t0 = time.perf_counter()
            crucial_round(1, 1000, 0, prefix)
            log(f"  cold: {(time.perf_counter() - t0) * 1000:.0f} ms")
            for _ in range(5):  # threads long enough (~25 ms) that all run at once: one worker each, connected
                crucial_round(max(sizes), by_mode(args, 300_000, 300_000, 50_000), 0, prefix)
                if get_backend("local").size >= max(sizes):
                    break
            stats = get_backend("local").stats  # live: read again at the end
            workers = stats["workers_started"]
            for run in range(runs):
                order = alternate(systems, run)
                for n in sizes:
                    seed0 = 1000 * (run + 1)
                    hits: dict[str, int] = {}
                    for system in order:
                        if system == "crucial":
                            seconds, hits[system] = crucial_round(n, points, seed0, prefix)
                        elif system == "threading":
                            seconds, hits[system] = threading_round(n, points, seed0)
                        else:
                            seconds, hits[system] = mp_round(pool, value, n, points, seed0)
                        rate = n * points / seconds
                        rates[f"{system}_{n}"].append(rate)
                        log(f"run {run + 1}/{runs} n={n} {system:15s} {rate / 1e6:7.2f} M points/s ({seconds * 1000:.0f} ms)")
                    if len(set(hits.values())) != 1:
                        raise RuntimeError(f"the systems disagree on the hits: {hits}")
                    log(f"  pi ~= {4.0 * hits['crucial'] / (n * points):.5f}")
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            get_backend("local").close()
            stop_embedded()

    out: dict[str, Any] = {"benchmark": "montecarlo", "points_per_thread": points, "threads": sizes, "runs": runs}
    out["mp_start_method"] = multiprocessing.get_start_method()
    out["multiprocessing_is"] = "a warm ProcessPoolExecutor and a multiprocessing.Value"
    # equal when crucial's pool did not grow (fork a worker) during the timed rounds
    out["crucial_workers_before_timing"] = workers
    out["crucial_workers_started"] = stats["workers_started"]
    for key, values in rates.items():
        out[f"{key}_points_s"] = round(median(values))
    for n in sizes:
        for peer in systems[1:]:
            out[f"ratio_vs_{peer}_{n}"] = ratio(out[f"crucial_{n}_points_s"], out[f"{peer}_{n}_points_s"])
    out["loadavg_1m_before"] = load_before  # other load on the machine skews both sides
    out["goals"] = {f"ratio_vs_multiprocessing_{max(sizes)}": ">= 0.9"}
    out["labels"] = {
        f"ratio_vs_multiprocessing_{max(sizes)}": f"Monte Carlo pi, {max(sizes)} cloud threads vs a warm process pool (points/s)",
        f"ratio_vs_threading_{max(sizes)}": f"the same vs {max(sizes)} threads (points/s)",
    }
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
