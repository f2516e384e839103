"""The serverless shell: verbs and ``sshell`` as separate processes, verbs inside an invocation, LinkRun.

    python benchmarks/sshell.py [--quick | --smoke] [--runs N] [--calls 200] [--inside 1000] [--client 20]
                                [--archives 16] [--records 2000] [--no-linkrun | --only-linkrun]

Everything runs against a real DSO node (``crucial.testing.LocalCluster``, one
node on 127.0.0.1 with a token), exported to every command as
``CRUCIAL_DSO``/``CRUCIAL_TOKEN``, on the default ``local`` backend.  The
``sshell`` and ``crucial`` found are those of this interpreter's bin directory.

1. **A verb from the client**, a process per call, as a shell script calls it:
   ``client`` (20) calls of ``crucial ipc counter -n K increment``, each timed
   in bash with ``$EPOCHREALTIME``; the median call (goal: <= 20 ms).  The
   same loop, in the same run, times the **floors**: ``python -c pass``,
   ``python -S -c pass`` (this interpreter) and ``redis-cli INCR`` (a C client
   doing the same job).  ``ratio_vs_redis_cli_client`` = ours / redis-cli.
2. **``sshell true`` from the client**, the same way (one ``sshell`` process per
   call, each running ``true`` as a cloud function on the local backend), and
   **xargs**: wall time of ``seq 1 N | xargs -P 50 -I{} sshell true`` (N = 200)
   and per call (wall / N; goal: <= 20 ms).  Peer for xargs: the same with
   ``bash -c true``: a *floor* (what xargs and process creation alone cost),
   not a competitor.  Lithops is skipped even when installed (a fresh
   interpreter per function: minutes for 200 calls).
3. **A verb inside one invocation**: ``sshell '...'`` runs a bash loop of 1000
   ``counter -n K increment >/dev/null`` (the verb is a bash function talking
   to the worker's verb server over ``/dev/tcp``, no fork), timed inside the
   command with ``date +%s%N``; per call = loop time / 1000.  The loop
   follows one untimed verb call: the first call of an invocation starts its
   verb server (``sshell``'s quick path loads the DSO client only then), and
   is timed apart, in an invocation of its own (``first_verb_inside_ms``).  Peer: the same
   loop, in the same kind of invocation, with a bash function that sends
   Redis's ``INCR`` in RESP over ``/dev/tcp`` (a connection per call, no fork:
   the same work as our verb function) -- ``ratio_vs_redis_resp_inside``.
   ``redis-cli INCR`` (a fork and exec per call) is reported beside it.
4. **LinkRun**: when ``examples/sshell/generate.py``, ``linkrun_stateful.sh``
   and ``linkrun_stateless.sh`` exist, both scripts run on the same generated
   archives (16 by default, of 2000 pages each, 500 with ``--quick``: both
   sizes mention all of the generator's 400 domains -- the issue's "400
   domains" -- counted in ``linkrun_domains``); ``ratio_stateful_vs_stateless``
   = stateful / stateless wall time.  Otherwise the field is null and
   ``linkrun_skipped`` says why.  ``--only-linkrun`` runs this part alone.

Every loop checks its final count (``tally`` / ``GET``).  A start-up profile
follows (median wall time of ``python -c pass``, ``import crucial``,
``import crucial.cli``, ``import crucial.shell.sshell``, and, in one process,
the imports, the first verb call -- which connects -- and the second).

The systems alternate their order run by run.  The last line of stdout is
one JSON object: medians over the runs and ``ratio_*`` = ours / peer (same
unit).  Everything started (the DSO node, redis-server, temporary
directories) is stopped or removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import random
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

from _common import LOOPBACK, REPO, RedisServer, alternate, by_mode, emit, log, median, meta, parser, ratio
from _common import terminate_as_interrupt as _sigterm

BIN = Path(sys.executable).parent
SSHELL = str(BIN / "sshell")
CRUCIAL = str(BIN / "crucial")
EXAMPLES = REPO / "examples" / "sshell"
CLIENT_GOAL_MS = 20.0  # a verb, or an sshell, per call as its own process


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
    # no CRUCIAL_* but the cluster's; bytecode cached as an installed package has it (start-up is what is measured)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIAL_") and k != "PYTHONDONTWRITEBYTECODE"}
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


def inside_loop(body: str, check: str, n: int, env: dict[str, str], prelude: str = "") -> float:
    """Microseconds per call of ``body`` in a bash loop of ``n`` inside one sshell invocation; ``check`` must print n."""
    script = (
        f"{prelude}a=$(date +%s%N); for ((i = 0; i < {n}; i++)); do {body} >/dev/null || exit 1; done; "
        f"b=$(date +%s%N); echo $((b - a)); {check}"
    )
    _, out = bash(f"{shlex.quote(SSHELL)} {shlex.quote(script)}", env)
    lines = out.split()
    if len(lines) != 2 or int(lines[1]) != n:
        raise RuntimeError(f"inside loop: unexpected output {out!r} (expected the time and the count {n})")
    return int(lines[0]) / n / 1000.0


def first_verb(name: str, env: dict[str, str]) -> float:
    """Milliseconds of an invocation's first verb call (it starts the verb server), timed inside the command."""
    script = f"a=$(date +%s%N); counter -n {name} increment >/dev/null || exit 1; b=$(date +%s%N); echo $((b - a))"
    _, out = bash(f"{shlex.quote(SSHELL)} {shlex.quote(script)}", env)
    return int(out) / 1e6


