"""Where a replicated call's time goes: ``benchmarks/replication.py --profile DIR``.

For each system (crucial rf=1, rf=2, and rf=2 with ``--fsync always``) and
each load (one client calling ``AtomicReference.set`` of 1 KB back to back;
and many client threads incrementing random counters, as the throughput
benchmark does), three windows of ``seconds`` each, one after the other,
on the same running load:

1. CPU: ``/proc/PID/stat`` (and ``/proc/PID/task/*/stat``, per thread)
   of every node before and after, divided by the calls the primary served
   in the window (the node's own ``calls`` counter, from ``INFO``);
2. syscalls: ``strace -c -f -p PID`` on every node at once, divided by the
   calls served meanwhile (strace slows the nodes down; the *counts* per call
   stay right);
3. py-spy: ``py-spy record --format raw`` on every node at once (collapsed
   stacks: the flame data), summarised into the functions with the most
   samples (inclusive and self).

Everything lands in DIR (``summary.json``, ``summary.md``, and the raw
strace and py-spy files); the summary is printed too.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import ProcessGroup, log
from _replication_systems import CLK_TCK, CRUCIAL, Systems, use_cluster
from replication import counter_key, prepare_counters, tp_worker

__all__ = ["parse_strace", "perf_stat", "profile", "render", "summarize_pyspy", "thread_cpu"]

VALUE = os.urandom(1024)
PROFILED = ["crucial-rf1", "crucial-rf2", "crucial-durable"]


def _roles(systems: Systems, system: str, type_name: str, key: str) -> dict[str, tuple[str, int]]:
    """role -> (address, pid) of the nodes of ``system``'s cluster, roles for the object ``(type_name, key)``."""
    pids = systems.pids(system, type_name, key)
    cluster = systems.clusters[CRUCIAL[system][0]]
    by_pid = {pid: address for address, pid in cluster.pids().items()}
    return {role: (by_pid[pid], pid) for role, pid in pids.items()}


def _stats(systems: Systems, system: str, roles: dict[str, tuple[str, int]]) -> dict[str, dict[str, int]]:
    """Each node's counters: calls served, records sent and applied."""
    client = systems.clusters[CRUCIAL[system][0]].client()
    try:
        out = {}
        for role, (address, _) in roles.items():
            info = client.info(address)
            repl = info.get("replication") or {}
            out[role] = {
                "calls": int(info["stats"].get("calls", 0)),
                "records_sent": int(repl.get("records_sent", 0)),
                "records_applied": int(repl.get("records_applied", 0)),
            }
        return out
    finally:
        client.close()


