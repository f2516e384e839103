"""Certificates for tests: a throw-away CA and the files nodes and clients need (made with trustme)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TLSFiles"]


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS cluster: the CA, the nodes' certificate, and a client certificate.

    ``mutual``: nodes are started with ``--tls-ca`` (they demand client
    certificates) and :meth:`client_settings` includes the client's.
    """

    ca: str
    cert: str  # the nodes' certificate chain
    key: str
    client_cert: str
    client_key: str
    mutual: bool = False

    @classmethod
    def generate(cls, directory: str | os.PathLike[str], *, mutual: bool = False, hosts: tuple[str, ...] = ()) -> TLSFiles:
        """A new CA in ``directory`` and certificates signed by it (for 127.0.0.1, localhost and ``hosts``)."""
        import trustme  # a test dependency (the `test` extra)

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        node = ca.issue_cert("127.0.0.1", "localhost", *hosts)
        client = ca.issue_cert("crucial-client@example.org")
        files = {
            "ca": ca.cert_pem,
            "cert": node.cert_chain_pems[0],
            "key": node.private_key_pem,
            "client_cert": client.cert_chain_pems[0],
            "client_key": client.private_key_pem,
        }
        paths = {}
        for name, blob in files.items():
            path = d / f"{name}.pem"
            blob.write_to_path(str(path))
            if name.endswith("key"):
                path.chmod(0o600)
            paths[name] = str(path)
        return cls(mutual=mutual, **paths)

    def node_args(self) -> tuple[str, ...]:
        """``crucial server`` options for a node with these files."""
        args = ("--tls-cert", self.cert, "--tls-key", self.key)
        return (*args, "--tls-ca", self.ca) if self.mutual else args

    def client_settings(self) -> dict[str, Any]:
        """:class:`~crucial.Config` fields for a client of such nodes."""
        settings: dict[str, Any] = {"tls_ca": self.ca}
        if self.mutual:
            settings.update(tls_cert=self.client_cert, tls_key=self.client_key)
        return settings

    def env(self) -> dict[str, str]:
        """The same as ``CRUCIAL_TLS_*`` variables."""
        return {f"CRUCIAL_{name.upper()}": str(value) for name, value in self.client_settings().items()}