def client_calls(body: str, check: str | None, n: int, env: dict[str, str]) -> list[float]:
    """Milliseconds of each of ``n`` calls of ``body`` from a client bash (``$EPOCHREALTIME``); ``check`` must print n."""
    script = (
        f"for ((i = 0; i < {n}; i++)); do a=$EPOCHREALTIME; {body} >/dev/null || exit 1; b=$EPOCHREALTIME; "
        f'echo "$a $b"; done; {check or "echo " + str(n)}'
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


#: ``rincr KEY``: Redis's INCR in RESP over bash's ``/dev/tcp`` -- a connection per call and no fork,
#: as our verb functions do; prints the new value
RESP_INCR = r"""rincr() {
    local fd line
    exec {fd}<>/dev/tcp/127.0.0.1/@PORT@ || return 70
    printf '*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n' "${#1}" "$1" >&"$fd"
    IFS= read -r line <&"$fd"
    exec {fd}<&-
    line=${line%$'\r'}
    case $line in
    :*) printf '%s\n' "${line#:}" ;;
    *) printf '%s\n' "$line" >&2; return 1 ;;
    esac
}
"""


def resp_body(port: int, name: str) -> tuple[str, str, str]:
    """(prelude, body, check) of the RESP-over-/dev/tcp peer of a verb inside an invocation."""
    return RESP_INCR.replace("@PORT@", str(port)), f"rincr {name}", f"redis-cli -p {port} GET {name}"


# --------------------------------------------------------------------------- 3. LinkRun


LINKRUN_FILES = ("generate.py", "linkrun_stateful.sh", "linkrun_stateless.sh")


def linkrun_missing() -> str | None:
    missing = [f for f in LINKRUN_FILES if not (EXAMPLES / f).exists()]
    return f"examples/sshell/{', '.join(missing)} not found" if missing else None


def linkrun_round(which: str, data: str, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds and output of ``linkrun_<which>.sh DATA`` (run from the examples directory)."""
    script = f"cd {shlex.quote(str(EXAMPLES))} && bash ./linkrun_{which}.sh {shlex.quote(data)}"
    return bash(script, env, timeout=1800)


def linkrun_domains(data: str) -> set[str]:
    """The distinct domains the archives link to, found as the scripts find them (``grep -o … | cut | tr``)."""
    import gzip
    import re

    url = re.compile(rb'"url":"https?://([^/":?#]*)')
    found: set[str] = set()
    for path in sorted(Path(data).glob("*.gz")):
        found.update(m.group(1).decode().lower() for m in url.finditer(gzip.decompress(path.read_bytes())))
    return found


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


def client_round(key: str, port: int, n: int, env: dict[str, str]) -> dict[str, float]:
    """One round of the per-process figures: median ms per call of each command, in a shuffled order."""
    py = shlex.quote(sys.executable)
    cases: dict[str, tuple[str, str | None]] = {
        "crucial_ipc": counter_body(key, client=True),
        "sshell_true": (f"{shlex.quote(SSHELL)} true", None),
        "python_pass": (f"{py} -c pass", None),
        "python_S_pass": (f"{py} -S -c pass", None),
        "redis_cli": redis_body(port, key + "_redis"),
    }
    names = list(cases)
    random.Random(key).shuffle(names)  # no command always runs first (or after the same one)
    return {name: median(client_calls(*cases[name], n, env)) for name in names}


def shell_parts(args: Any, env: dict[str, str], rs: Any, runs: int, calls: int, inside_n: int, client_n: int) -> dict[str, Any]:
    """Parts 1-3 and the start-up profile: their medians and ratios."""
    out: dict[str, Any] = {}
    xs: dict[str, list[float]] = {"sshell": [], "bash": []}
    inside: dict[str, list[float]] = {"crucial": [], "redis_resp": [], "redis_cli": []}
    client: dict[str, list[float]] = {}
    first: list[float] = []
    for run in range(runs):
        for what in alternate(("sshell", "bash"), run):
            xs[what].append(xargs_round(what, calls, env))
            log(f"run {run + 1}/{runs}: xargs -P 50 {what} x{calls}: {xs[what][-1]:.2f} s")
        for system in alternate(("crucial", "redis_resp", "redis_cli"), run):
            key = f"c{run}_{secrets.token_hex(4)}"
            if system == "crucial":  # one verb first, untimed: it starts the invocation's verb server
                warm = f"counter -n {key} tally >/dev/null; "
                inside[system].append(inside_loop(*counter_body(key, client=False), inside_n, env, warm))
                first.append(first_verb(f"f{run}_{secrets.token_hex(4)}", env))
            elif system == "redis_resp":
                prelude, body, check = resp_body(rs.port, key)
                inside[system].append(inside_loop(body, check, inside_n, env, prelude))
            else:
                inside[system].append(inside_loop(*redis_body(rs.port, key), inside_n, env))
            log(f"run {run + 1}/{runs}: {system} inside an invocation: {inside[system][-1]:.1f} us per call")
        for name, ms in client_round(f"k{run}_{secrets.token_hex(4)}", rs.port, client_n, env).items():
            client.setdefault(name, []).append(ms)
            log(f"run {run + 1}/{runs}: {name} from the client: {ms:.2f} ms per call")

    sshell_s, bash_s = median(xs["sshell"]), median(xs["bash"])
    out["sshell_xargs_s"] = round(sshell_s, 3)
    out["sshell_per_call_ms"] = round(sshell_s / calls * 1000, 2)
    out["bash_xargs_s"] = round(bash_s, 3)
    out["bash_per_call_ms"] = round(bash_s / calls * 1000, 3)
    out["ratio_vs_bash_xargs"] = ratio(sshell_s, bash_s)
    out["lithops"] = "skipped (a fresh interpreter per function: too slow for 200 calls)"
    ours, resp, cli = (median(inside[s]) for s in ("crucial", "redis_resp", "redis_cli"))
    out["counter_inside_us"] = round(ours, 1)
    out["redis_resp_inside_us"] = round(resp, 1)
    out["redis_cli_inside_us"] = round(cli, 1)
    out["ratio_vs_redis_resp_inside"] = ratio(ours, resp)
    out["ratio_vs_redis_cli_inside"] = ratio(ours, cli)
    out["first_verb_inside_ms"] = round(median(first), 2)
    ms = {name: median(values) for name, values in client.items()}
    out["counter_client_ms"] = round(ms["crucial_ipc"], 2)
    out["sshell_true_client_ms"] = round(ms["sshell_true"], 2)
    out["python_pass_client_ms"] = round(ms["python_pass"], 2)
    out["python_S_pass_client_ms"] = round(ms["python_S_pass"], 2)
    out["redis_cli_client_ms"] = round(ms["redis_cli"], 2)
    out["ratio_vs_redis_cli_client"] = ratio(ms["crucial_ipc"], ms["redis_cli"])
    out["ratio_vs_python_pass_client"] = ratio(ms["crucial_ipc"], ms["python_pass"])
    out["client_goal_ms"] = CLIENT_GOAL_MS
    out["client_goal_met"] = ms["crucial_ipc"] <= CLIENT_GOAL_MS
    out["sshell_goal_met"] = out["sshell_per_call_ms"] <= CLIENT_GOAL_MS

    log("start-up profile ...")
    out.update(startup_profile(env, by_mode(args, 11, 3, 1)))
    return out


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=None, help="sshell invocations per xargs round (default 200; --quick 60)")
    p.add_argument("--inside", type=int, default=None, help="verb calls in the inside loop (default 1000; --quick 300)")
    p.add_argument("--client", type=int, default=None, help="calls per command and run from the client (default 20)")
    p.add_argument("--archives", type=int, default=None, help="generated archives for the LinkRun scripts (default 16)")
    p.add_argument("--records", type=int, default=None, help="pages per archive (default 2000; --quick 500)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--no-linkrun", action="store_true", help="skip the LinkRun comparison")
    only.add_argument("--only-linkrun", action="store_true", help="run the LinkRun comparison alone")
    args = p.parse_args()
    runs = args.runs or by_mode(args, 5, 1, 1)
    calls = args.calls or by_mode(args, 200, 60, 10)
    inside_n = args.inside or by_mode(args, 1000, 300, 20)
    client_n = args.client or by_mode(args, 20, 20, 3)
    args.archives = args.archives or by_mode(args, 16, 16, 2)
    args.records = args.records or by_mode(args, 2000, 500, 50)
    load_before = round(os.getloadavg()[0], 2)
    out: dict[str, Any] = {"benchmark": "sshell", "runs": runs, "xargs_calls": calls, "xargs_parallel": 50}
    out.update({"inside_calls": inside_n, "client_calls": client_n})

    tmp = tempfile.mkdtemp(prefix="crucial-bench-sshell-")
    try:
        with _sigterm(), dso_cluster() as cluster, RedisServer() as rs:
            env = command_env(cluster, tmp)
            log(f"DSO {cluster.dso}, redis-server :{rs.port}; warming up")
            bash(f"{shlex.quote(SSHELL)} true && {shlex.quote(CRUCIAL)} ipc counter -n warm tally", env)
            if not args.only_linkrun:
                out.update(shell_parts(args, env, rs, runs, calls, inside_n, client_n))
            out.update(linkrun(args, env, tmp, runs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["loadavg_1m_before"] = load_before
    out["goals"] = {
        "counter_client_ms": f"<= {CLIENT_GOAL_MS:g}",
        "sshell_per_call_ms": f"<= {CLIENT_GOAL_MS:g}",
        "ratio_stateful_vs_stateless": "<= 1.0",
    }
    out["goals"] = {k: v for k, v in out["goals"].items() if out.get(k) is not None}
    out["labels"] = {
        "counter_client_ms": "`crucial ipc counter -n K increment`, a process per call (ms)",
        "python_pass_client_ms": "floor: `python -c pass`, the same way (ms)",
        "redis_cli_client_ms": "floor: `redis-cli INCR`, the same way (ms)",
        "sshell_per_call_ms": "`seq 200 | xargs -P 50 sshell true`, per call (ms)",
        "sshell_true_client_ms": "`sshell true`, one after the other (ms)",
        "ratio_vs_redis_resp_inside": "a verb inside an invocation vs INCR in RESP over bash /dev/tcp (time)",
        "ratio_stateful_vs_stateless": "LinkRun, stateful vs stateless script (time)",
    }
    out.update(meta(args))
    emit(out)


def linkrun(args: Any, env: dict[str, str], tmp: str, runs: int) -> dict[str, Any]:
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
    res["linkrun_domains"] = len(linkrun_domains(data))
    times: dict[str, list[float]] = {"stateful": [], "stateless": []}
    outputs: dict[str, list[tuple[str, str]]] = {}
    for which in ("stateful", "stateless"):  # untimed: the page cache holds the archives for both
        linkrun_round(which, data, env)
    for run in range(runs):
        for which in alternate(("stateful", "stateless"), run):
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
