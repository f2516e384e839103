"""TLS contexts for both sides of the DSO protocol (stdlib :mod:`ssl` only).

::

    client (Config.tls_ca / tls_cert / tls_key) ──TLS──► node (--tls-cert / --tls-key [--tls-ca])
    node, as a client of its peers (its own cert as client cert) ──TLS──► peer node

A node with ``--tls-ca`` demands a client certificate signed by that CA
(mutual TLS): from clients, and from its peers, which present their own node
certificate.  A client verifies the node's certificate against ``tls_ca``,
or the system's trust store when only ``tls`` is set, and checks that it
names the host it dialled (an IP address or a DNS name in the certificate's
subjectAltName).

Contexts are built once per set of files and rebuilt when a file changes
(cert-manager and friends rotate certificates in place): the cache key
holds the files' modification times.  A file that is missing or not PEM is
a :class:`~crucial.exceptions.ConfigError` naming it.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
from typing import Any

from .exceptions import ConfigError, ConnectError, TLSError

__all__ = ["client_context", "describe_tls_failure", "handshake_hint", "server_context", "wrap_tls"]

#: seconds a node gives a client to finish the TLS handshake
HANDSHAKE_TIMEOUT = 10.0


def _stamp(path: str | None, what: str) -> tuple[str, int] | None:
    if path is None:
        return None
    try:
        return path, os.stat(path).st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"{what} names {path!r}, which cannot be read: {exc.strerror or exc}") from None


def client_context(config: Any) -> ssl.SSLContext | None:
    """The context a client of ``config`` wraps its connections in; None when it does not use TLS."""
    ca, cert, key = config.tls_ca, config.tls_cert, config.tls_key
    if not (config.tls or ca or cert):
        return None
    if key and not cert:
        raise ConfigError("tls_key is set without tls_cert: a client certificate needs both (or one PEM file with both)")
    return _client(_stamp(ca, "tls_ca"), _stamp(cert, "tls_cert"), _stamp(key, "tls_key"))


@functools.lru_cache(maxsize=16)
def _client(ca: tuple[str, int] | None, cert: tuple[str, int] | None, key: tuple[str, int] | None) -> ssl.SSLContext:
    # with tls_ca only that CA is trusted (a private CA); without it, the system's store
    ctx: ssl.SSLContext = _load(ssl.create_default_context, "tls_ca", cafile=ca[0] if ca else None)
    if cert is not None:
        _load(ctx.load_cert_chain, "tls_cert/tls_key", cert[0], key[0] if key else None)
    return ctx


def server_context(cert: str, key: str | None, ca: str | None) -> ssl.SSLContext:
    """A node's context: its certificate; with ``ca``, client certificates signed by it are required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # no TLS 1.3 session tickets: clients keep their connections and never resume a session, and a ticket is
    # the one post-handshake message a thread client would read while another thread writes the shared
    # connection (client/_sync.py: one reader, writers at the same time on one SSL object)
    ctx.num_tickets = 0
    _stamp(cert, "--tls-cert")
    _stamp(key, "--tls-key")
    _load(ctx.load_cert_chain, "--tls-cert/--tls-key", cert, key)
    if ca is not None:
        _stamp(ca, "--tls-ca")
        _load(ctx.load_verify_locations, "--tls-ca", ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load(method: Any, what: str, *files: str | None, **named_files: str | None) -> Any:
    try:
        return method(*files, **named_files)
    except (ssl.SSLError, OSError, ValueError) as exc:
        named = ", ".join(f for f in (*files, *named_files.values()) if f)
        raise ConfigError(f"{what}: cannot load {named}: {exc}") from None


def describe_tls_failure(exc: BaseException, address: str) -> str:
    """What a failed handshake means, in words a user can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the certificate of DSO node {address} is not trusted ({exc.verify_message}): "
            "check tls_ca (CRUCIAL_TLS_CA), and that the certificate names the host dialled"
        )
    reason = getattr(exc, "reason", None) or str(exc)
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNEXPECTED_EOF_WHILE_READING", "PACKET_LENGTH_TOO_LONG"):
        return f"TLS handshake with DSO node {address} failed ({reason}): the node does not seem to speak TLS"
    return f"TLS handshake with DSO node {address} failed: {exc}"


def wrap_tls(ctx: ssl.SSLContext, sock: socket.socket, host: str, address: str) -> ssl.SSLSocket:
    """A blocking socket's TLS handshake (within the socket's timeout); failures as crucial's errors."""
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise TLSError(describe_tls_failure(exc, address), address) from exc
    except ssl.SSLError as exc:
        sock.close()
        raise TLSError(describe_tls_failure(exc, address), address) from exc
    except TimeoutError as exc:
        sock.close()
        raise ConnectError(f"DSO node {address} did not complete the TLS handshake in time", address) from exc
    except OSError as exc:
        sock.close()
        raise ConnectError(f"TLS handshake with DSO node {address} failed: {exc}", address) from exc


def handshake_hint(ctx: ssl.SSLContext | None) -> str:
    """Why a node may close a connection during the handshake without a word."""
    if ctx is None:
        return "(does the node require TLS? then set tls_ca or tls, e.g. CRUCIAL_TLS_CA)"
    return "(does the node require a client certificate? then set tls_cert and tls_key)"
