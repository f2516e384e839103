"""``sshell`` as a user runs it: a real subprocess, real DSO nodes, real invocations.

Each test starts the console script (or ``python -m crucial.shell.sshell``)
with ``CRUCIAL_DSO`` naming the session's node; synchronisation with a
running command goes through DSO objects, never sleeps.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crucial
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


def sshell(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*SSHELL, *args], env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------- output and exit status


def test_stdout_stderr_and_exit_status_are_the_commands(env: dict[str, str]):
    r = sshell("echo out; echo err >&2; exit 3", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")


def test_the_words_of_cmd_are_joined_as_ssh_does(env: dict[str, str]):
    r = sshell("echo", "a", "b", "'c  d'", env=env)
    assert (r.returncode, r.stdout) == (0, b"a b c  d\n")


@pytest.mark.parametrize(
    ("command", "status"),
    [("true", 0), ("false", 1), ("exit 3", 3), ("no-such-command-xyz", 127), ("kill -9 $$", 137), ("kill -TERM $$", 143)],
)
def test_exit_status_as_bash_reports_it(env: dict[str, str], command: str, status: int):
    r = sshell(command, env=env)
    assert r.returncode == status, r.stderr
    if status == 127:
        assert b"no-such-command-xyz: command not found" in r.stderr


def test_output_is_bytes_exactly(env: dict[str, str]):
    r = sshell(r"printf 'a\000b\377\n'; printf 'no newline'", env=env)
    assert r.stdout == b"a\x00b\xff\nno newline"


def test_long_output_arrives_whole_and_in_order(env: dict[str, str]):
    r = sshell("seq 1 200000", env=env)
    assert r.returncode == 0
    assert r.stdout == b"".join(b"%d\n" % i for i in range(1, 200001))


def test_output_streams_while_the_command_runs(env: dict[str, str], client: None, key: str):
    """The first line reaches the client while the command waits for an Event only the test sets."""
    wait = f"{PY} -c 'import crucial; assert crucial.Event(key=\"{key}\").wait(60)'"
    proc = subprocess.Popen([*SSHELL, f"echo first; {wait} && echo second"], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"  # the command is still blocked in wait()
        assert proc.poll() is None
        crucial.Event(key=key).set()
        assert proc.stdout.read() == b"second\n"
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_client_kills_the_local_command(env: dict[str, str], sig: int):
    """No orphan: the forked worker dies with sshell and takes the command's process tree along."""
    proc = subprocess.Popen([*SSHELL, "sleep 60 & echo $!; wait"], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        pidfd = os.pidfd_open(pid)  # not our child: wait for its end without polling
        proc.send_signal(sig)
        assert select.select([pidfd], [], [], 60)[0], "the command outlived sshell"
        os.close(pidfd)
        assert proc.wait(10) == -sig
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# --------------------------------------------------------------------------- options


def test_script_file_runs_with_its_lines_intact(env: dict[str, str], tmp_path: Path):
    script = tmp_path / "job.sh"
    script.write_text(
        'echo "one"\nx=2   # a comment\necho "line $LINENO: $x"\nfor i in a b; do\n  echo "$i"\ndone\necho "$0"\nexit 4\n'
    )
    r = sshell("-f", str(script), env=env)
    assert r.returncode == 4
    assert r.stdout.decode().splitlines() == ["one", "line 3: 2", "a", "b", str(script)]


def test_env_passes_variables(env: dict[str, str]):
    r = sshell("-e", "A=1", "--env", "B=x y", "-e", "C=", 'echo "$A|$B|${C-unset}"', env=env)
    assert (r.returncode, r.stdout) == (0, b"1|x y|\n")


def test_shared_dir_is_created_and_exported(env: dict[str, str], tmp_path: Path):
    r = sshell('echo hello > "$SSHELL_SHARED/f"', env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "shared" / "f").read_text() == "hello\n"
    other = tmp_path / "other" / "deeper"
    r = sshell("--shared-dir", str(other), 'echo "$SSHELL_SHARED"', env=env)
    assert r.stdout.decode().strip() == str(other) and other.is_dir()


def test_debug_prints_id_duration_and_memory(env: dict[str, str]):
    r = sshell("--debug", "ls", "-C", "/", env=env)
    assert r.returncode == 0 and b"tmp" in r.stdout
    lines = r.stderr.decode().splitlines()
    assert re.fullmatch(r"RequestId: [0-9a-f]{32}", lines[0]), lines
    assert re.match(r"Duration: \d+ ms Memory Used: \d+ MB", lines[1]), lines


def test_timeout_kills_the_command(env: dict[str, str]):
    started = time.monotonic()
    r = sshell("--timeout", "1", "echo before; sleep 60; echo after", env=env)
    assert r.returncode == 124
    assert r.stdout == b"before\n" and b"--timeout 1 s" in r.stderr
    assert time.monotonic() - started < 20


def test_async_returns_an_id_at_once_and_the_command_runs(env: dict[str, str], client: None, key: str):
    go, done = f"{key}-go", f"{key}-done"
    command = (
        f"{PY} -c 'import crucial; assert crucial.Event(key=\"{go}\").wait(60)' && "
        f"{PY} -c 'import crucial; crucial.Event(key=\"{done}\").set()'; echo dropped"
    )
    r = sshell("--async", command, env=env)  # returns while the command waits for `go`
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rb"[0-9a-f]{32}\n", r.stdout) and r.stderr == b""
    assert not crucial.Event(key=done).is_set()
    crucial.Event(key=go).set()
    assert crucial.Event(key=done).wait(30)


