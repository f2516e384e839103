"""Which cluster a proxy talks to, and the embedded node started on demand.

Resolution order for the default client: an explicit ``crucial.connect()``,
then the configuration (``CRUCIAL_DSO``, the config file), and when none names
a node, an **embedded node**: a ``crucial server`` child process on
127.0.0.1 with a random token.  Its address and token are exported as
``CRUCIAL_DSO``/``CRUCIAL_TOKEN`` so worker processes started later on this
machine find it; it stops when this process exits (its stdin closes).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from ..config import Config, load_config
from ..exceptions import ConnectError
from ._sync import Client

__all__ = ["connect", "default_client", "get_client", "reset_clients", "start_embedded", "stop_embedded"]

_lock = threading.RLock()
_clients: dict[tuple[str, ...], Client] = {}
_default: Client | None = None
_embedded: Any = None  # the embedded node's subprocess.Popen
_embedded_pid = 0


def start_embedded(nodes: int = 1, timeout: float = 30.0) -> tuple[tuple[str, ...], str]:
    """Start a local node (or ``nodes`` nodes) as a child process; return (addresses, token)."""
    global _embedded, _embedded_pid
    import secrets
    import subprocess

    token = secrets.token_hex(16)
    env = dict(os.environ, CRUCIAL_TOKEN=token)
    env.pop("CRUCIAL_DSO", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crucial.server", "--host", "127.0.0.1", "--port", "0", "--nodes", str(nodes), "--watch-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
        proc.stdout.close()  # the node writes nothing more there (it points its stdout at stderr)
    if not line.startswith("CRUCIAL_DSO="):
        proc.kill()
        raise ConnectError(f"the embedded DSO node did not start (exit code {proc.poll()}); run `crucial server` to see why")
    addresses = tuple(line.strip().split("=", 1)[1].split(","))
    _embedded, _embedded_pid = proc, os.getpid()
    atexit.register(stop_embedded)
    return addresses, token


def stop_embedded() -> None:
    """Stop the embedded node started by this process (idempotent)."""
    global _embedded
    proc, _embedded = _embedded, None
    if proc is None or os.getpid() != _embedded_pid:
        return
    import subprocess

    try:
        assert proc.stdin is not None
        proc.stdin.close()  # the node exits when its stdin closes
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def get_client(seeds: tuple[str, ...], config: Config | None = None) -> Client:
    """The shared client of this process for the cluster that ``seeds`` name."""
    with _lock:
        client = _clients.get(seeds)
        if client is None:
            client = _clients[seeds] = Client(seeds, config or load_config(dso=seeds))
        return client


def connect(dso: str | tuple[str, ...] | None = None, **settings: object) -> Client:
    """Make the cluster at ``dso`` (or the configured one) this process's default."""
    global _default
    if isinstance(dso, str):
        dso = tuple(a for a in dso.split(",") if a)
    config = load_config(**({"dso": dso} if dso else {}), **settings)
    with _lock:
        if not config.dso:
            addresses, token = start_embedded()
            os.environ["CRUCIAL_DSO"] = ",".join(addresses)
            os.environ["CRUCIAL_TOKEN"] = token
            config = config.replace(dso=addresses, token=token)
        client = Client(config.dso, config)
        _clients[config.dso] = client
        _default = client
        return client


def default_client() -> Client:
    """The client proxies use when they were not told otherwise."""
    client = _default
    if client is not None:
        return client
    with _lock:
        return _default or connect()


def reset_clients() -> None:
    """Forget every client (used after fork: sockets must not be shared)."""
    global _default
    with _lock:
        _clients.clear()
        _default = None


def _forget_after_fork() -> None:
    """A forked child must not use its parent's sockets, nor stop its node."""
    global _default
    _clients.clear()
    _default = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
