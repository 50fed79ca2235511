"""Settings: one frozen, validated value from keyword arguments, the environment and defaults."""

from __future__ import annotations

import pickle
from typing import Any

import attrs
import pytest

import svclink
from svclink.core import settings as settings_module
from svclink.core.settings import Settings, load


def error(**values: Any) -> svclink.ConfigurationError:
    with pytest.raises(svclink.ConfigurationError) as info:
        settings_module.build(values)
    return info.value


def test_defaults() -> None:
    s = Settings()
    assert s.service_name is None
    assert s.service_connections == ()
    assert s.host_pattern == "http://{service}:8000"
    assert s.amqp_url == ("amqp://guest:guest@localhost:5672/",)
    assert s.propagate_error is True
    assert s.trust_env is False
    assert s.response_timeout == 10.0
    assert isinstance(s.retry, svclink.RetryPolicy)


def test_configure_installs_and_reset_forgets() -> None:
    installed = svclink.configure(service_name="api", service_connections=["user"])
    assert svclink.get_settings() is installed
    assert installed.service_connections == ("user",)
    svclink.reset()
    assert svclink.get_settings() is not installed
    assert svclink.get_settings().service_connections == ()


def test_settings_are_frozen_and_evolve_revalidates() -> None:
    s = Settings(service_connections=["user"])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.service_name = "x"  # type: ignore[misc]
    assert attrs.evolve(s, response_timeout="2.5").response_timeout == 2.5
    with pytest.raises(svclink.ConfigurationError):
        attrs.evolve(s, response_timeout=0)


def test_secrets_are_kept_out_of_repr() -> None:
    s = Settings(signing_key="hunter2-hunter2-hunter2", amqp_url="amqp://u:p4ss@broker/")
    assert "hunter2" not in repr(s)
    assert "p4ss" not in repr(s)


@pytest.mark.parametrize("name", ["User", "us er", "-user", "user-", "user\n", "", "a" * 64, "usér", 5, None])
def test_bad_service_names_are_refused_naming_the_field(name: object) -> None:
    err = error(service_connections=[name])
    assert err.field == "service_connections"
    assert isinstance(err, ValueError)


def test_service_name_is_checked() -> None:
    assert error(service_name="Not Valid").field == "service_name"
    assert Settings(service_name="my_api-2").service_name == "my_api-2"


def test_connection_lists_from_comma_separated_strings() -> None:
    s = Settings(service_connections=" user, billing ,,", required_service_connections="user")
    assert s.service_connections == ("user", "billing")
    assert s.required_service_connections == ("user",)


def test_a_service_listed_twice_is_refused() -> None:
    assert "twice" in str(error(service_connections=["user", "user"]))


def test_connections_must_be_a_list() -> None:
    assert error(service_connections=5).field == "service_connections"


def test_required_services_must_be_declared() -> None:
    err = error(service_connections=["user"], required_service_connections=["billing"])
    assert err.field == "required_service_connections"
    assert "billing" in err.problem


def test_service_hosts_must_be_declared() -> None:
    err = error(service_connections=["user"], service_hosts={"billing": "http://b:1"})
    assert err.field == "service_hosts"


def test_service_hosts_must_be_a_mapping() -> None:
    assert error(service_connections=["user"], service_hosts=["http://u"]).field == "service_hosts"


def test_service_host_trailing_slash_is_dropped() -> None:
    s = Settings(service_connections=["user"], service_hosts={"user": "https://user.internal:8443/api/"})
    assert s.service_hosts["user"] == "https://user.internal:8443/api"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user",
        "user:8000",
        "http://",
        "http://user/?q=1",
        "http://user/#frag",
        "http://user?",  # an empty query: a call's path would go after the '?'
        "http://user/#",
        "http://me:secret@user/",
        "http://user:99999",
        "http://user:port",
        "http://[::1",
        "http://user\n.evil:80",
        "http://us er:80",
        "http://user:80/\t",
        " http://user",
        5,
    ],
)
def test_bad_service_urls_are_refused_naming_the_service(url: object) -> None:
    err = error(service_connections=["user"], service_hosts={"user": url})
    assert err.field == "service_hosts['user']"
    if isinstance(url, str) and "secret" in url:
        assert "secret" not in str(err)


@pytest.mark.parametrize("pattern", ["http://service:8000", "http://{service}:{port}", "ftp://{service}", 5])
def test_bad_host_patterns_are_refused(pattern: object) -> None:
    assert error(host_pattern=pattern).field == "host_pattern"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("amqp://guest:guest@rabbit:5672/", ("amqp://guest:guest@rabbit:5672/",)),
        ("amqp://a/, amqps://b/", ("amqp://a/", "amqps://b/")),
        (["amqp://a/", "amqp://b/"], ("amqp://a/", "amqp://b/")),
        ("memory://", ("memory://",)),
    ],
)
def test_amqp_urls(value: object, expected: tuple[str, ...]) -> None:
    assert Settings(amqp_url=value).amqp_url == expected


