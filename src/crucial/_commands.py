"""The ``crucial`` command's click application (``crucial.cli.main`` runs it).

Commands parse options and call the library."""

from __future__ import annotations

import sys
from typing import Any

import click

from .exceptions import AuthenticationError, CrucialError

__all__ = ["cli"]


@click.group()
@click.version_option(package_name="crucial")
def cli() -> None:
    """crucial: stateful serverless computing with distributed shared objects."""


def node_options(command: Any) -> Any:
    """The TLS and metrics options of a node (`crucial server`, and the node `crucial cluster add` starts)."""
    for option in reversed(_NODE_OPTIONS):
        command = option(command)
    return command


_NODE_OPTIONS = [
    click.option(
        "--token-file",
        default=None,
        type=click.Path(dir_okay=False),
        help="Tokens accepted, one a line (the first is the node's own); re-read when it changes, to rotate tokens.",
    ),
    click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="The node's TLS certificate (PEM): TLS on."),
    click.option(
        "--tls-key", default=None, type=click.Path(dir_okay=False), help="Its private key (PEM) [default: in --tls-cert]."
    ),
    click.option(
        "--tls-ca",
        default=None,
        type=click.Path(dir_okay=False),
        help="Require client certificates signed by this CA (mutual TLS); peers are verified against it too.",
    ),
    click.option(
        "--insecure-no-tls",
        is_flag=True,
        help="Listen off loopback without TLS: token and calls in clear text (only on a network you trust).",
    ),
    click.option(
        "--metrics-port",
        default=None,
        type=click.IntRange(0, 65535),
        help="Serve Prometheus /metrics and /healthz over HTTP on this port (0: a free one, see `crucial info`) [default: off].",
    ),
    click.option("--metrics-host", default=None, help="Address the metrics server binds [default: --host]."),
]


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind. Off loopback a token and TLS are required."
)
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Port to bind (0: any free port).")
@click.option(
    "--nodes", default=1, show_default=True, type=click.IntRange(1, 256), help="Node processes to start (one per core)."
)
@click.option("--token", envvar="CRUCIAL_TOKEN", default=None, help="Shared secret clients must present [env: CRUCIAL_TOKEN].")
@click.option(
    "--max-frame-size",
    default=64 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(1024),
    help="Largest frame accepted, in bytes.",
)
@click.option(
    "--advertise",
    default=None,
    metavar="HOST[:PORT]",
    help="Host name or address (and port, if it differs) to give clients, functions and peers (default: the bound "
    "host; for 0.0.0.0 or ::, this machine's primary address).",
)
@click.option(
    "--blocked-warning",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Log a call that holds a node's thread this long (a method that blocks stops the node); 0: never.",
)
@click.option(
    "--rf",
    default=None,
    type=click.IntRange(1),
    help="Replicas of each persistent object [default: 2, at most the nodes]; a lone node keeps 1.",
)
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Write persistent objects here and reload them at start (with --nodes N: one sub-directory per node).",
)
@click.option(
    "--fsync",
    default="always",
    show_default=True,
    type=click.Choice(["always", "batch", "never"]),
    help="When data-dir writes reach the disk: before each reply (always), within a second (batch), or when the OS likes.",
)
@click.option(
    "--etcd",
    default=None,
    metavar="URL[,URL...]",
    envvar="CRUCIAL_ETCD_ENDPOINTS",
    help="etcd that agrees on the cluster's views [default with --nodes N: one started here] [env: CRUCIAL_ETCD_ENDPOINTS].",
)
@click.option("--cluster", default="default", show_default=True, help="The cluster's name in etcd (several can share one etcd).")
@click.option(
    "--failure-timeout",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="A node silent this long is removed from the view (its lease in etcd).",
)
@click.option("--join", default=None, metavar="HOST:PORT", help="Join the running cluster of this member (its etcd is asked).")
@click.option(
    "--placement",
    default="hash",
    show_default=True,
    type=click.Choice(["hash", "anchored"]),
    help="Where a new cluster puts new ephemeral objects: consistent hashing, or the newest node (a scale-up moves none).",
)
@node_options
@click.option("--watch-stdin", is_flag=True, help="Exit when standard input closes (for embedded nodes).")
@click.option("--child", is_flag=True, hidden=True)
def server(
    host: str,
    port: int,
    nodes: int,
    token: str | None,
    max_frame_size: int,
    advertise: str | None,
    blocked_warning: float,
    rf: int | None,
    data_dir: str | None,
    fsync: str,
    etcd: str | None,
    cluster: str,
    failure_timeout: float,
    join: str | None,
    placement: str,
    token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    insecure_no_tls: bool,
    metrics_port: int | None,
    metrics_host: str | None,
    watch_stdin: bool,
    child: bool,
) -> None:
    """Run DSO node(s) until SIGINT/SIGTERM.

    Prints one line, CRUCIAL_DSO=HOST:PORT[,HOST:PORT...], that clients can
    use as their CRUCIAL_DSO setting.  A node stopped with SIGTERM hands its
    objects over to the others before it exits.
    """
    from .server import ServerOptions, run_nodes

    if nodes > 1 and port:
        raise click.BadParameter("with --nodes > 1 each node takes a free port; leave --port at 0", param_hint="--port")
    opts = ServerOptions(
        host,
        port,
        nodes,
        token,
        max_frame_size,
        watch_stdin,
        child,
        advertise,
        blocked_warning,
        rf=rf,
        data_dir=data_dir,
        fsync=fsync,
        etcd=etcd,
        cluster=cluster,
        failure_timeout=failure_timeout,
        join=join,
        placement=placement,
        token_file=token_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        insecure_no_tls=insecure_no_tls,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    try:
        code = run_nodes(opts)
    except CrucialError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@cli.command()
@click.option("--dso", default=None, metavar="ADDR", help="A node host:port[,...] [default: CRUCIAL_DSO, else the config file].")
@click.option("--objects", default=0, show_default=True, type=click.IntRange(0), help="List up to N objects per node.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per node instead.")
@click.option("--token", envvar="CRUCIAL_TOKEN", default=None, help="The token the nodes were started with [env: CRUCIAL_TOKEN].")
def info(dso: str | None, objects: int, as_json: bool, token: str | None) -> None:
    """Show every node of a DSO cluster: address, uptime, clients, calls, objects by type (like `redis-cli INFO`)."""
    import json

    from .client import Client
    from .config import load_config

    try:
        overrides: dict[str, object] = {"token": token} if token else {}
        if dso:
            overrides["dso"] = tuple(a for a in dso.split(",") if a)
        config = load_config(**overrides)
        if not config.dso:
            raise click.UsageError("no DSO to ask: pass --dso HOST:PORT or set CRUCIAL_DSO")
        with Client(config.dso, config) as client:
            reports = [client.info(address, objects) for address in client.nodes]
    except AuthenticationError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc} (pass --token, or set CRUCIAL_TOKEN)") from exc
    except CrucialError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    for report in reports:
        if as_json:
            click.echo(json.dumps(report, sort_keys=True))
            continue
        stats = report["stats"]
        types = ", ".join(f"{name} {n}" for name, n in sorted(report["types"].items())) or "none"
        click.echo(
            f"{report['address']}  node {report['node_id']}  pid {report['pid']}  up {report['uptime_s']:.0f} s  "
            f"epoch {report['epoch']} ({len(report['nodes'])} nodes)"
        )
        click.echo(
            f"  connections {report['connections']}, clients {report['clients']}; "
            f"calls {stats['calls']:,}, errors {stats['errors']:,}, protocol errors {stats['protocol_errors']:,}"
        )
        click.echo(f"  objects {report['objects']:,}: {types}")
        replies = report.get("replies")  # absent from nodes of before the reply window was reported
        if replies:
            click.echo(
                f"  replies kept for retries {replies['kept']:,} ({replies['bytes']:,} bytes), "
                f"clients remembered {replies['clients']:,}, quiet after {replies['age_s']:g} s"
            )
        if report.get("metrics"):
            click.echo(f"  metrics http://{report['metrics']['address']}/metrics and /healthz")
        for obj in report["listed"]:
            click.echo(f"    {obj['type']}  {obj['key']}  (queued {obj['queued']}, waiting {obj['waiting']})")


