"""The systems ``benchmarks/replication.py`` measures: crucial's clusters, Redis primaries with replicas, CPU meters.

Everything runs on 127.0.0.1 and everything started is stopped by ``Systems``'
``with`` block.  Kept apart from the script so that both the benchmark and its
profile (``_replication_profile.py``) use the same set-up.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import LOOPBACK, RedisServer, cpu_seconds, ensure_redis_server, free_port, redis_client

__all__ = [
    "CLK_TCK",
    "CRUCIAL",
    "REDIS",
    "CpuMeter",
    "RedisDeployment",
    "Systems",
    "cpu_seconds",
    "redis_writer",
    "use_cluster",
    "wakeups",
]

WAIT_TIMEOUT_MS = 5000  # a WAIT that returns fewer replicas than asked raises: never silently accepted
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# system -> (cluster, rf); rf None: an ephemeral object
CRUCIAL = {
    "crucial-rf1": ("plain", 1),
    "crucial-rf2": ("plain", 2),
    "crucial-rf3": ("plain", 3),
    "crucial-durable": ("durable", 2),
    "crucial-ephemeral": ("plain", None),
}
# system -> (replicas, append-only file with fsync always, WAIT n)
REDIS = {
    "redis": (0, False, 0),
    "redis-wait1": (1, False, 1),
    "redis-wait2": (2, False, 2),
    "redis-fsync": (1, True, 1),
}

# --------------------------------------------------------------------------- CPU time of processes


def wakeups(pid: int) -> int:
    """Voluntary context switches of all live threads of a process: how often it blocked and was woken again."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


