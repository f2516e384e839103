"""The serverless shell: ``xargs -P 50 sshell true``, IPC verb calls inside and outside an invocation, LinkRun.

    /work/venv/bin/python benchmarks/sshell.py [--quick] [--runs N] [--calls 200] [--inside 1000] [--client 20]

Everything runs against a real DSO node (``crucial.testing.LocalCluster``, one
node on 127.0.0.1 with a token), exported to every command as
``CRUCIAL_DSO``/``CRUCIAL_TOKEN``, on the default ``local`` backend.  The
``sshell`` and ``crucial`` found are those of this interpreter's bin directory.

1. **xargs**: wall time of ``seq 1 N | xargs -P 50 -I{} sshell true`` (N = 200),
   and per call (wall / N).  Peer: the same with ``bash -c true``: a *floor*
   (what xargs and process creation alone cost), not a competitor.  Lithops
   is skipped here even when installed (a fresh interpreter per function:
   minutes for 200 calls).
2. **IPC verb per call**:

   * *inside* one invocation: ``sshell '...'`` runs a bash loop of 1000
     ``counter -n K increment >/dev/null`` (the verb is a bash function talking
     to the worker's verb server), timed inside the command with
     ``date +%s%N``; per call = loop time / 1000.  Peer: the same loop with
     ``redis-cli -p PORT INCR K >/dev/null`` in the same kind of invocation.
   * from the *client*: 20 ``crucial ipc counter -n K increment`` (a Python
     process each: start-up, imports, connect, one call), each timed in bash
     with ``$EPOCHREALTIME``; the median call.  Peer: ``redis-cli INCR``.
     Goal: "well under 100 ms" -- taken as <= 50 ms.

   Every loop checks its final count (``tally`` / ``GET``).
3. **LinkRun**: when ``examples/sshell/generate.py``, ``linkrun_stateful.sh``
   and ``linkrun_stateless.sh`` exist, both scripts run on the same generated
   archives (16 by default); ``ratio_stateful_vs_stateless`` = stateful /
   stateless wall time.  Otherwise the field is null and ``linkrun_skipped``
   says why.

A start-up profile follows (median wall time of ``python -c pass``,
``import crucial``, ``import crucial.cli``, ``import crucial.shell.sshell``,
and, in one process, the imports, the first verb call -- which connects --
and the second).

The systems alternate their order run by run.  The last line of stdout is
one JSON object: medians over the runs, ``ratio_vs_bash_xargs``,
``ratio_vs_redis_cli_inside``, ``ratio_vs_redis_cli_client`` (ours / peer,
same unit).  Everything started (the DSO node, redis-server, temporary
directories) is stopped or removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import LOOPBACK, REPO, RedisServer, emit, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm

BIN = Path(sys.executable).parent
SSHELL = str(BIN / "sshell")
CRUCIAL = str(BIN / "crucial")
EXAMPLES = REPO / "examples" / "sshell"
CLIENT_GOAL_MS = 50.0  # "well under 100 ms"


# --------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def dso_cluster() -> Iterator[Any]:
    """One real crucial node on loopback, with a token."""
    from crucial.testing import LocalCluster

    cluster = LocalCluster(nodes=1, token=secrets.token_hex(16))
    cluster.start()
    try:
        for address in cluster.addresses:
            if address.rsplit(":", 1)[0] not in (LOOPBACK, "localhost"):
                raise RuntimeError(f"crucial node listens on {address}, not loopback")
        yield cluster
    finally:
        cluster.stop()


def command_env(cluster: Any, tmp: str) -> dict[str, str]:
    """The environment of every timed command: this venv first on PATH, the cluster, no stray CRUCIAL_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIAL_")}
    env.update(cluster.env_vars())
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["CRUCIAL_SHARED_DIR"] = os.path.join(tmp, "shared")
    env["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")  # never touch the user's persistent node
    env["LC_ALL"] = "C"
    return env


