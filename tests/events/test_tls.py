"""amqps:// to a private RabbitMQ node with a TLS listener: the CA, EXTERNAL login with a
client certificate, and clear failures, on both sides.

The node's certificate is for ``localhost`` only, so ``127.0.0.1`` is a name it does not
carry; it asks clients for a certificate (verify_peer) without requiring one, and logs
in a client by its certificate's common name (EXTERNAL).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import svclink

from ..events_support import WAIT, EventEnv, RabbitView, Recorder
from ..rabbit_node import RabbitNode, free_port, private_node
from ..tls_support import PKI, make_pki


@attrs.frozen
class TLSNode:
    node: RabbitNode
    pki: PKI
    tls_port: int

    def url(self, host: str = "localhost", credentials: str = "guest:guest@") -> str:
        return f"amqps://{credentials}{host}:{self.tls_port}/"

    def named(self, host: str = "localhost") -> str:
        """The node as an error names it: its address without credentials, the vhost encoded."""
        return f"amqps://{host}:{self.tls_port}/%2F"

    def connections(self, name: str) -> list[dict[str, str]]:
        """The node's connections named ``name``: the user, auth mechanism and whether over TLS."""
        columns = ["user", "auth_mechanism", "ssl", "client_properties"]
        out = self.node.ctl("list_connections", "--no-table-headers", "--silent", *columns).stdout
        rows = [dict(zip(columns, line.split("\t"), strict=False)) for line in out.splitlines() if line]
        return [row for row in rows if f'"{name}"' in row.get("client_properties", "")]


def _tls_node(base: Path, *extra_config: str) -> Iterator[TLSNode]:
    pki = make_pki(base / "pki")
    chain, key = pki.write_server_files("rabbit", "localhost")
    files = {
        "ca.pem": Path(pki.ca_file).read_bytes(),
        "server.crt": chain.read_bytes(),
        "server.key": key.read_bytes(),
    }
    tls_port = free_port()
    config = [
        f"listeners.ssl.default = {tls_port}",
        "ssl_options.cacertfile = {base}/ca.pem",
        "ssl_options.certfile = {base}/server.crt",
        "ssl_options.keyfile = {base}/server.key",
        "ssl_options.verify = verify_peer",
        "auth_mechanisms.1 = PLAIN",
        "auth_mechanisms.2 = AMQPLAIN",
        "auth_mechanisms.3 = EXTERNAL",
        "ssl_cert_login_from = common_name",
        *extra_config,
    ]
    with private_node(config=config, plugins=["rabbitmq_auth_mechanism_ssl"], files=files) as node:
        # the user a client certificate with common name "api" logs in as; its password is never used
        assert node.ctl("add_user", "api", "unused-password-0123456789").returncode == 0
        assert node.ctl("set_permissions", "-p", "/", "api", ".*", ".*", ".*").returncode == 0
        yield TLSNode(node, pki, tls_port)


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSNode]:
    """Asks for a client certificate without requiring one; TLS 1.2 and 1.3."""
    yield from _tls_node(tmp_path_factory.mktemp("amqps"), "ssl_options.fail_if_no_peer_cert = false")


@pytest.fixture(scope="module")
def strict_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSNode]:
    """Requires a client certificate, and speaks TLS 1.2: under TLS 1.3 a server refuses a
    client's certificate after the client's side of the handshake is over, and a broker that
    then closes at once leaves the client a reset to read, not the refusal (see the docs)."""
    yield from _tls_node(
        tmp_path_factory.mktemp("amqps-strict"),
        "ssl_options.fail_if_no_peer_cert = true",
        "ssl_options.versions.1 = tlsv1.2",
    )


def _env(side: str, node: TLSNode) -> Iterator[EventEnv]:
    e = EventEnv(side, RabbitView(node.node.url))  # the test's own view: the plain port
    yield e
    e.close()


@pytest.fixture(params=["sync", "aio"])
def env(request: pytest.FixtureRequest, tls_node: TLSNode) -> Iterator[EventEnv]:
    yield from _env(request.param, tls_node)


@pytest.fixture(params=["sync", "aio"])
def strict_env(request: pytest.FixtureRequest, strict_node: TLSNode) -> Iterator[EventEnv]:
    yield from _env(request.param, strict_node)


def _configure(env: EventEnv, **settings: Any) -> None:
    """Configure the scenario and make its publisher anew (the first one keeps the first settings)."""
    env.configure(**settings)
    env.pub = env.publisher()


def _configure_client_cert(env: EventEnv, node: TLSNode, cert: str | None = None) -> None:
    """Configure a login by client certificate (a URL without a password, so EXTERNAL):
    ``cert`` (key included), else the PKI's client certificate and its key."""
    pki = node.pki
    key = {} if cert else {"tls_client_key": pki.client_key}
    _configure(
        env,
        amqp_url=node.url(credentials=""),
        tls_ca_file=pki.ca_file,
        tls_client_cert=cert or pki.client_cert,
        **key,
    )


