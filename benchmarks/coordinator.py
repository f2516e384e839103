"""What agreeing on views through etcd costs: a view CAS, a lease refresh, detecting a killed member.

    .venv/bin/python benchmarks/coordinator.py [--quick | --smoke] [--ops N] [--kills N]

One etcd member (``crucial.server._etcd.EtcdProcess``, fsync on, as etcd
defaults) on 127.0.0.1.  Sequential ``read_view``, ``propose_view`` (each
CAS on the revision just read; the read is not timed) and lease refreshes
(what the keep-alive thread sends every ttl/3) through ``Coordinator``;
then member processes that join with ttl=1 and ttl=3 are ``kill -9``ed and
the time until a watch sees their member key deleted is recorded.  The last
line of stdout is a JSON object with the medians: ``view_cas_p50_ms``,
``read_view_p50_ms``, ``lease_refresh_p50_ms`` (and their ``p99``), and per
ttl the seconds from ``kill -9`` to the delete seen
(``killed_member_gone_ttl<T>_median_s``, ``_min_s``, ``_max_s``) and
``ratio_gone_vs_ttl<T>``, that median over the ttl; its goal is the bound
docs/replication.md gives, ``ttl + 0.5 s`` (etcd looks for expired leases
every 0.5 s).
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from _common import by_mode, emit, log, meta, parser
from _common import terminate_as_interrupt as _sigterm

from crucial.server._coord import Coordinator
from crucial.server._etcd import EtcdProcess

MEMBER = """
import sys, time
from crucial.server._coord import Coordinator
c = Coordinator([sys.argv[1]], sys.argv[2], ttl=float(sys.argv[3]))
c.join(sys.argv[4], {})
print("joined", flush=True)
time.sleep(3600)
"""


def ms(name: str, samples: list[float]) -> dict[str, float]:
    """``{name_p50_ms, name_p99_ms}`` of these samples (seconds)."""
    s = sorted(samples)
    return {f"{name}_p50_ms": round(s[len(s) // 2] * 1000, 3), f"{name}_p99_ms": round(s[int(len(s) * 0.99)] * 1000, 3)}


def cas_and_reads(coord: Coordinator, ops: int) -> dict[str, Any]:
    cas, reads = [], []
    coord.propose_view({"epoch": 0}, 0)
    for epoch in range(1, ops + 1):
        t0 = time.perf_counter()
        view, rev = coord.read_view()
        t1 = time.perf_counter()
        won = coord.propose_view({"epoch": epoch, "members": ["a", "b", "c"]}, rev)
        t2 = time.perf_counter()
        assert won and view is not None
        reads.append(t1 - t0)
        cas.append(t2 - t1)
    return ms("view_cas", cas) | ms("read_view", reads)


def refreshes(coord: Coordinator, ops: int) -> dict[str, Any]:
    coord.join("bench", {})
    samples = []
    for _ in range(ops):
        t0 = time.perf_counter()
        coord._refresh(time.monotonic(), coord.ttl / 3)  # what the keep-alive thread does, timed here
        samples.append(time.perf_counter() - t0)
    coord.leave()
    return ms("lease_refresh", samples)


def kill_detection(etcd: EtcdProcess, ttl: float, kills: int) -> list[float]:
    cluster = "kill-" + uuid.uuid4().hex[:8]
    gone: dict[str, float] = {}
    seen = threading.Condition()

    def on_event(name: str, value: bytes | None, revision: int) -> None:
        if value is None and name.startswith("members/"):
            with seen:
                gone[name[len("members/") :]] = time.monotonic()
                seen.notify_all()

    out = []
    with Coordinator([etcd.endpoint], cluster) as observer:
        observer.watch(on_event)
        for i in range(kills):
            node = f"victim{i}"
            args = [sys.executable, "-c", MEMBER, etcd.endpoint, cluster, str(ttl), node]
            child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
            assert child.stdout is not None and child.stdout.readline().strip() == "joined"
            time.sleep(ttl + random.uniform(0, ttl / 3))  # a few refreshes, then a kill at a random point of the cycle
            killed = time.monotonic()
            child.kill()
            child.wait()
            child.stdout.close()
            with seen:
                assert seen.wait_for(lambda node=node: node in gone, 10 * ttl + 5), f"{node} not removed"
            out.append(gone[node] - killed)
            log(f"ttl={ttl:g}: member gone {out[-1]:.2f} s after kill -9")
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ops", type=int, default=None, help="sequential CAS / refreshes (default 300; --quick 50, --smoke 20)")
    p.add_argument("--kills", type=int, default=None, help="kill -9 per ttl (default 5; --quick 2, --smoke 1); --runs too")
    args = p.parse_args()
    ops = args.ops or by_mode(args, 300, 50, 20)
    kills = args.kills or args.runs or by_mode(args, 5, 2, 1)  # each kill is a repetition: the medians are reported
    result: dict[str, Any] = {"benchmark": "coordinator", "ops": ops, "kills": kills}
    goals: dict[str, str] = {}  # besides the detection bound, no goal was set for the coordinator
    labels = {"view_cas_p50_ms": "etcd view CAS, p50 (ms)", "lease_refresh_p50_ms": "etcd lease refresh, p50 (ms)"}
    with _sigterm(), EtcdProcess() as etcd:
        with Coordinator([etcd.endpoint], "bench-" + uuid.uuid4().hex[:8], ttl=3.0) as coord:
            result.update(cas_and_reads(coord, ops))
            result.update(refreshes(coord, ops))
        for ttl in (1.0, 3.0):
            samples = kill_detection(etcd, ttl, kills)
            name = f"killed_member_gone_ttl{ttl:g}"
            median = statistics.median(samples)
            result[f"{name}_median_s"] = round(median, 3)
            result[f"{name}_min_s"] = round(min(samples), 3)
            result[f"{name}_max_s"] = round(max(samples), 3)
            key = f"ratio_gone_vs_ttl{ttl:g}"
            result[key] = round(median / ttl, 3)
            goals[key] = f"<= {(ttl + 0.5) / ttl:.2f}"  # etcd expires a lease up to 0.5 s after its ttl
            labels[key] = f"failure detection: kill -9 to member key deleted, ttl={ttl:g} s (time / ttl)"
    result["goals"], result["labels"] = goals, labels
    result.update(meta(args))
    emit(result)


if __name__ == "__main__":
    main()
