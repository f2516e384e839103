"""``crucial info``: what a cluster holds, from the command line (like ``redis-cli INFO``)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import crucial
from crucial import protocol as P
from crucial.testing import LocalCluster, raw_connection, unconfigured_env


def info(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crucial.cli", "info", *args],
        env=unconfigured_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_info_reports_every_node_and_lists_objects(cluster3: LocalCluster, key: str) -> None:
    with crucial.Client(cluster3.dso) as direct:
        for i in range(6):
            direct.call("AtomicInt", f"{key}-{i}", "get", create=((i,), {}))
        r = info("--dso", cluster3.addresses[0], "--objects", "1000", "--json")
        assert r.returncode == 0, r.stderr
        reports = [json.loads(line) for line in r.stdout.splitlines()]
        assert sorted(rep["address"] for rep in reports) == sorted(direct.nodes)  # one seed: every node answers
        mine = [o for rep in reports for o in rep["listed"] if o["key"].startswith(key)]
        assert sorted(o["key"] for o in mine) == sorted(f"{key}-{i}" for i in range(6))
        assert all(o["type"] == "AtomicInt" and o["queued"] == 0 and o["waiting"] == 0 for o in mine)
        assert all(rep["epoch"] >= 1 and len(rep["nodes"]) == 3 for rep in reports)
        for rep in reports:  # each node counted at least the calls on the objects it lists (one get each)
            assert rep["stats"]["calls"] >= sum(1 for o in rep["listed"] if o["key"].startswith(key))
        assert sum(rep["stats"]["calls"] for rep in reports) >= 6
        text = info("--dso", cluster3.addresses[0], env=cluster3.env_vars())
        assert text.returncode == 0, text.stderr
        assert text.stdout.count(" node ") == 3 and "AtomicInt" in text.stdout and "connections" in text.stdout
        for i in range(6):
            direct.delete("AtomicInt", f"{key}-{i}")


def test_info_without_a_dso_or_with_a_dead_one_says_so(tmp_path: Path) -> None:
    r = info(env={"HOME": str(tmp_path)})  # no config file either
    assert r.returncode == 2 and "pass --dso HOST:PORT or set CRUCIAL_DSO" in r.stderr
    r = info("--dso", "127.0.0.1:9")
    assert r.returncode == 1 and "ConnectError" in r.stderr and "127.0.0.1:9" in r.stderr


def test_a_malformed_info_request_is_an_error_reply_not_a_disconnect(cluster: LocalCluster) -> None:
    with raw_connection(cluster.addresses[0]) as raw:
        for body in (pickle.dumps({"objects": -1}), pickle.dumps("all"), b"\x80junk"):
            raw.send(P.Kind.INFO, 7, body)
            frame = raw.recv_frame()
            assert frame.kind == P.Kind.ERROR and frame.req_id == 7
        raw.send(P.Kind.INFO, 8, pickle.dumps({"objects": 1}))
        frame = raw.recv_frame()
        assert frame.kind == P.Kind.OK and pickle.loads(frame.body)["address"] == cluster.addresses[0]


def test_info_takes_the_token_from_the_option_or_the_environment() -> None:
    with LocalCluster(token="s3cret") as secured:
        for args, env in ((["--token", "s3cret"], {}), ([], {"CRUCIAL_TOKEN": "s3cret"})):
            r = info("--dso", secured.dso, *args, env=env)
            assert r.returncode == 0 and f"{secured.dso}  node " in r.stdout, r.stderr
        for args in ([], ["--token", "wrong"]):
            r = info("--dso", secured.dso, *args)
            assert r.returncode == 1, r.stdout
            assert "AuthenticationError" in r.stderr and "pass --token, or set CRUCIAL_TOKEN" in r.stderr
