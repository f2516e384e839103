"""Proxies: the client-side handles of shared objects.

A proxy names an object by its reference ``(type name, key)`` and forwards
method calls to the node that owns it.  It holds no state of the object, so
it is cheap to make, safe to share between threads, and pickles as its
reference plus the addresses of its cluster -- which is how proxies travel
inside cloud-thread payloads and inside other shared objects, re-attaching
lazily on the other side.

Create vs attach::

    AtomicInt(5, key="hits")                  # create-if-absent with value 5
    AtomicInt(5, key="hits", force_new=True)  # (re)create now, resetting it
    AtomicInt.attach("hits")                  # must exist: else ObjectNotFoundError

Creation is lazy (the first call carries the constructor arguments), so
proxies can be declared as class attributes at import time, where the key
defaults to the attribute's name.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Protocol, TypeVar

from ..exceptions import ConfigError, ObjectError
from ._monitor import has_waiting_methods, in_node_call, is_readonly

__all__ = ["Proxy", "Transport", "delete", "set_node_transport"]

P = TypeVar("P", bound="Proxy")


class Transport(Protocol):
    """What a proxy needs from a client (sync :class:`~crucial.client.Client`
    in processes, the node's own nested-call transport inside a node)."""

    @property
    def seeds(self) -> tuple[str, ...]: ...

    def call(
        self,
        type_name: str,
        key: str,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        create: tuple[Any, ...] | None = None,
        force: bool = False,
        cls: type | None = None,
        timeout: float | None = None,
        read_any: bool = False,
    ) -> Any: ...

    def delete(self, type_name: str, key: str) -> bool: ...


_node_transport: Transport | None = None


def set_node_transport(transport: Transport | None) -> None:
    """Called by a node at start: proxies used inside methods go through it."""
    global _node_transport
    _node_transport = transport


_default_client_fn: Any = None


def _default_client() -> Transport:
    """``client._default.default_client()`` (imported on first use: the client imports this package)."""
    global _default_client_fn
    if _default_client_fn is None:
        from ..client._default import default_client

        _default_client_fn = default_client
    return _default_client_fn()  # type: ignore[no-any-return]


class Proxy:
    """Base of every proxy.  Subclasses set ``_impl`` (the node-side class)."""

    _impl: ClassVar[type]
    _type_name: ClassVar[str]
    #: for @shared classes: the user class, sent by value to nodes that lack it
    _user_class: ClassVar[type | None] = None
    #: ``persistent=`` when a constructor call does not say (``@shared(persistent=True)`` sets it)
    _persistent_default: ClassVar[bool] = False

    __slots__ = ("__weakref__", "_create", "_created_on", "_key", "_named", "_seeds", "_sequential", "_transport_cache")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a class with its own node-side type is named after itself; a subclass that only adds
        # client-side behaviour (crucial.threading.Lock, a manager's dict) names its parent's type
        if "_type_name" not in cls.__dict__ and ("_impl" in cls.__dict__ or not hasattr(cls, "_type_name")):
            cls._type_name = cls.__name__

    def __init__(
        self,
        *args: Any,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
        **kwargs: Any,
    ) -> None:
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        # no key: a new object of its own, as ``Counter()`` is in Python (a class
        # attribute renames it after the attribute, see __set_name__)
        self._named = key is not None
        self._key = key if key is not None else f"anon-{uuid.uuid4().hex}"
        self._create: tuple[Any, ...] | None = (args, kwargs)
        if persistent is not None or rf is not None or self._persistent_default:
            self._create = (args, kwargs, self._options(persistent, rf))
        # the transport whose cluster holds the object: a proxy that follows the
        # default client (a class attribute in a warm worker that serves another
        # cluster next) sends its create arguments again to a new cluster
        self._created_on: Transport | None = None
        self._seeds: tuple[str, ...] | None = None
        self._transport_cache: Transport | None = None
        self._sequential = False
        if force_new:
            t = self._transport()
            t.call(self._type_name, self.key, "", create=self._create, force=True, cls=self._user_class)
            self._created_on = t

    def _options(self, persistent: bool | None, rf: int | None) -> tuple[bool, int | None]:
        """``(persistent, rf)`` as a node takes them, checked here first (no round trip for a mistake)."""
        if persistent is None:
            persistent = self._persistent_default or rf is not None
        if not isinstance(persistent, bool):
            raise TypeError(f"persistent must be True or False, not {persistent!r}")
        if rf is not None and (isinstance(rf, bool) or not isinstance(rf, int) or rf < 1):
            raise ConfigError(f"rf must be an int >= 1, not {rf!r}")
        if rf is not None and not persistent:
            raise ConfigError(f"{self._type_name} {self._key!r}: rf={rf} replicates an object: it needs persistent=True")
        if persistent and self._user_class is None and has_waiting_methods(self._impl):
            raise ConfigError(
                f"{self._type_name} {self._key!r} cannot be persistent: synchronization objects are not replicated "
                "(their waiters live on one node); keep it ephemeral"
            )
        return persistent, rf

    @classmethod
    def attach(cls: type[P], key: str) -> P:
        """A proxy for an existing object; calls fail with ObjectNotFoundError if it is absent."""
        p = cls.__new__(cls)
        Proxy._init_ref(p, key, None, None)
        return p

    def _init_ref(self, key: str, create: Any, seeds: tuple[str, ...] | None) -> None:
        self._sequential = False
        self._key = key
        self._named = True
        self._create = create
        self._created_on = None
        self._seeds = seeds
        self._transport_cache = None

    def __set_name__(self, owner: type, name: str) -> None:
        if not self._named:
            self._key = name
            self._named = True

    @property
    def key(self) -> str:
        """The object's key (its name in the DSO): ``key=``, the class attribute's name, or a fresh unique one."""
        return self._key

    def _transport(self) -> Transport:
        if _node_transport is not None:
            if in_node_call():
                return _node_transport
            raise ObjectError(
                f"{self._type_name} {self._key!r}: on a node, proxies can be called only from inside a method "
                "(not from a constructor or at import time)",
                self._type_name,
                self._key,
            )
        if not self._seeds:  # the process's default client, whichever it is now
            return _default_client()
        t = self._transport_cache
        if t is None:
            from ..client._default import get_client

            t = self._transport_cache = get_client(self._seeds)
        return t

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        t = self._transport()
        created = self._created_on is t
        result = t.call(
            self._type_name,
            self.key,
            method,
            args,
            kwargs or None,
            create=None if created else self._create,
            cls=self._user_class,
            read_any=self._sequential and created and is_readonly(self._impl, method),
        )
        if self._created_on is not t:
            self._created_on = t
        return result

    def sequential(self: P) -> P:
        """This object, with sequential reads: its read-only methods may be answered by any
        replica of a persistent object, not only its primary -- more read throughput, at the
        price documented in ``docs/replication.md`` ("Degradable reads").  Writes, and the
        reads of ephemeral objects, are unchanged."""
        p = type(self).__new__(type(self))
        for name in Proxy.__slots__[1:]:  # every slot but __weakref__
            setattr(p, name, getattr(self, name))
        if hasattr(self, "__dict__"):
            p.__dict__.update(self.__dict__)
        p._sequential = True
        return p

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):  # the proxy's own slots
            object.__setattr__(self, name, value)
            return
        raise AttributeError(
            f"cannot set {name!r} on a {type(self).__qualname__} proxy: a proxy holds no state, the object lives on "
            "its DSO node; change it with its methods"
        )

    @property
    def aio(self) -> Any:
        """The asyncio twin of this proxy: ``await proxy.aio.method(...)``, ``async with lock.aio:``.

        It reaches the same object through an :class:`~crucial.client.AsyncClient`
        found as this proxy's client is (the configuration, else the embedded node).
        """
        from ._aio import view

        return view(self)

    def delete(self) -> bool:
        """Delete the object from the DSO; ``True`` if it existed.  Waiters get ObjectNotFoundError."""
        return self._transport().delete(self._type_name, self.key)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._seeds:
            seeds = self._seeds
        elif _node_transport is not None:  # pickled on a node (a reply, a nested call)
            seeds = _node_transport.seeds
        else:
            seeds = self._transport().seeds
        # once the object exists, copies only attach: a copy must not re-create
        # an object that was deleted meanwhile, nor carry large initial values
        return (_rebuild, (type(self), self._key, None if self._created_on is not None else self._create, seeds))

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} key={self._key!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proxy):
            return NotImplemented
        return (self._type_name, self._key) == (other._type_name, other._key)

    def __hash__(self) -> int:
        return hash((self._type_name, self._key))


def _rebuild(cls: type[Proxy], key: str, create: Any, seeds: tuple[str, ...]) -> Proxy:
    p = cls.__new__(cls)
    Proxy._init_ref(p, key, create, seeds)
    return p


def delete(obj: Proxy) -> bool:
    """Delete a shared object (works for @shared classes that define their own ``delete``)."""
    return Proxy.delete(obj)
