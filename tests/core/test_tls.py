"""TLS settings and the classification of handshake failures: pure, no certificate read."""

from __future__ import annotations

import pytest

import svclink
from svclink.core.settings import load
from svclink.core.tls import classify, service_plan

F = svclink.TLSFailure


@pytest.mark.parametrize(
    ("verify_code", "reason", "sent", "expected"),
    [
        (20, None, False, F.UNTRUSTED),  # unable to get local issuer certificate
        (19, None, False, F.UNTRUSTED),  # self-signed certificate in chain
        (10, None, True, F.EXPIRED),
        (9, None, False, F.EXPIRED),  # not yet valid
        (62, None, False, F.HOSTNAME),
        (64, None, False, F.HOSTNAME),  # IP address mismatch
        (None, "TLSV13_ALERT_CERTIFICATE_REQUIRED", False, F.CLIENT_CERT_MISSING),
        (None, "SSLV3_ALERT_HANDSHAKE_FAILURE", False, F.CLIENT_CERT_MISSING),  # TLS 1.2 servers
        (None, "TLSV1_ALERT_UNKNOWN_CA", True, F.CLIENT_CERT_REFUSED),
        (None, "SSLV3_ALERT_BAD_CERTIFICATE", True, F.CLIENT_CERT_REFUSED),
        (None, "SSLV3_ALERT_CERTIFICATE_EXPIRED", True, F.CLIENT_CERT_REFUSED),
        (None, "WRONG_VERSION_NUMBER", False, F.HANDSHAKE),  # TLS spoken to a plain port
        (None, None, False, F.HANDSHAKE),
    ],
)
def test_handshake_failures_are_classified(
    verify_code: int | None, reason: str | None, sent: bool, expected: svclink.TLSFailure
) -> None:
    assert classify(verify_code, reason, sent) is expected


def test_a_service_entry_overrides_the_global_settings_and_a_cert_of_its_own_brings_its_own_key() -> None:
    s = svclink.Settings(
        service_connections=["user", "billing"],
        tls_ca_file="/etc/ca.pem",
        tls_client_cert="/etc/api.crt",
        tls_client_key="/etc/api.key",
        tls_key_password="secret-password",
        service_tls={
            "billing": {"client_cert": "/etc/billing-client.pem", "server_hostname": "billing.internal"}
        },
    )
    user, billing = service_plan(s, "user"), service_plan(s, "billing")
    assert (user.config.ca_file, user.config.client_key, user.server_hostname) == (
        "/etc/ca.pem",
        "/etc/api.key",
        None,
    )
    assert billing.config.ca_file == "/etc/ca.pem"
    assert (billing.config.client_cert, billing.config.client_key, billing.config.key_password) == (
        "/etc/billing-client.pem",
        None,
        None,
    )
    assert billing.server_hostname == "billing.internal"
    assert "secret-password" not in repr(s)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"tls_client_key": "/k"}, "tls_client_key"),
        ({"tls_key_password": "p"}, "tls_key_password"),
        ({"tls_verify": "maybe"}, "tls_verify"),
        ({"tls_server_hostname": "bad name"}, "tls_server_hostname"),
        ({"tls_ca_file": "/etc/ca\n.pem"}, "tls_ca_file"),
        (
            {"service_connections": ["user"], "service_tls": {"user": {"cafile": "/x"}}},
            "service_tls['user']['cafile']",
        ),
        (
            {"service_connections": ["user"], "service_tls": {"user": {"client_key": "/k"}}},
            "service_tls['user']['client_key']",
        ),
        ({"service_tls": {"user": {"ca_file": "/x"}}}, "service_tls"),
    ],
)
def test_inconsistent_tls_settings_are_refused_naming_the_field(
    values: dict[str, object], field: str
) -> None:
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.Settings(**values)  # type: ignore[arg-type]
    assert info.value.field == field


def test_tls_settings_load_from_the_environment_globally_and_per_service() -> None:
    env = {
        "SVCLINK_SERVICE_CONNECTIONS": "user,billing-api",
        "SVCLINK_TLS_CA_FILE": "/run/secrets/tls/ca.crt",
        "SVCLINK_TLS_VERIFY": "true",
        "SVCLINK_SERVICE_BILLING_API_TLS_SERVER_HOSTNAME": "billing.internal",
        "SVCLINK_SERVICE_BILLING_API_TLS_VERIFY": "yes",
    }
    s = load({}, env)
    assert s.tls_ca_file == "/run/secrets/tls/ca.crt" and s.tls_verify is True
    assert s.service_tls["billing-api"].server_hostname == "billing.internal"
    assert s.service_tls["billing-api"].verify is True
