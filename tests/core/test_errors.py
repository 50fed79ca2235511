"""One exception hierarchy, and the tables that choose a class for a status or a transport fault."""

from __future__ import annotations

import pickle

import pytest

import svclink
from svclink.core.errors import TRANSPORT_CLASSES, TransportFailure, class_for_status


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, svclink.BadRequest),
        (401, svclink.Unauthorized),
        (403, svclink.Forbidden),
        (404, svclink.NotFound),
        (409, svclink.Conflict),
        (422, svclink.UnprocessableEntity),
        (429, svclink.TooManyRequests),
        (405, svclink.ClientError),
        (418, svclink.ClientError),
        (499, svclink.ClientError),
        (500, svclink.ServerError),
        (502, svclink.ServerError),
        (503, svclink.ServerError),
        (599, svclink.ServerError),
    ],
)
def test_class_for_status(status: int, cls: type[svclink.APIException]) -> None:
    assert class_for_status(status) is cls


def test_transport_failures_map_to_no_response_classes() -> None:
    assert TRANSPORT_CLASSES[TransportFailure.CONNECT] is svclink.ServiceUnavailable
    assert TRANSPORT_CLASSES[TransportFailure.RESET] is svclink.ServiceUnavailable
    assert TRANSPORT_CLASSES[TransportFailure.TIMEOUT] is svclink.ServiceTimeout
    assert set(TRANSPORT_CLASSES) == set(TransportFailure)


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (svclink.BadRequest, (svclink.ClientError,)),
        (svclink.TooManyRequests, (svclink.ClientError,)),
        (svclink.ClientError, (svclink.APIException,)),
        (svclink.ServerError, (svclink.APIException,)),
        (svclink.ServiceUnavailable, (svclink.APIException,)),
        (svclink.ServiceTimeout, (svclink.APIException,)),
        (svclink.ResponseDecodeError, (svclink.APIException,)),
        (svclink.RedirectNotFollowed, (svclink.APIException,)),
        (svclink.APIException, (svclink.SvclinkError,)),
        (svclink.InvalidRequest, (svclink.SvclinkError, ValueError)),
        (svclink.ConfigurationError, (svclink.SvclinkError, ValueError)),
        (svclink.ServiceNotDeclared, (svclink.SvclinkError, RuntimeError)),
    ],
)
def test_hierarchy(cls: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    assert issubclass(cls, bases)


def test_no_response_is_not_an_http_status_error() -> None:
    for cls in (svclink.ServiceUnavailable, svclink.ServiceTimeout):
        assert not issubclass(cls, (svclink.ClientError, svclink.ServerError))


def make() -> svclink.NotFound:
    return svclink.NotFound(
        "No such user.",
        service="user",
        method="GET",
        endpoint="/users/{id}",
        status_code=404,
        error_code="user_not_found",
        description="try another id",
        request_id="req-1",
        body={"detail": "No such user."},
    )


def test_every_api_exception_says_which_call_failed_and_why() -> None:
    err = make()
    assert (err.service, err.method, err.endpoint) == ("user", "GET", "/users/{id}")
    assert (err.status_code, err.error_code, err.message) == (404, "user_not_found", "No such user.")
    assert (err.description, err.request_id, err.body) == (
        "try another id",
        "req-1",
        {"detail": "No such user."},
    )
    assert str(err) == "user: GET /users/{id} -> 404: No such user. [user_not_found]"


def test_str_without_status_or_code() -> None:
    err = svclink.ServiceUnavailable("could not connect", service="user", method="POST", endpoint="/x")
    assert str(err) == "user: POST /x: could not connect"
    assert err.status_code is None and err.error_code is None and err.request_id is None


def test_exceptions_pickle_with_their_fields() -> None:
    err = pickle.loads(pickle.dumps(make()))
    assert type(err) is svclink.NotFound
    assert (err.service, err.status_code, err.error_code, err.request_id) == (
        "user",
        404,
        "user_not_found",
        "req-1",
    )
    assert str(err) == str(make())
    nd = pickle.loads(pickle.dumps(svclink.ServiceNotDeclared("usr", ("user",))))
    assert (nd.name, nd.declared, str(nd)) == (
        "usr",
        ("user",),
        str(svclink.ServiceNotDeclared("usr", ("user",))),
    )
    ce = pickle.loads(pickle.dumps(svclink.ConfigurationError("pool_maxsize", "must be >= 1")))
    assert (ce.field, ce.problem) == ("pool_maxsize", "must be >= 1")


def test_everything_is_exported_from_the_top_level() -> None:
    for name in svclink.errors.__all__:
        assert getattr(svclink, name) is getattr(svclink.errors, name)
