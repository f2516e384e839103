"""Cloud threads keep ``threading.Thread``'s semantics where they can (issue 14, breakages 1, 2 and 5).

1. a started cloud thread that is never joined is waited for at exit, and
   its error reported as ``threading.excepthook`` reports a thread's;
2. ``daemon`` in every stdlib form;
5. a thread function that uses an unpicklable global gets an error naming
   that global and what to use instead.

Plus: what ``run()`` sets on a thread comes back, as with threads.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import crucial
from crucial.compute import CloudThread
from crucial.testing import unconfigured_env


def _run(tmp_path: Path, source: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=timeout)


def test_unjoined_threads_are_waited_for_at_exit(tmp_path: Path, cluster, key: str) -> None:
    done = _run(
        tmp_path,
        f"""
        import crucial

        def work(i):
            crucial.Event(key="{key}-go").wait(60)      # still running when the main thread ends
            crucial.Counter(key="{key}").increment()
            print("worked", i)

        def fail():
            crucial.Event(key="{key}-go").wait(60)
            raise ValueError("boom in a cloud thread")

        for i in range(3):
            crucial.CloudThread(target=work, args=(i,)).start()
        crucial.CloudThread(target=fail, name="failing").start()
        crucial.Event(key="{key}-go").set()
        print("main ends")
        """,
        unconfigured_env(cluster.env_vars()),
    )
    assert done.returncode == 0, done.stderr[-2000:]  # as with threads: an error in one does not change the status
    assert sorted(done.stdout.splitlines()) == ["main ends", "worked 0", "worked 1", "worked 2"]
    assert cluster.client().call("Counter", key, "tally", create=((), {})) == 3
    # reported as threading.excepthook reports an error of a thread, remote traceback included
    assert "Exception in thread failing:" in done.stderr
    assert "ValueError: boom in a cloud thread" in done.stderr
    assert ", in fail\n" in done.stderr  # the worker's frame


def test_daemon_threads_are_not_waited_for(tmp_path: Path, cluster, key: str) -> None:
    done = _run(
        tmp_path,
        f"""
        import crucial

        def forever():
            crucial.Event(key="{key}").wait()   # never set

        t = crucial.CloudThread(target=forever, daemon=True)
        t.start()
        print("daemon", t.daemon)
        """,
        unconfigured_env(cluster.env_vars()),
        timeout=60,  # waiting for it would never end
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "daemon True\n"


def test_daemon_in_every_stdlib_form() -> None:
    assert CloudThread().daemon is False  # inherited from the main thread
    assert CloudThread(daemon=True).daemon is True
    t = CloudThread(target=print)
    t.daemon = True
    assert t.daemon
    with pytest.warns(DeprecationWarning, match="setDaemon"):
        t.setDaemon(False)
    with pytest.warns(DeprecationWarning, match="isDaemon"):
        assert t.isDaemon() is False
    with pytest.warns(DeprecationWarning, match="getName"):
        assert t.getName() == t.name
    with pytest.warns(DeprecationWarning, match="setName"):
        t.setName("renamed")
    assert t.name == "renamed" and t.ident is None
    # a thread made by a daemon thread is a daemon, as in threading
    seen: list[bool] = []
    maker = threading.Thread(target=lambda: seen.append(CloudThread().daemon), daemon=True)
    maker.start()
    maker.join()
    assert seen == [True]
    assert "daemon" in repr(CloudThread(daemon=True))


def test_daemon_cannot_change_once_started(dso1) -> None:
    t = CloudThread(target=int)
    t.start()
    with pytest.raises(RuntimeError, match="daemon status of active thread"):
        t.daemon = True
    t.join()
    assert isinstance(t.ident, int) and t.native_id == t.ident


def _boom() -> None:
    raise KeyError("unseen")


def test_an_error_nobody_asked_for_goes_to_excepthook(dso1, monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    asked = CloudThread(target=_boom)
    asked.start()
    with pytest.raises(KeyError):
        asked.result(60)
    unasked = CloudThread(target=_boom, name="never-asked")
    unasked.start()
    unasked.join(60)
    del asked, unasked
    # reported when the thread is collected: the backend's thread may still hold it for a moment after join()
    deadline = time.monotonic() + 30
    while not hooked and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert [(h.exc_type, h.thread.name) for h in hooked] == [(KeyError, "never-asked")]


class Summer(CloudThread):
    """Leaves its results in attributes, as thread subclasses do."""

    def __init__(self, numbers: list[int]) -> None:
        super().__init__()
        self.numbers = numbers
        self.seen: list[int] = []
        self.label = "initial"
        self.scratch = "gone"

    def run(self) -> None:
        self.total = sum(self.numbers)  # a new attribute
        self.seen.append(len(self.numbers))  # changed in place
        self.label = f"summed {len(self.numbers)}"  # rebound
        del self.scratch


def test_attributes_run_sets_come_back(dso1) -> None:
    t = Summer([1, 2, 3])
    t.start()
    t.join()
    assert (t.total, t.seen, t.label) == (6, [3], "summed 3")
    assert not hasattr(t, "scratch")
    assert not t.is_alive()


_GLOBAL_LOCK = threading.Lock()


def _uses_the_global_lock(n: int) -> int:
    with _GLOBAL_LOCK:
        return n


def _calls_a_helper(n: int) -> int:
    return _uses_the_global_lock(n)


def test_unpicklable_global_is_named(new_backend) -> None:
    backend = new_backend()
    with pytest.raises(crucial.SerializationError) as info:
        CloudThread(target=_calls_a_helper, args=(1,), backend=backend).start()
    message = str(info.value)
    assert "'_GLOBAL_LOCK'" in message and "_uses_the_global_lock()" in message and "_calls_a_helper()" in message
    assert "_thread.lock" in message and "crucial.Lock" in message and "crucial.threading" in message
    assert backend.stats["invocations"] == 0
    with pytest.raises(crucial.SerializationError, match=r"argument 2 is a _thread.lock.*crucial.Lock"):
        CloudThread(target=print, args=(1, threading.Lock()), backend=backend).start()
    with crucial.ServerlessExecutor(backend) as ex, pytest.raises(crucial.SerializationError, match="'_GLOBAL_LOCK'"):
        ex.submit(_uses_the_global_lock, 1)


class HoldsAQueue(CloudThread):
    def __init__(self) -> None:
        super().__init__()
        import queue

        self.inbox: Any = queue.Queue()

    def run(self) -> None:
        self.inbox.get()


def test_unpicklable_thread_attribute_is_named(new_backend) -> None:
    with pytest.raises(crucial.SerializationError, match=r"the thread's attribute 'inbox' is a queue.Queue.*crucial.Queue"):
        HoldsAQueue().start()


def test_script_with_a_module_level_lock(tmp_path: Path, cluster) -> None:
    """The case from the issue: a script's thread function uses a module-level threading.Lock."""
    done = _run(
        tmp_path,
        """
        import threading
        import crucial

        lock = threading.Lock()
        total = 0

        def work():
            global total
            with lock:
                total += 1

        t = crucial.CloudThread(target=work)
        try:
            t.start()
        except crucial.SerializationError as exc:
            print(exc)
        """,
        unconfigured_env(cluster.env_vars()),
    )
    assert done.returncode == 0, done.stderr
    assert "the global 'lock' of work() is a _thread.lock" in done.stdout


_total = 0


def _adds_to_a_global() -> None:
    global _total
    _total += 1


def test_assigning_a_global_in_a_thread_is_warned(dso1) -> None:
    t = CloudThread(target=_adds_to_a_global)
    with pytest.warns(RuntimeWarning, match=r"_adds_to_a_global\(\) assigns the global '_total'.*another process"):
        t.start()
    t.join()
    assert _total == 0  # as the warning said


def test_executor_work_is_finished_at_exit(tmp_path: Path, cluster, key: str) -> None:
    done = _run(
        tmp_path,
        f"""
        import crucial

        def work(i):
            crucial.Event(key="{key}-go").wait(60)
            crucial.Counter(key="{key}").increment()

        ex = crucial.ServerlessExecutor(max_workers=2)
        for i in range(4):
            ex.submit(work, i)               # two wait in the executor's queue
        crucial.Event(key="{key}-go").set()
        print("main ends")                   # no shutdown(), no result(): as with ThreadPoolExecutor
        """,
        unconfigured_env(cluster.env_vars()),
    )
    assert done.returncode == 0 and done.stdout == "main ends\n", done.stderr[-2000:]
    assert cluster.client().call("Counter", key, "tally", create=((), {})) == 4
