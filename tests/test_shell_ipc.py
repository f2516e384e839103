"""The verb server, the bash verb functions and run_shell, against a real DSO."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading

import pytest

from crucial.shell import ipc
from crucial.shell._verbserver import Reader
from crucial.shell.ipc import VerbServer, bash_prelude, call, exit_status, run_shell, wants_stdin
from crucial.shell.verbs import run_verb
from crucial.testing import LocalCluster


def shell(command: str, **kwargs: object) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run_shell(command, stdout=out, stderr=err, **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue().decode(), err.getvalue().decode()


# -- run_shell with the real verbs ---------------------------------------------------


def test_counter_loop_is_served_in_process(dso: LocalCluster, key: str) -> None:
    # how fast: benchmarks/sshell.py (counter_inside_us), not a wall-clock assertion here
    code, out, err = shell(f"for i in $(seq 50); do counter -n {key} increment >/dev/null; done; counter -n {key} tally")
    assert (code, out, err) == (0, "50\n", "")
    assert run_verb(["counter", "-n", key, "tally"]).out == "50\n"


def test_calls_reuse_worker_threads(dso: LocalCluster, key: str) -> None:
    with VerbServer() as srv:
        code, _, _ = shell(f"for i in $(seq 20); do counter -n {key} increment >/dev/null; done", server=srv)
        assert code == 0
        assert len(srv._workers) <= 2  # one thread (and its DSO connection) serves sequential calls


def test_verbs_read_piped_stdin(dso: LocalCluster, key: str) -> None:
    code, out, err = shell(
        f"printf 'a 1\\nb 2\\n' | map -n {key} merge-all -2 sum\n"
        f"printf 'a 5\\n' | map -n {key} mergeAll\n"
        f"map -n {key} get -1 a; map -n {key} get -1 b"
    )
    assert (code, err) == (0, "")
    assert out == "6\n2\n"


def test_stdin_only_for_operations_that_read_it(dso: LocalCluster, key: str) -> None:
    # a verb inside `while read` must not swallow the loop's input; one with nothing piped must not block
    code, out, err = shell(
        f"printf 'x\\ny\\nz\\n' | while read -r w; do counter -n {key} increment >/dev/null; echo $w; done\n"
        f"counter -n {key} tally\n"
        f"map -n {key}m put-all -1 k=v </dev/null\n"
        f"map -n {key}m get -1 k"
    )
    assert (code, out, err) == (0, "x\ny\nz\n3\nv\n", "")


def test_arguments_travel_intact(dso: LocalCluster, key: str) -> None:
    value = "two words\nand a line é\\t $HOME '\""
    code, out, err = shell(f'v=$(printf "%s" "$VALUE"); rdv -n {key} put -1 "$v"; rdv -n {key} get', env={"VALUE": value})
    assert (code, err) == (0, "")
    assert out == value + "\n"


def test_exit_codes(dso: LocalCluster, key: str) -> None:
    code, out, err = shell(f"set -eu\necho before\ncounter -n {key} increment -1 abc\necho after")
    assert code == 2 and out == "before\n" and "abc" in err
    assert shell(f"counter -n {key} bogus || echo failed=$?")[:2] == (0, "failed=2\n")
    assert shell("exit 3")[0] == 3
    code, _, err = shell("no-such-command-xyz")
    assert code == 127 and "not found" in err
    assert shell("kill -9 $$")[0] == 137
    assert shell("kill -TERM $$")[0] == 143
    assert exit_status(-9) == 137 and exit_status(0) == 0 and exit_status(5) == 5


def test_output_streams_before_the_command_ends(dso: LocalCluster, key: str) -> None:
    seen = threading.Event()
    chunks: list[bytes] = []

    def on_out(data: bytes) -> None:
        chunks.append(data)
        if b"ready\n" in b"".join(chunks):
            seen.set()

    result: list[int] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_shell(f"echo ready; latch -n {key} -c 1 await; echo done", stdout=on_out, stderr=sys.stderr)
        )
    )
    runner.start()
    try:
        assert seen.wait(30), "the first line did not arrive while the command ran"
        assert not result  # still waiting on the latch
        assert run_verb(["latch", "-n", key, "-c", "1", "count-down"]).code == 0
    finally:
        runner.join(30)
    assert result == [0]
    assert b"".join(chunks) == b"ready\ndone\n"


def test_concurrent_blocking_calls(dso: LocalCluster, key: str) -> None:
    code, out, err = shell(f"for i in 1 2 3 4; do (barrier -n {key} -p 4 await >/dev/null && echo through) & done; wait")
    assert (code, err) == (0, "")
    assert out == "through\n" * 4


def test_functions_reach_subshells_and_xargs(dso: LocalCluster, key: str) -> None:
    code, out, err = shell(
        f"seq 6 | xargs -P 3 -I{{}} bash -c 'counter -n {key} increment -1 {{}} >/dev/null'\n"
        f"bash -c 'counter -n {key} tally'\n"
        f"(counter -n {key} tally)"
    )
    assert (code, out, err) == (0, "21\n21\n", "")


def test_script_lines_intact_and_streams_to_files(dso: LocalCluster, key: str) -> None:
    script = f'echo "$0"\nif true\nthen\n  counter -n {key} increment\nfi\necho oops >&2\n'
    out, err = io.StringIO(), io.BytesIO()
    code = run_shell("job.sh", script=script, stdout=out, stderr=err)
    assert (code, out.getvalue(), err.getvalue()) == (0, "job.sh\n1\n", b"oops\n")


def test_crucial_ipc_inside_the_command_uses_the_server(dso: LocalCluster, key: str) -> None:
    code, out, err = shell(
        f"{sys.executable} -m crucial.cli ipc counter -n {key} increment -1 4\n"
        f"printf 'a 2\\n' | {sys.executable} -m crucial.cli ipc map -n {key} merge-all\n"
        f"map -n {key} get -1 a",
        env={"CRUCIAL_DSO": "127.0.0.1:9"},  # only the executor's server can answer
    )
    assert (code, out, err) == (0, "4\n2\n", "")


# -- the client side -------------------------------------------------------------------


def _crucial(args: list[str], cluster: LocalCluster, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ipc.IPC_PORT_ENV, ipc.IPC_SECRET_ENV)}
    env.update(cluster.env_vars())
    return subprocess.run(
        [sys.executable, "-m", "crucial.cli", "ipc", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_crucial_ipc_command(cluster: LocalCluster, key: str) -> None:
    first = _crucial(["counter", "-n", key, "increment", "-1", "7"], cluster)
    assert (first.returncode, first.stdout, first.stderr) == (0, "7\n", "")
    tally = _crucial(["counter", "-n", key, "tally"], cluster)
    assert (tally.returncode, tally.stdout) == (0, "7\n")
    merged = _crucial(["map", "-n", key, "merge-all", "-2", "sum"], cluster, stdin="a 1\na 2\n")
    assert merged.returncode == 0, merged.stderr
    assert _crucial(["map", "-n", key, "get", "-1", "a"], cluster).stdout == "3\n"
    bad = _crucial(["counter", "-n", key, "bogus"], cluster)
    assert bad.returncode == 2 and "bogus" in bad.stderr and bad.stdout == ""


# -- the server and protocol on their own ------------------------------------------------


def test_protocol_with_a_fake_handler() -> None:
    seen: list[tuple[list[str], str | None]] = []

    def handler(argv: object, stdin: str | None) -> tuple[int, str, str]:
        seen.append((list(argv), stdin))  # type: ignore[call-overload]
        return 5, "out é\n", "err\n"

    with VerbServer(handler) as srv:
        assert call(["map", "-n", "a b", "x\ny"], port=srv.port, secret=srv.secret) == (5, "out é\n", "err\n")
        assert call(["map", "merge-all"], "k 1\n", port=srv.port, secret=srv.secret)[0] == 5
        with socket.create_connection(("127.0.0.1", srv.port)) as s:  # a wrong secret gets nothing
            s.sendall(b"CRUCIAL-IPC/1 nope call 1 -\ncounter\0")
            assert s.recv(100) == b""
        prelude = bash_prelude(srv.port, srv.secret)
        done = subprocess.run(
            ["bash", "-c", prelude + "set -eu; map -n k size; echo unreached"], capture_output=True, text=True, timeout=30
        )
        assert (done.returncode, done.stdout, done.stderr) == (5, "out é\n", "err\n")
    assert seen[:2] == [(["map", "-n", "a b", "x\ny"], None), (["map", "merge-all"], "k 1\n")]
    assert seen[2] == (["map", "-n", "k", "size"], None)


def test_a_call_waits_for_its_stdin_and_stop_releases_one_whose_stdin_never_comes() -> None:
    seen: list[str | None] = []

    def handler(argv: object, stdin: str | None) -> tuple[int, str, str]:
        seen.append(stdin)
        return 0, "", ""

    srv = VerbServer(handler)
    srv.start()
    try:
        header = f"CRUCIAL-IPC/1 {srv.secret}".encode()
        waiting = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        waiting.sendall(header + b" call 1 tok1\nmap\0")  # its stdin, under tok1, comes afterwards
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(header + b" stdin tok1\nk 1\n")
        assert Reader(waiting).until(b"\n", 100) == b"0 0 0"
        waiting.close()
        assert seen == ["k 1\n"]
        never = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        never.sendall(header + b" call 1 tok2\nmap\0")  # no stdin will come under tok2
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:  # served meanwhile
            s.sendall(header + b" call 1 -\ncounter\0")
            assert Reader(s).until(b"\n", 100) == b"0 0 0"
    finally:
        srv.stop()
    assert never.recv(100) == b""  # released by stop (not after the 600 s wait): closed, unanswered
    never.close()
    assert seen == ["k 1\n", None]


def test_handler_crash_and_server_gone() -> None:
    def handler(argv: object, stdin: str | None) -> tuple[int, str, str]:
        raise RuntimeError("kaput")

    with VerbServer(handler) as srv:
        code, _, err = call(["counter", "tally"], port=srv.port, secret=srv.secret)
        assert code == ipc.UNREACHABLE and "kaput" in err
        prelude = bash_prelude(srv.port, srv.secret)
    gone = subprocess.run(["bash", "-c", prelude + "counter -n k tally"], capture_output=True, text=True, timeout=30)
    assert gone.returncode == ipc.UNREACHABLE and "cannot reach" in gone.stderr


@pytest.mark.parametrize(
    ("argv", "reads"),
    [
        (["map", "-n", "k", "merge-all", "-2", "sum"], True),
        (["treemap", "-n", "k", "putAll"], True),
        (["map", "-n", "k", "put-all", "-1", "a=1"], False),
        (["counter", "-n", "k", "increment"], False),
        (["map", "-n", "k", "get", "-1", "a"], False),
        ([], False),
    ],
)
def test_wants_stdin(argv: list[str], reads: bool) -> None:
    assert wants_stdin(argv) is reads
