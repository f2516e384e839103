"""Several nodes: discovery from one seed, placement, redirects, the CLI and the embedded node."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import crucial
from crucial._placement import View
from crucial.testing import LocalCluster, unconfigured_env

INT = crucial.AtomicInt._type_name


def _reachable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def _gone(pid: int, timeout: float) -> bool:
    """Wait (on a pidfd, no polling) until ``pid`` has exited; a zombie counts as gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def _read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    assert proc.stdout is not None
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        return proc.stdout.readline()
    finally:
        timer.cancel()


def _views(cluster: LocalCluster) -> list[list[str]]:
    """The view each node of ``cluster`` hands a new client, right now."""
    views = []
    for a in cluster.addresses:
        with crucial.Client([a], cluster.config().replace(dso=(a,))) as client:
            client.ping(a)
            views.append(sorted(client.core.nodes))
    return views


# -- discovery and placement -------------------------------------------------------------


def test_client_learns_all_nodes_from_one(cluster3: LocalCluster, key: str) -> None:
    one = cluster3.addresses[1]
    with crucial.Client([one], cluster3.config().replace(dso=(one,))) as client:
        assert client.call(INT, key, "increment_and_get", create=((), {})) == 1
        assert sorted(client.nodes) == sorted(cluster3.addresses)
        assert client.seeds == (one,)


def test_objects_spread_over_the_nodes(cluster3: LocalCluster, key: str) -> None:
    with crucial.Client([cluster3.addresses[0]], cluster3.config()) as client:
        client.nodes  # noqa: B018 -- fetch the view
        view = client.core.view
        assert view is not None
        keys = [f"{key}-{i}" for i in range(100)]
        owners = {k: view.primary_address(INT, k) for k in keys}
        assert set(owners.values()) == set(cluster3.addresses)
        for node in cluster3.addresses:  # a call for a key of each node succeeds, and lands there
            k = next(k for k, n in owners.items() if n == node)
            assert client.call(INT, k, "add_and_get", (5,), create=((), {})) == 5
            with crucial.Client([node], cluster3.config().replace(dso=(node,))) as direct:
                direct.ping()
                direct.core.nodes, direct.core.view = (node,), View(view.epoch, (("only", node),))
                assert direct.call(INT, k, "get") == 5  # the owner answers itself, no redirect
                assert direct.core.nodes == (node,)


def test_non_owner_redirects(cluster3: LocalCluster, key: str) -> None:
    with crucial.Client([cluster3.addresses[0]], cluster3.config()) as full:
        full.nodes  # noqa: B018
        view = full.core.view
        assert view is not None
        k = f"{key}-r"
        owner = view.primary_address(INT, k)
        other = next(a for a in cluster3.addresses if a != owner)
        with crucial.Client([other], cluster3.config().replace(dso=(other,))) as blind:
            blind.ping(other)  # connected; now make it believe `other` is the only node
            blind.core.nodes, blind.core.view = (other,), View(view.epoch, (("only", other),))
            assert blind.core.route(INT, k) == other
            assert blind.call(INT, k, "add_and_get", (3,), create=((), {})) == 3  # via the redirect
            assert sorted(blind.core.nodes) == sorted(cluster3.addresses)  # its view was updated
            assert blind.core.route(INT, k) == owner
        assert full.call(INT, k, "get") == 3  # the object lives on its owner


def test_nodes_know_the_cluster_when_it_is_announced() -> None:
    for _ in range(3):  # a race, if there were one, would be lost most of the time: three rounds
        with LocalCluster(nodes=3) as cluster:
            assert _views(cluster) == [sorted(cluster.addresses)] * 3


# -- the CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_server_with_two_nodes(sig: signal.Signals, key: str) -> None:
    exe = Path(sys.executable).with_name("crucial")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "crucial.cli"]
    proc = subprocess.Popen([*cmd, "server", "--nodes", "2"], stdout=subprocess.PIPE, text=True, env=unconfigured_env())
    try:
        line = _read_line(proc)
        m = re.fullmatch(r"CRUCIAL_DSO=(127\.0\.0\.1:\d+),(127\.0\.0\.1:\d+)\n", line)
        assert m, line
        addresses = m.groups()
        assert addresses[0] != addresses[1]
        with crucial.Client(addresses) as client:
            assert client.call(INT, key, "increment_and_get", create=((), {})) == 1
            assert client.call(INT, key, "increment_and_get") == 2
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == ""  # one line, nothing else
        assert not any(_reachable(a) for a in addresses)  # the nodes went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- the embedded default -------------------------------------------------------------------

