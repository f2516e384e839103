"""Real DSO nodes for tests and benchmarks: start, reach, kill, stop.

A :class:`LocalCluster` runs ``crucial server`` as a child process on
127.0.0.1, on ports the OS picks, and reads the addresses it prints -- no
fixed port, no sleep.  Its nodes exit when their stdin closes, so a crashed
test run leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

from ..client import Client
from ..config import Config
from ._certs import TLSFiles

__all__ = ["LocalCluster", "unconfigured_env"]


def unconfigured_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``CRUCIAL_*`` variable (nothing configured), plus ``extra``.

    What a child process -- a node, an example run with ``python -m``, a
    script -- gets so that it sees only the settings a test gives it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIAL_")}
    env.update(extra or {})
    return env


class LocalCluster:
    """``with LocalCluster(nodes=2, token="t") as cluster: cluster.client()``."""

    def __init__(
        self,
        nodes: int = 1,
        *,
        token: str | None = None,
        max_frame_size: int | None = None,
        start_timeout: float = 30.0,
        env: dict[str, str] | None = None,
        rf: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        fsync: str | None = None,
        failure_timeout: float | None = None,
        args: tuple[str, ...] = (),
        tls: TLSFiles | None = None,
        metrics: bool = False,
    ) -> None:
        self.nodes = nodes
        self.token = token
        self.max_frame_size = max_frame_size
        self.start_timeout = start_timeout
        self.env = env or {}
        self.rf = rf
        self.data_dir = data_dir
        self.fsync = fsync
        self.failure_timeout = failure_timeout
        self.args = args
        self.tls = tls  # nodes serve TLS with these files; clients and env_vars() trust them
        self.metrics = metrics  # each node serves /metrics and /healthz on a free port (metrics_addresses())
        self.proc: subprocess.Popen[str] | None = None
        self.addresses: tuple[str, ...] = ()
        self._clients: list[Client] = []

    def start(self) -> LocalCluster:
        cmd = [sys.executable, "-m", "crucial.server", "--port", "0", "--nodes", str(self.nodes), "--watch-stdin"]
        if self.max_frame_size is not None:
            cmd += ["--max-frame-size", str(self.max_frame_size)]
        for option, value in (
            ("--rf", self.rf),
            ("--data-dir", self.data_dir),
            ("--fsync", self.fsync),
            ("--failure-timeout", self.failure_timeout),
        ):
            if value is not None:
                cmd += [option, str(value)]
        if self.tls is not None:
            cmd += self.tls.node_args()
        if self.metrics:
            cmd += ["--metrics-port", "0"]
        cmd += list(self.args)
        env = unconfigured_env(self.env)
        if self.token:
            env["CRUCIAL_TOKEN"] = self.token
        if self.tls is not None:
            env["CRUCIAL_TLS_CA"] = self.tls.ca  # a node is a client of its peers: it trusts our CA
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        timer = threading.Timer(self.start_timeout, self.proc.kill)
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        if not line.startswith("CRUCIAL_DSO="):
            self.stop()
            raise RuntimeError(f"crucial server did not start: {line!r}")
        self.addresses = tuple(line.strip().split("=", 1)[1].split(","))
        return self

    @property
    def dso(self) -> str:
        """The addresses as one ``CRUCIAL_DSO`` value."""
        return ",".join(self.addresses)

    def config(self, **overrides: Any) -> Config:
        tls = self.tls.client_settings() if self.tls is not None else {}
        return Config(dso=self.addresses, token=self.token, **(tls | overrides))

    def client(self, **overrides: Any) -> Client:
        """A new client of this cluster (closed by :meth:`stop`)."""
        c = Client(self.addresses, self.config(**overrides))
        self._clients.append(c)
        return c

    def env_vars(self) -> dict[str, str]:
        """Environment that points a child process at this cluster."""
        env = {"CRUCIAL_DSO": self.dso}
        if self.token:
            env["CRUCIAL_TOKEN"] = self.token
        if self.tls is not None:
            env.update(self.tls.env())
        return env

    def pids(self) -> dict[str, int]:
        """Each node's process id, by the address the current view gives it."""
        client = self.client()
        try:
            return {address: int(client.info(address)["pid"]) for address in client.nodes}
        finally:
            client.close()
            self._clients.remove(client)

    def metrics_addresses(self) -> dict[str, str]:
        """Each node's metrics server (HOST:PORT serving /metrics and /healthz), by node address."""
        if not self.metrics:
            raise RuntimeError("this LocalCluster was started without metrics=True")
        client = self.client()
        try:
            return {address: str(client.info(address)["metrics"]["address"]) for address in client.nodes}
        finally:
            client.close()
            self._clients.remove(client)

    def owner(self, type_name: str, key: str) -> str:
        """The address of the node that is primary for ``(type_name, key)`` in the current view."""
        client = self.client()
        try:
            client.nodes  # noqa: B018 -- fetch the view
            return client.core.route(type_name, key)
        finally:
            client.close()
            self._clients.remove(client)

    def signal_node(self, address: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the node at ``address`` (a supervisor restarts a node that dies); returns its pid."""
        pid = self.pids()[address]
        os.kill(pid, sig)
        return pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the server process(es) abruptly (fault injection)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        for c in self._clients:
            c.close()
        self._clients.clear()
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
