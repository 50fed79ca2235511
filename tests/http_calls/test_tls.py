"""HTTPS to a local TLS server with certificates made at run time: trust, failures, mutual TLS."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import svclink

from ..conftest import Side, use_server
from ..server import Reply, TestServer
from ..tls_support import KEY_PASSWORD, PKI, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return make_pki(tmp_path / "pki")


def _tls_server(pki: PKI, **options: Any) -> Iterator[TestServer]:
    server = TestServer(tls=pki.server_context(**options)).start()
    server.route("GET", "/hello", Reply(200, {"hello": "tls"}))
    yield server
    server.stop()


@pytest.fixture
def https(pki: PKI) -> Iterator[TestServer]:
    yield from _tls_server(pki)


@pytest.fixture
def mtls(pki: PKI) -> Iterator[TestServer]:
    yield from _tls_server(pki, require_client_cert=True)


def _refused(side: Side, server: TestServer, failure: svclink.TLSFailure, **settings: Any) -> None:
    """A call fails at once with ``ServiceTLSError(failure)``: one handshake, no retry, nothing served."""
    use_server(server, retry=svclink.RetryPolicy(total=3), **settings)
    with pytest.raises(svclink.ServiceTLSError) as info:
        side.call("user", "GET", "/hello")
    err = info.value
    assert err.failure is failure
    assert isinstance(err, svclink.ServiceUnavailable) and isinstance(err, svclink.TLSError)
    assert (err.service, err.method, err.endpoint, err.status_code) == ("user", "GET", "/hello", None)
    assert "TLS" in str(err) and "not retried" in str(err)
    assert server.handshakes == 1
    assert server.requests == []


def test_a_service_signed_by_the_configured_ca_is_called_over_one_reused_connection(
    side: Side, https: TestServer, pki: PKI
) -> None:
    use_server(https, tls_ca_file=pki.ca_file)
    assert https.url.startswith("https://")
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}
    assert https.handshakes == 1
    assert len({r.peer for r in https.requests}) == 1


def test_a_directory_of_ca_certificates_is_a_trust_store_too(
    side: Side, https: TestServer, pki: PKI, tmp_path: Path
) -> None:
    store = tmp_path / "cas"
    store.mkdir()
    # OpenSSL finds a CA in a directory by its subject hash: <hash>.0
    (store / f"{_subject_hash(pki.ca_file)}.0").write_text(Path(pki.ca_file).read_text())
    use_server(https, tls_ca_file=str(store))
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}


def _subject_hash(pem_file: str) -> str:
    import subprocess

    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", pem_file],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_without_the_ca_the_call_fails_as_untrusted_and_is_not_retried(side: Side, https: TestServer) -> None:
    _refused(side, https, svclink.TLSFailure.UNTRUSTED)


def test_an_expired_server_certificate_is_named_as_such(side: Side, pki: PKI) -> None:
    for server in _tls_server(pki, expired=True):
        _refused(side, server, svclink.TLSFailure.EXPIRED, tls_ca_file=pki.ca_file)


def test_a_certificate_for_another_host_name_is_a_mismatch_unless_that_name_is_configured(
    side: Side, pki: PKI
) -> None:
    for server in _tls_server(pki, hosts=("user.internal",)):
        _refused(side, server, svclink.TLSFailure.HOSTNAME, tls_ca_file=pki.ca_file)
        side.close_pools()
        use_server(
            server,
            tls_ca_file=pki.ca_file,
            service_tls={"user": {"server_hostname": "user.internal"}},
        )
        assert side.call("user", "GET", "/hello") == {"hello": "tls"}


def test_the_hostname_mismatch_message_names_the_name_checked(side: Side, pki: PKI) -> None:
    for server in _tls_server(pki, hosts=("user.internal",)):
        use_server(
            server, tls_ca_file=pki.ca_file, service_tls={"user": {"server_hostname": "billing.internal"}}
        )
        with pytest.raises(svclink.ServiceTLSError, match=r"not valid for 'billing\.internal'"):
            side.call("user", "GET", "/hello")


def test_mutual_tls_presents_the_client_certificate(side: Side, mtls: TestServer, pki: PKI) -> None:
    use_server(mtls, tls_ca_file=pki.ca_file, tls_client_cert=pki.client_cert, tls_client_key=pki.client_key)
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}
    subject = dict(item[0] for item in mtls.client_certs[0]["subject"])
    assert subject["commonName"] == "api"


def test_an_encrypted_client_key_is_opened_with_its_password(side: Side, mtls: TestServer, pki: PKI) -> None:
    use_server(
        mtls,
        tls_ca_file=pki.ca_file,
        tls_client_cert=pki.client_cert,
        tls_client_key=pki.encrypted_key,
        tls_key_password=KEY_PASSWORD,
    )
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}


def test_a_server_requiring_a_client_certificate_refuses_a_call_without_one(
    side: Side, mtls: TestServer, pki: PKI
) -> None:
    _refused(side, mtls, svclink.TLSFailure.CLIENT_CERT_MISSING, tls_ca_file=pki.ca_file)


def test_a_client_certificate_of_another_ca_is_refused(side: Side, mtls: TestServer, pki: PKI) -> None:
    _refused(
        side,
        mtls,
        svclink.TLSFailure.CLIENT_CERT_REFUSED,
        tls_ca_file=pki.ca_file,
        tls_client_cert=pki.stranger_cert,
    )


def test_tls_refusals_do_not_open_the_circuit_breaker(side: Side, https: TestServer, pki: PKI) -> None:
    use_server(
        https, circuit_breaker=svclink.BreakerPolicy(failure_threshold=1), retry=svclink.RetryPolicy(total=0)
    )
    for _ in range(3):
        with pytest.raises(svclink.ServiceTLSError):
            side.call("user", "GET", "/hello")
    assert https.handshakes == 3  # every call tried: none was refused as CircuitOpen


def test_per_service_settings_override_the_global_ones(side: Side, https: TestServer, pki: PKI) -> None:
    elsewhere = make_pki(pki.base.parent / "elsewhere")
    use_server(https, tls_ca_file=elsewhere.ca_file, service_tls={"user": {"ca_file": pki.ca_file}})
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}


def test_tls_verify_false_connects_to_anyone_and_says_so_loudly(
    side: Side, https: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="svclink.tls"):
        use_server(https, tls_verify=False)
    assert any("does NOT check the certificates" in r.getMessage() for r in caplog.records)
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}


def test_a_missing_ca_file_fails_at_configure_time_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.configure(tls_ca_file=str(tmp_path / "nowhere.pem"))
    assert info.value.field == "tls_ca_file"
    assert svclink.get_settings().tls_ca_file is None  # nothing half-installed


def test_a_wrong_key_password_fails_at_configure_time_without_echoing_it(pki: PKI) -> None:
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.configure(
            tls_client_cert=pki.client_cert,
            tls_client_key=pki.encrypted_key,
            tls_key_password="not the password",
        )
    assert "tls_client_key" in str(info.value)
    assert "not the password" not in str(info.value)
    key_text = Path(pki.client_key).read_text()
    assert key_text.splitlines()[1] not in str(info.value)


def test_an_encrypted_key_without_a_password_says_which_setting_is_missing(pki: PKI) -> None:
    with pytest.raises(svclink.ConfigurationError, match="tls_key_password"):
        svclink.configure(tls_client_cert=pki.client_cert, tls_client_key=pki.encrypted_key)


def test_one_context_per_configuration_is_built_once_and_shared_by_every_transport(
    https: TestServer, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import ssl

    import svclink.aio
    import svclink.sync

    loads: list[str] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append("ca")
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    names = ["sync-requests", "sync-urllib3", "aio-httpx", "aio-aiohttp"]
    svclink.configure(
        service_connections=names,
        service_hosts={name: https.url for name in names},
        sync_transports={"sync-requests": "requests", "sync-urllib3": "urllib3"},
        aio_transports={"aio-httpx": "httpx", "aio-aiohttp": "aiohttp"},
        tls_ca_file=pki.ca_file,
    )
    for name in names[:2]:
        for _ in range(3):
            assert svclink.sync.get_service(name).http_dispatch("GET", "/hello") == {"hello": "tls"}

    async def calls() -> None:
        for name in names[2:]:
            service = await svclink.aio.get_service(name)
            for _ in range(3):
                assert await service.http_dispatch("GET", "/hello") == {"hello": "tls"}
            await service.aclose()

    asyncio.run(calls())
    svclink.sync.close()
    assert loads == ["ca"]  # the CA file was read once, for twelve calls over four transports
    assert https.handshakes == 4  # one connection per transport, reused


def test_configuring_again_reads_a_certificate_renewed_in_place(
    side: Side, https: TestServer, pki: PKI
) -> None:
    bundle = pki.base / "renewed-ca.pem"
    bundle.write_bytes(pki.other_ca.cert_pem.bytes())  # a CA that did not sign the server
    use_server(https, tls_ca_file=str(bundle), retry=svclink.RetryPolicy(total=0))
    with pytest.raises(svclink.ServiceTLSError):
        side.call("user", "GET", "/hello")
    bundle.write_bytes(Path(pki.ca_file).read_bytes())  # the secret's file replaced, same path
    use_server(https, tls_ca_file=str(bundle))
    assert side.call("user", "GET", "/hello") == {"hello": "tls"}


def test_a_server_that_speaks_nothing_newer_than_tls_1_1_is_refused(side: Side, pki: PKI) -> None:
    import ssl

    server_context = pki.server_context()
    server_context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    server_context.maximum_version = ssl.TLSVersion.TLSv1_1
    server_context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL offer TLS 1.1 at all
    server = TestServer(tls=server_context).start()
    try:
        _refused(side, server, svclink.TLSFailure.HANDSHAKE, tls_ca_file=pki.ca_file)
    finally:
        server.stop()
