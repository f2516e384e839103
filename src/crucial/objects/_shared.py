"""``@shared``: turn a plain class into a shared one.

::

    @crucial.shared
    class Centroids:
        def __init__(self, k, dim): ...
        def update(self, sums, counts): ...     # runs on the node, one call at a time

    c = Centroids(25, 2, key="centroids")        # a proxy: create-if-absent
    c.update(s, n)

The decorator returns a proxy class with one forwarding method per public
method of the class; the class itself stays reachable as ``Centroids._State``
(its ``__qualname__`` says so, so it pickles by reference from installed
modules and by value from scripts and tests).  Inside a method,
:func:`crucial.wait_until` blocks monitor-style.

A proxy of such a class pickles as its reference *plus the class code* when
the class comes from a module a node cannot import (a script, a test, a
package in the working directory): a proxy passed as an argument to, or held
by, another shared object must unpickle on a node that never saw its class.
Where the defining module is importable the proxy class is found by name, so
it stays the very class the program uses.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import weakref
from collections.abc import Callable
from typing import Any

from ..protocol import DELATTR, GETATTR, SETATTR
from ._proxy import Proxy, _rebuild

__all__ = ["SharedProxy", "shared"]


class SharedProxy(Proxy):
    """Base of the proxies that :func:`shared` makes.

    Its public data attributes are the object's, on the node: ``g.value``
    reads a copy of it, ``g.value = 5`` and ``del g.value`` change it there
    (each one call; properties of the class run on the node too).
    """

    _type_name = "SharedProxy"

    def __init__(
        self,
        *args: Any,
        key: str | None = None,
        force_new: bool = False,
        persistent: bool | None = None,
        rf: int | None = None,
        **kwargs: Any,
    ) -> None:
        state = type(self)._user_class
        assert state is not None
        try:
            inspect.signature(state).bind(*args, **kwargs)
        except TypeError as exc:  # fail here, not on a node, when arguments cannot fit
            raise TypeError(f"{state.__qualname__.removesuffix('._State')}(): {exc}") from None
        except ValueError:  # no signature to check (builtin base class)
            pass
        super().__init__(*args, key=key, force_new=force_new, persistent=persistent, rf=rf, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """A public name the proxy class lacks: the object's data attribute (or property), read on the node."""
        if name.startswith("_"):  # pickle, copy and friends probe these: never a remote call
            raise AttributeError(f"{type(self).__qualname__!r} proxy has no attribute {name!r}")
        return self._call(GETATTR, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._call(SETATTR, name, value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
        else:
            self._call(DELATTR, name)

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild, (cls, key, create, seeds) = super().__reduce__()
        code = _class_code(cls)
        if code is None:  # an installed module: the proxy class travels by reference
            return rebuild, (cls, key, create, seeds)
        return _rebuild_shared, (cls.__module__, cls.__qualname__, cls._type_name, code, key, create, seeds)


def _forwarder(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: Proxy, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    functools.update_wrapper(method, fn)
    return method


def _module_name(cls: type) -> str:
    """A module name every process agrees on, even for classes in ``__main__``.

    A script's module is ``__main__`` in the process that runs it but
    ``__mp_main__`` in multiprocessing children: name it by its import spec
    (``python -m pkg.mod``) or its file, so both name the same shared type.
    """
    name = cls.__module__
    if name not in ("__main__", "__mp_main__"):
        return name
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", "__mp_main__"):
        return str(spec.name)
    path = getattr(module, "__file__", None)
    return f"__main__:{os.path.splitext(os.path.basename(path))[0]}" if path else "__main__"


def shared(cls: type | None = None, *, persistent: bool = False) -> Any:
    """Class decorator: instances become proxies of objects hosted by the DSO.

    ``@shared(persistent=True)`` makes every instance replicated and durable
    unless its constructor call says ``persistent=False``
    (``docs/replication.md``).
    """
    if cls is None:
        return functools.partial(shared, persistent=persistent)
    if not isinstance(persistent, bool):
        raise TypeError(f"persistent must be True or False, not {persistent!r}")
    if not isinstance(cls, type):
        raise TypeError(f"@shared decorates classes, not {type(cls).__name__}")
    if issubclass(cls, Proxy):
        raise TypeError(f"{cls.__qualname__} is already a shared proxy")
    qualname = cls.__qualname__
    proxy_cls = _make_proxy(cls, qualname, f"{_module_name(cls)}.{qualname}")
    proxy_cls._persistent_default = persistent
    cls.__qualname__ = f"{qualname}._State"
    return proxy_cls  # typed Any: no static type says "this class, plus key= and force_new="


#: user class -> its proxy class, in this process (``shared`` and unpickling fill it)
_proxies: weakref.WeakKeyDictionary[type, type[SharedProxy]] = weakref.WeakKeyDictionary()


def _make_proxy(cls: type, qualname: str, type_name: str) -> type[SharedProxy]:
    ns: dict[str, Any] = {
        "__doc__": cls.__doc__,
        "__module__": cls.__module__,
        "__qualname__": qualname,
        "_impl": cls,
        "_user_class": cls,
        "_type_name": type_name,
        "_State": cls,
    }
    for klass in reversed(cls.__mro__[:-1]):  # base classes first, so overrides win
        for name, attr in vars(klass).items():
            if name.startswith("_"):
                continue
            if inspect.isfunction(attr):
                ns[name] = _forwarder(name, attr)
            elif isinstance(attr, (staticmethod, classmethod)):  # they run on the node too, like methods
                ns[name] = _forwarder(name, attr.__func__)
    proxy_cls: type[SharedProxy] = type(cls.__name__, (SharedProxy,), ns)
    _proxies[cls] = proxy_cls
    return proxy_cls


def _class_code(proxy_cls: type[Proxy]) -> bytes | None:
    """The pickled user class of ``proxy_cls`` when its module is not installed (cached)."""
    code = proxy_cls.__dict__.get("_class_code", False)
    if code is False:
        user = proxy_cls._user_class
        assert user is not None
        from ..client._core import dumps_class  # as when registering it with a node
        from ..protocol import ships_by_value

        code = dumps_class(proxy_cls._type_name, user) if ships_by_value(user) else None
        proxy_cls._class_code = code  # type: ignore[attr-defined]
    return code


def _rebuild_shared(
    module: str, qualname: str, type_name: str, code: bytes, key: str, create: Any, seeds: tuple[str, ...]
) -> Proxy:
    return _rebuild(_proxy_class(module, qualname, type_name, code), key, create, seeds)


def _proxy_class(module: str, qualname: str, type_name: str, code: bytes) -> type[SharedProxy]:
    """The proxy class of a pickled proxy: by name when this process has it, else from its code."""
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, SharedProxy) and obj._type_name == type_name:
        return obj
    return _load_class(code)


@functools.lru_cache(maxsize=256)
def _load_class(code: bytes) -> type[SharedProxy]:
    from .. import protocol as P

    type_name, user = P.loads(code, what="shared class of a proxy")
    proxy_cls = _proxies.get(user)  # the class came back to the process that defined it
    if proxy_cls is None or proxy_cls._type_name != type_name:
        proxy_cls = _make_proxy(user, user.__qualname__.removesuffix("._State"), type_name)
    return proxy_cls