def _calls(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> int:
    """Calls served by the whole cluster in a window (every node counts the calls it was primary for)."""
    return sum(after[r]["calls"] - before[r]["calls"] for r in after)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's live threads: ``main user``/``main sys`` (the event loop) and ``other user``/``other sys``."""
    out = dict.fromkeys(("main user", "main sys", "other user", "other sys"), 0.0)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            which = "main" if task.name == str(pid) else "other"
            out[f"{which} user"] += int(fields[11]) / CLK_TCK
            out[f"{which} sys"] += int(fields[12]) / CLK_TCK
    return out


def perf_stat(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """``perf stat`` software counters of each process over ``seconds`` (empty when perf is missing or refused)."""
    exe = shutil.which("perf")
    if exe is None:
        return {}
    events = "task-clock,context-switches,cpu-migrations"
    procs = {
        role: subprocess.Popen(
            [exe, "stat", "-x,", "-e", events, "-p", str(pid), "--", "sleep", str(seconds)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role, pid in pids.items()
    }
    out: dict[str, dict[str, float]] = {}
    for role, p in procs.items():
        _, err = p.communicate(timeout=seconds + 30)
        counts = {}
        for line in err.splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[2] in events.split(","):
                with contextlib.suppress(ValueError):
                    counts[parts[2]] = float(parts[0])
        out[role] = counts
    return out


def cpu_window(systems: Systems, system: str, roles: dict[str, tuple[str, int]], seconds: float) -> dict[str, Any]:
    """CPU per call of each node (user/system, event-loop thread/others) and context switches per call."""
    before = _stats(systems, system, roles)
    cpu0 = {role: thread_cpu(pid) for role, (_, pid) in roles.items()}
    perf = perf_stat({role: pid for role, (_, pid) in roles.items()}, seconds)
    cpu1 = {role: thread_cpu(pid) for role, (_, pid) in roles.items()}
    after = _stats(systems, system, roles)
    calls = max(_calls(before, after), 1)
    out: dict[str, Any] = {
        "calls": calls,
        "calls_per_s": round(calls / seconds, 1),
        "cpu_us_per_call": {},
        "split_us_per_call": {},
        "context_switches_per_call": {},
        "records_applied_per_call": {},
    }
    for role in roles:
        split = {k: (cpu1[role][k] - cpu0[role][k]) * 1e6 / calls for k in cpu1[role]}
        out["cpu_us_per_call"][role] = round(sum(split.values()), 1)
        out["split_us_per_call"][role] = {k: round(v, 1) for k, v in split.items()}
        if perf.get(role, {}).get("context-switches") is not None:
            out["context_switches_per_call"][role] = round(perf[role]["context-switches"] / calls, 2)
        applied = after[role]["records_applied"] - before[role]["records_applied"]
        out["records_applied_per_call"][role] = round(applied / calls, 3)
    out["cpu_us_per_call_total"] = round(sum(out["cpu_us_per_call"].values()), 1)
    return out


_STRACE_LINE = re.compile(r"^\s*([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def parse_strace(text: str) -> dict[str, int]:
    """``strace -c`` table -> {syscall: calls}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _STRACE_LINE.match(line)
        if m and m.group(6) != "total":
            out[m.group(6)] = int(m.group(4))
    return out


def strace_window(
    systems: Systems, system: str, roles: dict[str, tuple[str, int]], seconds: float, out_dir: Path, tag: str
) -> dict[str, Any]:
    exe = shutil.which("strace")
    if exe is None:
        return {"skipped": "strace is not installed (apt-get install strace)"}
    before = _stats(systems, system, roles)
    procs = {}
    for role, (_, pid) in roles.items():
        path = out_dir / f"strace-{tag}-{role}.txt"
        procs[role] = (subprocess.Popen([exe, "-c", "-f", "-p", str(pid), "-o", str(path)], stderr=subprocess.DEVNULL), path)
    time.sleep(seconds)
    for p, _ in procs.values():
        p.send_signal(signal.SIGINT)
    for p, _ in procs.values():
        p.wait(timeout=30)
    after = _stats(systems, system, roles)
    calls = max(_calls(before, after), 1)
    out: dict[str, Any] = {"calls": calls, "per_call": {}}
    for role, (_, path) in procs.items():
        counts = parse_strace(path.read_text()) if path.exists() else {}
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        out["per_call"][role] = {name: round(n / calls, 2) for name, n in top if n / calls >= 0.01}
        out.setdefault("total_per_call", {})[role] = round(sum(counts.values()) / calls, 2)
    return out


def _frame_name(frame: str) -> str:
    """``method (path/to/file.py:123)`` -> ``method (file.py)``."""
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({os.path.basename(m.group(2))})"


#: where a sample's time goes, by its innermost frame (and, for a write(), the Python function that called it)
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("gc", ("gc_collect",)),
    ("store: SQLite and its writer thread", ("(_store.py)", "sqlite", "pysqlite", "(cursor.c)", "(microprotocols.c)")),
    ("placement: ring hashing per call", ("(_placement.py)", "blake2", "bisect")),
    ("dedup bookkeeping (Node.remember)", ("Node.remember",)),
    (
        "pickle / unpickle",
        (
            "(_pickle.c)",
            "(_records.py)",
            "pickle_bytes",
            "_plain",
            "loads (protocol.py)",
            "dumps (protocol.py)",
            "decode_call",
            "encode_call",
            "decode_json",
            "encode_json",
        ),
    ),
    ("frame decoding", ("FrameDecoder", "data_received", "(_struct.c)", "encode_frame")),
    ("replication bookkeeping (_replica.py, _peers.py)", ("(_replica.py)", "(_peers.py)")),
    (
        "call dispatch and the method (_node.py, _runtime.py, objects)",
        ("(_node.py)", "(_runtime.py)", "(atomics.py)", "(_monitor.py)", "(_membership.py)", "<lambda>"),
    ),
]


def bucket(frames: list[str]) -> str:
    """The bucket of one stack (innermost frame last)."""
    leaf = frames[-1] if frames else ""
    if leaf.startswith(("write (libc", "__write", "send (libc", "writev (libc")):
        caller = next((f for f in reversed(frames) if f.endswith(".py)")), "")
        if "PeerLink" in caller:
            return "write(): REPLICATE to a backup"
        if "Store" in caller or "_store" in caller:
            return "store: SQLite and its writer thread"
        return "write(): reply to a client / ack to the primary"
    if leaf.startswith(("read (libc", "recv", "epoll", "fdatasync", "pwrite", "futex", "sem_")):
        return f"other syscalls ({leaf.split(' ')[0]})"
    for name, needles in BUCKETS:
        if any(n in leaf for n in needles):
            return name
    for f in reversed(frames):  # a C helper: charge it to the nearest Python frame that has a bucket
        for name, needles in BUCKETS:
            if f.endswith(".py)") and any(n in f for n in needles):
                return name
    return "other"


def summarize_pyspy(text: str, top: int = 25) -> dict[str, Any]:
    """Collapsed stacks -> buckets and the functions with the most samples (inclusive, self), in % of all samples.

    Frames present in nearly every sample (the event loop's own frames) say nothing and are left out
    of the inclusive list.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame_name(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
        buckets[bucket(frames)] += n
    pct = lambda n: round(100.0 * n / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "buckets_pct": {k: pct(v) for k, v in buckets.most_common()},
        "inclusive_pct": {k: pct(v) for k, v in [kv for kv in inclusive.most_common() if kv[1] < 0.9 * total][:top]},
        "self_pct": {k: pct(v) for k, v in own.most_common(top)},
    }


def pyspy_window(roles: dict[str, tuple[str, int]], seconds: float, out_dir: Path, tag: str) -> dict[str, Any]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(exe):
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    procs = {}
    for role, (_, pid) in roles.items():
        path = out_dir / f"pyspy-{tag}-{role}.txt"
        cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--format", "raw", "--gil"]
        cmd += ["--native"]  # C frames too: uvloop, pickle, the write() syscalls
        cmd += ["--output", str(path)]
        procs[role] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
    out = {}
    for role, (p, path) in procs.items():
        p.wait(timeout=seconds + 60)
        out[role] = summarize_pyspy(path.read_text()) if path.exists() else {"skipped": f"py-spy exited with {p.returncode}"}
    return out


# --------------------------------------------------------------------------- the loads


@contextlib.contextmanager
def sequential_load(systems: Systems, system: str):
    """One client thread here: ``AtomicReference.set`` of 1 KB, back to back."""
    import crucial

    use_cluster(systems.dso(system))
    rf = CRUCIAL[system][1]
    ref = crucial.AtomicReference(None, key=f"prof-{system}", persistent=True, rf=rf)
    ref.set(VALUE)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            ref.set(VALUE)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(1.0)  # warm up
    try:
        yield _roles(systems, system, "AtomicReference", f"prof-{system}")
    finally:
        stop.set()
        t.join()


@contextlib.contextmanager
def concurrent_load(systems: Systems, system: str, seconds: float, procs: int = 4, threads: int = 64, objects: int = 800):
    """``threads`` threads in ``procs`` processes incrementing random counters, for the three windows."""
    prepare_counters(systems, system, objects)
    duration = 3 * seconds + 30  # the windows and the calls to INFO between them
    wargs = (procs, threads, objects, duration, [system], {system: systems.target(system)})
    with ProcessGroup(procs, 1, tp_worker, wargs) as group:
        group.start_phase()
        time.sleep(1.0)
        # every node is the primary of some counters and a backup of others: no roles, one line per node
        roles = _roles(systems, system, "AtomicInt", counter_key(system, 0))
        yield {f"node{i}": v for i, v in enumerate(roles.values())}
        group.stop()


def profile(
    out_dir: Path, seconds: float, systems_wanted: list[str] | None = None, loads: tuple[str, ...] = ("sequential", "concurrent")
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    names = systems_wanted or PROFILED
    result: dict[str, Any] = {"seconds": seconds, "load_average_start": os.getloadavg()}
    with Systems(names) as systems:
        for system in names:
            for load in loads:
                tag = f"{system}-{load}"
                log(f"profiling {tag} ...")
                cm = sequential_load(systems, system) if load == "sequential" else concurrent_load(systems, system, seconds)
                with cm as roles:
                    entry: dict[str, Any] = {"pids": {r: pid for r, (_, pid) in roles.items()}}
                    entry["cpu"] = cpu_window(systems, system, roles, seconds)
                    entry["strace"] = strace_window(systems, system, roles, seconds, out_dir, tag)
                    entry["pyspy"] = pyspy_window(roles, seconds, out_dir, tag)
                result[tag] = entry
                log(f"  {tag}: {entry['cpu']['calls_per_s']} calls/s, CPU us/call {entry['cpu']['cpu_us_per_call']}")
    result["load_average_end"] = os.getloadavg()
    (out_dir / "summary.json").write_text(json.dumps(result, indent=1))
    (out_dir / "summary.md").write_text(render(result))
    log(render(result))
    print(
        json.dumps({"benchmark": "replication-profile", "dir": str(out_dir), **{k: v for k, v in result.items() if "load" in k}})
    )
    return result


def render(result: dict[str, Any]) -> str:
    lines = [f"# rf=2 profile ({result['seconds']} s per window)", ""]
    for tag, entry in result.items():
        if not isinstance(entry, dict) or "cpu" not in entry:
            continue
        cpu = entry["cpu"]
        lines.append(f"## {tag}: {cpu['calls_per_s']} calls/s during the CPU window")
        lines.append("")
        lines.append(
            "CPU us per call: "
            + ", ".join(f"{r} {v}" for r, v in cpu["cpu_us_per_call"].items())
            + f" (total {cpu['cpu_us_per_call_total']})"
        )
        for role, split in cpu["split_us_per_call"].items():
            switches = cpu["context_switches_per_call"].get(role)
            lines.append(f"  {role}: " + ", ".join(f"{n} {v}" for n, v in split.items()) + f"; context switches/call {switches}")
        st = entry["strace"]
        if "per_call" in st:
            for role, calls in st["per_call"].items():
                lines.append(
                    f"syscalls per call, {role} ({st['total_per_call'][role]} in all): "
                    + ", ".join(f"{n} {v}" for n, v in calls.items())
                )
        else:
            lines.append(f"strace: {st.get('skipped')}")
        for role, ps in entry["pyspy"].items():
            if "inclusive_pct" not in ps:
                lines.append(f"py-spy {role}: {ps.get('skipped')}")
                continue
            lines.append(
                f"py-spy {role} ({ps['samples']} samples), by bucket %: "
                + "; ".join(f"{k} {v}" for k, v in ps["buckets_pct"].items())
            )
            lines.append(
                f"py-spy {role} inclusive %: " + "; ".join(f"{k} {v}" for k, v in list(ps["inclusive_pct"].items())[:18])
            )
            lines.append(f"py-spy {role} self %: " + "; ".join(f"{k} {v}" for k, v in list(ps["self_pct"].items())[:12]))
        lines.append("")
    return "\n".join(lines)
