"""Several tokens, and rotating them without restarting a node (``--token-file``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import crucial
from crucial.client import Client
from crucial.exceptions import AuthenticationError, ConfigError
from crucial.server._security import Tokens
from crucial.testing import LocalCluster


def _write(path: Path, *lines: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)  # as an editor or a secret manager does: a new inode


def test_tokens_from_a_file_are_all_accepted_and_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    _write(path, "# rotation in progress", "old", "", "new")
    tokens = Tokens(path=str(path))
    assert tokens.required and tokens.current == "old"
    assert tokens.accepts("old") and tokens.accepts("new")
    assert not tokens.accepts("other") and not tokens.accepts(None) and not tokens.accepts(7)
    _write(path, "new")
    assert not tokens.accepts("old") and tokens.accepts("new") and tokens.current == "new"
    path.unlink()  # being replaced, or gone: keep what we had rather than lock everyone out
    assert tokens.accepts("new") and not tokens.accepts("old")
    _write(path, "# nothing yet")
    assert tokens.accepts("new")  # an empty file is ignored too
    both = Tokens("given", str(tmp_path / "tokens2") if _write(tmp_path / "tokens2", "filed") is None else None)
    assert both.current == "given" and both.accepts("given") and both.accepts("filed")
    assert not Tokens().required and Tokens().accepts(None)


def test_a_token_file_that_cannot_be_used_at_start_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absent"):
        Tokens(path=str(tmp_path / "absent"))
    _write(tmp_path / "empty", "# comments only")
    with pytest.raises(ConfigError, match="holds no token"):
        Tokens(path=str(tmp_path / "empty"))


def _client(cluster: LocalCluster, token: str) -> Client:
    return Client(cluster.addresses, crucial.Config(dso=cluster.addresses, token=token, retries=0))


@pytest.mark.slow
def test_rotating_the_token_of_a_running_cluster(tmp_path: Path, key: str) -> None:
    """The four steps of docs/security.md on two nodes, with a replicated object; then a node restarts."""
    path = tmp_path / "tokens"
    _write(path, "old")
    with LocalCluster(nodes=2, rf=2, args=("--token-file", str(path))) as cluster:
        with _client(cluster, "old") as c:
            assert c.call("AtomicInt", key, "add_and_get", (1,), create=((0,), {}, (True, 2))) == 1
        _write(path, "old", "new")  # 1. both accepted
        with _client(cluster, "old") as c_old, _client(cluster, "new") as c_new:
            assert c_old.call("AtomicInt", key, "add_and_get", (1,)) == 2
            assert c_new.call("AtomicInt", key, "add_and_get", (1,)) == 3
            # 2. clients move to "new"; 3. the nodes present "new" to each other
            _write(path, "new", "old")
            assert c_new.call("AtomicInt", key, "add_and_get", (1,)) == 4
            _write(path, "new")  # 4. "old" is gone: new connections with it are refused ...
            with _client(cluster, "old") as late, pytest.raises(AuthenticationError):
                late.call("AtomicInt", key, "get")
            assert c_old.call("AtomicInt", key, "add_and_get", (1,)) == 5  # ... open ones stay as they are
        # a node restarted now reads "new" only, and the peers reconnect to it (and it to them) with "new"
        with Client(cluster.addresses, crucial.Config(dso=cluster.addresses, token="new", call_timeout=60)) as c:
            c.nodes  # noqa: B018 -- fetch the view
            primary = c.core.route("AtomicInt", key)
            os.kill(int(c.info(primary)["pid"]), signal.SIGKILL)
            assert c.call("AtomicInt", key, "add_and_get", (1,)) == 6  # failed over to the backup
            deadline = time.monotonic() + 60
            while len(c.refresh()) < 2 or primary in c.nodes:  # the supervisor restarted it, on a new port
                assert time.monotonic() < deadline, "the restarted node did not rejoin"
                time.sleep(0.1)
            backup = next(a for a in c.nodes if a != c.core.route("AtomicInt", key))
            # replicated calls are acknowledged by the restarted node only if the peer links between it and
            # the other node authenticated with "new"
            assert c.call("AtomicInt", key, "add_and_get", (1,)) == 7
            assert c.info(backup)["replication"]["backups"] >= 1