class CpuMeter:
    """CPU seconds and wake-ups of a set of processes (by role) between two snapshots."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.base = self.snapshot()

    def snapshot(self) -> dict[str, tuple[float, int]]:
        return {role: (cpu_seconds(pid), wakeups(pid)) for role, pid in self.pids.items()}

    def delta(self) -> tuple[dict[str, float], int]:
        """(CPU seconds by role, wake-ups of all the processes) since the last snapshot."""
        now = self.snapshot()
        cpu = {role: now[role][0] - self.base[role][0] for role in now}
        woken = sum(now[role][1] - self.base[role][1] for role in now)
        self.base = now
        return cpu, woken


# --------------------------------------------------------------------------- Redis primary + replicas


class RedisNode(RedisServer):
    """A redis-server with extra options (``--replicaof``, an append-only file) in its own directory."""

    def __init__(self, extra: list[str], directory: str) -> None:
        super().__init__()
        self.extra = extra
        self.directory = directory

    def start(self) -> RedisNode:
        exe = ensure_redis_server()
        for _attempt in range(5):  # the free port may be taken between probe and bind
            self.port = free_port()
            cmd = [exe, "--bind", LOOPBACK, "--port", str(self.port), "--save", "", "--appendonly", "no"]
            cmd += ["--protected-mode", "yes", "--daemonize", "no", "--loglevel", "notice", "--logfile", ""]
            cmd += ["--maxclients", "10000", "--dir", self.directory, "--repl-diskless-sync-delay", "0"]
            cmd += self.extra
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
            if self._wait_ready():
                threading.Thread(target=self._drain, daemon=True).start()
                return self
            self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class RedisDeployment:
    """A Redis primary and ``replicas`` replicas on 127.0.0.1; with ``aof``: every one with appendfsync always."""

    def __init__(self, replicas: int, aof: bool, root: str) -> None:
        self.replicas = replicas
        self.aof = aof
        self.root = root
        self.nodes: list[RedisNode] = []

    def start(self) -> RedisDeployment:
        durable = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else []
        try:
            primary = RedisNode(durable, tempfile.mkdtemp(prefix="redis-", dir=self.root)).start()
            self.nodes.append(primary)
            for _ in range(self.replicas):
                replica = ["--replicaof", LOOPBACK, str(primary.port), *durable]
                self.nodes.append(RedisNode(replica, tempfile.mkdtemp(prefix="redis-", dir=self.root)).start())
        except BaseException:
            self.stop()  # the servers already started
            raise
        return self

    def wait_synced(self, timeout: float = 60.0) -> None:
        """Until the primary sees every replica online (after their first full sync)."""
        r = redis_client(self.port)
        deadline = time.monotonic() + timeout
        try:
            while True:
                info = r.info("replication")
                online = [
                    v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
                ]
                if len(online) >= self.replicas:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis replicas not online after {timeout} s: {info}")
                time.sleep(0.05)
        finally:
            r.close()

    @property
    def port(self) -> int:
        return self.nodes[0].port

    def pids(self) -> dict[str, int]:
        return {"primary" if i == 0 else f"replica{i}": n.pid for i, n in enumerate(self.nodes)}

    def stop(self) -> None:
        for n in reversed(self.nodes):
            n.stop()
        self.nodes.clear()


# --------------------------------------------------------------------------- the systems under test


class Systems:
    """Everything the run measures: crucial's two clusters and Redis' four deployments, started in parallel."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.root = tempfile.mkdtemp(prefix="crucial-bench-repl-")
        self.clusters: dict[str, Any] = {}
        self.redis: dict[str, RedisDeployment] = {}

    def start(self) -> Systems:
        from crucial.testing import LocalCluster

        wanted = {CRUCIAL[n][0] for n in self.names if n in CRUCIAL}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures: dict[str, concurrent.futures.Future[Any]] = {}
            if "plain" in wanted:
                futures["plain"] = pool.submit(LocalCluster(nodes=3, rf=2).start)
            if "durable" in wanted:
                data = os.path.join(self.root, "crucial-data")
                futures["durable"] = pool.submit(LocalCluster(nodes=3, rf=2, data_dir=data, fsync="always").start)
            for name in self.names:
                if name in REDIS:
                    replicas, aof, _ = REDIS[name]
                    futures[name] = pool.submit(RedisDeployment(replicas, aof, self.root).start)
            errors = []
            for name, fut in futures.items():
                try:
                    started = fut.result()
                except Exception as exc:  # the others are still stopped below
                    errors.append(f"{name}: {exc}")
                    continue
                (self.clusters if name in ("plain", "durable") else self.redis)[name] = started
            if errors:
                self.stop()
                raise RuntimeError("cannot start: " + "; ".join(errors))
        for deployment in self.redis.values():
            deployment.wait_synced()
        return self

    def stop(self) -> None:
        for deployment in self.redis.values():
            deployment.stop()
        for cluster in self.clusters.values():
            cluster.stop()
        self.redis.clear()
        self.clusters.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Systems:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def dso(self, system: str) -> str:
        return str(self.clusters[CRUCIAL[system][0]].dso)

    def target(self, system: str) -> dict[str, Any]:
        """What a worker process needs to reach ``system``."""
        if system in CRUCIAL:
            return {"kind": "crucial", "dso": self.dso(system), "rf": CRUCIAL[system][1]}
        return {"kind": "redis", "port": self.redis[system].port, "wait": REDIS[system][2]}

    def pids(self, system: str, type_name: str, key: str) -> dict[str, int]:
        """The server processes of ``system``, by role; for crucial, the roles of the object ``(type_name, key)``."""
        if system in REDIS:
            return self.redis[system].pids()
        cluster = self.clusters[CRUCIAL[system][0]]
        by_address = cluster.pids()
        rf = CRUCIAL[system][1] or 1
        client = cluster.client()
        try:
            client.nodes  # noqa: B018 -- fetch the view
            view = client.core.view
            replicas = [view.address(n) for n in view.replicas(type_name, key, rf)]
        finally:
            client.close()
        roles = {"primary": by_address[replicas[0]]}
        roles.update({f"backup{i}": by_address[a] for i, a in enumerate(replicas[1:], 1)})
        others = [a for a in by_address if a not in replicas]
        roles.update({f"idle{i}": by_address[a] for i, a in enumerate(others, 1)})
        return roles


_current: dict[str, Any] = {"dso": None, "client": None}


def use_cluster(dso: str) -> None:
    """Make ``dso`` this process's default cluster (closing the client of the previous one)."""
    import crucial

    if _current["dso"] == dso:
        return
    if _current["client"] is not None:
        _current["client"].close()
    _current["client"] = crucial.connect(dso)
    _current["dso"] = dso


def redis_writer(r: Any, wait: int) -> Callable[[Callable[[Any], Any]], Any]:
    """``write(lambda c: c.incr(k))``: the write, then ``WAIT wait`` in the same round trip; counts short WAITs."""
    if wait == 0:
        return lambda command: command(r)

    def write(command: Callable[[Any], Any]) -> Any:
        pipe = r.pipeline(transaction=False)
        command(pipe)
        pipe.wait(wait, WAIT_TIMEOUT_MS)
        result, acked = pipe.execute()
        if acked < wait:
            raise RuntimeError(f"WAIT {wait} returned {acked}: a replica did not acknowledge within {WAIT_TIMEOUT_MS} ms")
        return result

    return write
