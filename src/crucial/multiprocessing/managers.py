"""``multiprocessing.Manager()``: its shared ``dict``, ``list``, ``Namespace``, queues and locks, as DSO objects.

A ``multiprocessing`` manager is a server process holding the objects;
here the DSO nodes are that server, already running, so ``Manager()`` needs
no ``start()`` (it is accepted) and ``shutdown()`` only forgets.  Unlike a
manager's proxies, every method of these objects runs on the node, one call
at a time, so a ``dict``'s ``update`` or a list's ``sort`` is atomic.  As a
manager's, ``str()`` of a dict or list shows its contents; values read are
copies (``d["k"].append(1)`` changes the copy, as with a manager).
"""

from __future__ import annotations

from typing import Any

from ..objects._proxy import Proxy
from ..objects.containers import Dict, DictState, List
from .pool import Pool
from .queues import JoinableQueue, Queue
from .sharedctypes import Array as _Array
from .sharedctypes import Value as _Value
from .synchronize import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore

__all__ = ["DictProxy", "ListProxy", "Namespace", "SyncManager"]


class DictProxy(Dict):
    """A manager's ``dict()``: a :class:`~crucial.Dict` that prints as its contents."""

    _type_name = "Dict"

    def __str__(self) -> str:
        return str(self.copy())

    def popitem(self) -> tuple[Any, Any]:
        for key in reversed(self.keys()):
            return key, self.pop(key)
        raise KeyError("popitem(): dictionary is empty")


class ListProxy(List):
    """A manager's ``list()``: a :class:`~crucial.List` that prints as its contents."""

    _type_name = "List"

    def __str__(self) -> str:
        return str(self.to_list())

    def __iadd__(self, values: Any) -> ListProxy:
        self.extend(values)
        return self


class Namespace(Proxy):
    """A manager's ``Namespace(**kwds)``: attributes kept in a DSO dict, each read or write one call."""

    _type_name = "Dict"
    _impl = DictState

    def __init__(self, **kwds: Any) -> None:
        super().__init__(kwds)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._call("getitem", name)
        except KeyError:
            raise AttributeError(f"'Namespace' object has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._call("setitem", name, value)

    def __delattr__(self, name: str) -> None:
        try:
            self._call("delitem", name)
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        items = self._call("items")
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in items if not str(k).startswith("_")) + ")"

    __str__ = __repr__


class SyncManager:
    """``multiprocessing.managers.SyncManager``: makes shared objects; the DSO is its server."""

    def __init__(self, address: Any = None, authkey: bytes | None = None, *args: Any, **kwargs: Any) -> None:
        self.address = address

    def start(self, initializer: Any = None, initargs: tuple[Any, ...] = ()) -> None:
        """The DSO runs already: nothing to start (``initializer`` runs here, as it would in the server)."""
        if initializer is not None:
            initializer(*initargs)

    def connect(self) -> None:
        """Nothing to connect to: proxies find the DSO themselves."""

    def shutdown(self) -> None:
        """The objects live on in the DSO until deleted; nothing to stop."""

    def join(self, timeout: float | None = None) -> None:
        """No server process to wait for."""

    def __enter__(self) -> SyncManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def dict(self, *args: Any, **kwargs: Any) -> DictProxy:
        return DictProxy(dict(*args, **kwargs))

    def list(self, sequence: Any = ()) -> ListProxy:
        return ListProxy(list(sequence))

    def Namespace(self, **kwds: Any) -> Namespace:
        return Namespace(**kwds)

    def Queue(self, maxsize: int = 0) -> Queue:
        return Queue(maxsize)

    def JoinableQueue(self, maxsize: int = 0) -> JoinableQueue:
        return JoinableQueue(maxsize)

    def Lock(self) -> Lock:
        return Lock()

    def RLock(self) -> RLock:
        return RLock()

    def Semaphore(self, value: int = 1) -> Semaphore:
        return Semaphore(value)

    def BoundedSemaphore(self, value: int = 1) -> BoundedSemaphore:
        return BoundedSemaphore(value)

    def Condition(self, lock: Any = None) -> Any:
        return Condition(lock)

    def Event(self) -> Event:
        return Event()

    def Barrier(self, parties: int, action: Any = None, timeout: float | None = None) -> Barrier:
        return Barrier(parties, action, timeout)

    def Value(self, typecode: Any, value: Any, lock: bool = True) -> Any:
        return _Value(typecode, value, lock=False)  # a manager's Value has no lock

    def Array(self, typecode: Any, sequence: Any, lock: bool = True) -> Any:
        return _Array(typecode, sequence, lock=False)

    def Pool(self, *args: Any, **kwargs: Any) -> Pool:
        return Pool(*args, **kwargs)
