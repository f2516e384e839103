"""Who may connect to a node: its tokens and its TLS settings.

Nodes run code their clients send (docs/security.md), so a connection is
served only once its ``HELLO`` carries an accepted token -- over TLS when the
node has a certificate, with a client certificate when it has ``--tls-ca``.

Tokens come from ``--token`` and/or ``--token-file`` (one token a line; the
first is the node's own, which it presents to its peers; every line is
accepted).  The file is read again whenever it changes (modification time,
size or inode: checked at each handshake), so a token is rotated without a
restart, and without losing the ephemeral objects a restart would drop::

    1. add NEW below OLD on every node        (both accepted)
    2. move every client to NEW
    3. put NEW first on every node           (peers now present NEW)
    4. remove OLD
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._tls import client_context, server_context
from ..config import Config, load_config
from ..exceptions import ConfigError

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["NodeTLS", "Tokens", "check_tls", "node_client_config"]

log = logging.getLogger("crucial.node")


class Tokens:
    """The tokens a node accepts (``None`` for none: every client is let in)."""

    def __init__(self, token: str | None = None, path: str | None = None) -> None:
        self.path = path
        self._given = [token] if token else []
        self._stamp: tuple[int, int, int] | None = None
        self._accepted: list[bytes] = []
        self._complained = ""
        self.current: str | None = token
        self._reload(first=True)

    def _reload(self, first: bool = False) -> None:
        if self.path is None:
            self._accepted = [t.encode() for t in self._given]
            return
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)  # a file replaced by rename changes inode
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8") as f:
                lines = [line.strip() for line in f]
        except OSError as exc:
            if first:
                raise ConfigError(f"--token-file {self.path!r} cannot be read: {exc.strerror or exc}") from None
            self._complain(f"cannot read --token-file {self.path}: {exc.strerror or exc}; the tokens read before still count")
            return  # keep the tokens we have: a file being replaced must not lock everyone out
        tokens = [t for t in lines if t and not t.startswith("#")]
        if not tokens:
            if first:
                raise ConfigError(f"--token-file {self.path!r} holds no token (one a line; # starts a comment)")
            self._complain(f"--token-file {self.path} holds no token; the tokens read before still count")
            return
        self._complained = ""
        self._stamp = stamp
        self.current = tokens[0] if not self._given else self._given[0]
        self._accepted = [t.encode() for t in dict.fromkeys(self._given + tokens)]

    def _complain(self, message: str) -> None:
        if message != self._complained:  # once per problem, not once per connection
            self._complained = message
            log.warning("%s", message)

    @property
    def required(self) -> bool:
        return bool(self._accepted)

    def accepts(self, given: Any) -> bool:
        """Whether a HELLO's token lets its connection in (constant-time comparisons, every one made)."""
        self._reload()
        if not self._accepted:
            return True
        if not isinstance(given, str):
            return False
        offered = given.encode()
        ok = False
        for token in self._accepted:
            ok |= hmac.compare_digest(offered, token)
        return ok


@dataclass(frozen=True)
class NodeTLS:
    """A node's certificate and key; ``ca``: demand client certificates signed by it."""

    cert: str
    key: str | None = None
    ca: str | None = None

    def server_context(self) -> ssl.SSLContext:
        return server_context(self.cert, self.key, self.ca)

    @functools.cached_property
    def client_settings(self) -> dict[str, Any]:
        """Config fields for the node as a client of its peers (replication links, nested calls, --join).

        It presents its own certificate; it trusts ``--tls-ca``, else the
        ``tls_ca`` of its client configuration (CRUCIAL_TLS_CA, the config
        file), else the system's trust store.
        """
        ca = self.ca or load_config().tls_ca
        return {"tls": True, "tls_ca": ca, "tls_cert": self.cert, "tls_key": self.key}

    def peer_context(self) -> ssl.SSLContext:
        ctx = client_context(Config(**self.client_settings))
        assert ctx is not None
        return ctx


def node_client_config(node: Node, seeds: tuple[str, ...]) -> Config:
    """The configuration of a client that ``node`` runs itself (nested calls to other nodes)."""
    tls = node.tls.client_settings if node.tls is not None else {}
    return Config(dso=seeds, token=node.tokens.current, **tls)


async def check_tls(node: Node) -> None:
    """Refuse to start when this node's peers could not verify it (they use the same trust as it does).

    The node connects to itself as a peer would -- its peer context, the
    name it advertises -- over loopback when it is bound to a wildcard
    address.  Without this, a node whose peers cannot verify each other
    would start, and replicated calls would wait for backups that never
    connect.
    """
    import asyncio

    assert node.tls is not None
    host, _, port = node.address.rpartition(":")
    target = "127.0.0.1" if node.host in ("0.0.0.0", "") else "::1" if node.host == "::" else node.host
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target, int(port), ssl=node.tls.peer_context(), server_hostname=host.strip("[]")), 10.0
        )
    except ssl.SSLCertVerificationError as exc:
        ca = node.tls.client_settings["tls_ca"]
        trust = f"the CA in {ca}" if ca else "the system's trust store (no --tls-ca, no CRUCIAL_TLS_CA)"
        raise ConfigError(
            f"this node's certificate ({node.tls.cert}) is not trusted by {trust} for the name it advertises, {host!r}: "
            f"{exc.verify_message}; its peers could not replicate to it (give --tls-ca, or CRUCIAL_TLS_CA to the node, "
            "or a certificate that names that host)"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"this node cannot connect to itself over TLS at {target}:{port}: {exc}") from None
    writer.close()
