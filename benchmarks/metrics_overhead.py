"""What --metrics-port costs per call: a node with metrics vs one without, side by side.

    python benchmarks/metrics_overhead.py [--quick | --smoke] [--runs N] [--calls N] [--objects N]

Two lone nodes run at once, one started with ``--metrics-port 0``.  Each
run makes ``calls`` sequential ``AtomicInt.add_and_get`` calls on each node
(the order alternates run by run, so machine noise hits both alike) and
reads the node's CPU time (its per-process CPU clock, in ns) before and
after: CPU per call is the node's work, less sensitive to a shared machine
than wall time.  Then the metered node gets ``objects`` objects and one
scrape of ``/metrics`` is timed (a scrape walks the object table).

The last line of stdout is a JSON object: medians over the runs of the
wall and node-CPU microseconds per call, with metrics on and off, and the
median of each run's on/off ratio (the two halves of a run saw the same
machine load).
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from typing import Any

from _common import alternate, by_mode, cpu_seconds, emit, log, meta, parser

from crucial.client import Client
from crucial.testing import LocalCluster


def run(client: Client, pid: int, calls: int) -> tuple[float, float]:
    """(wall us per call, node CPU us per call) of ``calls`` sequential calls."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for _ in range(calls):
        client.call("AtomicInt", "bench", "add_and_get", (1,))
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return wall / calls * 1e6, cpu / calls * 1e6


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=None, help="sequential calls per node and run (default 10000)")
    p.add_argument("--objects", type=int, default=None, help="objects on the metered node for the scrape (default 100000)")
    a = p.parse_args()
    a.runs = a.runs or by_mode(a, 15, 7, 2)
    a.calls = a.calls or by_mode(a, 10_000, 3000, 1000)
    a.objects = a.objects or by_mode(a, 100_000, 10_000, 500)
    with LocalCluster() as off, LocalCluster(metrics=True) as on:
        nodes: dict[str, Any] = {}
        for name, cluster in (("off", off), ("on", on)):
            client = cluster.client()
            client.call("AtomicInt", "bench", "get", create=((0,), {}))
            nodes[name] = (client, int(client.info()["pid"]))
            run(client, nodes[name][1], min(a.calls, 2000))  # warm up
        results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        for r in range(a.runs):
            for name in alternate(("off", "on"), r):
                client, pid = nodes[name]
                wall, cpu = run(client, pid, a.calls)
                results[name].append((wall, cpu))
                log(f"run {r}: metrics {name:3}: {wall:.1f} us wall, {cpu:.1f} us node CPU per call")
        client, _ = nodes["on"]
        for i in range(a.objects):
            client.call("AtomicInt", f"obj-{i}", "get", create=((i,), {}))
        where = on.metrics_addresses()[on.addresses[0]]
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://{where}/metrics", timeout=120) as response:
            size = len(response.read())
        scrape = time.perf_counter() - t0
    med = {name: (statistics.median(w for w, _ in rs), statistics.median(c for _, c in rs)) for name, rs in results.items()}
    # each run's on/off ratio: the two halves of a run saw the same machine load
    pairs = list(zip(results["on"], results["off"], strict=True))
    cpu_pairs = [on[1] / off[1] for on, off in pairs if off[1]]
    cpu_pair_ratio = statistics.median(cpu_pairs) if cpu_pairs else float("nan")
    wall_pair_ratio = statistics.median(on[0] / off[0] for on, off in pairs)
    out = {
        "benchmark": "metrics_overhead",
        "calls": a.calls,
        "runs": a.runs,
        "wall_us_off": round(med["off"][0], 2),
        "wall_us_on": round(med["on"][0], 2),
        "node_cpu_us_off": round(med["off"][1], 2),
        "node_cpu_us_on": round(med["on"][1], 2),
        "ratio_cpu_on_vs_off": round(cpu_pair_ratio, 4),
        "ratio_wall_on_vs_off": round(wall_pair_ratio, 4),
        "scrape_s": round(scrape, 4),
        "scrape_objects": a.objects + 1,
        "scrape_bytes": size,
        "goals": {"ratio_cpu_on_vs_off": "<= 1.1", "ratio_wall_on_vs_off": "<= 1.05"},
        "labels": {
            "ratio_cpu_on_vs_off": "--metrics-port: node CPU per call, metrics on / off",
            "ratio_wall_on_vs_off": "--metrics-port: sequential call latency, metrics on / off",
            "scrape_s": "one /metrics scrape of the objects' node (s)",
        },
        **meta(a),
    }
    emit(out)


if __name__ == "__main__":
    main()
