"""Fault injection for tests: child processes to kill, raw sockets that lie.

::

    test ──run_in_process(fn)──► spawn child ──Client──► node
      │                              ▲
      └── kill_process(child) ───────┘   (SIGKILL: its sockets close, the
                                          node cancels its waits)

    test ──raw_connection(address)──► HELLO ──► WELCOME ──► frames of our choice

Every helper takes a deadline: a fault test must fail, not hang, when the
system misbehaves.  Nothing here is imported by runtime code.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from .. import protocol as P
from ..client._core import parse_address

__all__ = [
    "ChildProcess",
    "RawConnection",
    "blackhole",
    "closed_port",
    "eventually",
    "run_threads",
    "garbage",
    "kill_process",
    "oversized_header",
    "owner_address",
    "raw_connection",
    "run_in_process",
]

_spawn = multiprocessing.get_context("spawn")


def _child_main(payload: bytes, env: dict[str, str], conn: Connection) -> None:
    os.environ.update(env)
    from ..client import _default

    _default.reset_clients()
    try:
        fn, args, kwargs = cloudpickle.loads(payload)
        result = fn(*args, **kwargs)
    except BaseException as exc:
        try:
            conn.send((False, cloudpickle.dumps(exc), traceback.format_exc()))
        except Exception:
            conn.send((False, cloudpickle.dumps(RuntimeError(repr(exc))), traceback.format_exc()))
    else:
        conn.send((True, cloudpickle.dumps(result), ""))
    finally:
        conn.close()


class ChildProcess:
    """A spawned process running one function; ``result()`` returns or re-raises its outcome."""

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self._conn = conn
        self._outcome: tuple[bool, Any, str] | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def is_alive(self) -> bool:
        return bool(self.process.is_alive())

    def result(self, timeout: float = 30.0) -> Any:
        """The function's return value; its exception is re-raised (child traceback in the notes)."""
        if self._outcome is None:
            if not self._conn.poll(timeout):
                raise TimeoutError(f"child process {self.pid} gave no result within {timeout} s")
            try:
                ok, data, tb = self._conn.recv()
            except EOFError:
                self.process.join(timeout)
                raise RuntimeError(f"child process {self.pid} died (exit code {self.process.exitcode})") from None
            self._outcome = (ok, cloudpickle.loads(data), tb)
            self.process.join(timeout)
        ok, value, tb = self._outcome
        if not ok:
            value.add_note(f"in child process {self.pid}:\n{tb}")
            raise value
        return value

    def kill(self, timeout: float = 30.0) -> None:
        kill_process(self, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Kill if still running, then release the pipe and process handles."""
        if self.process.is_alive():
            kill_process(self, timeout)
        self.process.join(timeout)
        self._conn.close()
        self.process.close()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_process(fn: Callable[..., Any], *args: Any, env: dict[str, str] | None = None, **kwargs: Any) -> ChildProcess:
    """Run ``fn(*args, **kwargs)`` in a fresh (spawned) process.

    ``env`` is added to the child's environment before ``fn`` runs -- pass
    ``cluster.env_vars()`` so its proxies reach that cluster.  ``fn`` travels
    with cloudpickle, so closures and lambdas work.
    """
    recv, send = _spawn.Pipe(duplex=False)
    payload = cloudpickle.dumps((fn, args, kwargs))
    process = _spawn.Process(target=_child_main, args=(payload, dict(env or {}), send), daemon=True)
    process.start()
    send.close()
    return ChildProcess(process, recv)


def kill_process(child: ChildProcess | int, timeout: float = 30.0) -> None:
    """SIGKILL a child (no cleanup runs in it) and wait until it is gone."""
    if isinstance(child, ChildProcess):
        if child.process.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.process.join(timeout)
        if child.process.is_alive():
            raise TimeoutError(f"child process {child.pid} survived SIGKILL for {timeout} s")
        return
    os.kill(child, signal.SIGKILL)


def owner_address(addresses: tuple[str, ...] | list[str], type_name: str, key: str, token: str | None = None) -> str:
    """The node that owns ``(type_name, key)`` now (what a client routes to): asks the cluster for its view."""
    from ..client import Client
    from ..config import Config

    with Client(tuple(addresses), Config(dso=tuple(addresses), token=token)) as client:
        client.nodes  # noqa: B018 -- asks a node for the view
        return client.core.route(type_name, key)


# --------------------------------------------------------------------------- raw sockets


class RawConnection:
    """A socket that speaks frames but trusts nothing: for sending bad input on purpose."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.sock = socket.create_connection(parse_address(address), timeout=timeout)
        self.decoder = P.FrameDecoder(P.DEFAULT_MAX_FRAME_SIZE, P.Kind.ALL)
        self._frames: list[P.Frame] = []
        self._req = 0

    def next_req(self) -> int:
        self._req += 1
        return self._req

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, kind: int, req_id: int, body: bytes = b"") -> None:
        self.sock.sendall(P.encode_frame(kind, req_id, body))

    def hello(self, token: str | None = None, client_id: str | None = None, version: int = P.PROTOCOL_VERSION) -> P.Frame:
        """Send HELLO and return the node's answer (WELCOME, or FAIL)."""
        cid = client_id or uuid.uuid4().hex
        self.send(P.Kind.HELLO, 0, P.encode_json({"version": version, "token": token, "client_id": cid}))
        return self.recv_frame()

    def call(self, call: P.CallRequest, req_id: int | None = None) -> P.Frame:
        rid = self.next_req() if req_id is None else req_id
        self.send(P.Kind.CALL, rid, P.encode_call(call))
        return self.recv_frame()

    def recv_frame(self) -> P.Frame:
        """The next frame; ``ConnectionError`` if the node closed the connection first."""
        while not self._frames:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"{self.address} closed the connection")
            self._frames.extend(self.decoder.feed(data))
        return self._frames.pop(0)

    def closed_by_peer(self) -> bool:
        """Read until EOF (``True``) or until the socket timeout (``False``), dropping frames."""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_connection(
    address: str, token: str | None = None, *, client_id: str | None = None, timeout: float = 10.0
) -> RawConnection:
    """A raw connection that has done the HELLO handshake (raises if the node refused it)."""
    conn = RawConnection(address, timeout)
    try:
        frame = conn.hello(token, client_id)
        if frame.kind != P.Kind.WELCOME:
            raise ConnectionError(f"handshake with {address} failed: kind {frame.kind} {frame.body!r}")
    except BaseException:
        conn.close()
        raise
    return conn


def garbage(n: int = 64, seed: int = 0) -> bytes:
    """Deterministic junk bytes."""
    import random

    return random.Random(seed).randbytes(n)


def oversized_header(size: int, kind: int = P.Kind.CALL, req_id: int = 1) -> bytes:
    """A frame header that announces ``size`` body bytes (send no body)."""
    return P.HEADER.pack(size, kind, req_id)


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """An address on which nothing listens (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """An address that accepts TCP connections and never answers (a hung node)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)  # never accept: the kernel completes handshakes, nobody reads
        yield f"127.0.0.1:{s.getsockname()[1]}"


def eventually(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``pred`` until it holds: a deadline, not a sleep -- fails loudly if it never does.

    For states only observable by asking (a node's waiter count), where no
    event can be waited on.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        pause.wait(0.005)


def run_threads(targets: list[Callable[[], Any]], timeout: float = 30.0) -> list[BaseException]:
    """Run each target in a thread, join them all within ``timeout`` and return what they raised.

    A thread still running at the deadline fails the test: a blocked call is a
    bug to see, never a hang.
    """
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"a thread did not finish within {timeout} s"
    return errors
