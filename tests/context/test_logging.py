"""svclink's log records carry the request id and service, and no credential survives in them."""

from __future__ import annotations

import logging

import pytest

import svclink
from svclink.context import bind
from svclink.logs import ContextFilter, redact, redact_headers

from ..conftest import Side, use_server
from ..server import Reply, TestServer

KEY = "shared-signing-key-0123456789"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("headers={'Authorization': 'Bearer abc.def.ghi', 'Accept': 'x'}", "abc.def.ghi"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz"),
        ("Authorization: Bearer tok3n-value\nAccept: */*", "tok3n-value"),
        ("Cookie: sessionid=s3ss10n; csrftoken=abc", "s3ss10n"),
        ("set-cookie: sessionid=s3ss10n; Path=/", "s3ss10n"),
        ("connecting to amqp://guest:hunter2@rabbit:5672/vhost", "hunter2"),
        ("GET http://svc/api?user=1&token=t0k3n&x=2", "t0k3n"),
        ("GET /cb?client_secret=cs3cret", "cs3cret"),
        ("POST /x?api_key=k3y&password=p4ss", "k3y"),
        ("POST /x?api_key=k3y&password=p4ss", "p4ss"),
        ("'X-Svclink-Context': 'v1.eyJhdWQiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz'", "eyJhdWQiOiJ1c2VyIn0"),
        ("token v1.eyJhdWQiOiJ1c2VyIn0xxxx.c2lnbmF0dXJlLWJ5dGVz in text", "c2lnbmF0dXJlLWJ5dGVz"),
    ],
)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    clean = redact(text)
    assert secret not in clean
    assert "[redacted]" in clean


def test_redact_removes_configured_keys_and_keeps_the_rest() -> None:
    assert redact(f"key is {KEY}!", [KEY]) == "key is [redacted]!"
    assert redact("GET /api/v1/users/5?query=x -> 404") == "GET /api/v1/users/5?query=x -> 404"
    assert redact_headers({"Authorization": "Bearer x", "Accept": "json"}) == {
        "Authorization": "[redacted]",
        "Accept": "json",
    }


def test_svclink_records_carry_request_id_and_service(
    side: Side, server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    use_server(server)
    server.route("GET", "/flaky", Reply(503), Reply(200, {}))
    caplog.set_level(logging.INFO, logger="svclink")
    with bind(request_id="log-1"):
        side.call("user", "GET", "/flaky")
    retries = [r for r in caplog.records if r.name.startswith("svclink") and "retrying" in r.getMessage()]
    assert retries, [r.getMessage() for r in caplog.records]
    for record in retries:
        assert (record.request_id, record.svclink_service) == ("log-1", "api")  # type: ignore[attr-defined]


def test_a_secret_logged_by_svclink_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    svclink.configure(service_name="api", signing_key=KEY)
    caplog.set_level(logging.DEBUG, logger="svclink")
    logging.getLogger("svclink.anything.new").warning(
        "sent %s with %s to %s", KEY, {"Authorization": "Bearer s3cr3t"}, "amqp://u:pw0rd@h/"
    )
    (record,) = [r for r in caplog.records if r.name == "svclink.anything.new"]
    message = record.getMessage()
    assert KEY not in message and "s3cr3t" not in message and "pw0rd" not in message
    assert caplog.text.count("[redacted]") == 3
    assert record.request_id == "-"  # type: ignore[attr-defined]


def test_other_loggers_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="myapp")
    logging.getLogger("myapp").info("Authorization: Bearer mine")
    (record,) = [r for r in caplog.records if r.name == "myapp"]
    assert record.getMessage() == "Authorization: Bearer mine"
    assert not hasattr(record, "request_id")


def test_the_filter_on_an_application_handler(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("myapp.views")
    caplog.set_level(logging.INFO, logger="myapp")
    caplog.handler.addFilter(ContextFilter())
    try:
        with bind(request_id="view-9"):
            logger.info("called with Authorization: Bearer t0k")
    finally:
        caplog.handler.filters.clear()
    (record,) = [r for r in caplog.records if r.name == "myapp.views"]
    assert record.request_id == "view-9"  # type: ignore[attr-defined]
    assert "t0k" not in record.getMessage()


def test_an_error_body_echoing_a_credential_is_redacted(side: Side, server: TestServer) -> None:
    use_server(server)
    server.route("GET", "/me", Reply(400, {"detail": "bad header Authorization: Bearer l3ak3d"}))
    with pytest.raises(svclink.BadRequest) as info:
        side.call("user", "GET", "/me")
    assert "l3ak3d" not in str(info.value)


def test_settings_never_show_keys() -> None:
    settings = svclink.configure(service_name="api", signing_key=KEY, verification_keys=["o" * 20])
    assert KEY not in repr(settings) and "o" * 20 not in repr(settings)
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.configure(signing_key="short-secret")
    assert info.value.field == "signing_key" and "short-secret" not in str(info.value)
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.configure(signing_key=KEY, verification_keys="tiny")
    assert info.value.field == "verification_keys" and "tiny" not in str(info.value)


IMPORT_ONLY = """
import logging, svclink, svclink.sync, svclink.aio, svclink.testing
from svclink.context import bind
assert logging.getLogRecordFactory() is logging.LogRecord, "import svclink replaced the record factory"
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record)
for name in ("svclink.events", "urllib3.connectionpool"):
    logging.getLogger(name).addHandler(Keep())
    logging.getLogger(name).setLevel(logging.DEBUG)
with bind(request_id="req-import-only"):
    logging.getLogger("svclink.events").warning("GET /x?token=s3cr3t-one")
    logging.getLogger("urllib3.connectionpool").debug("GET /x?token=s3cr3t-two")
ours, theirs = records
assert ours.request_id == "req-import-only" and "s3cr3t-one" not in ours.getMessage()
assert not hasattr(theirs, "request_id") and "s3cr3t-two" in theirs.getMessage()
svclink.configure(service_name="api")
assert logging.getLogRecordFactory() is not logging.LogRecord
with bind(request_id="req-configured"):
    logging.getLogger("urllib3.connectionpool").debug("GET /x?token=s3cr3t-three")
last = records[-1]
assert last.request_id == "req-configured" and "s3cr3t-three" not in last.getMessage()
print("ok")
"""


def test_importing_svclink_leaves_the_log_record_factory_alone_until_configure() -> None:
    """svclink's own loggers carry the context and redact from the start; the transport
    libraries' records are treated only once ``configure()`` installs the record factory."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", IMPORT_ONLY], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
