"""The quick ``sshell CMD`` path (``crucial.shell._quick``) against the usual one, on a real node.

The ``sshell`` command takes the quick path whenever it applies (so
``test_sshell.py``, which runs the command, exercises it too); here the same
commands run both ways -- the command, and ``python -m crucial.shell.sshell``,
which always goes the usual way -- and must print the same bytes and exit
with the same status.  The cases the quick path declines must reach the
usual way with nothing run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from crucial.testing import LocalCluster

BIN = Path(sys.executable).parent
QUICK = [str(BIN / "sshell")]
USUAL = [sys.executable, "-m", "crucial.shell.sshell"]

pytestmark = pytest.mark.skipif(not (BIN / "sshell").exists(), reason="the sshell command is not installed here")


@pytest.fixture
def env(sshell_env: dict[str, str]) -> dict[str, str]:
    e = dict(sshell_env)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '/usr/bin:/bin')}"  # `crucial` and `sshell` inside the command
    return e


COMMANDS = {
    "output and status": "echo out; echo err >&2; exit 3",
    "binary, no final newline": r"printf 'a\0b\377c'",
    "long output in order": "seq 1 200000",
    "command not found": "no-such-command-here",
    "death by signal": "kill -9 $$",
    "stdin is /dev/null": "cat; echo cat=$?",
    "SIGINT at its default": "kill -INT $$; echo survived",
    "SIGPIPE at its default": "kill -PIPE $$; echo survived",
    "what the command is given": 'echo "$0" ${#SSHELL_ID} "$SSHELL_SHARED" "$CRUCIAL_DSO" ${CRUCIAL_IPC_PORT:+port}',
    "the verbs are bash functions": "type -t counter barrier map; counter -n K increment; counter -n K increment",
    "crucial ipc inside uses the invocation's server": "crucial ipc counter -n K increment -1 5; counter -n K tally",
    "verbs in subshells and background jobs": "( counter -n K increment ) ; counter -n K increment & wait; counter -n K tally",
    "a verb's failure": "barrier -n M await; echo status=$?",  # M: one key both ways (the message names it)
    "sshell inside sshell": "sshell 'echo nested $CRUCIAL_IPC_PORT' | wc -w",
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_both_ways_print_the_same_and_exit_alike(env: dict[str, str], command: str) -> None:
    keys = iter(f"q-{uuid.uuid4().hex[:10]}" for _ in range(2))  # K: a key of each way's own
    command = command.replace("-n M", f"-n q-{uuid.uuid4().hex[:10]}")
    quick, usual = (
        subprocess.run(
            [*argv, command.replace("-n K", f"-n {next(keys)}")],
            env=env,
            capture_output=True,
            input=b"sshell's own stdin, which the command never reads\n",
            timeout=60,
        )
        for argv in (QUICK, USUAL)
    )
    assert (quick.returncode, quick.stdout, quick.stderr) == (usual.returncode, usual.stdout, usual.stderr)


OPTIONS = {
    "-e in every spelling": ["-e", "A=1", "-eB=two words", "--env", "C=", "--env=D=x=y", "echo [$A] [$B] [$C] [$D]"],
    "-e over what sshell sets": ["-e", "SSHELL_ID=mine", "-e", "CRUCIAL_DSO=elsewhere", 'echo "$SSHELL_ID $CRUCIAL_DSO"'],
    "-e does not hide the verbs": ["-e", "CRUCIAL_IPC_PORT=1", "counter -n K increment"],
    "-- before a command that starts with a dash": ["--", "-x", "echo not run"],  # bash's usage error, both ways
    "-e then --": ["-e", "A=1", "--", "echo $A"],
}


@pytest.mark.parametrize("argv", OPTIONS.values(), ids=OPTIONS.keys())
def test_the_options_the_quick_way_takes_act_as_the_usual_way(env: dict[str, str], argv: list[str]) -> None:
    keys = iter(f"q-{uuid.uuid4().hex[:10]}" for _ in range(2))
    quick, usual = (
        subprocess.run([*way, *(a.replace("-n K", f"-n {k}") for a in argv)], env=env, capture_output=True, timeout=60)
        for way, k in ((QUICK, next(keys)), (USUAL, next(keys)))
    )
    assert (quick.returncode, quick.stdout, quick.stderr) == (usual.returncode, usual.stdout, usual.stderr)
    assert quick.stdout or quick.stderr  # something to compare


@pytest.mark.parametrize("argv", [["-e", "A=1"], ["-eA=1", "--env=B=2"], ["--"], ["-e", "A=1", "--"]])
def test_env_options_and_a_double_dash_go_the_quick_way(env: dict[str, str], tmp_path: Path, argv: list[str]) -> None:
    assert _declined(env, argv, tmp_path) == ("0", True)


def test_the_command_is_given_an_id_and_a_shared_dir(env: dict[str, str]) -> None:
    r = subprocess.run([*QUICK, 'echo "$SSHELL_ID"; test -d "$SSHELL_SHARED" && echo dir'], env=env, capture_output=True)
    sshell_id, there = r.stdout.decode().split()
    assert uuid.UUID(hex=sshell_id).version == 4 and there == "dir"


def test_the_common_case_goes_the_quick_way_without_the_client_library(env: dict[str, str], tmp_path: Path) -> None:
    """``run`` runs the command itself (no click, no DSO client, no object library in the process)."""
    probe = (
        "import os, sys\n"
        "from crucial.shell import _quick\n"
        "code = _quick.run(['echo', 'ran', '>', sys.argv[1]])\n"
        "heavy = sorted(m for m in ('click', 'crucial.client', 'crucial.objects', 'crucial.compute') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", probe, str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout == "0 []\n", r.stderr
    assert out.read_text() == "ran\n"


def _declined(env: dict[str, str], argv: list[str], tmp_path: Path) -> tuple[str, bool]:
    """What ``_quick.run(argv + ['touch MARK'])`` returned, and whether the command ran."""
    mark = tmp_path / "mark"
    probe = "import sys\nfrom crucial.shell import _quick\nprint(_quick.run(sys.argv[1:]))\n"
    command = [*argv, f"touch {shlex.quote(str(mark))}"]
    r = subprocess.run([sys.executable, "-c", probe, *command], env=env, capture_output=True, text=True, timeout=60)
    return r.stdout.strip(), mark.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"argv": ["--debug"]},
        {"argv": ["-e", "1X=2"]},
        {"argv": ["-e"]},
        {"argv": ["-e", "A=1", "--timeout", "5"]},
        {"CRUCIAL_BACKEND": "inline"},
        {"CRUCIAL_CALL_TIMEOUT": "30"},
        {"CRUCIAL_CONFIG": "/dev/null"},
        {"CRUCIAL_DSO": "127.0.0.1:1"},
    ],
    ids=[
        "an option",
        "a bad -e",
        "-e without a value",
        "-e then another option",
        "another backend",
        "another setting",
        "a config file",
        "a node that is not there",
    ],
)
def test_other_cases_go_the_usual_way_with_nothing_run(env: dict[str, str], tmp_path: Path, change: dict) -> None:
    argv = change.pop("argv", [])
    assert _declined({**env, **change}, argv, tmp_path) == ("None", False)


def test_several_nodes_or_a_refused_token_go_the_usual_way(env: dict[str, str], tmp_path: Path) -> None:
    with LocalCluster(nodes=1, token="right") as guarded:
        wrong = {**env, **guarded.env_vars(), "CRUCIAL_TOKEN": "wrong"}
        assert _declined(wrong, [], tmp_path) == ("None", False)
        r = subprocess.run([*QUICK, "true"], env=wrong, capture_output=True, text=True, timeout=60)
        assert r.returncode == 125 and "token" in r.stderr.lower(), r.stderr
    with LocalCluster(nodes=2) as two:
        several = {**env, **two.env_vars()}
        assert "," in several["CRUCIAL_DSO"]
        assert _declined(several, [], tmp_path) == ("None", False)


def test_the_running_per_user_node_is_used_and_a_missing_one_is_left_to_the_usual_way(
    env: dict[str, str], cluster: LocalCluster, tmp_path: Path
) -> None:
    plain = {k: v for k, v in env.items() if k not in ("CRUCIAL_DSO", "CRUCIAL_TOKEN")}
    assert _declined(plain, [], tmp_path) == ("None", False)  # no node file: the usual way starts the node
    node_file = Path(plain["XDG_CACHE_HOME"]) / "crucial" / "dso"
    node_file.parent.mkdir(parents=True)
    node_file.write_text(f"CRUCIAL_DSO={cluster.addresses[0]}\nCRUCIAL_TOKEN=\nPID=1\n")
    r = subprocess.run([*QUICK, 'echo "$CRUCIAL_DSO"'], env=plain, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, cluster.addresses[0] + "\n"), r.stderr


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_reader_that_goes_away_ends_the_quick_way_with_141_and_no_word(env: dict[str, str], closed: str) -> None:
    r, w = os.pipe()
    os.close(r)
    fds = {"stdout": w, "stderr": subprocess.PIPE} if closed == "stdout" else {"stdout": subprocess.PIPE, "stderr": w}
    try:
        proc = subprocess.run([*QUICK, "echo out; echo err >&2; sleep 60"], env=env, timeout=30, stdin=subprocess.DEVNULL, **fds)
    finally:
        os.close(w)
    assert proc.returncode == 141
    assert (proc.stdout if closed == "stderr" else proc.stderr) in (b"", b"out\n", b"err\n")