def test_wait_collects_the_exit_status_of_an_async_invocation_once(env: dict[str, str]):
    ids = {}
    for status in (0, 3):
        r = sshell("--async", f"echo dropped; exit {status}", env=env)
        assert r.returncode == 0, r.stderr
        ids[status] = r.stdout.decode().strip()
    for status, job_id in ids.items():
        r = sshell("--wait", job_id, env=env)
        assert (r.returncode, r.stdout) == (status, b""), r.stderr  # the output stays dropped
    r = sshell("--wait", ids[3], env=env)  # collected already
    assert r.returncode == 2 and b"status was collected" in r.stderr
    r = sshell("--wait", "no-such-id", env=env)
    assert r.returncode == 2 and b"no --async invocation 'no-such-id'" in r.stderr
    r = sshell("--wait", ids[0], "true", env=env)
    assert r.returncode == 2 and b"--wait ID takes no CMD" in r.stderr


def test_wait_reports_an_async_timeout_as_124(env: dict[str, str]):
    r = sshell("--async", "--timeout", "1", "sleep 60", env=env)
    assert r.returncode == 0, r.stderr
    r = sshell("--wait", r.stdout.decode().strip(), env=env, timeout=60)
    assert r.returncode == 124, r.stderr


def test_inline_backend(env: dict[str, str]):
    r = sshell("--backend", "inline", "echo inline; exit 5", env=env)
    assert (r.returncode, r.stdout) == (5, b"inline\n")


# --------------------------------------------------------------------------- bad input


def test_missing_script_file_is_a_usage_error_before_any_invocation(env: dict[str, str], tmp_path: Path):
    env["CRUCIAL_DSO"] = "127.0.0.1:9"  # nothing listens: exit 2, not 125, shows no DSO was tried
    r = sshell("-f", str(tmp_path / "missing.sh"), env=env)
    assert r.returncode == 2
    assert b"does not exist" in r.stderr


@pytest.mark.parametrize(
    "args",
    [["--bogus", "true"], [], ["-f", "/etc/hostname", "echo"], ["-e", "NOEQUALS", "true"], ["--timeout", "-1", "true"]],
)
def test_bad_usage_exits_2(env: dict[str, str], args: list[str]):
    r = sshell(*args, env=env)
    assert r.returncode == 2, r.stderr
    assert b"Usage: sshell" in r.stderr


