"""``sshell --pipe 'a | b | c'``: every stage its own invocation, on real DSO nodes and real local workers.

Both links are tested: TCP sockets met through a DSO rendezvous (the
default) and chunk files in the shared directory (``--pipe-via dir``).  Every
run is bounded by a subprocess timeout; synchronisation with a running
pipeline goes through DSO objects, never sleeps.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import crucial
from crucial.shell.pipes import PipeSyntaxError, split_pipeline
from crucial.testing import LocalCluster

_SCRIPT = Path(sys.executable).with_name("sshell")
SSHELL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "crucial.shell.sshell"]
PY = shlex.quote(sys.executable)


@pytest.fixture
def env(sshell_env: dict[str, str]) -> dict[str, str]:
    return sshell_env


@pytest.fixture
def client(dso1: LocalCluster) -> None:
    """The session's node as this test process's default (for Event, Counter...)."""


@pytest.fixture(params=["tcp", "dir"])
def via(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pipe(pipeline: str, *options: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*SSHELL, "--pipe", *options, pipeline], env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def bash(pipeline: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["bash", "-c", pipeline], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- splitting


@pytest.mark.parametrize(
    ("command", "stages"),
    [
        ("seq 1 100000 | grep 7 | wc -l", ["seq 1 100000", "grep 7", "wc -l"]),
        ("a|b", ["a", "b"]),
        ("echo 'a|b' | tr '|' x", ["echo 'a|b'", "tr '|' x"]),
        ('echo "a|b" "$(echo c | cat)" | cat', ['echo "a|b" "$(echo c | cat)"', "cat"]),
        (r"echo a\|b | cat", [r"echo a\|b", "cat"]),
        ("echo $(echo a | tr a b) `echo c | cat` | cat", ["echo $(echo a | tr a b) `echo c | cat`", "cat"]),
        ("x=${y:-a|b} | cat", ["x=${y:-a|b}", "cat"]),
        ("seq 3 | while read x; do echo $x | tr 1 9; done | sort", ["seq 3", "while read x; do echo $x | tr 1 9; done", "sort"]),
        ("{ a | b; c; } | d", ["{ a | b; c; }", "d"]),
        ("(a | b) | c", ["(a | b)", "c"]),
        ("if a | b; then c; fi | d", ["if a | b; then c; fi", "d"]),
        ("case $x in a|b) c | d;; *) e;; esac | f", ["case $x in a|b) c | d;; *) e;; esac", "f"]),
        ("diff <(a | b) f | c", ["diff <(a | b) f", "c"]),
        ("a 2>&1 | b &>/dev/null", ["a 2>&1", "b &>/dev/null"]),
        ("echo done | cat", ["echo done", "cat"]),
        ("true", ["true"]),
    ],
)
def test_split_at_top_level_bars(command: str, stages: list[str]):
    assert split_pipeline(command) == stages


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("a |& b", "'|&'"),
        ("a || b", "'||'"),
        ("a && b | c", "'&&'"),
        ("a | b; c", "';'"),
        ("a | b\nc", "newline"),
        ("a | b &", "'&'"),
        ("a | | b", "empty stage"),
        ("a |", "empty stage"),
        ("echo 'a | b", "single quote"),
        ('echo "a | b', "double quote"),
        ("echo $(a | b", "unterminated"),
        ("{ a | b", "unbalanced"),
        ("a ) | b", "')'"),
    ],
)
def test_what_cannot_be_split_is_refused(command: str, why: str):
    with pytest.raises(PipeSyntaxError, match=re.escape(why)):
        split_pipeline(command)


def test_a_refused_pipeline_is_a_usage_error(env: dict[str, str]):
    r = pipe("seq 3 || cat", env=env)
    assert r.returncode == 2
    assert b"'||'" in r.stderr


@pytest.mark.parametrize(
    "args", [["--pipefail", "true"], ["--pipe-via", "dir", "true"], ["--pipe", "-f", "/dev/null"], ["--pipe", "--async", "a|b"]]
)
def test_pipe_options_misused(env: dict[str, str], args: list[str]):
    r = subprocess.run([*SSHELL, *args], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr


# --------------------------------------------------------------------------- data


def test_the_answer_of_local_bash(env: dict[str, str], via: str):
    command = "seq 1 100000 | grep 7 | wc -l"
    r = pipe(command, "--pipe-via", via, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, bash(command).stdout, b"")
    assert r.stdout.strip() == b"40951"


def test_the_last_line_without_a_newline_is_not_lost(env: dict[str, str], via: str):
    r = pipe(r"printf 'a\nb\nlast' | cat | cat", "--pipe-via", via, env=env)
    assert (r.returncode, r.stdout) == (0, b"a\nb\nlast")


def test_long_binary_output_crosses_every_link_exactly(env: dict[str, str], via: str):
    command = f"{PY} -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 4000)' | cat | cat | cat"
    r = pipe(command, "--pipe-via", via, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == bytes(range(256)) * 4000


def test_every_stage_is_its_own_invocation(env: dict[str, str], via: str):
    stage = "echo $SSHELL_PIPE_STAGE $SSHELL_ID $$"
    r = pipe(f"{stage} | {{ cat; {stage}; }} | {{ cat; {stage}; }}", "--pipe-via", via, env=env)
    assert r.returncode == 0, r.stderr
    lines = [line.split() for line in r.stdout.decode().splitlines()]
    assert [line[0] for line in lines] == ["0", "1", "2"]
    assert len({line[1] for line in lines}) == 3  # three invocation ids
    assert len({line[2] for line in lines}) == 3  # three bash processes


def test_stderr_of_every_stage_reaches_the_client(env: dict[str, str], via: str):
    r = pipe("{ echo e1 >&2; echo out; } | { cat; echo e2 >&2; } | { cat; echo e3 >&2; }", "--pipe-via", via, env=env)
    assert (r.returncode, r.stdout) == (0, b"out\n")
    assert sorted(r.stderr.split()) == [b"e1", b"e2", b"e3"]


def test_verbs_work_in_every_stage(env: dict[str, str], via: str, client: None, key: str):
    r = pipe(f"seq 1 100 | awk '{{print \"k\", $1}}' | map -n {key} merge-all -2 sum", "--pipe-via", via, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    assert crucial.Dict(key=key)["k"] == 5050


def test_output_streams_through_the_links(env: dict[str, str], via: str, client: None, key: str):
    """The first line reaches the client across two links while the first stage is still blocked."""
    wait = f"{PY} -c 'import crucial; assert crucial.Event(key=\"{key}\").wait(60)'"
    command = f"{{ echo first; {wait} && echo second; }} | cat | cat"
    proc = subprocess.Popen([*SSHELL, "--pipe", "--pipe-via", via, command], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"
        assert proc.poll() is None
        crucial.Event(key=key).set()
        assert proc.stdout.read() == b"second\n"
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_shared_directory_is_cleaned_up(env: dict[str, str]):
    shared = Path(env["CRUCIAL_SHARED_DIR"])
    r = pipe("seq 1 100000 | cat | wc -l", "--pipe-via", "dir", env=env)
    assert (r.returncode, r.stdout.strip()) == (0, b"100000")
    assert list(shared.iterdir()) == []


# --------------------------------------------------------------------------- ending


@pytest.mark.parametrize(
    "command",
    [
        "seq 1 1000000 | false | wc -l",  # a stage that reads nothing and fails
        "yes | head -3",  # a writer that never ends by itself: SIGPIPE stops it
        "yes | head -1 | false",
        "yes | cat | head -2",
        "false | cat | wc -l",  # a writer that fails at once
        "seq 3 | nosuchcommand | cat",
    ],
)
def test_an_early_end_does_not_deadlock(env: dict[str, str], via: str, command: str):
    r = pipe(command, "--pipe-via", via, env=env, timeout=60)
    expected = bash(command)
    assert (r.returncode, r.stdout) == (expected.returncode, expected.stdout), r.stderr


@pytest.mark.parametrize(
    ("command", "status", "pipefail"),
    [
        ("seq 3 | cat | exit 7", 7, 7),
        ("true | false", 1, 1),
        ("false | true", 0, 1),
        ("exit 3 | exit 4 | true", 0, 4),
        ("true | nosuchcommand", 127, 127),
        ("true | kill -9 $BASHPID", 137, 137),
    ],
)
def test_exit_status_is_the_last_stages(env: dict[str, str], via: str, command: str, status: int, pipefail: int):
    assert pipe(command, "--pipe-via", via, env=env).returncode == status
    assert pipe(command, "--pipe-via", via, "--pipefail", env=env).returncode == pipefail
    assert bash(f"set -o pipefail; {command}").returncode == pipefail


def test_timeout_kills_every_stage(env: dict[str, str], via: str):
    r = pipe("sleep 30 | cat | cat", "--pipe-via", via, "--timeout", "1", env=env, timeout=30)
    assert r.returncode == 124
    assert b"--timeout" in r.stderr


def test_a_stage_waiting_for_a_stage_that_never_started_ends_when_the_client_gives_up(client: None) -> None:
    """The previous stage's invocation failed: nobody will connect; the client deletes the links (abort)."""
    import socket
    import threading
    import time
    import uuid

    from crucial.shell.pipes import ABORT_CHECK, Stage, accept_previous, addr_key

    stage = Stage(job=None, pipe_id=f"p-{uuid.uuid4().hex}", index=1, count=2)
    link = crucial.SharedFuture(key=addr_key(stage.pipe_id, 0), force_new=True)
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def wait() -> None:
        with socket.create_server(("127.0.0.1", 0), backlog=1) as listener:
            waiting.set()
            try:
                accept_previous(listener, stage)
            except BaseException as exc:
                outcome.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    assert waiting.wait(10)
    link.delete()  # what run_pipe's abort() does
    started = time.monotonic()
    t.join(10 * ABORT_CHECK)
    assert not t.is_alive(), "still waiting for a stage that will never connect"
    assert time.monotonic() - started < 5 * ABORT_CHECK
    assert len(outcome) == 1 and isinstance(outcome[0], crucial.ObjectNotFoundError)


def test_the_previous_stage_connecting_is_accepted(client: None) -> None:
    import socket
    import threading
    import uuid

    from crucial.shell.pipes import Stage, accept_previous, addr_key

    stage = Stage(job=None, pipe_id=f"p-{uuid.uuid4().hex}", index=1, count=2)
    crucial.SharedFuture(key=addr_key(stage.pipe_id, 0), force_new=True).set("published")

    def previous_stage(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"hi")

    with socket.create_server(("127.0.0.1", 0), backlog=1) as listener:
        t = threading.Thread(target=previous_stage, args=(listener.getsockname()[1],))
        t.start()
        conn = accept_previous(listener, stage)
        with conn:
            assert conn.recv(2) == b"hi"
        t.join(10)
