"""Pin the public API: a name added to or dropped from an ``__all__`` must be a decision."""

from __future__ import annotations

import importlib
import inspect
import threading

import pytest

import crucial
import crucial.exceptions as exceptions
from crucial.exceptions import CrucialError, RemoteTraceback

EXPORTS = {
    "crucial.compute.dask": ["DaskBackend", "run_dask_task"],
    "crucial.compute.ray": ["RayBackend", "run_ray_task"],
    "crucial.k8s.manifests": [
        "DEFAULTS",
        "GROUP",
        "KIND",
        "PLURAL",
        "VERSION",
        "all_manifests",
        "disruption_budget",
        "etcd_manifests",
        "etcd_url",
        "node_address",
        "pod_name",
        "resolve",
        "service",
        "statefulset",
        "token_secret",
        "token_secret_name",
    ],
    "crucial.compute.timeline": [
        "Call",
        "Timeline",
        "recorded",
    ],
    "crucial.concurrent": [
        "futures",
    ],
    "crucial.concurrent.futures": [
        "ALL_COMPLETED",
        "BrokenExecutor",
        "CancelledError",
        "Executor",
        "FIRST_COMPLETED",
        "FIRST_EXCEPTION",
        "Future",
        "InvalidStateError",
        "ProcessPoolExecutor",
        "ThreadPoolExecutor",
        "TimeoutError",
        "as_completed",
        "wait",
    ],
    "crucial.multiprocessing": [
        "Array",
        "AuthenticationError",
        "Barrier",
        "BoundedSemaphore",
        "BufferTooShort",
        "Condition",
        "Event",
        "JoinableQueue",
        "Lock",
        "Manager",
        "Pipe",
        "Pool",
        "Process",
        "ProcessError",
        "Queue",
        "RLock",
        "RawArray",
        "RawValue",
        "Semaphore",
        "SimpleQueue",
        "TimeoutError",
        "Value",
        "active_children",
        "cpu_count",
        "current_process",
        "freeze_support",
        "get_context",
        "get_start_method",
        "parent_process",
        "set_start_method",
    ],
    "crucial.queue": [
        "Empty",
        "Full",
        "LifoQueue",
        "PriorityQueue",
        "Queue",
        "SimpleQueue",
    ],
    "crucial.threading": [
        "Barrier",
        "BoundedSemaphore",
        "BrokenBarrierError",
        "Condition",
        "Event",
        "ExceptHookArgs",
        "Lock",
        "RLock",
        "Semaphore",
        "TIMEOUT_MAX",
        "Thread",
        "Timer",
        "active_count",
        "current_thread",
        "enumerate",
        "excepthook",
        "get_ident",
        "get_native_id",
        "local",
        "main_thread",
        "setprofile",
        "settrace",
        "stack_size",
    ],
    "crucial.compute": [
        "BACKENDS",
        "Backend",
        "CloudThread",
        "Retry",
        "ServerlessExecutor",
        "get_backend",
    ],
    "crucial": [
        "AsyncClient",
        "AtomicBool",
        "AtomicByteArray",
        "AtomicInt",
        "AtomicReference",
        "AuthenticationError",
        "Barrier",
        "BoundedSemaphore",
        "BrokenBarrierError",
        "CallCancelledError",
        "CallInterruptedError",
        "CallTimeoutError",
        "CapacityError",
        "Client",
        "CloudThread",
        "Condition",
        "Config",
        "ConfigError",
        "ConnectError",
        "CoordinatorError",
        "CorruptDataError",
        "CountDownLatch",
        "Counter",
        "CrucialError",
        "DataDirLockedError",
        "Dict",
        "Event",
        "Exchanger",
        "FrameTooLargeError",
        "InvocationError",
        "InvocationTimeoutError",
        "List",
        "Lock",
        "MERGE_FUNCTIONS",
        "Matrix",
        "ObjectCreationError",
        "ObjectError",
        "ObjectLostError",
        "ObjectNotFoundError",
        "ProtocolError",
        "Proxy",
        "Queue",
        "RLock",
        "RemoteError",
        "RemoteTraceback",
        "Retry",
        "Semaphore",
        "SerializationError",
        "ServerlessExecutor",
        "Set",
        "SharedFuture",
        "SortedDict",
        "StorageError",
        "TLSError",
        "UnavailableError",
        "UnknownMethodError",
        "UnknownTypeError",
        "WorkerDiedError",
        "WouldBlockError",
        "connect",
        "current_caller",
        "delete",
        "load_config",
        "readonly",
        "shared",
        "wait_until",
    ],
    "crucial.client": [
        "AsyncClient",
        "Client",
        "HashRing",
        "connect",
        "default_client",
        "get_client",
        "start_embedded",
        "stop_embedded",
    ],
    "crucial.objects": [
        "AtomicBool",
        "AtomicByteArray",
        "AtomicInt",
        "AtomicReference",
        "Barrier",
        "BoundedSemaphore",
        "Condition",
        "CountDownLatch",
        "Counter",
        "Dict",
        "Event",
        "Exchanger",
        "List",
        "Lock",
        "MERGE_FUNCTIONS",
        "Matrix",
        "Proxy",
        "Queue",
        "RLock",
        "Semaphore",
        "Set",
        "SharedFuture",
        "SortedDict",
        "builtin_types",
        "current_caller",
        "delete",
        "readonly",
        "shared",
        "wait_until",
    ],
    "crucial.exceptions": [
        "AuthenticationError",
        "BrokenBarrierError",
        "CallCancelledError",
        "CallInterruptedError",
        "CallTimeoutError",
        "CapacityError",
        "ConfigError",
        "ConnectError",
        "CoordinatorError",
        "CorruptDataError",
        "CrucialError",
        "DataDirLockedError",
        "FrameTooLargeError",
        "InvocationError",
        "InvocationTimeoutError",
        "ObjectCreationError",
        "ObjectError",
        "ObjectLostError",
        "ObjectNotFoundError",
        "ProtocolError",
        "RemoteError",
        "RemoteTraceback",
        "SerializationError",
        "StorageError",
        "TLSError",
        "UnavailableError",
        "UnknownMethodError",
        "UnknownTypeError",
        "WorkerDiedError",
        "WouldBlockError",
    ],
}


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_all_is_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(module.__all__) == len(set(module.__all__)), "duplicate names in __all__"
    assert sorted(module.__all__) == EXPORTS[module_name]


