"""One exception tree for the whole of crucial.

::

    CrucialError
     ├── ConfigError                    bad configuration key or value
     ├── ProtocolError                  a frame that breaks the wire protocol
     │    └── FrameTooLargeError
     ├── AuthenticationError            wrong or missing token
     │    └── TLSError                  a certificate not trusted, or TLS on one side only
     ├── ConnectError (ConnectionError) a node that cannot be reached
     │    └── CallInterruptedError      the connection dropped mid-call: it may have been applied
     ├── CallTimeoutError (TimeoutError)
     ├── SerializationError             arguments or results that do not pickle
     ├── ObjectError                    errors about one shared object (has .key)
     │    ├── ObjectNotFoundError       attach/call on an object that is absent
     │    │    └── ObjectLostError      it lived only on a node that crashed
     │    ├── UnknownTypeError          type not known to the node
     │    ├── UnknownMethodError (AttributeError)
     │    └── ObjectCreationError       the constructor raised or args are wrong
     ├── CallCancelledError             the caller of a blocked call went away
     ├── UnavailableError               no node may serve the object now (view changing)
     ├── CoordinatorError (ConnectionError)  the consensus service (etcd) failed or is unreachable
     ├── StorageError (OSError)         a node's data dir cannot be used (has .path)
     │    ├── DataDirLockedError        another node process holds it
     │    └── CorruptDataError          a file in it is corrupt or truncated
     ├── InvocationError                a cloud function failed on the platform's side
     │    ├── WorkerDiedError           its worker died mid-call (killed, crashed)
     │    ├── CapacityError             the backend's concurrency cap is reached
     │    └── InvocationTimeoutError (TimeoutError)
     ├── WouldBlockError                the sequential model cannot wait
     ├── RemoteError                    an exception that could not travel as itself
     └── BrokenBarrierError (threading.BrokenBarrierError)

Exceptions raised by user code inside a shared object travel back as their
original type; the node's traceback is chained as ``__cause__`` (a
:class:`RemoteTraceback`), like :mod:`concurrent.futures.process` does.
"""

from __future__ import annotations

import threading

__all__ = [
    "AuthenticationError",
    "BrokenBarrierError",
    "CallCancelledError",
    "CallInterruptedError",
    "CallTimeoutError",
    "ConfigError",
    "ConnectError",
    "CoordinatorError",
    "CorruptDataError",
    "CrucialError",
    "DataDirLockedError",
    "FrameTooLargeError",
    "CapacityError",
    "InvocationError",
    "InvocationTimeoutError",
    "WorkerDiedError",
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
    "WouldBlockError",
]


class CrucialError(Exception):
    """Root of every error that crucial raises itself."""


class ConfigError(CrucialError, ValueError):
    """A configuration key or value is wrong; the message names it."""


class ProtocolError(CrucialError):
    """A frame broke the wire protocol (bad length, kind, version or body)."""


class FrameTooLargeError(ProtocolError):
    """A frame is larger than the configured ``max_frame_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds max_frame_size={limit}")
        self.size = size
        self.limit = limit


class AuthenticationError(CrucialError):
    """The node refused the client's token (or the client sent none)."""


class TLSError(AuthenticationError):
    """The TLS handshake failed: the node's certificate is not trusted (``tls_ca``),
    or one side speaks TLS and the other does not.  Never retried: it is configuration.
    (A node that demands a client certificate and got none just closes the
    connection; the client's :class:`ConnectError` then says so.)"""

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class ConnectError(CrucialError, ConnectionError):
    """A node could not be reached, or the connection to it was lost."""

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class CallInterruptedError(ConnectError):
    """The connection to a node dropped after a call was sent and before its reply came.

    The call may or may not have been applied (``may_have_been_applied`` is
    always ``True``: nobody can know).  Resending it with the same call id is
    safe -- a node that applied it answers from its de-duplication window --
    which is what the client does ``retries`` times before raising this.
    """

    may_have_been_applied = True

    def __init__(self, message: str, address: str | None = None, key: str | None = None) -> None:
        super().__init__(message, address)
        self.key = key

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.address, self.key))


class CallTimeoutError(CrucialError, TimeoutError):
    """A call did not complete within its deadline."""


class SerializationError(CrucialError, TypeError):
    """Arguments, a result or an exception could not be pickled."""


class ObjectError(CrucialError):
    """An error about one shared object; ``type_name`` and ``key`` name it."""

    def __init__(self, message: str, type_name: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.key = key

    def __reduce__(self):  # keep the context when the error crosses the wire
        return (type(self), (self.args[0] if self.args else "", self.type_name, self.key))


class ObjectNotFoundError(ObjectError, LookupError):
    """The object does not exist (never created, or deleted) and cannot be created."""


class ObjectLostError(ObjectNotFoundError):
    """The object lived only on a node that crashed (an ephemeral object, or a
    persistent one whose every replica failed); ``node`` names that node."""

    def __init__(self, message: str, type_name: str | None = None, key: str | None = None, node: str | None = None) -> None:
        super().__init__(message, type_name, key)
        self.node = node

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.type_name, self.key, self.node))


class UnknownTypeError(ObjectError):
    """The node knows no shared type of this name."""


class UnknownMethodError(ObjectError, AttributeError):
    """The shared type has no public method of this name."""


class ObjectCreationError(ObjectError):
    """Creating the object failed: its constructor raised or its arguments are wrong."""


class CallCancelledError(CrucialError):
    """A blocked call was cancelled because its caller disconnected."""


class UnavailableError(CrucialError):
    """No node may serve the object now: its replicas are changing view, or too
    few of them are alive; raised once the call's deadline has passed."""


class CoordinatorError(CrucialError, ConnectionError):
    """The consensus service that agrees on views (etcd) failed or cannot be reached."""


class StorageError(CrucialError, OSError):
    """A node's data directory cannot be used; ``path`` names the file or directory."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.path))


class DataDirLockedError(StorageError):
    """Another node process holds the data directory (two nodes on one directory)."""


class CorruptDataError(StorageError):
    """A file in the data directory is corrupt or truncated; it is reported, never dropped."""


class InvocationError(CrucialError):
    """A cloud function did not run to its end for a reason of the platform's,
    not of its code (the code's own exceptions come back as themselves)."""


class WorkerDiedError(InvocationError):
    """The worker running a cloud function died (killed, crashed, ``os._exit``)."""


class CapacityError(InvocationError):
    """The backend runs as many functions as its cap allows; raise the cap or wait."""


class InvocationTimeoutError(InvocationError, TimeoutError):
    """A cloud function ran past its timeout and was stopped."""


class WouldBlockError(CrucialError):
    """A reference object was asked to wait outside a node (sequential model)."""


class RemoteError(CrucialError):
    """An exception raised on a node that could not be sent back as itself."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message

    def __reduce__(self):
        return (type(self), (self.type_name, self.message))


class RemoteTraceback(Exception):
    """Carries the node-side traceback text; set as ``__cause__`` of remote errors."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class BrokenBarrierError(CrucialError, threading.BrokenBarrierError):
    """The shared barrier is broken (aborted, reset, timed out or a party vanished)."""
