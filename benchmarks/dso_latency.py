"""Sequential 1 KB put/get latency: a crucial proxy vs redis-py SET/GET on redis-server.

    python benchmarks/dso_latency.py [--quick | --smoke] [--runs N] [--ops N]

One client thread does ``ops`` puts then ``ops`` gets of a 1 KB ``bytes``
value, through ``crucial.AtomicReference.set/get`` (one node, started here)
and through redis-py ``SET``/``GET`` (hiredis parser) on a private
redis-server.  The systems alternate run by run (crucial first in even runs,
Redis first in odd ones) so that machine noise hits both alike.  The last
line of stdout is a JSON object with the medians over the runs and
``ratio_vs_redis`` = crucial mean latency / Redis mean latency (goal:
<= 0.85; 0.75 the moonshot).

crucial runs as users get it: a caller alone on its connection polls its
socket for up to ``spin_us`` (50 µs) before it sleeps (docs/design.md, "A
lone caller polls for its reply"); redis-py always sleeps in ``recv``.  So a
third system, **crucial_nopoll** (``spin_us=0``), runs in the same rounds and
``ratio_vs_redis_nopoll`` says what crucial does without polling.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from _common import (
    RedisServer,
    alternate,
    by_mode,
    crucial_cluster,
    emit,
    hiredis_version,
    log,
    median,
    meta,
    parser,
    ratio,
    redis_client,
)
from _common import terminate_as_interrupt as _sigterm

VALUE_SIZE = 1024


def timed(op: Callable[[], Any], n: int) -> list[float]:
    """Latency of each of ``n`` sequential calls, in microseconds."""
    clock = time.perf_counter_ns
    out = [0.0] * n
    for i in range(n):
        t0 = clock()
        op()
        out[i] = (clock() - t0) / 1000.0
    return out


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"mean": sum(s) / len(s), "p50": s[len(s) // 2], "p99": s[int(len(s) * 0.99)]}


def run_crucial(ref: Any, value: bytes, n: int) -> dict[str, dict[str, float]]:
    for _ in range(min(n, 1000)):  # warm-up
        ref.set(value)
        ref.get()
    put = timed(lambda: ref.set(value), n)
    get = timed(ref.get, n)
    assert ref.get() == value
    return {"put": summary(put), "get": summary(get)}


def run_redis(r: Any, value: bytes, n: int) -> dict[str, dict[str, float]]:
    for _ in range(min(n, 1000)):  # warm-up
        r.set("lat", value)
        r.get("lat")
    put = timed(lambda: r.set("lat", value), n)
    get = timed(lambda: r.get("lat"), n)
    assert r.get("lat") == value
    return {"put": summary(put), "get": summary(get)}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=None, help="puts and gets per run (default 30000, --quick 3000, --smoke 200)")
    args = p.parse_args()
    n = args.ops or by_mode(args, 30_000, 3000, 200)
    runs = args.runs or by_mode(args, 5, 3, 1)
    value = os.urandom(VALUE_SIZE)

    import crucial

    results: dict[str, list[dict[str, dict[str, float]]]] = {"crucial": [], "redis": [], "crucial_nopoll": []}
    with _sigterm(), RedisServer() as rs, crucial_cluster(1) as cluster:
        ref = crucial.AtomicReference(None, key="latency-1k")  # through the default client, whichever it is then
        r = redis_client(rs.port)
        for run in range(runs):
            for system in alternate(("crucial", "redis", "crucial_nopoll"), run):
                if system == "redis":
                    results[system].append(run_redis(r, value, n))
                else:
                    crucial.connect(cluster.dso, **({"spin_us": 0} if system == "crucial_nopoll" else {}))
                    results[system].append(run_crucial(ref, value, n))
            c, rd, np_ = results["crucial"][-1], results["redis"][-1], results["crucial_nopoll"][-1]
            log(
                f"run {run + 1}/{runs}: crucial put {c['put']['mean']:.1f} get {c['get']['mean']:.1f} us"
                f" (not polling: {np_['put']['mean']:.1f}, {np_['get']['mean']:.1f});"
                f" redis SET {rd['put']['mean']:.1f} GET {rd['get']['mean']:.1f} us"
            )
        r.close()

    out: dict[str, Any] = {"benchmark": "dso_latency", "value_bytes": VALUE_SIZE, "ops_per_run": n, "runs": runs}
    for system, rs_ in results.items():
        for op in ("put", "get"):
            for stat in ("mean", "p50", "p99"):
                out[f"{system}_{op}_{stat}_us"] = round(median([x[op][stat] for x in rs_]), 2)
        out[f"{system}_mean_us"] = round(median([(x["put"]["mean"] + x["get"]["mean"]) / 2 for x in rs_]), 2)
    out["ratio_vs_redis"] = ratio(out["crucial_mean_us"], out["redis_mean_us"])
    out["ratio_vs_redis_put"] = ratio(out["crucial_put_mean_us"], out["redis_put_mean_us"])
    out["ratio_vs_redis_get"] = ratio(out["crucial_get_mean_us"], out["redis_get_mean_us"])
    out["ratio_vs_redis_nopoll"] = ratio(out["crucial_nopoll_mean_us"], out["redis_mean_us"])
    out["goals"] = {"ratio_vs_redis": "<= 0.85"}
    out["labels"] = {
        "ratio_vs_redis": "latency, 1 KB put+get through a proxy vs redis-py SET/GET (mean time)",
        "ratio_vs_redis_put": "latency, 1 KB put vs SET",
        "ratio_vs_redis_get": "latency, 1 KB get vs GET",
        "ratio_vs_redis_nopoll": "latency, the same with crucial's polling off (spin_us=0)",
    }
    out["hiredis"] = hiredis_version()
    out.update(meta(args))
    emit(out)


if __name__ == "__main__":
    main()