def _cluster_client(dso: str | None) -> Any:
    from .client import Client
    from .config import load_config

    config = load_config(**({"dso": tuple(a for a in dso.split(",") if a)} if dso else {}))
    if not config.dso:
        raise click.UsageError("no DSO to ask: pass --dso HOST:PORT or set CRUCIAL_DSO")
    return Client(config.dso, config)


@cli.group()
def cluster() -> None:
    """Inspect and change a running cluster: status, add a node, remove one."""


def _status(dso: str | None, as_json: bool, hot: int) -> None:
    """Print the view, each node's objects and lag, and (``hot`` > 0) the hottest keys of the cluster."""
    import json

    try:
        with _cluster_client(dso) as client:
            reports = {}
            for address in client.nodes:
                try:
                    reports[address] = client.info(address)
                except CrucialError as exc:
                    reports[address] = {"error": f"{type(exc).__name__}: {exc}"}
            view = client.core.view
    except CrucialError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    assert view is not None
    hottest = hot_keys(reports, hot)
    if as_json:
        out = {"view": view.as_json(), "nodes": reports}
        if hot:
            out["hot_keys"] = hottest
        click.echo(json.dumps(out, sort_keys=True, default=str))
        return
    cluster_info = next((r.get("cluster") for r in reports.values() if r.get("cluster")), None) or {}
    where = f", etcd {','.join(cluster_info['etcd'])}" if cluster_info.get("etcd") else " (a lone node)"
    click.echo(
        f"cluster {cluster_info.get('name', '-')!s}: view {view.epoch}, {len(view.members)} nodes, rf {view.rf}, "
        f"failure timeout {view.failure_timeout:g} s{where}"
    )
    for node_id, address in view.members:
        r = reports.get(address, {})
        if "error" in r:
            click.echo(f"  {node_id}  {address}  UNREACHABLE: {r['error']}")
            continue
        rep = r.get("replication", {})
        flags = " leaving" if node_id in view.leaving else ""
        metrics = r.get("metrics") or {}
        served = f"; metrics http://{metrics['address']}/metrics" if metrics.get("address") else ""
        click.echo(
            f"  {node_id}  {address}  objects {r.get('objects', 0):,}: primary {rep.get('primaries', 0):,}, "
            f"backup {rep.get('backups', 0):,}; replication lag {rep.get('pending', 0)} calls{flags}{served}"
        )
    if not hot:
        return
    counted = [r["metrics"] for r in reports.values() if r.get("metrics")]
    if not counted:
        click.echo("hottest keys: not counted (nodes count them when started with --metrics-port)")
        return
    sample, seconds = max(m["hot_sample"] for m in counted), max(m["hot_seconds"] for m in counted)
    missing = f"; {len(reports) - len(counted)} nodes without --metrics-port not counted" if len(counted) < len(reports) else ""
    click.echo(f"hottest keys (calls in the last {seconds / 60:g} min at most, about 1 call in {sample} sampled{missing}):")
    if not hottest:
        click.echo("  none yet")
    for h in hottest:
        click.echo(f"  {h['type']} {h['key']!r}  ~{h['calls']:,} calls (± {h['error']:,})  on {h['node']}")


