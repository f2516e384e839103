"""What code on a node prints reaches the caller; nothing a node prints can block it; whole lines from workers.

Issue 14's breakages 3 and 6: ``print()`` in a ``@crucial.shared`` method
went to the node's stdout (a pipe nobody read on the embedded node, which
hung after ~64 KiB), and lines printed by concurrent cloud threads ran
together.  Output now travels back with the call (OUTPUT frames before the
reply) to the caller's ``sys.stdout``/``sys.stderr``.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import crucial
from crucial.server._output import MAX_PENDING
from crucial.testing import unconfigured_env
from crucial.testing.faults import owner_address


@crucial.shared
class Talker:
    def __init__(self) -> None:
        self.flag = threading.Event()  # a node monitor once created

    def hello(self, x: int) -> int:
        print("hello", x)
        print("trouble", x, file=sys.stderr)
        return x

    def shout(self, chars: int) -> int:
        sys.stdout.write("y" * chars)
        return chars

    def in_steps(self, steps: int, chars: int) -> int:
        for _ in range(steps):
            sys.stdout.write("z" * chars)
            crucial.wait_until(lambda: False, 0.001)  # yields to the node: the step's output is sent
        return steps * chars

    def before_and_after(self) -> str:
        print("before the wait")
        self.flag.wait()
        print("after the wait")
        return "done"

    def release(self) -> None:
        self.flag.set()


@crucial.shared
class Relay:
    def __init__(self, inner: Talker) -> None:
        self.inner = inner

    def relay(self, x: int) -> int:
        print("relay", x)
        return self.inner.hello(x)


def test_print_in_a_shared_method_reaches_the_caller(dso, capsys: pytest.CaptureFixture[str]) -> None:
    t = Talker()
    assert t.hello(7) == 7
    out, err = capsys.readouterr()
    assert out == "hello 7\n"  # before the call returned: OUTPUT frames come before the reply
    assert err == "trouble 7\n"
    t.delete()


def _loud_double(v: int) -> int:
    print("doubling", v)
    return 2 * v


def test_print_in_a_function_a_builtin_method_runs_reaches_the_caller(dso, capsys: pytest.CaptureFixture[str]) -> None:
    # update_and_get runs on the node's fast path (a built-in method that never waits): no Invocation,
    # but what the user's function prints still travels back before the reply
    counter = crucial.AtomicInt(3)
    assert counter.update_and_get(_loud_double) == 6
    out, _ = capsys.readouterr()
    assert out == "doubling 3\n"
    counter.delete()


def _key_on(addresses: tuple[str, ...], type_name: str, same_as: str | None, other_than: str | None) -> str:
    for i in range(1000):
        key = f"out-{i}-{id(addresses)}"
        owner = owner_address(addresses, type_name, key)
        if (same_as is None or owner == same_as) and (other_than is None or owner != other_than):
            return key
    raise AssertionError("no key found")


@pytest.mark.parametrize("where", ["same node", "another node"])
def test_nested_calls_print_to_the_first_caller(cluster3, monkeypatch, capsys: pytest.CaptureFixture[str], where: str) -> None:
    for k, v in cluster3.env_vars().items():
        monkeypatch.setenv(k, v)
    crucial.connect(cluster3.dso)
    try:
        nodes = cluster3.addresses
        relay_key = _key_on(nodes, Relay._type_name, None, None)
        relay_node = owner_address(nodes, Relay._type_name, relay_key)
        same = where == "same node"
        inner_key = _key_on(nodes, Talker._type_name, relay_node if same else None, None if same else relay_node)
        inner = Talker(key=inner_key, force_new=True)
        relay = Relay(inner, key=relay_key, force_new=True)
        assert relay.relay(3) == 3
        out, err = capsys.readouterr()
        assert out == "relay 3\nhello 3\n"
        assert err == "trouble 3\n"
        relay.delete(), inner.delete()
    finally:
        from crucial.client import _default

        _default.reset_clients()


def test_output_is_bounded_per_step_and_the_node_goes_on(dso1, capsys: pytest.CaptureFixture[str]) -> None:
    t = Talker()
    assert t.shout(3 * MAX_PENDING) == 3 * MAX_PENDING
    out, err = capsys.readouterr()
    assert out == "y" * MAX_PENDING  # the rest was dropped, and the caller is told so
    assert f"{2 * MAX_PENDING} characters of output were dropped" in err
    assert t.hello(1) == 1  # the node was never blocked
    # what a call writes step by step is sent step by step: all of it arrives
    assert t.in_steps(3, MAX_PENDING // 2) == 3 * (MAX_PENDING // 2)
    out, err = capsys.readouterr()
    assert out == "hello 1\n" + "z" * (3 * (MAX_PENDING // 2))
    assert err == "trouble 1\n"
    t.delete()


class _Watch(io.StringIO):
    """A stdout that says when a text was written."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.text in self.getvalue():
            self.seen.set()
        return n


