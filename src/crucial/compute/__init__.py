"""Cloud threads and the serverless executor, on pluggable compute backends."""

from ._backend import BACKENDS, Backend, get_backend
from ._invoke import Retry
from .executor import ServerlessExecutor
from .thread import CloudThread

__all__ = ["BACKENDS", "Backend", "CloudThread", "Retry", "ServerlessExecutor", "get_backend"]