@pytest.mark.parametrize(("module_name", "name"), [(m, n) for m, names in sorted(EXPORTS.items()) for n in names])
def test_exported_name_is_importable(module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    ns: dict[str, object] = {}
    exec(f"from {module_name} import {name}", ns)
    assert ns[name] is getattr(module, name)


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_star_import_gives_exactly_all(module_name: str) -> None:
    ns: dict[str, object] = {}
    exec(f"from {module_name} import *", ns)
    assert sorted(k for k in ns if k != "__builtins__") == EXPORTS[module_name]


def test_top_level_reexports_are_the_same_objects() -> None:
    assert set(EXPORTS["crucial.exceptions"]) <= set(crucial.__all__)
    for sub in ("crucial.client", "crucial.exceptions", "crucial.objects"):
        module = importlib.import_module(sub)
        for name in set(module.__all__) & set(crucial.__all__):
            assert getattr(crucial, name) is getattr(module, name), name


def test_version() -> None:
    assert isinstance(crucial.__version__, str)
    assert crucial.__version__.count(".") >= 2


def _exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for _, obj in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == exceptions.__name__
    ]


def test_every_exception_class_is_exported() -> None:
    assert sorted(c.__name__ for c in _exception_classes()) == EXPORTS["crucial.exceptions"]


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda c: c.__name__)
def test_one_exception_tree(cls: type[BaseException]) -> None:
    if cls is RemoteTraceback:  # a carrier for traceback text, never raised on its own
        assert not issubclass(cls, CrucialError)
    else:
        assert issubclass(cls, CrucialError)


def test_builtin_bases() -> None:
    assert issubclass(exceptions.ConnectError, ConnectionError)
    assert issubclass(exceptions.CallTimeoutError, TimeoutError)
    assert issubclass(exceptions.BrokenBarrierError, threading.BrokenBarrierError)
    assert issubclass(exceptions.UnknownMethodError, AttributeError)
    assert issubclass(exceptions.ObjectNotFoundError, LookupError)
    assert issubclass(exceptions.ConfigError, ValueError)
    assert issubclass(exceptions.FrameTooLargeError, exceptions.ProtocolError)
    for sub in (
        exceptions.ObjectNotFoundError,
        exceptions.UnknownTypeError,
        exceptions.UnknownMethodError,
        exceptions.ObjectCreationError,
    ):
        assert issubclass(sub, exceptions.ObjectError)


def test_no_builtin_name_is_shadowed() -> None:
    import builtins

    shadowed = [n for n in EXPORTS["crucial.exceptions"] if hasattr(builtins, n)]
    assert shadowed == []