def hot_keys(reports: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The ``n`` hottest keys over every node's INFO report (a key is counted where its calls ran: its primary)."""
    found = [
        {**h, "node": address}
        for address, report in reports.items()
        for h in ((report.get("metrics") or {}).get("hot_keys") or [])
    ]
    found.sort(key=lambda h: (-h["calls"], h["error"], h["type"], h["key"]))
    return found[:n]


_DSO_HELP = "A node host:port[,...] [default: CRUCIAL_DSO, else the config file]."


@cli.command("status")
@click.option("--dso", default=None, metavar="ADDR", help=_DSO_HELP)
@click.option(
    "--hot", default=10, show_default=True, type=click.IntRange(0), metavar="N", help="Show the N hottest keys (0: none)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def status(dso: str | None, hot: int, as_json: bool) -> None:
    """The cluster: its view, each node's objects, primaries, backups and lag, and the hottest keys.

    Keys are counted by nodes started with --metrics-port (a sample of their
    calls, in a bounded top-K summary); `crucial cluster status` is the same
    without them.
    """
    _status(dso, as_json, hot)


@cluster.command("status")
@click.option("--dso", default=None, metavar="ADDR", help=_DSO_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def cluster_status(dso: str | None, as_json: bool) -> None:
    """The view (epoch, members, rf) and, per node, its objects, primaries, backups and replication lag."""
    _status(dso, as_json, 0)


@cluster.command("add")
@click.option("--dso", default=None, metavar="ADDR", help="A member of the cluster [default: CRUCIAL_DSO].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the new node binds.")
@click.option("--advertise", default=None, help="Host name or address the new node gives clients and peers.")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="The new node's data dir.")
@click.option("--log", "log_path", default=None, type=click.Path(dir_okay=False), help="Where the new node writes its messages.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait for it to join.")
@node_options
def cluster_add(
    dso: str | None,
    host: str,
    advertise: str | None,
    data_dir: str | None,
    log_path: str | None,
    timeout: float,
    **node: Any,
) -> None:
    """Start one more node on this machine, joined to the cluster; prints its address once it is in the view."""
    import os
    import subprocess
    import tempfile
    import time

    try:
        with _cluster_client(dso) as client:
            seed = client.nodes[0]
            cmd = [sys.executable, "-m", "crucial.server", "--join", seed, "--host", host]
            if advertise:
                cmd += ["--advertise", advertise]
            if data_dir:
                cmd += ["--data-dir", data_dir]
            for name, value in node.items():
                if value is True:
                    cmd.append("--" + name.replace("_", "-"))
                elif value not in (None, False):
                    cmd += ["--" + name.replace("_", "-"), str(value)]
            env = dict(os.environ)
            if client.core.config.token:
                env["CRUCIAL_TOKEN"] = client.core.config.token
            log = log_path or os.path.join(tempfile.gettempdir(), f"crucial-node-{os.getpid()}.log")
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out, env=env, start_new_session=True
                )
            assert proc.stdout is not None
            line = proc.stdout.readline().decode().strip()
            proc.stdout.close()  # the node prints nothing more: nobody needs to read it
            if not line.startswith("CRUCIAL_DSO="):
                raise click.ClickException(f"the new node did not start (exit code {proc.poll()}); see {log}")
            address = line.split("=", 1)[1]
            deadline = time.monotonic() + timeout
            while address not in client.refresh():
                if time.monotonic() > deadline:
                    raise click.ClickException(f"{address} started but is not in the view after {timeout:g} s; see {log}")
                time.sleep(0.1)
    except CrucialError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    click.echo(f"{address} joined (pid {proc.pid}, messages in {log})")


@cluster.command("remove")
@click.argument("node")
@click.option("--dso", default=None, metavar="ADDR", help="A member of the cluster [default: CRUCIAL_DSO].")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(min=1), help="Seconds to wait for it.")
def cluster_remove(node: str, dso: str | None, timeout: float) -> None:
    """Make NODE (an address or a node id) hand its objects over and leave; it exits once the others hold them."""
    try:
        with _cluster_client(dso) as client:
            client.nodes  # noqa: B018 -- fetch the view
            view = client.core.view
            assert view is not None
            address = view.address(node) if node in view else node
            if address not in view.addresses:
                raise click.ClickException(f"{node} is not a member of the cluster (members: {', '.join(view.addresses)})")
            ok = client.leave(address, timeout=timeout)
    except CrucialError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    if not ok:
        raise click.ClickException(f"{address} did not hand its objects over within its time; it stays a member")
    click.echo(f"{address} left the cluster")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ipc(args: tuple[str, ...]) -> None:
    """Run one IPC verb: crucial ipc VERB -n NAME OPERATION [-1 X ...].

    VERB is counter, barrier, latch, rdv, map, treemap or list (`crucial ipc
    map -h` for its usage).  Reads stdin when it is piped and the operation
    takes it (put-all, merge-all without -1).  Inside `sshell` (where
    CRUCIAL_IPC_PORT is set) the call goes to the executor's verb server.
    """
    from .cli import run_ipc

    sys.exit(run_ipc(list(args)))
