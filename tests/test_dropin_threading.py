"""``crucial.threading`` and ``crucial.queue``: the stdlib's names, signatures and semantics, on cloud threads and DSO objects."""

from __future__ import annotations

import pickle
import queue as std_queue
import threading as std_threading
from typing import Any

import pytest

import crucial
import crucial.queue as queue
import crucial.threading as threading


def _names() -> tuple[str, int | None]:
    me = threading.current_thread()
    return me.name, threading.get_ident()


def test_current_thread_inside_a_cloud_thread(dso1) -> None:
    t = threading.Thread(target=_names, name="reporter")
    t.start()
    t.join()
    assert t.result() == ("reporter", t.ident)
    assert threading.current_thread() is std_threading.current_thread()  # outside: threading's own
    assert threading.get_ident() == std_threading.get_ident()


def _wait(ev: Any) -> None:
    ev.wait(60)


def test_default_names_and_counts(dso1) -> None:
    ev = threading.Event()
    t = threading.Thread(target=_wait, args=(ev,))
    assert t.name.startswith("Thread-") and t.name.endswith("(_wait)")
    before = threading.active_count()
    t.start()
    assert threading.active_count() == before + 1 and t in threading.enumerate()
    ev.set()
    t.join()
    assert threading.active_count() == before and t not in threading.enumerate()
    with pytest.raises(AssertionError, match="group"):
        threading.Thread(group="g")  # type: ignore[arg-type]


def _count(counter: crucial.Counter) -> None:
    counter.increment()


def test_timer_fires_and_cancel_stops_it(dso1) -> None:
    hits = crucial.Counter()
    fired = threading.Timer(0.05, _count, args=[hits])
    cancelled = threading.Timer(30, _count, args=[hits])
    fired.start()
    cancelled.start()
    cancelled.cancel()
    cancelled.join(60)
    fired.join(60)
    assert not cancelled.is_alive() and not fired.is_alive()
    assert hits.tally() == 1


def test_primitives_are_shared_objects_with_threading_signatures(dso1) -> None:
    lock = threading.Lock()
    assert isinstance(lock, crucial.Lock) and isinstance(lock, threading.Lock)
    assert lock.acquire() and not lock.acquire(blocking=False) and not lock.acquire(timeout=0.01)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    sem = threading.BoundedSemaphore(2)
    with sem:
        assert sem.acquire(timeout=0.01) and not sem.acquire(blocking=False)
        sem.release()
    with pytest.raises(ValueError):
        sem.release()
    barrier = threading.Barrier(1)
    assert barrier.wait() == 0 and barrier.parties == 1
    assert issubclass(threading.BrokenBarrierError, std_threading.BrokenBarrierError)
    copy = pickle.loads(pickle.dumps(lock))  # a reference: the same lock
    assert isinstance(copy, threading.Lock) and copy == lock


def _hold_then_wait(cond: Any, flag: Any, seen: Any) -> bool:
    with cond:
        seen.put("waiting")
        return bool(cond.wait_for(flag.get, timeout=60))


@pytest.mark.parametrize("kind", ["own lock", "Lock", "RLock"])
def test_condition_wakes_a_cloud_thread(dso1, kind: str) -> None:
    lock = {"own lock": None, "Lock": threading.Lock(), "RLock": threading.RLock()}[kind]
    cond = threading.Condition(lock)
    flag = crucial.AtomicBool()
    seen = queue.Queue()
    t = threading.Thread(target=_hold_then_wait, args=(cond, flag, seen))
    t.start()
    assert seen.get(timeout=60) == "waiting"
    with cond:  # the waiter released the lock while it waits
        flag.set(True)
        cond.notify_all()
    assert t.result(60) is True
    with pytest.raises(RuntimeError, match="un-acquired"):
        cond.notify()


def test_condition_over_a_shared_lock_keeps_the_recursion_count(dso1) -> None:
    rlock = threading.RLock()
    cond = threading.Condition(rlock)
    with cond, cond:  # acquired twice
        assert cond.wait(0.01) is False  # released fully meanwhile, taken back twice
        assert rlock._call("is_owned")
    rlock.acquire(blocking=False)  # free again after two releases: we can take it
    rlock.release()
    with pytest.raises(TypeError, match=r"crucial.threading.Lock"):
        threading.Condition(std_threading.Lock())


class Box(threading.local):
    def __init__(self, size: int) -> None:
        self.size = size


def test_local_is_per_thread_and_travels_empty(dso1) -> None:
    box = Box(3)
    box.extra = "here only"
    seen: list[Any] = []
    other = std_threading.Thread(target=lambda: seen.append((box.size, hasattr(box, "extra"))))
    other.start()
    other.join()
    assert seen == [(3, False)]  # threading.local semantics: __init__ again, no attributes of ours
    clone = pickle.loads(pickle.dumps(box))
    assert clone.size == 3 and not hasattr(clone, "extra")