@pytest.mark.parametrize("value", ["http://rabbit/", "", [], ["memory://", "amqp://a/"], [5], 5])
def test_bad_amqp_urls_are_refused(value: object) -> None:
    assert error(amqp_url=value).field == "amqp_url"


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("Yes", True), ("1", True), ("off", False), ("", False)]
)
def test_booleans_from_strings(value: str, expected: bool) -> None:
    assert Settings(propagate_error=value).propagate_error is expected
    assert Settings(trust_env=value).trust_env is expected


@pytest.mark.parametrize("value", ["maybe", 1, None])
def test_bad_booleans_are_refused(value: object) -> None:
    assert error(propagate_error=value).field == "propagate_error"


@pytest.mark.parametrize(("value", "expected"), [("1.5", 1.5), (2, 2.0), (0.25, 0.25)])
def test_seconds(value: object, expected: float) -> None:
    assert Settings(response_timeout=value).response_timeout == expected


@pytest.mark.parametrize("value", [0, -1, "soon", float("nan"), float("inf"), "inf", True, None])
def test_bad_seconds_are_refused(value: object) -> None:
    assert error(response_timeout=value).field == "response_timeout"
    assert error(connect_timeout=value).field == "connect_timeout"


@pytest.mark.parametrize("value", [0, -5, "many", 1.5, True])
def test_pool_size_must_be_a_positive_whole_number(value: object) -> None:
    assert error(pool_maxsize=value).field == "pool_maxsize"


def test_pool_size_from_string() -> None:
    assert Settings(pool_maxsize="7").pool_maxsize == 7


def test_retry_must_be_a_policy() -> None:
    assert error(retry=3).field == "retry"
    policy = svclink.RetryPolicy(total=5)
    assert Settings(retry=policy).retry is policy


def test_unknown_settings_are_named() -> None:
    err = error(service_conections=["user"])
    assert err.field == "service_conections"
    assert "service_connections" in err.problem


def test_load_from_environment() -> None:
    env = {
        "SVCLINK_SERVICE_NAME": "api",
        "SVCLINK_SERVICE_CONNECTIONS": "user,billing-v2",
        "SVCLINK_REQUIRED_SERVICE_CONNECTIONS": "user",
        "SVCLINK_SERVICE_USER_URL": "http://10.0.0.5:8001/",
        "SVCLINK_SERVICE_BILLING_V2_URL": "http://billing:9000",
        "SVCLINK_PROPAGATE_ERROR": "false",
        "SVCLINK_RESPONSE_TIMEOUT": "2.5",
        "SVCLINK_RETRY_COUNT": "4",
        "SVCLINK_AMQP_URL": "memory://",
        "UNRELATED": "x",
    }
    s = load({}, env)
    assert s.service_name == "api"
    assert s.service_connections == ("user", "billing-v2")
    assert s.required_service_connections == ("user",)
    assert dict(s.service_hosts) == {"user": "http://10.0.0.5:8001", "billing-v2": "http://billing:9000"}
    assert s.propagate_error is False
    assert s.response_timeout == 2.5
    assert s.retry.total == 4
    assert s.amqp_url == ("memory://",)


def test_explicit_values_win_over_the_environment() -> None:
    env = {"SVCLINK_SERVICE_NAME": "env", "SVCLINK_SERVICE_CONNECTIONS": "user"}
    env["SVCLINK_SERVICE_USER_URL"] = "http://from-env:1"
    s = load({"service_name": "explicit", "service_hosts": {"user": "http://explicit:2"}}, env)
    assert s.service_name == "explicit"
    assert dict(s.service_hosts) == {"user": "http://explicit:2"}


def test_a_bad_environment_value_names_the_field() -> None:
    with pytest.raises(svclink.ConfigurationError) as info:
        load({}, {"SVCLINK_RESPONSE_TIMEOUT": "soon"})
    assert info.value.field == "response_timeout"
    with pytest.raises(svclink.ConfigurationError) as info:
        load({}, {"SVCLINK_RETRY_COUNT": "-1"})
    assert info.value.field == "retry_count"


def test_get_settings_without_configure_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVCLINK_SERVICE_CONNECTIONS", "user")
    monkeypatch.setenv("SVCLINK_SERVICE_USER_URL", "http://127.0.0.1:1")
    assert svclink.get_settings().service_hosts["user"] == "http://127.0.0.1:1"


def test_configuration_error_pickles() -> None:
    err = error(pool_maxsize=0)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.field, copy.problem, str(copy)) == (err.field, err.problem, str(err))