EMBEDDED_SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    import os
    import sys

    import crucial
    from crucial.client import _default


    def child(out):
        try:
            value = crucial.AtomicInt(key="x").increment_and_get()
            out.put((value, os.environ.get("CRUCIAL_DSO"), _default._embedded is None))
        except BaseException as exc:
            out.put(repr(exc))


    if __name__ == "__main__":
        assert "CRUCIAL_DSO" not in os.environ
        first = crucial.AtomicInt(key="x").increment_and_get()
        print("PID", _default._embedded.pid, flush=True)
        print("DSO", os.environ["CRUCIAL_DSO"], flush=True)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        p = ctx.Process(target=child, args=(out,))
        p.start()
        got = out.get(timeout=60)
        p.join(60)
        print("CHILD", got, p.exitcode, flush=True)
        print("AFTER", first, crucial.AtomicInt(key="x").get(), flush=True)
        if len(sys.argv) > 1:  # wait to be killed
            sys.stdin.read()
    """
)


def _parse(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_embedded_node(tmp_path: Path) -> None:
    script = tmp_path / "embedded_user.py"
    script.write_text(EMBEDDED_SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=unconfigured_env(), cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    info = _parse(run.stdout)
    pid = int(info["PID"])
    dso = info["DSO"]
    assert info["CHILD"] == f"(2, '{dso}', True) 0"  # the child reached the same node and started none
    assert info["AFTER"] == "1 2"
    assert _gone(pid, 0)  # the embedded node was stopped (and reaped) before the parent exited
    assert not _reachable(dso)


def test_embedded_node_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = tmp_path / "embedded_user.py"
    script.write_text(EMBEDDED_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=unconfigured_env(),
        cwd=tmp_path,
    )
    try:
        lines = [_read_line(proc, 60) for _ in range(4)]
        info = _parse("".join(lines))
        pid, dso = int(info["PID"]), info["DSO"]
        assert info["AFTER"] == "1 2"
        assert _reachable(dso)
        proc.kill()  # no atexit: the node notices its stdin closing
        proc.wait(timeout=10)
        assert _gone(pid, 20)
        assert not _reachable(dso)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()


def _server_line(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crucial.cli", "server", "--port", "0", "--token", "t0ken", "--watch-stdin", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=unconfigured_env(),
    )
    assert proc.stdout is not None
    timer = threading.Timer(30, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    assert line.startswith("CRUCIAL_DSO="), line
    return proc, line.strip().split("=", 1)[1]


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.wait(timeout=30)
    proc.stdout.close()


def test_a_node_bound_to_every_interface_advertises_this_machines_primary_address() -> None:
    """0.0.0.0 is nobody's address and this machine's name may resolve to 127.0.0.1: neither reaches a remote function."""
    from crucial.server._node import is_loopback

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("198.51.100.1", 9))  # a route off this machine (UDP: nothing is sent)
    except OSError:
        pytest.skip("this machine has no route off loopback")
    proc, address = _server_line("--host", "0.0.0.0", "--insecure-no-tls")
    try:
        host, _ = address.rsplit(":", 1)
        assert not is_loopback(host) and host not in ("0.0.0.0", socket.gethostname(), socket.getfqdn()), address
        with socket.socket() as s:
            s.bind((host, 0))  # one of this machine's own addresses
        with crucial.Client(address, crucial.Config(dso=(address,), token="t0ken")) as client:
            assert list(client.nodes) == [address]  # the view carries the advertised address
            assert client.call(INT, "advertised", "add_and_get", (2,), create=((40,), {})) == 42
    finally:
        _stop(proc)


def test_advertise_names_the_address_to_give_out() -> None:
    proc, address = _server_line("--host", "0.0.0.0", "--insecure-no-tls", "--advertise", "dso.example.internal")
    try:
        assert re.fullmatch(r"dso\.example\.internal:\d+", address), address
    finally:
        _stop(proc)