def test_queues_with_stdlib_semantics(dso1) -> None:
    q = queue.Queue(2)
    q.put(1)
    q.put_nowait(2)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    with pytest.raises(std_queue.Full):  # the stdlib's own class
        q.put_nowait(3)
    assert (q.qsize(), q.full(), q.maxsize) == (2, True, 2)
    assert [q.get(), q.get_nowait()] == [1, 2]
    with pytest.raises(std_queue.Empty):
        q.get(timeout=0.01)
    q.task_done()
    q.task_done()
    assert q.join() is None  # the stdlib's join(): no timeout, returns None
    with pytest.raises(ValueError, match="too many"):
        q.task_done()
    lifo = queue.LifoQueue()
    prio = queue.PriorityQueue()
    for x in (3, 1, 2):
        lifo.put(x)
        prio.put(x)
    assert [lifo.get() for _ in range(3)] == [2, 1, 3]
    assert [prio.get() for _ in range(3)] == [1, 2, 3]
    simple = queue.SimpleQueue()
    simple.put("a")
    assert simple.qsize() == 1 and simple.get() == "a" and simple.empty()
    with pytest.raises(queue.Empty):
        simple.get_nowait()
    assert queue.Empty is std_queue.Empty and queue.Full is std_queue.Full


def _consume(q: Any, out: Any) -> None:
    while (item := q.get()) is not None:
        out.put(item * 10)
        q.task_done()
    q.task_done()


def test_a_queue_shared_by_cloud_threads(dso1) -> None:
    q, out = queue.Queue(), queue.Queue()
    workers = [threading.Thread(target=_consume, args=(q, out)) for _ in range(3)]
    for w in workers:
        w.start()
    for i in range(12):
        q.put(i)
    q.join()
    for _ in workers:
        q.put(None)
    for w in workers:
        w.join()
    assert sorted(out.get() for _ in range(12)) == [i * 10 for i in range(12)]


@crucial.shared
class Mailbox:
    """Written for threads: a Condition made in __init__, with crucial.threading imported."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.lock = threading.Lock()
        self.items: list[Any] = []
        self.pending = queue.Queue()

    def post(self, item: Any) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify()

    def take(self) -> Any:
        with self.cond:
            self.cond.wait_for(lambda: self.items, timeout=60)
            return self.items.pop(0)

    def kinds(self) -> list[str]:
        return [type(x).__name__ for x in (self.cond, self.lock, self.pending)]


def test_primitives_made_on_a_node_are_its_monitors(dso1) -> None:
    box = Mailbox()
    assert box.kinds() == ["NodeCondition", "NodeLock", "Queue"]
    taker = threading.Thread(target=box.take)
    taker.start()
    box.post("hello")  # would deadlock if the condition were a proxy called from the node
    assert taker.result(60) == "hello"
    box.delete()


def _fail() -> None:
    raise ValueError("in a drop-in thread")


def test_errors_are_reported_when_the_thread_ends(dso1, monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)  # crucial.threading.excepthook, as a program sets it
    t = threading.Thread(target=_fail, name="failing")
    t.start()
    t.join()
    assert [(h.exc_type, h.thread.name) for h in hooked] == [(ValueError, "failing")]


# -- the names and signatures are the stdlib's ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs", "required"),
    [
        (
            "crucial.threading",
            "threading",
            "Thread Lock RLock Condition Semaphore BoundedSemaphore Event Barrier Timer current_thread get_ident active_count",
        ),
        ("crucial.queue", "queue", "Queue LifoQueue PriorityQueue SimpleQueue Empty Full"),
        (
            "crucial.multiprocessing",
            "multiprocessing",
            "Process Pool Queue JoinableQueue SimpleQueue Pipe Value Array Lock RLock Semaphore Event Condition Barrier Manager "
            "cpu_count",
        ),
        ("crucial.concurrent.futures", "concurrent.futures", "ThreadPoolExecutor ProcessPoolExecutor wait as_completed Future"),
    ],
)
def test_names_are_the_stdlibs(ours: str, theirs: str, required: str) -> None:
    import importlib

    mine, stdlib = importlib.import_module(ours), importlib.import_module(theirs)
    assert set(required.split()) <= set(mine.__all__)
    assert [n for n in mine.__all__ if not hasattr(stdlib, n)] == []


def _params(obj: Any) -> list[str]:
    import inspect

    return [p.name for p in inspect.signature(obj).parameters.values() if p.kind is not p.KEYWORD_ONLY]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("crucial.threading.Thread", "threading.Thread"),
        ("crucial.threading.Timer", "threading.Timer"),
        ("crucial.threading.Condition", "threading.Condition"),
        ("crucial.threading.Barrier", "threading.Barrier"),
        ("crucial.threading.Semaphore", "threading.Semaphore"),
        ("crucial.queue.Queue", "queue.Queue"),
        ("crucial.multiprocessing.Process", "multiprocessing.Process"),
        ("crucial.multiprocessing.Pool", "multiprocessing.pool.Pool"),
        ("crucial.multiprocessing.pool.Pool.map", "multiprocessing.pool.Pool.map"),
        ("crucial.multiprocessing.pool.Pool.apply_async", "multiprocessing.pool.Pool.apply_async"),
        ("crucial.multiprocessing.pool.Pool.imap_unordered", "multiprocessing.pool.Pool.imap_unordered"),
        ("crucial.concurrent.futures.ThreadPoolExecutor", "concurrent.futures.ThreadPoolExecutor"),
    ],
)
def test_positional_parameters_are_the_stdlibs(ours: str, theirs: str) -> None:
    import importlib

    def resolve(path: str) -> Any:
        parts = path.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for part in parts[i:]:
                obj = getattr(obj, part)
            return obj
        raise ImportError(path)

    mine, std = resolve(ours), resolve(theirs)
    std_params = [p for p in _params(std) if p != "self"]
    assert [p for p in _params(mine) if p != "self"][: len(std_params)] == std_params
