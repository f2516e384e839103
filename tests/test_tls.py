"""TLS between clients and nodes and between nodes, with certificates made here (trustme).

Every failure must be a clear, typed error that comes at once -- never a hang:
a plain client to a TLS node, a TLS client to a plain node, a CA that did
not sign the node's certificate, a missing client certificate where the
node demands one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import crucial
from crucial import ServerlessExecutor
from crucial.client import AsyncClient, Client, _default
from crucial.config import load_config
from crucial.exceptions import AuthenticationError, ConfigError, ConnectError, TLSError
from crucial.server._node import Node
from crucial.testing import LocalCluster, TLSFiles, unconfigured_env


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.generate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def mutual_certs(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.generate(tmp_path_factory.mktemp("mtls"), mutual=True)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.generate(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def tls_cluster(certs: TLSFiles) -> Iterator[LocalCluster]:
    """Two nodes over TLS (server certificates only): peers verify each other with the CA."""
    with LocalCluster(nodes=2, token="tls-token", tls=certs, rf=2) as c:
        yield c


@pytest.fixture(scope="module")
def mtls_cluster(mutual_certs: TLSFiles) -> Iterator[LocalCluster]:
    """Two nodes that demand client certificates, from clients and from each other."""
    with LocalCluster(nodes=2, token="tls-token", tls=mutual_certs, rf=2) as c:
        yield c


def _plain(cluster: LocalCluster, **settings: object) -> Client:
    return Client(cluster.addresses, crucial.Config(dso=cluster.addresses, token=cluster.token, retries=0, **settings))


@pytest.mark.parametrize("which", ["tls_cluster", "mtls_cluster"])
def test_calls_over_tls_sync_async_and_replicated(which: str, request: pytest.FixtureRequest, key: str) -> None:
    cluster: LocalCluster = request.getfixturevalue(which)
    with cluster.client() as client:
        assert client.info()["tls"] is True
        assert client.call("AtomicInt", key, "add_and_get", (2,), create=((1,), {})) == 3
        # persistent, rf=2: every call is acknowledged by the backup over a TLS peer link
        assert client.call("AtomicInt", key + "-p", "add_and_get", (5,), create=((0,), {}, (True, 2))) == 5
        assert client.call("Dict", key + "-d", "put", ("a", [1, 2]), create=((), {}, (True, 2))) is None

    async def main() -> int:
        async with AsyncClient(cluster.addresses, cluster.config()) as client:
            return int(await client.call("AtomicInt", key + "-p", "add_and_get", (1,)))

    assert asyncio.run(main()) == 6


def test_threads_share_one_tls_connection_per_node(mtls_cluster: LocalCluster, key: str) -> None:
    """Many threads over the shared connection (one reads while others write the same TLS socket), waking each other."""
    parties, rounds = 8, 4
    with mtls_cluster.client() as client:
        client.call("Barrier", key + "-b", "get_parties", create=((parties,), {}))

        def body(i: int) -> list[int]:
            ranks = []
            for _ in range(rounds):
                for _ in range(40):
                    client.call("Counter", key + "-c", "increment", (1,), create=((0,), {}))
                ranks.append(client.call("Barrier", key + "-b", "wait", (60,)))
            return ranks

        with ThreadPoolExecutor(parties) as pool:
            results = list(pool.map(body, range(parties)))
        for r in range(rounds):  # each crossing handed out every index once
            assert sorted(ranks[r] for ranks in results) == list(range(parties))
        assert client.call("Counter", key + "-c", "tally") == parties * rounds * 40
        assert set(client._shared) <= set(client.nodes) and not list(client._all)


def test_a_plain_client_of_a_tls_node_fails_at_once_and_says_tls(tls_cluster: LocalCluster, key: str) -> None:
    with _plain(tls_cluster) as client, pytest.raises(ConnectError, match="require TLS") as err:
        client.call("AtomicInt", key, "get", create=((0,), {}))
    assert not isinstance(err.value, crucial.CallInterruptedError)

    async def main() -> None:
        config = crucial.Config(dso=tls_cluster.addresses, token=tls_cluster.token, retries=0)
        async with AsyncClient(tls_cluster.addresses, config) as client:
            await client.call("AtomicInt", key, "get", create=((0,), {}))

    with pytest.raises(ConnectError, match="require TLS"):
        asyncio.run(main())


def test_a_ca_that_did_not_sign_the_node_is_a_tls_error(tls_cluster: LocalCluster, other_ca: TLSFiles, key: str) -> None:
    with _plain(tls_cluster, tls_ca=other_ca.ca) as client, pytest.raises(TLSError, match="not trusted") as err:
        client.call("AtomicInt", key, "get", create=((0,), {}))
    assert isinstance(err.value, AuthenticationError) and err.value.address in tls_cluster.addresses

    async def main() -> None:
        config = crucial.Config(dso=tls_cluster.addresses, token=tls_cluster.token, tls_ca=other_ca.ca)
        async with AsyncClient(tls_cluster.addresses, config) as client:
            await client.call("AtomicInt", key, "get", create=((0,), {}))

    with pytest.raises(TLSError, match="not trusted"):
        asyncio.run(main())


def test_the_system_store_does_not_trust_a_private_ca(tls_cluster: LocalCluster, key: str) -> None:
    with _plain(tls_cluster, tls=True) as client, pytest.raises(TLSError, match="not trusted"):
        client.call("AtomicInt", key, "get", create=((0,), {}))


def test_a_tls_client_of_a_plain_node_is_a_tls_error(cluster: LocalCluster, certs: TLSFiles, key: str) -> None:
    with _plain(cluster, tls_ca=certs.ca) as client, pytest.raises(TLSError, match="does not seem to speak TLS"):
        client.call("AtomicInt", key, "get", create=((0,), {}))


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_cluster: LocalCluster, mutual_certs: TLSFiles, key: str) -> None:
    with _plain(mtls_cluster, tls_ca=mutual_certs.ca) as client, pytest.raises(ConnectError, match="client certificate"):
        client.call("AtomicInt", key, "get", create=((0,), {}))
    # a certificate from another CA is refused the same way
    stranger = TLSFiles.generate(Path(mutual_certs.ca).parent / "stranger")
    settings = {"tls_ca": mutual_certs.ca, "tls_cert": stranger.client_cert, "tls_key": stranger.client_key}
    with _plain(mtls_cluster, **settings) as client, pytest.raises(ConnectError, match="client certificate"):
        client.call("AtomicInt", key, "get", create=((0,), {}))
    with _plain(mtls_cluster, **mutual_certs.client_settings()) as client:
        assert client.call("AtomicInt", key, "add_and_get", (1,), create=((0,), {})) == 1


def test_the_token_is_still_checked_over_tls(tls_cluster: LocalCluster, certs: TLSFiles, key: str) -> None:
    config = crucial.Config(dso=tls_cluster.addresses, token="wrong", tls_ca=certs.ca, retries=0)
    with Client(tls_cluster.addresses, config) as client, pytest.raises(AuthenticationError, match="token"):
        client.call("AtomicInt", key, "get", create=((0,), {}))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crucial.cli", *args], env=unconfigured_env(env), capture_output=True, text=True, timeout=120
    )


def test_commands_and_verbs_use_the_tls_settings_of_the_environment(mtls_cluster: LocalCluster, key: str) -> None:
    env = mtls_cluster.env_vars()
    r = _cli("ipc", "counter", "-n", key, "increment", "-1", "4", env=env)
    assert r.returncode == 0, r.stderr
    r = _cli("ipc", "counter", "-n", key, "tally", env=env)
    assert (r.returncode, r.stdout.strip()) == (0, "4"), r.stderr
    r = _cli("info", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["tls"] for line in r.stdout.splitlines()] == [True, True]
    r = _cli("status", env=env)
    assert r.returncode == 0 and "2 nodes" in r.stdout, r.stderr
    no_tls = {k: v for k, v in env.items() if not k.startswith("CRUCIAL_TLS")}
    r = _cli("info", env=no_tls)
    assert r.returncode == 1 and "require TLS" in r.stderr


def _add_to_counter(key: str, n: int) -> int:
    return int(crucial.Counter(key=key).increment(n))


def test_cloud_threads_reach_a_tls_cluster(
    mtls_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, new_backend: Callable[..., Any], key: str
) -> None:
    """Functions find their TLS settings in the environment they inherit (CRUCIAL_TLS_*)."""
    for name, value in mtls_cluster.env_vars().items():
        monkeypatch.setenv(name, value)
    client = _default.connect(mtls_cluster.dso)
    try:
        # spawned workers: a forkserver started by an earlier test would hand its workers the environment
        # of that moment, without the CRUCIAL_TLS_* set above (a program sets them before its first cloud thread)
        with ServerlessExecutor(new_backend(start_method="spawn")) as ex:
            totals = sorted(ex.map(_add_to_counter, [key] * 4, range(1, 5)))  # running totals, in some order
        assert len(set(totals)) == 4 and totals[-1] == 10
        assert crucial.Counter(key=key).tally() == 10
    finally:
        _default.reset_clients()
        client.close()


def test_sshell_commands_reach_a_tls_cluster(mtls_cluster: LocalCluster, tmp_path: Path, key: str) -> None:
    env = {**mtls_cluster.env_vars(), "XDG_CACHE_HOME": str(tmp_path / "cache"), "CRUCIAL_SHARED_DIR": str(tmp_path / "s")}
    r = subprocess.run(
        [sys.executable, "-m", "crucial.shell.sshell", f"counter -n {key} increment -1 3 && echo done"],
        env=unconfigured_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (r.returncode, r.stdout.split()) == (0, ["3", "done"]), r.stderr
    with mtls_cluster.client() as client:
        assert client.call("Counter", key, "tally") == 3


def test_off_loopback_a_node_needs_tls_unless_waived(certs: TLSFiles) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crucial.cli", "server", "--host", "0.0.0.0", "--token", "t", "--watch-stdin"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=unconfigured_env(),
        timeout=60,
    )
    assert proc.returncode != 0 and "CRUCIAL_DSO=" not in proc.stdout
    assert "without TLS" in proc.stderr and "--insecure-no-tls" in proc.stderr
    with pytest.raises(ConfigError, match="without TLS"):
        Node("10.1.2.3", token="t")
    Node("10.1.2.3", token="t", insecure_no_tls=True)  # waived: built (not bound)
    from crucial.server._security import NodeTLS

    Node("10.1.2.3", token="t", tls=NodeTLS(certs.cert, certs.key))
    with pytest.raises(ConfigError, match="token"):
        Node("10.1.2.3", tls=NodeTLS(certs.cert, certs.key))  # TLS does not replace the token


def _server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crucial.cli", "server", "--watch-stdin", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=unconfigured_env(env),
        timeout=60,
    )


def test_bad_certificate_settings_are_named(certs: TLSFiles, tmp_path: Path) -> None:
    r = _server("--tls-cert", str(tmp_path / "absent.pem"))
    assert r.returncode != 0 and "absent.pem" in r.stderr and "--tls-cert" in r.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    r = _server("--tls-cert", certs.cert, "--tls-key", certs.key, "--tls-ca", str(garbage))
    assert r.returncode != 0 and "garbage.pem" in r.stderr
    r = _server("--tls-key", certs.key)
    assert r.returncode != 0 and "--tls-cert" in r.stderr


def test_a_node_whose_peers_could_not_verify_it_refuses_to_start(tmp_path: Path) -> None:
    elsewhere = TLSFiles.generate(tmp_path / "elsewhere")
    import trustme

    ca = trustme.CA()
    wrong_name = ca.issue_cert("db.example.org")  # not 127.0.0.1: peers dialling the node would reject it
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    wrong_name.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "both.pem"))
    r = _server("--tls-cert", str(tmp_path / "both.pem"), env={"CRUCIAL_TLS_CA": str(tmp_path / "ca.pem")})
    assert r.returncode != 0 and "not trusted" in r.stderr and "127.0.0.1" in r.stderr
    # no CA for its peers at all (neither --tls-ca nor CRUCIAL_TLS_CA): the system store does not know ours
    r = _server("--tls-cert", elsewhere.cert, "--tls-key", elsewhere.key)
    assert r.returncode != 0 and "system's trust store" in r.stderr


def test_tls_settings_in_the_config(monkeypatch: pytest.MonkeyPatch, certs: TLSFiles, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("CRUCIAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "crucial.toml"
    path.write_text(f'tls_ca = "{certs.ca}"\ntls = true\n')
    monkeypatch.setenv("CRUCIAL_CONFIG", str(path))
    monkeypatch.setenv("CRUCIAL_TLS_CERT", certs.client_cert)
    monkeypatch.setenv("CRUCIAL_TLS_KEY", certs.client_key)
    config = load_config()
    assert (config.tls, config.tls_ca, config.tls_cert, config.tls_key) == (True, certs.ca, certs.client_cert, certs.client_key)
    monkeypatch.setenv("CRUCIAL_TLS", "maybe")
    with pytest.raises(ConfigError, match="'tls'"):
        load_config()
    from crucial._tls import client_context

    with pytest.raises(ConfigError, match=r"tls_ca.*nowhere\.pem"):
        client_context(crucial.Config(tls_ca=str(tmp_path / "nowhere.pem")))
    with pytest.raises(ConfigError, match="tls_key is set without tls_cert"):
        client_context(crucial.Config(tls=True, tls_key=certs.key))
    assert client_context(crucial.Config()) is None