def test_a_dso_that_is_down_is_a_clear_error(env: dict[str, str]):
    started = time.monotonic()
    r = sshell("--dso", "127.0.0.1:9", "echo never", env=env)
    assert r.returncode == 125 and r.stdout == b""
    assert b"cannot reach the DSO at 127.0.0.1:9" in r.stderr and b"crucial server" in r.stderr
    assert time.monotonic() - started < 20
    r = sshell("--async", "--dso", "127.0.0.1:9", "echo never", env=env)
    assert r.returncode == 125 and b"cannot reach the DSO" in r.stderr


# --------------------------------------------------------------------------- many sshells, one DSO


def test_concurrent_sshells_share_one_counter(env: dict[str, str], key: str):
    cmd = " ".join(shlex.quote(a) for a in SSHELL)
    r = subprocess.run(
        f"seq 1 20 | xargs -P 20 -I{{}} {cmd} 'counter -n {key} increment >/dev/null'",
        shell=True,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    tally = sshell(f"counter -n {key} tally", env=env)
    assert tally.stdout == b"20\n"


def test_without_a_dso_sshells_share_a_persistent_per_user_node(env: dict[str, str], tmp_path: Path, key: str):
    """No CRUCIAL_DSO: the first sshells start one node (under a lock) and every later one finds it."""
    del env["CRUCIAL_DSO"]
    env.pop("CRUCIAL_TOKEN", None)
    env["CRUCIAL_CONFIG"] = str(tmp_path / "empty.toml")  # no config file names a DSO either
    (tmp_path / "empty.toml").write_text("")
    node_file = tmp_path / "cache" / "crucial" / "dso"
    cmd = " ".join(shlex.quote(a) for a in SSHELL)
    try:
        r = subprocess.run(
            f"seq 1 5 | xargs -P 5 -I{{}} {cmd} 'counter -n {key} increment >/dev/null'",
            shell=True,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        info = dict(line.split("=", 1) for line in node_file.read_text().splitlines())
        assert info["CRUCIAL_DSO"].startswith("127.0.0.1:") and len(info["CRUCIAL_TOKEN"]) == 32
        assert node_file.stat().st_mode & 0o077 == 0  # it holds the token
        assert sshell(f"counter -n {key} tally", env=env).stdout == b"5\n"
        # the commands inside reach the same node
        assert sshell('echo "$CRUCIAL_DSO"', env=env).stdout.decode().strip() == info["CRUCIAL_DSO"]
    finally:
        stop = sshell("--stop-dso", env=env)
    assert stop.returncode == 0 and stop.stdout == b"stopped\n"
    assert not node_file.exists()


@pytest.mark.slow
def test_lithops_localhost(env: dict[str, str]):
    pytest.importorskip("lithops")
    r = sshell("--backend", "lithops", "echo lithops; exit 6", env=env, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (6, b"lithops\n", b"")  # no Lithops traceback at exit either


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_reader_that_goes_away_ends_sshell_quietly_with_141(env: dict[str, str], closed: str):
    """As `ls | head` does: no traceback, no message (there is nobody to read it), status 141 (SIGPIPE).

    `sshell --debug ls 2>&1 | head -1` used to exit 1 without a word when the
    closed pipe was stderr (a `--debug` line, after the output).
    """
    r, w = os.pipe()
    os.close(r)  # the reader has gone before sshell writes a byte
    fds = {"stdout": w, "stderr": subprocess.DEVNULL} if closed == "stdout" else {"stdout": subprocess.DEVNULL, "stderr": w}
    try:
        proc = subprocess.run(
            [*SSHELL, "--debug", "echo out; echo err >&2"], env=env, timeout=30, stdin=subprocess.DEVNULL, **fds
        )
    finally:
        os.close(w)
    assert proc.returncode == 141


def test_sshell_piped_into_head_ends_as_a_filter_does(env: dict[str, str]):
    pipeline = f"{shlex.join(SSHELL)} --debug 'seq 1 100000' 2>&1 | head -2; echo \"${{PIPESTATUS[@]}}\""
    r = subprocess.run(["bash", "-c", pipeline], env=env, capture_output=True, text=True, timeout=30)
    first, _, statuses = r.stdout.strip().splitlines()
    assert first.startswith("RequestId: ") and statuses == "141 0" and r.stderr == ""
