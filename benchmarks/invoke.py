"""End-to-end time of 1, 8 and 64 trivial cloud threads vs ProcessPoolExecutor and Lithops localhost.

    python benchmarks/invoke.py [--quick | --smoke] [--runs N] [--sizes 1,8,64] [--no-lithops]

For each size ``n`` the clock runs from the first start to the last result:

* **crucial**: ``n`` ``crucial.CloudThread(target=noop, args=(i,))`` on the
  default ``local`` backend, all started, then all joined and their results
  read.  The backend is **warm**: the embedded DSO node and the fork server
  are started and the pool has grown to 64 workers before timing (the
  first, cold invocation is reported apart as ``crucial_cold_ms``), and an
  untimed round of the same size precedes each timed block.
* **processpool**: ``concurrent.futures.ProcessPoolExecutor(max_workers=64)``
  (the default start method), created and used once before timing:
  ``n`` ``submit`` then ``n`` ``result()``.
* **lithops**: Lithops' localhost ``FunctionExecutor`` (localhost storage in
  a temporary directory, this interpreter as runtime, ``data_cleaner`` off
  so no cleaner process runs during the others' phases, default settings
  otherwise) ``map(noop, range(n))`` then ``get_result()``; one executor per
  phase, warmed by an untimed map.  It starts a fresh interpreter per
  function, so it gets fewer repetitions.

Each run times every system at every size (the order of the systems
alternates run by run); crucial and the process pool repeat each size
``reps`` times per run (the median counts), Lithops once.  The last line of
stdout is a JSON object with the medians over the runs (ms) and
``ratio_vs_processpool_<n>`` / ``ratio_vs_lithops_<n>`` = crucial / peer
(goals: <= 1.0 and <= 0.1).  Everything started is stopped at the end.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from _common import alternate, by_mode, emit, lithops_tempdir, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm

SIZES = (1, 8, 64)


def noop(i: int) -> int:
    """The trivial function every system runs."""
    return i


def hold(seconds: float) -> None:
    """Keeps a worker busy so that the next invocation needs another: grows crucial's pool."""
    time.sleep(seconds)


# --------------------------------------------------------------------------- one round per system


