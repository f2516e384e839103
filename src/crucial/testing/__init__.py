"""Test helpers: real local clusters (and, in later modules, fault injection
and the linearizability checker).  Never imported by runtime code."""

from ._certs import TLSFiles
from ._cluster import LocalCluster, unconfigured_env
from .faults import ChildProcess, RawConnection, kill_process, raw_connection, run_in_process
from .linearizability import History, Operation, assert_linearizable, check

__all__ = ["LocalCluster", "TLSFiles", "unconfigured_env"]
__all__ += ["ChildProcess", "RawConnection", "kill_process", "raw_connection", "run_in_process"]
__all__ += ["History", "Operation", "assert_linearizable", "check"]
