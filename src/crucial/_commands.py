"""The ``crucial`` command's click application (``crucial.cli.main`` runs it).

Commands parse options and call the library."""

from __future__ import annotations

import sys

import click

from .exceptions import AuthenticationError, CrucialError

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
    help="Host name or address to give clients and functions (default: the bound host; for 0.0.0.0 or ::, "
    "this machine's primary address).",
)
@click.option(
    "--blocked-warning",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Log a call that holds a node's thread this long (a method that blocks stops the node); 0: never.",
)
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
    watch_stdin: bool,
    child: bool,
) -> None:
    """Run DSO node(s) until SIGINT/SIGTERM.

    Prints one line, CRUCIAL_DSO=HOST:PORT[,HOST:PORT...], that clients can
    use as their CRUCIAL_DSO setting.
    """
    from .server import ServerOptions, run_nodes

    if nodes > 1 and port:
        raise click.BadParameter("with --nodes > 1 each node takes a free port; leave --port at 0", param_hint="--port")
    opts = ServerOptions(host, port, nodes, token, max_frame_size, watch_stdin, child, advertise, blocked_warning)
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
