"""Running nodes as processes: ``crucial server`` and ``python -m crucial.server``.

With ``--nodes N`` this process becomes a small supervisor::

    supervisor ──spawn──► node 1 ─┐   each child prints its address,
               ──spawn──► node 2 ─┼─► the supervisor sends all of them the
               ──spawn──► node N ─┘   view (on stdin), then prints one line:

    CRUCIAL_DSO=127.0.0.1:41001,127.0.0.1:41002,...

A child exits when its stdin closes, so nodes never outlive their
supervisor; SIGINT/SIGTERM stop everything cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from ..exceptions import ConfigError
from ..protocol import DEFAULT_MAX_FRAME_SIZE
from ._node import BLOCKED_WARNING, Node, loop_factory
from ._output import detach_stdout, install

__all__ = ["ServerOptions", "run_nodes"]


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    nodes: int = 1
    token: str | None = None
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    watch_stdin: bool = False  # exit when stdin closes (embedded and child nodes)
    child: bool = False  # a node under a supervisor: read the view from stdin
    advertise: str | None = None  # the host name clients and functions should use
    blocked_warning: float = BLOCKED_WARNING  # log a call holding the node this long (0: never)


async def _run_one(opts: ServerOptions) -> None:
    node = Node(
        opts.host,
        opts.port,
        token=opts.token,
        max_frame_size=opts.max_frame_size,
        advertise=opts.advertise,
        blocked_warning=opts.blocked_warning or None,
    )
    address = await node.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if opts.child:
        print(address, flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        view = json.loads(line)
        node.set_view(view["epoch"], view["nodes"])
        print("ready", flush=True)  # the supervisor announces the cluster only after this
    else:
        print(f"CRUCIAL_DSO={address}", flush=True)
    detach_stdout()  # the parent read the address; nothing else goes to that pipe
    install(node.table, loop.call_soon)  # what methods print goes to their callers
    if opts.watch_stdin or opts.child:
        loop.run_in_executor(None, _wait_eof).add_done_callback(lambda _: stop.set())
    serve = asyncio.ensure_future(node.serve_forever())
    await stop.wait()
    serve.cancel()
    await node.close()


def _wait_eof() -> None:
    while sys.stdin.readline():
        pass


def _supervise(opts: ServerOptions) -> int:
    cmd = [sys.executable, "-m", "crucial.server", "--child", "--host", opts.host, "--port", "0"]
    cmd += ["--max-frame-size", str(opts.max_frame_size), "--blocked-warning", str(opts.blocked_warning)]
    if opts.advertise:
        cmd += ["--advertise", opts.advertise]
    env = dict(os.environ)
    if opts.token:
        env["CRUCIAL_TOKEN"] = opts.token
    children = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for _ in range(opts.nodes)
    ]
    done = threading.Event()
    asked = False

    def ask_stop(*_: object) -> None:
        nonlocal asked
        asked = True
        done.set()

    signal.signal(signal.SIGINT, ask_stop)
    signal.signal(signal.SIGTERM, ask_stop)
    try:
        addresses = []
        for c in children:
            assert c.stdout is not None
            line = c.stdout.readline().strip()
            if not line:
                raise ConfigError(f"a node process failed to start (exit code {c.wait()})")
            addresses.append(line)
        view = json.dumps({"epoch": 1, "nodes": addresses})
        for c in children:
            assert c.stdin is not None
            c.stdin.write(view + "\n")
            c.stdin.flush()
        for c in children:  # every node serves the full view before anyone is told of it
            assert c.stdout is not None
            if c.stdout.readline().strip() != "ready":
                raise ConfigError(f"a node process failed to take the view (exit code {c.poll()})")
        print("CRUCIAL_DSO=" + ",".join(addresses), flush=True)
        detach_stdout()

        def watch_child(c: subprocess.Popen[str]) -> None:
            c.wait()
            done.set()  # a child that dies takes the others down: no half clusters

        def watch_stdin() -> None:
            _wait_eof()
            ask_stop()

        for c in children:
            threading.Thread(target=watch_child, args=(c,), daemon=True).start()
        if opts.watch_stdin:
            threading.Thread(target=watch_stdin, daemon=True).start()
        while not done.wait(0.5):  # a timed wait keeps signal handlers responsive
            pass
    finally:
        for c in children:
            try:
                if c.stdin is not None:
                    c.stdin.close()  # children exit when their stdin closes
            except OSError:
                pass
        codes = [c.wait() for c in children]
    return 0 if asked and all(code == 0 for code in codes) else 1


def run_nodes(opts: ServerOptions) -> int:
    """Run the node(s) in the foreground until stopped; return an exit code."""
    if opts.nodes < 1:
        raise ConfigError(f"--nodes must be at least 1, not {opts.nodes}")
    if opts.nodes > 1 and not opts.child:
        return _supervise(opts)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_run_one(opts))
    return 0
