"""Configuration: one frozen dataclass, read in a fixed order of precedence.

    defaults  <  config file  <  CRUCIAL_* environment  <  keyword arguments

The file is TOML: ``$CRUCIAL_CONFIG`` if set, else
``~/.config/crucial/config.toml`` if it exists; keys are the field names
below (in a ``[crucial]`` table or at top level).  A key that is not a field
is a :class:`~crucial.exceptions.ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .exceptions import ConfigError
from .protocol import DEFAULT_MAX_FRAME_SIZE

__all__ = ["Config", "load_config"]


@dataclass(frozen=True)
class Config:
    #: node addresses ("host:port", comma-separated in the environment); empty
    #: means "start an embedded node on first use".
    dso: tuple[str, ...] = ()
    #: shared secret a node demands; required when a node listens off loopback.
    token: str | None = None
    #: seconds to wait for a TCP connection and handshake before ConnectError.
    connect_timeout: float = 5.0
    #: seconds a call may take before CallTimeoutError; None waits forever
    #: (blocking objects -- barriers, locks -- wait as long as they must).
    call_timeout: float | None = None
    #: largest frame either side accepts, in bytes.
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: idle connections per node the thread client keeps beyond each thread's own one.
    pool_size: int = 16
    #: times a call is retried after its connection was lost when no other node
    #: answers either (safe: call ids).
    retries: int = 2
    #: seconds a call waits for the cluster to replace a node that stopped
    #: answering (its lease runs out, a new view follows) before it raises
    #: UnavailableError or, if it had been sent, CallInterruptedError.
    failover_timeout: float = 30.0
    #: compute backend for cloud threads and executors: local, inline, lithops, dask, ray.
    backend: str = "local"
    #: the Dask scheduler the ``dask`` backend submits to ("tcp://host:8786").
    dask_scheduler: str | None = None
    #: the Ray cluster the ``ray`` backend joins ("host:6379", "ray://host:10001", "auto").
    ray_address: str | None = None
    #: calls remembered per node to answer a retried call once.
    dedup_window: int = 100_000
    #: microseconds a caller alone on its connection polls the socket for the reply
    #: before it sleeps (a wake-up costs tens of µs on a VM); 0 never polls.
    spin_us: int = 50
    #: connect to nodes over TLS (implied by tls_ca or tls_cert); without tls_ca the
    #: system's trust store verifies the nodes' certificates.
    tls: bool = False
    #: PEM file of the CA that signed the nodes' certificates (only it is trusted).
    tls_ca: str | None = None
    #: PEM file of this client's certificate, for nodes that demand one (mutual TLS).
    tls_cert: str | None = None
    #: PEM file of that certificate's private key (unless tls_cert holds it too).
    tls_key: str | None = None

    def replace(self, **changes: Any) -> Config:
        return _build(dataclasses.asdict(self) | changes, "argument")


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False, "": False}


def _coerce(name: str, value: Any, origin: str) -> Any:
    try:
        if name == "dso":
            if isinstance(value, str):
                return tuple(a.strip() for a in value.split(",") if a.strip())
            return tuple(str(a) for a in value)
        if name in ("token", "dask_scheduler", "ray_address", "tls_ca", "tls_cert", "tls_key"):
            return None if value in (None, "") else str(value)
        if name == "tls":
            if isinstance(value, bool):
                return value
            flag = str(value).strip().lower()
            if flag not in _BOOLS:
                raise ValueError("must be true or false (1/0, yes/no, on/off)")
            return _BOOLS[flag]
        if name in ("call_timeout", "connect_timeout", "failover_timeout"):
            if name == "call_timeout" and value in (None, "", "none", "None"):
                return None
            t = float(value)
            if not t > 0:  # also rejects NaN
                raise ValueError("must be a positive number of seconds")
            return t
        if name in ("max_frame_size", "pool_size", "retries", "dedup_window", "spin_us"):
            v = int(value)
            if v < 0:
                raise ValueError("must not be negative")
            return v
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value {value!r} for config key {name!r} (from {origin}): {exc}") from exc
    return value


def _build(values: dict[str, Any], origin: str) -> Config:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if k not in _FIELDS:
            raise ConfigError(f"unknown config key {k!r} (from {origin}); known keys: {', '.join(sorted(_FIELDS))}")
        out[k] = _coerce(k, v, origin)
    return Config(**out)


def load_config(**overrides: Any) -> Config:
    """Build the effective configuration (see the module docstring for the order)."""
    values: dict[str, Any] = {}
    path_s = os.environ.get("CRUCIAL_CONFIG")
    path = path_s or os.path.join(os.path.expanduser("~"), ".config", "crucial", "config.toml")
    if path_s and not os.path.isfile(path):
        raise ConfigError(f"CRUCIAL_CONFIG names {path_s!r}, which is not a file")
    if os.path.isfile(path):
        import tomllib  # only when there is a file to read

        try:
            with open(path, encoding="utf-8") as f:
                data = tomllib.loads(f.read())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        data = data.get("crucial", data)
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: 'crucial' must be a table")
        _build(data, str(path))  # validate keys with the file named
        values.update(data)
    for name in _FIELDS:
        env = os.environ.get(f"CRUCIAL_{name.upper()}")
        if env is not None:
            _coerce(name, env, f"CRUCIAL_{name.upper()}")
            values[name] = env
    _build(overrides, "argument")
    values.update(overrides)
    return _build(values, "configuration")