def test_output_before_a_wait_arrives_while_the_call_waits(dso1, monkeypatch) -> None:
    t = Talker()
    t.hello(0)  # created
    watch = _Watch("before the wait")
    monkeypatch.setattr(sys, "stdout", watch)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    result: list[str] = []
    caller = threading.Thread(target=lambda: result.append(t.before_and_after()))
    caller.start()
    assert watch.seen.wait(30), "the output printed before the wait did not arrive while the call waited"
    assert "after the wait" not in watch.getvalue()
    t.release()
    caller.join(30)
    assert result == ["done"]
    assert watch.getvalue().endswith("before the wait\nafter the wait\n")
    t.delete()


def test_async_client_shows_output_too(cluster, capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> int:
        async with crucial.AsyncClient(cluster.addresses) as client:
            return int(await client.call(Talker._type_name, "async-talker", "hello", (5,), create=((), {}), cls=Talker._State))

    assert asyncio.run(main()) == 5
    out, err = capsys.readouterr()
    assert (out, err) == ("hello 5\n", "trouble 5\n")


def _run(tmp_path: Path, source: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=timeout)


def test_embedded_node_never_blocks_on_its_own_output(tmp_path: Path) -> None:
    """Output written outside any call (a constructor) used to fill the embedded node's unread stdout pipe."""
    done = _run(
        tmp_path,
        """
        import crucial

        @crucial.shared
        class Noisy:
            def __init__(self, n):
                for i in range(n):
                    print("constructing", i, "x" * 60)   # runs when the node creates it: no call to send it to
            def ping(self, i):
                print("ping", i)
                return i

        total = 0
        for j in range(3):
            total += Noisy(4000).ping(j)                 # 3 x ~300 KB on the node's own stdout
        print("total", total)
        """,
        unconfigured_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["ping 0", "ping 1", "ping 2", "total 3"]
    assert done.stderr.count("constructing") == 3 * 4000  # on the node's stderr: the program's


LINES = """
import crucial

@crucial.shared
class Echo:
    def say(self, text):
        print(text)

def work(i, echo):
    for j in range(150):
        print(f"thread {i} line {j} " + "x" * (j % 90))
        if j % 30 == 0:
            echo.say(f"node says {i} {j}")

if __name__ == "__main__":
    echo = Echo()
    threads = [crucial.CloudThread(target=work, args=(i, echo)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("joined")
"""


def test_concurrent_cloud_threads_print_whole_lines(tmp_path: Path, cluster) -> None:
    done = _run(tmp_path, LINES, unconfigured_env(cluster.env_vars()))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    pattern = re.compile(r"thread (\d) line (\d+) x*|node says (\d) (\d+)|joined")
    torn = [line for line in lines if not pattern.fullmatch(line)]
    assert torn == [], f"{len(torn)} lines ran together, e.g. {torn[:3]}"
    assert len(lines) == 6 * 150 + 6 * 5 + 1
    for line in lines:
        m = re.fullmatch(r"thread \d line (\d+) (x*)", line)
        if m:
            assert len(m.group(2)) == int(m.group(1)) % 90
    assert lines[-1] == "joined"
