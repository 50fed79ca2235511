"""Certificates made at run time (trustme): a private CA, servers' and clients' certificates.

Every file is written under the test's own directory: the CA bundle, a server certificate
(valid, expired, or for another host name), a client certificate of the same CA, one of
another CA (which a server must refuse), and a password-protected client key.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import attrs
import trustme
from cryptography.hazmat.primitives import serialization

KEY_PASSWORD = "correct horse battery staple"


@attrs.frozen
class PKI:
    """A private CA and files made from it under ``base``."""

    base: Path
    ca: trustme.CA
    other_ca: trustme.CA
    ca_file: str
    client_cert: str
    client_key: str
    #: the same client key, encrypted with :data:`KEY_PASSWORD`
    encrypted_key: str
    #: a client certificate (with its key in the same file) signed by another CA
    stranger_cert: str

    def server_context(
        self,
        *,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        expired: bool = False,
        require_client_cert: bool = False,
    ) -> ssl.SSLContext:
        """A server context with a certificate of this CA for ``hosts``."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if expired:
            now = datetime.datetime.now(datetime.UTC)
            cert = self.ca.issue_cert(
                *hosts,
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            )
        else:
            cert = self.ca.issue_cert(*hosts)
        cert.configure_cert(ctx)
        if require_client_cert:
            self.ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def write_server_files(self, name: str, *hosts: str) -> tuple[Path, Path]:
        """A server certificate chain and key as files (for a broker), readable by anyone."""
        cert = self.ca.issue_cert(*hosts)
        chain, key = self.base / f"{name}.crt", self.base / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(chain)
        cert.private_key_pem.write_to_path(key)
        for path in (chain, key):
            path.chmod(0o644)
        return chain, key


def make_pki(base: Path) -> PKI:
    """A fresh CA and client certificates written under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    ca, other_ca = trustme.CA(), trustme.CA()
    ca_file = base / "ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    client = ca.issue_cert("api@svclink.test", common_name="api")
    client_cert, client_key = base / "client.crt", base / "client.key"
    client.cert_chain_pems[0].write_to_path(client_cert)
    client.private_key_pem.write_to_path(client_key)
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    encrypted = base / "client-encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    stranger = other_ca.issue_cert("api@svclink.test", common_name="api")
    stranger_file = base / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(stranger_file)
    for path in base.iterdir():
        path.chmod(0o644)
    return PKI(
        base=base,
        ca=ca,
        other_ca=other_ca,
        ca_file=str(ca_file),
        client_cert=str(client_cert),
        client_key=str(client_key),
        encrypted_key=str(encrypted),
        stranger_cert=str(stranger_file),
    )