def crucial_round(n: int) -> None:
    import crucial

    threads = [crucial.CloudThread(target=noop, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if [t.result() for t in threads] != list(range(n)):
        raise RuntimeError("crucial: wrong results")


def pool_round(pool: cf.ProcessPoolExecutor, n: int) -> None:
    futures = [pool.submit(noop, i) for i in range(n)]
    if [f.result() for f in futures] != list(range(n)):
        raise RuntimeError("processpool: wrong results")


def lithops_round(fexec: Any, n: int) -> None:
    with contextlib.redirect_stdout(sys.stderr):  # Lithops prints; stdout's last line is ours
        fexec.map(noop, list(range(n)))
        results = fexec.get_result(show_progressbar=False)
    if sorted(results) != list(range(n)):
        raise RuntimeError(f"lithops: wrong results {results!r}")


def timed_ms(fn: Callable[[], None], reps: int) -> float:
    """The median wall time of ``reps`` calls, in milliseconds."""
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return median(samples)


# --------------------------------------------------------------------------- systems


@contextlib.contextmanager
def crucial_backend(size: int, hold_s: float = 1.0) -> Iterator[dict[str, Any]]:
    """Start the embedded node and the local pool, grow it to ``size``; yield the cold first round (ms) and the pool's stats."""
    import crucial
    from crucial.client._default import stop_embedded
    from crucial.compute import get_backend

    try:
        t0 = time.perf_counter()
        crucial_round(1)  # starts the embedded DSO node, the fork server and a first worker
        cold = (time.perf_counter() - t0) * 1000.0
        # ``size`` invocations at once, so the pool holds ``size`` workers (a round of
        # ``noop`` would not: early ones finish before the last start, and the pool
        # would keep growing during the timed rounds)
        for _ in range(5):  # forking a worker takes ms: hold long enough for all to start
            holders = [crucial.CloudThread(target=hold, args=(hold_s,)) for _ in range(size)]
            for t in holders:
                t.start()
            for t in holders:
                t.result()
            if get_backend("local").size >= size:
                break
        crucial_round(size)
        stats = get_backend("local").stats
        grown = stats["workers_started"]
        yield {"cold_ms": cold, "stats": stats, "grown": grown}
    finally:
        get_backend("local").close()
        stop_embedded()


@contextlib.contextmanager
def process_pool(size: int) -> Iterator[cf.ProcessPoolExecutor]:
    pool = cf.ProcessPoolExecutor(max_workers=size)
    try:
        pool_round(pool, size)
        pool_round(pool, size)
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def lithops_executor() -> Iterator[Any]:
    """A warm Lithops localhost ``FunctionExecutor``, for one phase.

    One per phase, as ``with FunctionExecutor() as fexec:`` is used: while it
    exists its threads share this process (and its GIL) with the other
    systems, which slowed crucial's thread starts by a third when one
    executor lived through the whole benchmark.
    """
    from lithops import FunctionExecutor

    config = {
        "lithops": {"backend": "localhost", "storage": "localhost", "data_cleaner": False},
        # the interpreter each function's fresh subprocess runs: ours, with crucial's dependencies
        "localhost": {"runtime": sys.executable},
    }
    with contextlib.redirect_stdout(sys.stderr):
        fexec = FunctionExecutor(config=config, log_level="WARNING")
    try:
        lithops_round(fexec, 2)
        yield fexec
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            fexec.__exit__(None, None, None)  # stops its monitor, invoker and localhost runner


# --------------------------------------------------------------------------- main


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="thread counts (default 1,8,64; --smoke 1,4)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per size and run for crucial and the pool")
    p.add_argument("--no-lithops", action="store_true", help="skip the Lithops peer")
    args = p.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    sizes = [int(s) for s in (args.sizes or by_mode(args, "1,8,64", "1,8,64", "1,4")).split(",") if s]
    runs = args.runs or by_mode(args, 5, 1, 1)
    reps = args.reps or by_mode(args, 15, 5, 2)
    biggest = max(sizes)
    systems = ["crucial", "processpool"] + ([] if args.no_lithops else ["lithops"])
    samples: dict[str, list[float]] = {f"{s}_{n}": [] for s in systems for n in sizes}

    with _sigterm(), contextlib.ExitStack() as stack:
        log("starting crucial (embedded node + local backend) ...")
        info = stack.enter_context(crucial_backend(biggest, by_mode(args, 1.0, 1.0, 0.3)))
        log(f"  cold first cloud thread: {info['cold_ms']:.1f} ms")
        pool = stack.enter_context(process_pool(biggest))
        if not args.no_lithops:
            stack.enter_context(lithops_tempdir())

        def phase(run: int, system: str) -> None:
            with contextlib.ExitStack() as phase_stack:
                fexec = phase_stack.enter_context(lithops_executor()) if system == "lithops" else None
                for n in sizes:
                    if system == "lithops":
                        value = timed_ms(functools.partial(lithops_round, fexec, n), 1)
                    else:
                        if system == "crucial":
                            one = functools.partial(crucial_round, n)
                        else:
                            one = functools.partial(pool_round, pool, n)
                        one()  # untimed: n warm workers
                        value = timed_ms(one, reps)
                    samples[f"{system}_{n}"].append(value)
                    log(f"run {run + 1}/{runs} {system:11s} n={n:3d}: {value:9.2f} ms")

        for run in range(runs):
            for system in alternate(systems, run):
                phase(run, system)

    out: dict[str, Any] = {"benchmark": "invoke", "sizes": sizes, "runs": runs, "reps": reps}
    out["crucial_cold_ms"] = round(info["cold_ms"], 2)
    for key, values in samples.items():
        out[f"{key}_ms"] = round(median(values), 3)
    for n in sizes:
        for peer in systems[1:]:
            out[f"ratio_vs_{peer}_{n}"] = ratio(out[f"crucial_{n}_ms"], out[f"{peer}_{n}_ms"])
    # equal when the pool did not grow (fork a worker) during the timed rounds
    out["crucial_workers_before_timing"] = info["grown"]
    out["crucial_workers_started"] = info["stats"].get("workers_started")
    out["lithops"] = _version("lithops")
    out["loadavg_1m_before"] = load_before  # other load on the machine skews both sides
    out["goals"] = {f"ratio_vs_processpool_{n}": "<= 1.0" for n in sizes}
    out["labels"] = {
        f"ratio_vs_processpool_{n}": f"start to join of {n} trivial cloud threads vs a warm ProcessPoolExecutor" for n in sizes
    }
    if not args.no_lithops:
        out["labels"].update({f"ratio_vs_lithops_{n}": f"the same, {n} threads, vs Lithops localhost map" for n in sizes})
    if not args.no_lithops:
        out["goals"].update({f"ratio_vs_lithops_{n}": "<= 0.1" for n in sizes})
    out.update(meta(args))
    emit(out)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
