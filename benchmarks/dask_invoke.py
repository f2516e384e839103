"""The dask backend's overhead: 1, 8 and 64 trivial cloud threads vs ``distributed.Client.map``.

    .venv/bin/python benchmarks/dask_invoke.py [--quick | --smoke] [--runs N] [--sizes 1,8,64]

One ``distributed.LocalCluster`` (2 worker processes, 1 thread each, loopback)
and one crucial node serve both systems in the same run.  For each size
``n`` the clock runs from the first submission to the last result:

* **crucial**: ``n`` ``CloudThread(target=noop, args=(i,), backend=DaskBackend(client=...))``
  started, then their results read (pickling, the DSO address in the task,
  pinning, ``secede`` on the worker, the result fetched back as bytes);
* **dask**: ``client.map(noop, range(n), pure=False)`` then ``client.gather``.

Each run times both systems at every size, alternating which goes first,
``reps`` times per size (the median counts), after an untimed warm-up round.
The last line of stdout is a JSON object with the medians over the runs
(``crucial_<n>_ms``, ``dask_<n>_ms``) and ``ratio_vs_dask_<n>`` = crucial /
Dask, with labels (no goal was set for this backend: the figures say what
it costs over ``Client.map``).
"""

from __future__ import annotations

import time
from typing import Any

from _common import alternate, by_mode, crucial_cluster, emit, environ, log, median, meta, parser, ratio, terminate_as_interrupt


def noop(i: int) -> int:
    return i


def time_crucial(backend: Any, n: int) -> float:
    from crucial.compute import CloudThread

    began = time.perf_counter()
    threads = [CloudThread(target=noop, args=(i,), backend=backend) for i in range(n)]
    for t in threads:
        t.start()
    assert [t.result(120) for t in threads] == list(range(n))
    return (time.perf_counter() - began) * 1000


def time_dask(client: Any, n: int) -> float:
    began = time.perf_counter()
    futures = client.map(noop, range(n), pure=False)
    assert client.gather(futures) == list(range(n))
    return (time.perf_counter() - began) * 1000


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,8,64", help="how many cloud threads / tasks per timing (default 1,8,64)")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = args.runs or by_mode(args, 5, 2, 1)
    reps = by_mode(args, 10, 3, 1)
    import distributed

    from crucial.compute.dask import DaskBackend

    with terminate_as_interrupt(), crucial_cluster(1) as dso, environ(**dso.env_vars()):
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                worker_dashboard_address="127.0.0.1:0",
                silence_logs=50,
            ) as cluster,
            distributed.Client(cluster, set_as_default=False) as client,
        ):
            backend = DaskBackend(client=client)
            try:
                for n in sizes:  # warm-up: workers import crucial, the DSO client connects
                    time_crucial(backend, n)
                    time_dask(client, n)
                results: dict[str, list[float]] = {}
                for run in range(runs):
                    for n in sizes:
                        timers = {"crucial": lambda n=n: time_crucial(backend, n), "dask": lambda n=n: time_dask(client, n)}
                        for name in alternate(("crucial", "dask"), run):
                            results.setdefault(f"{name}_{n}", []).append(median([timers[name]() for _ in range(reps)]))
                    log(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in results.items()))
            finally:
                backend.close()
    out: dict[str, Any] = {"benchmark": "dask_invoke", "runs": runs, "reps": reps, "sizes": sizes, "dask_workers": 2}
    labels: dict[str, str] = {}
    for n in sizes:
        c, d = median(results[f"crucial_{n}"]), median(results[f"dask_{n}"])
        out[f"crucial_{n}_ms"], out[f"dask_{n}_ms"] = round(c, 3), round(d, 3)
        out[f"ratio_vs_dask_{n}"] = ratio(c, d)
        labels[f"ratio_vs_dask_{n}"] = f"start to result of {n} trivial cloud threads on the dask backend vs Client.map + gather"
    out["goals"], out["labels"] = {}, labels
    emit(out | meta(args))


if __name__ == "__main__":
    main()