def bash(script: str, env: dict[str, str], timeout: float = 600.0) -> tuple[float, str]:
    """Run ``bash -c script``; return (wall seconds, stdout).  A non-zero status is an error."""
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode} from {script[:200]!r}:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


# --------------------------------------------------------------------------- 1. xargs -P 50


def xargs_round(what: str, calls: int, env: dict[str, str]) -> float:
    """Wall seconds of ``seq 1 calls | xargs -P 50 -I{} <what> true``."""
    cmd = {"sshell": shlex.quote(SSHELL), "bash": "bash -c"}[what]
    wall, _ = bash(f"seq 1 {calls} | xargs -P 50 -I{{}} {cmd} true", env)
    return wall


# --------------------------------------------------------------------------- 2. one verb call


def inside_loop(body: str, check: str, n: int, env: dict[str, str]) -> float:
    """Microseconds per call of ``body`` in a bash loop of ``n`` inside one sshell invocation; ``check`` must print n."""
    script = (
        f"a=$(date +%s%N); for ((i = 0; i < {n}; i++)); do {body} >/dev/null || exit 1; done; "
        f"b=$(date +%s%N); echo $((b - a)); {check}"
    )
    _, out = bash(f"{shlex.quote(SSHELL)} {shlex.quote(script)}", env)
    lines = out.split()
    if len(lines) != 2 or int(lines[1]) != n:
        raise RuntimeError(f"inside loop: unexpected output {out!r} (expected the time and the count {n})")
    return int(lines[0]) / n / 1000.0


def client_calls(body: str, check: str, n: int, env: dict[str, str]) -> list[float]:
    """Milliseconds of each of ``n`` calls of ``body`` from a client bash (``$EPOCHREALTIME``); ``check`` must print n."""
    script = (
        f"for ((i = 0; i < {n}; i++)); do a=$EPOCHREALTIME; {body} >/dev/null || exit 1; b=$EPOCHREALTIME; "
        f'echo "$a $b"; done; {check}'
    )
    _, out = bash(script, env)
    lines = out.strip().splitlines()
    if len(lines) != n + 1 or int(lines[-1]) != n:
        raise RuntimeError(f"client calls: unexpected output {out[-300:]!r}")
    times = []
    for line in lines[:-1]:
        a, b = (float(x.replace(",", ".")) for x in line.split())
        times.append((b - a) * 1000.0)
    return times


def counter_body(name: str, client: bool) -> tuple[str, str]:
    verb = f"{shlex.quote(CRUCIAL)} ipc counter" if client else "counter"
    return f"{verb} -n {name} increment", f"{verb} -n {name} tally"


def redis_body(port: int, name: str) -> tuple[str, str]:
    return f"redis-cli -p {port} INCR {name}", f"redis-cli -p {port} GET {name}"


# --------------------------------------------------------------------------- 3. LinkRun


LINKRUN_FILES = ("generate.py", "linkrun_stateful.sh", "linkrun_stateless.sh")


def linkrun_missing() -> str | None:
    missing = [f for f in LINKRUN_FILES if not (EXAMPLES / f).exists()]
    return f"examples/sshell/{', '.join(missing)} not found" if missing else None


