"""The Santa Claus problem (the seed's Table 3): completion time of plain threads, threads + DSO, cloud threads.

    python benchmarks/santa.py [--quick | --smoke] [--runs N] [--work-delay D]

The seed's instance -- 10 elves, 9 reindeer, 15 deliveries -- in its three
flavours, which differ only in imports and declarations
(``crucial.examples.original.santa`` and ``crucial.examples.santa``):

* **threads**: ``threading.Thread`` entities, groups and gates are
  ``threading.Condition`` monitors in the process;
* **dso**: the same threads, the monitors ``@crucial.shared`` objects on the
  embedded DSO node (their conditions wait on the node);
* **cloud**: the same shared monitors, the 20 entities ``crucial.CloudThread``s
  on the ``local`` backend, measured **warm** (the node, the fork server and
  20 workers exist before timing).

The entities sleep the delays of the seed's Java solution scaled by
``--work-delay`` (default 0.2 s per unit, so a run takes about 4 s instead
of the seed's 20 s): reindeer are on holiday 0.9-1.1 units and deliver for
0-0.02; elves work 0-2 units before a problem comes up and spend 0-0.5 in
Santa's workshop.  Run ``i`` of every flavour draws the same delays (seed
``i``); flavours alternate their order run by run.  Every run's trace must
satisfy the invariants (``crucial.examples._santa_check``), else the
benchmark fails.  The clock runs from starting the entities to the end of
the last one.  The last line of stdout is a JSON object with the p50/p99
completion times, ``overhead_dso``/``overhead_cloud`` = p50 / p50 of
threads - 1 (goal for cloud: <= 0.10, the seed measured 0.038 and 0.090)
and ``ratio_vs_threads`` = p50 cloud / p50 threads.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

from _common import alternate, by_mode, emit, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm

FLAVOURS = ("threads", "dso", "cloud")
PROBLEM = {"elves": 10, "reindeer": 9, "deliveries": 15}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (with few runs, p99 is the slowest run)."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def one_run(flavour: str, work_delay: float, seed: int, problem: dict[str, int] = PROBLEM) -> Any:
    """One complete North Pole; raises if its trace breaks an invariant."""
    from crucial.examples import santa
    from crucial.examples.original import santa as original

    module = original if flavour == "threads" else santa
    result = module.run(flavour, work_delay=work_delay, seed=seed, timeout=300.0, **problem)
    if not result.ok:
        raise RuntimeError(f"{flavour}: broken invariants:\n" + "\n".join(result.problems))
    return result


def warm_up(workers: int, problem: dict[str, int]) -> int:
    """Start the embedded node and ``workers`` warm local workers (connected to the node) before timing."""
    from crucial.compute import get_backend

    t0 = time.perf_counter()
    for _ in range(5):
        one_run("cloud", 0.02, 0, problem)  # 20 cloud threads that all live at once: one worker each
        if get_backend("local").size >= workers:
            break
    log(f"  warm-up: {time.perf_counter() - t0:.1f} s, {get_backend('local').size} workers")
    return int(get_backend("local").stats["workers_started"])


def phase_means(results: list[Any]) -> dict[str, dict[str, float]]:
    """Milliseconds per visit in each phase, by kind of entity, averaged over the runs."""
    from crucial.examples._timing import PHASES, mean_per_iteration

    out: dict[str, dict[str, float]] = {}
    for kind in ("santa", "elves", "reindeer"):
        means = [mean_per_iteration([w for name, w in r.watches.items() if name.split()[0] == kind]) for r in results]
        out[kind] = {phase: round(1e3 * sum(m[phase] for m in means) / len(means), 2) for phase in PHASES}
    return out


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--work-delay", type=float, default=None, help="seconds per delay unit (default 0.2; --quick 0.1)")
    args = p.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    runs = args.runs or by_mode(args, 10, 2, 1)
    work_delay = args.work_delay if args.work_delay is not None else by_mode(args, 0.2, 0.1, 0.01)
    problem = by_mode(args, PROBLEM, PROBLEM, {"elves": 3, "reindeer": 2, "deliveries": 2})
    seconds: dict[str, list[float]] = {f: [] for f in FLAVOURS}
    results: dict[str, list[Any]] = {f: [] for f in FLAVOURS}

    from crucial.client._default import stop_embedded
    from crucial.compute import get_backend

    with _sigterm():
        try:
            log("warming crucial (embedded node, fork server, 20 workers connected to the node) ...")
            workers = warm_up(1 + problem["elves"] + problem["reindeer"], problem)
            for run in range(runs):
                for flavour in alternate(FLAVOURS, run):
                    result = one_run(flavour, work_delay, run + 1, problem)
                    seconds[flavour].append(result.seconds)
                    results[flavour].append(result)
                    log(f"run {run + 1}/{runs} {flavour:8s} {result.seconds:6.2f} s  ({result.consultations} consultations)")
            stats = get_backend("local").stats
        finally:
            get_backend("local").close()
            stop_embedded()

    out: dict[str, Any] = {"benchmark": "santa", **problem, "work_delay": work_delay, "runs": runs}
    for flavour in FLAVOURS:
        out[f"p50_{flavour}"] = round(median(seconds[flavour]), 3)
        out[f"p99_{flavour}"] = round(percentile(seconds[flavour], 99), 3)
    for flavour in ("dso", "cloud"):
        out[f"overhead_{flavour}"] = round(out[f"p50_{flavour}"] / out["p50_threads"] - 1, 4)
    out["ratio_vs_threads"] = ratio(out["p50_cloud"], out["p50_threads"])
    out["goal_overhead_cloud"] = 0.10
    out["consultations_mean"] = {f: round(sum(r.consultations for r in results[f]) / runs, 1) for f in FLAVOURS}
    out["ms_per_visit"] = {f: phase_means(results[f]) for f in FLAVOURS}  # compute / shared state / sync
    # equal when the local pool did not grow (fork a worker) during the timed runs
    out["crucial_workers_before_timing"] = workers
    out["crucial_workers_started"] = stats["workers_started"]
    out["loadavg_1m_before"] = load_before
    out["goals"] = {"ratio_vs_threads": "<= 1.10"}
    out["labels"] = {"ratio_vs_threads": "Santa Claus problem, cloud threads vs plain threads (p50 time)"}
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
