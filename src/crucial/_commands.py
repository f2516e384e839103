"""The ``crucial`` command's click application (``crucial.cli.main`` runs it).

Commands parse options and call the library."""

from __future__ import annotations

import sys

import click

from .exceptions import CrucialError

__all__ = ["cli"]


@click.group()
@click.version_option(package_name="crucial")
def cli() -> None:
    """crucial: stateful serverless computing with distributed shared objects."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind. Off loopback a token is required.")
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
    help="Host name or address to give clients and functions (default: the bound host; this machine's name for 0.0.0.0).",
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
def info(dso: str | None, objects: int, as_json: bool) -> None:
    """Show every node of a DSO cluster: address, uptime, clients, calls, objects by type (like `redis-cli INFO`)."""
    import json

    from .client import Client
    from .config import load_config

    try:
        config = load_config(**({"dso": tuple(a for a in dso.split(",") if a)} if dso else {}))
        if not config.dso:
            raise click.UsageError("no DSO to ask: pass --dso HOST:PORT or set CRUCIAL_DSO")
        with Client(config.dso, config) as client:
            reports = [client.info(address, objects) for address in client.nodes]
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
        for obj in report["listed"]:
            click.echo(f"    {obj['type']}  {obj['key']}  (queued {obj['queued']}, waiting {obj['waiting']})")


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