def linkrun_round(which: str, data: str, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds and output of ``linkrun_<which>.sh DATA`` (run from the examples directory)."""
    script = f"cd {shlex.quote(str(EXAMPLES))} && bash ./linkrun_{which}.sh {shlex.quote(data)}"
    return bash(script, env, timeout=1800)


def normalise(out: str) -> list[tuple[str, str]]:
    """The ranking printed, as (domain, count) pairs, ignoring blank lines and spacing."""
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            rows.append((fields[0], fields[1]))
    return rows


# --------------------------------------------------------------------------- profile


def startup_profile(env: dict[str, str], reps: int) -> dict[str, float]:
    """Median wall ms of interpreter start-up and of the imports sshell and ``crucial ipc`` pay."""
    py = sys.executable
    cases = {
        "python_startup_ms": [py, "-c", "pass"],
        "import_crucial_ms": [py, "-c", "import crucial"],
        "import_crucial_cli_ms": [py, "-c", "import crucial.cli"],
        "import_crucial_shell_sshell_ms": [py, "-c", "import crucial.shell.sshell"],
        "redis_cli_startup_ms": ["redis-cli", "--version"],
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(reps):
        for key, cmd in cases.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
            samples[key].append((time.perf_counter() - t0) * 1000.0)
    out = {k: round(median(v), 2) for k, v in samples.items()}
    # In one client process: what `crucial ipc counter ... increment` does after start-up.
    probe = (
        "import time; t0 = time.perf_counter(); import crucial.cli; from crucial.shell import ipc, verbs; "
        "t1 = time.perf_counter(); r1 = verbs.run_verb(['counter', '-n', 'profile', 'increment']); "
        "t2 = time.perf_counter(); r2 = verbs.run_verb(['counter', '-n', 'profile', 'increment']); "
        "t3 = time.perf_counter(); assert r1[0] == 0 and r2[0] == 0, (r1, r2); "
        "print((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)"
    )
    parts: list[list[float]] = [[], [], []]
    for _ in range(reps):
        res = subprocess.run([py, "-c", probe], env=env, capture_output=True, text=True, check=True)
        for i, v in enumerate(res.stdout.split()):
            parts[i].append(float(v))
    out["client_imports_ms"] = round(median(parts[0]), 2)
    out["client_first_call_ms"] = round(median(parts[1]), 2)  # connects to the node, then increments
    out["client_warm_call_ms"] = round(median(parts[2]), 3)
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=None, help="sshell invocations per xargs round (default 200; --quick 60)")
    p.add_argument("--inside", type=int, default=None, help="verb calls in the inside loop (default 1000; --quick 300)")
    p.add_argument("--client", type=int, default=20, help="client-side verb calls per run (default 20)")
    p.add_argument("--archives", type=int, default=16, help="generated archives for the LinkRun scripts")
    p.add_argument("--records", type=int, default=None, help="pages per archive (default 2000; --quick 500)")
    p.add_argument("--no-linkrun", action="store_true", help="skip the LinkRun comparison")
    args = p.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    calls = args.calls or (60 if args.quick else 200)
    inside_n = args.inside or (300 if args.quick else 1000)
    client_n = args.client
    load_before = round(os.getloadavg()[0], 2)
    out: dict[str, Any] = {"benchmark": "sshell", "runs": runs, "xargs_calls": calls, "xargs_parallel": 50}
    out.update({"inside_calls": inside_n, "client_calls": client_n})

    tmp = tempfile.mkdtemp(prefix="crucial-bench-sshell-")
    try:
        with _sigterm(), dso_cluster() as cluster, RedisServer() as rs:
            env = command_env(cluster, tmp)
            log(f"DSO {cluster.dso}, redis-server :{rs.port}; warming up")
            bash(f"{shlex.quote(SSHELL)} true && {shlex.quote(CRUCIAL)} ipc counter -n warm tally", env)

            xs: dict[str, list[float]] = {"sshell": [], "bash": []}
            per: dict[str, list[float]] = {"inside": [], "redis_inside": [], "client": [], "redis_client": []}
            for run in range(runs):
                order = ["sshell", "bash"] if run % 2 == 0 else ["bash", "sshell"]
                for what in order:
                    xs[what].append(xargs_round(what, calls, env))
                    log(f"run {run + 1}/{runs}: xargs -P 50 {what} x{calls}: {xs[what][-1]:.2f} s")
                systems = ["crucial", "redis"] if run % 2 == 0 else ["redis", "crucial"]
                for system in systems:
                    key = f"c{run}_{secrets.token_hex(4)}"
                    if system == "crucial":
                        body, check = counter_body(key, client=False)
                        per["inside"].append(inside_loop(body, check, inside_n, env))
                        body, check = counter_body(key + "_client", client=True)
                        per["client"].append(median(client_calls(body, check, client_n, env)))
                        log(f"run {run + 1}/{runs}: counter inside {per['inside'][-1]:.1f} us, client {per['client'][-1]:.1f} ms")
                    else:
                        body, check = redis_body(rs.port, key)
                        per["redis_inside"].append(inside_loop(body, check, inside_n, env))
                        body, check = redis_body(rs.port, key + "_client")
                        per["redis_client"].append(median(client_calls(body, check, client_n, env)))
                        log(
                            f"run {run + 1}/{runs}: redis-cli inside {per['redis_inside'][-1]:.1f} us, "
                            f"client {per['redis_client'][-1]:.1f} ms"
                        )

            sshell_s, bash_s = median(xs["sshell"]), median(xs["bash"])
            out["sshell_xargs_s"] = round(sshell_s, 3)
            out["sshell_per_call_ms"] = round(sshell_s / calls * 1000, 2)
            out["bash_xargs_s"] = round(bash_s, 3)
            out["bash_per_call_ms"] = round(bash_s / calls * 1000, 3)
            out["ratio_vs_bash_xargs"] = ratio(sshell_s, bash_s)
            out["lithops"] = "skipped (a fresh interpreter per function: too slow for 200 calls)"
            inside, r_inside = median(per["inside"]), median(per["redis_inside"])
            client, r_client = median(per["client"]), median(per["redis_client"])
            out["counter_inside_us"] = round(inside, 1)
            out["redis_cli_inside_us"] = round(r_inside, 1)
            out["ratio_vs_redis_cli_inside"] = ratio(inside, r_inside)
            out["counter_client_ms"] = round(client, 2)
            out["redis_cli_client_ms"] = round(r_client, 2)
            out["ratio_vs_redis_cli_client"] = ratio(client, r_client)
            out["client_goal_ms"] = CLIENT_GOAL_MS
            out["client_goal_met"] = client <= CLIENT_GOAL_MS
            out["client_under_100ms"] = client < 100.0

            log("start-up profile ...")
            out.update(startup_profile(env, 3 if args.quick else 11))

            out.update(linkrun(args, env, tmp, runs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["loadavg_1m_before"] = load_before
    out.update(meta())
    emit(out)


def linkrun(args: Any, env: dict[str, str], tmp: str, runs: int) -> dict[str, Any]:
    args.records = args.records or (500 if args.quick else 2000)
    res: dict[str, Any] = {"linkrun_archives": args.archives, "linkrun_records_per_archive": args.records}
    why = "--no-linkrun" if args.no_linkrun else linkrun_missing()
    if why:
        log(f"LinkRun skipped: {why}")
        return (
            res
            | {"linkrun_stateful_s": None, "linkrun_stateless_s": None, "ratio_stateful_vs_stateless": None}
            | {"linkrun_skipped": why}
        )
    data = os.path.join(tmp, "linkrun-data")
    gen = [sys.executable, str(EXAMPLES / "generate.py"), data, "-n", str(args.archives), "-r", str(args.records)]
    subprocess.run(gen, env=env, check=True, stdout=subprocess.DEVNULL)
    times: dict[str, list[float]] = {"stateful": [], "stateless": []}
    outputs: dict[str, list[tuple[str, str]]] = {}
    for which in ("stateful", "stateless"):  # untimed: the page cache holds the archives for both
        linkrun_round(which, data, env)
    for run in range(runs):
        order = ["stateful", "stateless"] if run % 2 == 0 else ["stateless", "stateful"]
        for which in order:
            wall, text = linkrun_round(which, data, env)
            times[which].append(wall)
            outputs[which] = normalise(text)
            log(f"run {run + 1}/{runs}: linkrun {which}: {wall:.2f} s")
    if outputs["stateful"] != outputs["stateless"]:
        log("warning: the stateful and stateless rankings differ")
    full, less = median(times["stateful"]), median(times["stateless"])
    res["linkrun_stateful_s"] = round(full, 3)
    res["linkrun_stateless_s"] = round(less, 3)
    res["ratio_stateful_vs_stateless"] = ratio(full, less)
    res["linkrun_rankings_equal"] = outputs["stateful"] == outputs["stateless"]
    return res


if __name__ == "__main__":
    main()
