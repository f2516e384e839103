"""The dask backend's overhead: 1, 8 and 64 trivial cloud threads vs ``distributed.Client.map``.

    .venv/bin/python benchmarks/dask_invoke.py [--quick] [--runs N] [--sizes 1,8,64]

One ``distributed.LocalCluster`` (2 worker processes, 1 thread each, loopback)
and one crucial node serve both systems in the same run.  For each size
``n`` the clock runs from the first submission to the last result:

* **crucial**: ``n`` ``CloudThread(target=noop, args=(i,), backend=DaskBackend(client=...))``
  started, then their results read (pickling, the DSO address in the task,
  pinning, ``secede`` on the worker, the result fetched back as bytes);
* **dask**: ``client.map(noop, range(n), pure=False)`` then ``client.gather``.

Each run times both systems at every size, alternating which goes first,
``reps`` times per size (the median counts), after an untimed warm-up round.
The last line of stdout is a JSON object with the medians over the runs (ms)
and ``ratio_vs_dask_<n>`` = crucial / Dask.
"""

from __future__ import annotations

import time
from typing import Any

from _common import crucial_cluster, emit, environ, log, median, meta, parser, ratio, terminate_as_interrupt


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
    p.add_argument("--sizes", default="1,8,64")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = args.runs or (2 if args.quick else 5)
    reps = 3 if args.quick else 10
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
                        order = [("crucial", lambda n=n: time_crucial(backend, n)), ("dask", lambda n=n: time_dask(client, n))]
                        if run % 2:
                            order.reverse()
                        for name, fn in order:
                            results.setdefault(f"{name}_{n}", []).append(median([fn() for _ in range(reps)]))
                    log(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in results.items()))
            finally:
                backend.close()
    out: dict[str, Any] = {"benchmark": "dask_invoke", "runs": runs, "reps": reps, "sizes": sizes, "dask_workers": 2}
    for n in sizes:
        c, d = median(results[f"crucial_{n}"]), median(results[f"dask_{n}"])
        out[f"crucial_{n}_ms"], out[f"dask_{n}_ms"] = round(c, 3), round(d, 3)
        out[f"ratio_vs_dask_{n}"] = ratio(c, d)
    emit(out | meta())


if __name__ == "__main__":
    main()
