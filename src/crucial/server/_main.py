"""Running nodes as processes: ``crucial server`` and ``python -m crucial.server``.

A lone node (the default, and the embedded node) needs nothing else.  A
cluster agrees on its views through etcd: ``--etcd URL`` names one, else
``--nodes N`` starts one beside its nodes, and ``--join HOST:PORT`` asks a
running member for it.  With ``--nodes N`` this process is a supervisor::

    supervisor ──► etcd (unless --etcd)
               ──spawn──► node 1 ─┐  each node joins through etcd and prints
               ──spawn──► node 2 ─┼─ its address; the supervisor waits until
               ──spawn──► node N ─┘  the view holds all of them, then prints

    CRUCIAL_DSO=127.0.0.1:41001,127.0.0.1:41002,...

A node that dies is started again (on its data dir, if it has one); the
others keep serving.  A child exits when its stdin closes, so nodes never
outlive their supervisor; SIGINT/SIGTERM stop everything cleanly, each node
handing its objects over first when it is not the last one.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._placement import DEFAULT_FAILURE_TIMEOUT, PLACEMENTS, View
from ..exceptions import ConfigError, CrucialError, ProtocolError
from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ._node import BLOCKED_WARNING, Node, loop_factory
from ._output import detach_stdout, install
from ._security import NodeTLS, check_tls

__all__ = ["ServerOptions", "run_nodes"]

log = logging.getLogger("crucial.node")

FSYNC_MODES = ("always", "batch", "never")


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    nodes: int = 1
    token: str | None = None
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    watch_stdin: bool = False  # exit when stdin closes (embedded and child nodes)
    child: bool = False  # a node under a supervisor
    advertise: str | None = None  # the host name clients and functions should use
    blocked_warning: float = BLOCKED_WARNING  # log a call holding the node this long (0: never)
    rf: int | None = None  # replicas of a persistent object (None: 2, at most the nodes)
    data_dir: str | None = None  # write persistent objects here (a node's own dir; the supervisor's parent dir)
    fsync: str = "always"  # always | batch | never: when data dir writes reach the disk
    etcd: str | None = None  # etcd endpoints (comma-separated URLs) that agree on this cluster's views
    cluster: str = "default"  # the cluster's name in etcd
    failure_timeout: float = DEFAULT_FAILURE_TIMEOUT  # seconds before a silent node is removed
    join: str | None = None  # HOST:PORT of a running member: join its cluster
    placement: str = "hash"  # hash | anchored: where a new cluster places new ephemeral objects
    token_file: str | None = None  # tokens accepted, one a line (the first is the node's own); re-read when it changes
    tls_cert: str | None = None  # the node's certificate (PEM): clients and peers connect over TLS
    tls_key: str | None = None  # its private key (unless tls_cert holds it)
    tls_ca: str | None = None  # demand client certificates signed by this CA (mutual TLS; peers present theirs)
    insecure_no_tls: bool = False  # allow clear text off loopback (a network you trust)
    metrics_port: int | None = None  # serve /metrics and /healthz over HTTP here (0: a free port); None: off
    metrics_host: str | None = None  # the address the metrics server binds (default: --host)

    @property
    def tls(self) -> NodeTLS | None:
        return NodeTLS(self.tls_cert, self.tls_key, self.tls_ca) if self.tls_cert else None

    @property
    def clustered(self) -> bool:
        return self.nodes > 1 or self.etcd is not None or self.join is not None

    def check(self) -> None:
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, not {self.nodes}")
        if self.rf is not None and self.rf < 1:
            raise ConfigError(f"--rf must be at least 1, not {self.rf}")
        if self.rf is not None and self.rf > 1 and not self.clustered:
            raise ConfigError(
                f"--rf {self.rf} is larger than the cluster (1 node): replication needs --nodes N >= {self.rf}, "
                "or --etcd/--join to form a cluster"
            )
        if self.rf is not None and self.nodes > 1 and self.rf > self.nodes:
            raise ConfigError(f"--rf {self.rf} is larger than the cluster ({self.nodes} nodes)")
        if self.fsync not in FSYNC_MODES:
            raise ConfigError(f"--fsync must be one of {', '.join(FSYNC_MODES)}, not {self.fsync!r}")
        if not self.failure_timeout >= 1:
            raise ConfigError(
                f"--failure-timeout must be at least 1 second (etcd leases count seconds), not {self.failure_timeout}"
            )
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"--placement must be one of {', '.join(PLACEMENTS)}, not {self.placement!r}")
        if self.join is not None and self.nodes > 1:
            raise ConfigError("--join adds one node to a running cluster: leave --nodes at 1")
        if (self.tls_key or self.tls_ca) and not self.tls_cert:
            raise ConfigError("--tls-key and --tls-ca need --tls-cert: the node's own certificate")
        if self.metrics_port and self.nodes > 1:
            raise ConfigError("with --nodes > 1 each node serves metrics on a free port: leave --metrics-port at 0")


def _open_store(opts: ServerOptions) -> object | None:
    if opts.data_dir is None:
        return None
    from ._store import Store

    return Store.open(opts.data_dir, opts.fsync)


async def _ask_cluster(address: str, token: str | None, tls: NodeTLS | None) -> tuple[list[str], str, float]:
    """The etcd endpoints, cluster name and failure timeout of the member at ``address`` (for --join)."""
    from ..client import AsyncClient
    from ..config import Config

    client = AsyncClient((address,), Config(dso=(address,), token=token, **(tls.client_settings if tls else {})))
    try:
        info = await client.info(address)
    except CrucialError as exc:
        raise ConfigError(f"cannot join through {address}: {exc}") from exc
    finally:
        await client.aclose()
    cluster = info.get("cluster")
    if not cluster or not cluster.get("etcd"):
        raise ConfigError(f"{address} is a lone node (started without a cluster): it cannot take --join")
    endpoints = list(cluster["etcd"])
    if await _loopback_out_of_reach(address, endpoints):
        raise ConfigError(
            f"cannot join through {address}: its cluster's etcd ({', '.join(endpoints)}) listens on that host's loopback "
            "only (as the one `crucial server --nodes N` starts), which this host cannot reach; run etcd where every "
            "host reaches it and start every node with --etcd URL (docs/replication.md, More than one host)"
        )
    return endpoints, str(cluster["name"]), float(cluster.get("failure_timeout") or DEFAULT_FAILURE_TIMEOUT)


def _is_loopback(host: str | None) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


async def _loopback_out_of_reach(member: str, endpoints: list[str]) -> bool:
    """Whether a member on another host reports etcd endpoints on its loopback that this host cannot connect to.

    The etcd a supervisor starts has no authentication, so it stays on loopback; a joiner on the
    same host reaches it (whatever address it used for the member), one on another host does not.
    """
    hosts = [urlsplit(e) for e in endpoints]
    if _is_loopback(member.rsplit(":", 1)[0].strip("[]")) or not all(_is_loopback(u.hostname) for u in hosts):
        return False
    for url in hosts:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, url.port or 2379), 2.0)
        except (OSError, TimeoutError):
            continue
        writer.close()
        return False
    return True


async def _run_one(opts: ServerOptions) -> None:
    store = _open_store(opts)
    node = Node(
        opts.host,
        opts.port,
        token=opts.token,
        max_frame_size=opts.max_frame_size,
        advertise=opts.advertise,
        blocked_warning=opts.blocked_warning or None,
        store=store,
        rf=opts.rf or 1,
        token_file=opts.token_file,
        tls=opts.tls,
        insecure_no_tls=opts.insecure_no_tls,
    )
    if opts.metrics_port is not None:
        from ._metrics import NodeMetrics

        node.metrics = NodeMetrics(node)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    leave = asyncio.Event()  # SIGTERM: hand objects over, then go (Kubernetes stops a pod so)
    loop.add_signal_handler(signal.SIGTERM, leave.set)
    if opts.child:  # Ctrl-C reaches the whole process group: the supervisor decides
        loop.add_signal_handler(signal.SIGINT, lambda: None)
    else:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    membership = None
    asked_to_leave: list[Callable[[bool], None]] = []

    def leave_requested(reply: Callable[[bool], None]) -> None:  # `crucial cluster remove`
        asked_to_leave.append(reply)
        leave.set()

    node.on_leave = leave_requested
    try:
        if opts.clustered:
            from ._membership import Membership

            timeout = opts.failure_timeout
            if opts.etcd:
                endpoints, cluster = opts.etcd.split(","), opts.cluster
            else:  # the cluster's own settings: its failure timeout is every member's lease
                endpoints, cluster, timeout = await _ask_cluster(opts.join or "", node.tokens.current, node.tls)
            membership = node.membership = Membership(node, endpoints, cluster, timeout, opts.rf or 2, placement=opts.placement)
        address = await node.start()
        if node.tls is not None:
            await check_tls(node)
        if node.metrics is not None:
            where = node.metrics.serve(opts.metrics_host or opts.host, opts.metrics_port or 0)
            print(f"crucial: node {address} serves metrics on http://{where}/metrics and /healthz", file=sys.stderr, flush=True)
        if membership is not None:
            await membership.start()
        # what start-up made lives as long as the node: no collection needs to walk it again; and
        # fewer young-generation collections (calls allocate little that is cyclic)
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        print(address if opts.child else f"CRUCIAL_DSO={address}", flush=True)
        detach_stdout()  # the parent read the address; nothing else goes to that pipe
        install(node.table, loop.call_soon)  # what methods print goes to their callers
        if opts.watch_stdin or opts.child:
            loop.run_in_executor(None, _wait_eof).add_done_callback(lambda _: stop.set())
        serve = asyncio.ensure_future(node.serve_forever())
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(leave.wait())]
        if membership is not None:
            waits.append(asyncio.ensure_future(membership.left.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if membership is not None and leave.is_set() and not stop.is_set():
            ok = await membership.leave(timeout=4 * opts.failure_timeout)  # hand objects over before going
            for reply in asked_to_leave:
                reply(ok)
            await asyncio.sleep(0)  # let the replies go out
        for w in waits:
            w.cancel()
        serve.cancel()
    finally:
        if node.metrics is not None:
            node.metrics.close()
        await node.close()
        if membership is not None:
            # a node that stops without leaving (stdin closed, Ctrl-C, the supervisor stopping the cluster)
            # keeps its member key until its lease runs out, as a crash would: deleting it would make the
            # nodes still running remove it at once -- and then a whole-cluster stop in which one node
            # outlives the others by a moment, restarted, would find the others' data "stale"
            membership.close(leave=membership.left.is_set())
        if store is not None:
            store.close()  # type: ignore[attr-defined]


def _wait_eof() -> None:
    while sys.stdin.readline():
        pass


class _Supervisor:
    """``--nodes N``: etcd (unless given), N node processes, restarted when they die."""

    def __init__(self, opts: ServerOptions) -> None:
        self.opts = opts
        self.etcd: Any = None
        self.endpoints = opts.etcd
        self.children: dict[int, subprocess.Popen[str]] = {}
        self.addresses: dict[int, str] = {}
        self.done = threading.Event()
        self.asked = False
        self._lock = threading.Lock()

    def command(self, i: int) -> list[str]:
        o = self.opts
        cmd = [sys.executable, "-m", "crucial.server", "--child", "--host", o.host, "--port", "0"]
        cmd += ["--max-frame-size", str(o.max_frame_size), "--blocked-warning", str(o.blocked_warning)]
        cmd += ["--etcd", str(self.endpoints), "--cluster", o.cluster, "--failure-timeout", str(o.failure_timeout)]
        cmd += ["--rf", str(o.rf or 2), "--placement", o.placement]
        if o.advertise:
            cmd += ["--advertise", o.advertise]
        for option, value in (
            ("--token-file", o.token_file),
            ("--tls-cert", o.tls_cert),
            ("--tls-key", o.tls_key),
            ("--tls-ca", o.tls_ca),
            ("--metrics-port", o.metrics_port),
            ("--metrics-host", o.metrics_host),
        ):
            if value is not None:
                cmd += [option, str(value)]
        if o.insecure_no_tls:
            cmd += ["--insecure-no-tls"]
        if o.data_dir:
            cmd += ["--data-dir", str(Path(o.data_dir) / f"node-{i}"), "--fsync", o.fsync]
        return cmd

    def spawn(self, i: int) -> str:
        env = dict(os.environ)
        if self.opts.token:
            env["CRUCIAL_TOKEN"] = self.opts.token
        # a session of its own: a signal for the supervisor's process group (Ctrl-C, kill %1) is the
        # supervisor's to handle -- a SIGTERM sent to one node alone means "leave the cluster"
        child = subprocess.Popen(
            self.command(i), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if not line:
            raise ConfigError(f"node {i} failed to start (exit code {child.wait()}); see its messages above")
        with self._lock:
            self.children[i] = child
            self.addresses[i] = line
        threading.Thread(target=self._drain, args=(child,), daemon=True).start()
        return line

    @staticmethod
    def _drain(child: subprocess.Popen[str]) -> None:
        """Read what a node prints after its address, so it never blocks on a full pipe."""
        assert child.stdout is not None
        for _ in child.stdout:
            pass

    def start_etcd(self) -> None:
        if self.endpoints is not None:
            return
        from ._etcd import EtcdProcess

        data = Path(self.opts.data_dir) / "etcd" if self.opts.data_dir else None
        self.etcd = EtcdProcess(data)
        self.etcd.start()
        self.endpoints = self.etcd.endpoint

    def wait_for_view(self, timeout: float = 60.0) -> None:
        """Until the cluster's view holds every node this supervisor started, and each has installed it.

        The view in etcd comes first; each node installs it when its watch
        delivers it and says so in its member key (``settled``).  Announcing
        the addresses at the first moment let a client ask a node that still
        had the view before (found by test_nodes_know_the_cluster_when_it_is_announced).
        """
        from ._coord import Coordinator
        from ._proposer import settled

        assert self.endpoints is not None
        ready = threading.Event()
        wanted = set(self.addresses.values())
        full: list[View] = []  # the view that holds them all
        live: dict[str, Any] = {}  # member id -> its info

        def seen(name: str, value: bytes | None, revision: int) -> None:
            try:
                if name == "view" and value is not None:
                    view = View.from_json(json.loads(value))
                    if wanted <= set(view.addresses):
                        full[:] = [view]
                elif name.startswith("members/") and value is not None:
                    live[name[len("members/") :]] = json.loads(value)
            except (ValueError, ProtocolError):
                return
            if full and all(i in live and settled(live[i], full[0]) for i in full[0].ids):
                ready.set()

        with Coordinator(self.endpoints, self.opts.cluster, ttl=max(1.0, self.opts.failure_timeout)) as coord:
            coord.watch(seen)
            if not ready.wait(timeout):
                raise ConfigError(f"the nodes did not form one view within {timeout:.0f} s")

    def watch(self, i: int) -> None:
        """Restart node ``i`` whenever it dies (unless we are stopping)."""
        while not self.done.is_set():
            child = self.children[i]
            code = child.wait()
            if self.done.is_set():
                return
            if code == 0:  # it left the cluster (SIGTERM, `crucial cluster remove`): its objects are elsewhere
                print(f"crucial: node {i} ({self.addresses.get(i)}) left the cluster", file=sys.stderr)
                return
            print(f"crucial: node {i} ({self.addresses.get(i)}) exited with code {code}; starting it again", file=sys.stderr)
            delay = 0.5
            while not self.done.is_set():
                try:
                    self.spawn(i)
                    break
                except (ConfigError, OSError) as exc:
                    print(f"crucial: restarting node {i} failed: {exc}", file=sys.stderr)
                    self.done.wait(delay)
                    delay = min(delay * 2, 10.0)

    def run(self) -> int:
        def ask_stop(*_: object) -> None:
            self.asked = True
            self.done.set()

        signal.signal(signal.SIGINT, ask_stop)
        signal.signal(signal.SIGTERM, ask_stop)
        try:
            self.start_etcd()
            for i in range(self.opts.nodes):
                self.spawn(i)
            self.wait_for_view()
            print("CRUCIAL_DSO=" + ",".join(self.addresses[i] for i in sorted(self.addresses)), flush=True)
            detach_stdout()
            for i in range(self.opts.nodes):
                threading.Thread(target=self.watch, args=(i,), daemon=True).start()
            if self.opts.watch_stdin:

                def stdin_closed() -> None:
                    _wait_eof()
                    ask_stop()

                threading.Thread(target=stdin_closed, daemon=True).start()
            while not self.done.wait(0.5):  # a timed wait keeps signal handlers responsive
                pass
        finally:
            self.done.set()
            codes = self.stop_children()
            if self.etcd is not None:
                self.etcd.close()  # its temporary data dir too (125 MB of preallocated log each run)
        return 0 if self.asked and all(code == 0 for code in codes) else 1

    def stop_children(self) -> list[int]:
        with self._lock:
            children = list(self.children.values())
        for c in children:
            try:
                if c.stdin is not None:
                    c.stdin.close()  # children exit when their stdin closes
            except OSError:
                pass
        deadline = time.monotonic() + 30
        codes = []
        for c in children:
            try:
                codes.append(c.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                c.kill()
                codes.append(c.wait())
        return codes


def run_nodes(opts: ServerOptions) -> int:
    """Run the node(s) in the foreground until stopped; return an exit code."""
    opts.check()
    if opts.nodes > 1 and not opts.child:
        try:
            return _Supervisor(opts).run()
        except CrucialError:
            raise
    logging.basicConfig(level=logging.WARNING, format="crucial node %(process)d: %(message)s")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_run_one(opts))
    return 0
