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
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from ._proxy import Proxy

__all__ = ["SharedProxy", "shared"]


class SharedProxy(Proxy):
    """Base of the proxies that :func:`shared` makes."""

    _type_name = "SharedProxy"

    def __init__(self, *args: Any, key: str | None = None, force_new: bool = False, **kwargs: Any) -> None:
        state = type(self)._user_class
        assert state is not None
        try:
            inspect.signature(state).bind(*args, **kwargs)
        except TypeError as exc:  # fail here, not on a node, when arguments cannot fit
            raise TypeError(f"{state.__qualname__.removesuffix('._State')}(): {exc}") from None
        except ValueError:  # no signature to check (builtin base class)
            pass
        super().__init__(*args, key=key, force_new=force_new, **kwargs)


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


def shared(cls: type) -> Any:
    """Class decorator: instances become proxies of objects hosted by the DSO."""
    if not isinstance(cls, type):
        raise TypeError(f"@shared decorates classes, not {type(cls).__name__}")
    if issubclass(cls, Proxy):
        raise TypeError(f"{cls.__qualname__} is already a shared proxy")
    qualname = cls.__qualname__
    ns: dict[str, Any] = {
        "__doc__": cls.__doc__,
        "__module__": cls.__module__,
        "__qualname__": qualname,
        "_impl": cls,
        "_user_class": cls,
        "_type_name": f"{_module_name(cls)}.{qualname}",
        "_State": cls,
    }
    for klass in reversed(cls.__mro__[:-1]):  # base classes first, so overrides win
        for name, attr in vars(klass).items():
            if name.startswith("_"):
                continue
            if inspect.isfunction(attr):
                ns[name] = _forwarder(name, attr)
    proxy_cls = type(cls.__name__, (SharedProxy,), ns)
    cls.__qualname__ = f"{qualname}._State"
    return proxy_cls  # typed Any: no static type says "this class, plus key= and force_new="