def _round_trip(env: EventEnv) -> None:
    """A consumer receives what the publisher sends, both over the configured connection."""
    rec = Recorder()
    env.consume(env.queue(), {"user.updated": rec}, bindings=["user.*"])
    env.publish("user.updated", {"over": "tls"})
    assert rec.wait(1)[0].data == {"over": "tls"}


def _ours(env: EventEnv, tls_node: TLSNode) -> list[dict[str, str]]:
    return tls_node.connections(env.connection_name)


def test_publish_and_consume_over_amqps_with_the_ca(env: EventEnv, tls_node: TLSNode) -> None:
    _configure(env, amqp_url=tls_node.url(), tls_ca_file=tls_node.pki.ca_file)
    _round_trip(env)
    ours = _ours(env, tls_node)
    assert ours and all(c["ssl"] == "true" and c["user"] == "guest" for c in ours)


def test_a_client_certificate_logs_in_with_external_when_the_url_has_no_password(
    env: EventEnv, tls_node: TLSNode
) -> None:
    _configure_client_cert(env, tls_node)
    _round_trip(env)
    ours = _ours(env, tls_node)
    assert ours and all(
        (c["user"], c["auth_mechanism"], c["ssl"]) == ("api", "EXTERNAL", "true") for c in ours
    )


def _refused(env: EventEnv, failure: svclink.TLSFailure, node_url: str) -> None:
    """The publish and the consumer's run() both raise BrokerTLSError at once, naming the node."""
    with pytest.raises(svclink.BrokerTLSError) as raised:
        env.publish("user.updated", {})
    assert raised.value.failure is failure
    assert isinstance(raised.value, svclink.BrokerUnavailable) and isinstance(raised.value, svclink.TLSError)
    assert f"broker node {node_url}" in str(raised.value) and "guest" not in str(raised.value)
    running = env.start(env.consumer(env.queue(), {"user.updated": Recorder()}))
    assert running.returned.wait(WAIT), "run() kept retrying a TLS refusal"
    assert isinstance(running.error, svclink.BrokerTLSError) and running.error.failure is failure


def test_a_client_certificate_the_broker_does_not_trust_is_refused(
    strict_env: EventEnv, strict_node: TLSNode
) -> None:
    _configure_client_cert(strict_env, strict_node, strict_node.pki.stranger_cert)
    _refused(strict_env, svclink.TLSFailure.CLIENT_CERT_REFUSED, strict_node.named())


def test_a_broker_requiring_a_client_certificate_refuses_a_client_without_one(
    strict_env: EventEnv, strict_node: TLSNode
) -> None:
    _configure(strict_env, amqp_url=strict_node.url(), tls_ca_file=strict_node.pki.ca_file)
    _refused(strict_env, svclink.TLSFailure.CLIENT_CERT_MISSING, strict_node.named())


def test_the_strict_broker_takes_the_right_client_certificate(
    strict_env: EventEnv, strict_node: TLSNode
) -> None:
    _configure_client_cert(strict_env, strict_node)
    _round_trip(strict_env)


def test_without_the_ca_the_broker_is_untrusted(env: EventEnv, tls_node: TLSNode) -> None:
    _configure(env, amqp_url=tls_node.url())
    _refused(env, svclink.TLSFailure.UNTRUSTED, tls_node.named())


def test_every_node_is_checked_for_its_own_name(env: EventEnv, tls_node: TLSNode) -> None:
    ca = tls_node.pki.ca_file
    _configure(env, amqp_url=[tls_node.url("127.0.0.1")], tls_ca_file=ca)
    _refused(env, svclink.TLSFailure.HOSTNAME, tls_node.named("127.0.0.1"))
    # the node by IP fails its check, the next node (by name) takes the connection
    _configure(env, amqp_url=[tls_node.url("127.0.0.1"), tls_node.url("localhost")], tls_ca_file=ca)
    _round_trip(env)
    # tls_server_hostname names what the certificate must carry when connecting by IP
    _configure(env, amqp_url=[tls_node.url("127.0.0.1")], tls_ca_file=ca, tls_server_hostname="localhost")
    env.publish("user.updated", {"by": "ip"})


def test_svclink_check_uses_the_tls_settings_and_names_a_refusal(tls_node: TLSNode) -> None:
    from ..cli.test_cli import svclink_cli

    env = {"SVCLINK_AMQP_URL": tls_node.url(credentials=""), "SVCLINK_TLS_CA_FILE": tls_node.pki.ca_file}
    env |= {
        "SVCLINK_TLS_CLIENT_CERT": tls_node.pki.client_cert,
        "SVCLINK_TLS_CLIENT_KEY": tls_node.pki.client_key,
    }
    result = svclink_cli("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"broker: ok (amqps://localhost:{tls_node.tls_port}/)" in result.stdout
    result = svclink_cli("check", env={"SVCLINK_AMQP_URL": tls_node.url()})
    assert result.returncode == 1
    assert "TLS: the server's certificate is not signed by a trusted CA" in result.stdout
