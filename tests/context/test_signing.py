"""The signed caller context: what verifies, what never does, and that no secret leaks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svclink.context import Claims, SignatureError, sign, verify
from svclink.core.context.signing import CLOCK_SKEW

KEY = "k" * 16 + "-current-signing-key"
OLD_KEY = "o" * 16 + "-retired-signing-key"
NOW = 1_800_000_000.0


def claims(**overrides: object) -> Claims:
    values: dict[str, object] = {
        "caller": "api",
        "audience": "user",
        "request_id": "req-1",
        "issued_at": int(NOW),
        "expires_at": int(NOW) + 60,
        "user_id": "42",
        "user_claims": {"role": "admin", "tenant": 7},
    }
    values.update(overrides)
    return Claims(**values)  # type: ignore[arg-type]


def rejected(token: str, *, keys: list[str] | None = None, audience: str = "user", now: float = NOW) -> str:
    with pytest.raises(SignatureError) as info:
        verify(token, keys=[KEY] if keys is None else keys, audience=audience, now=now)
    return info.value.reason


def test_round_trip_keeps_every_claim() -> None:
    got = verify(sign(claims(), KEY), keys=[KEY], audience="user", now=NOW + 1)
    assert got == claims()
    assert got.user_id == "42"
    assert dict(got.user_claims) == {"role": "admin", "tenant": 7}


def test_rotation_accepts_the_retired_key_only_while_it_is_listed() -> None:
    token = sign(claims(), OLD_KEY)
    assert verify(token, keys=[KEY, OLD_KEY], audience="user", now=NOW).caller == "api"
    assert rejected(token, keys=[KEY]) == "bad signature"


def test_a_token_signed_with_another_key_is_a_forgery() -> None:
    assert rejected(sign(claims(), "x" * 32)) == "bad signature"


def test_a_changed_payload_breaks_the_signature() -> None:
    version, payload, mac = sign(claims(), KEY).split(".")
    forged_payload = sign(claims(user_id="1", caller="billing"), "x" * 32).split(".")[1]
    assert rejected(f"{version}.{forged_payload}.{mac}") == "bad signature"
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    assert rejected(f"{version}.{flipped}.{mac}") in {"bad signature", "malformed"}


def test_expired_and_future_tokens_are_refused() -> None:
    token = sign(claims(), KEY)
    assert rejected(token, now=NOW + 60) == "expired"
    assert rejected(token, now=NOW + 3600) == "expired"
    assert rejected(token, now=NOW - CLOCK_SKEW - 1) == "issued in the future"
    assert verify(token, keys=[KEY], audience="user", now=NOW - CLOCK_SKEW + 1).request_id == "req-1"


def test_a_token_for_another_service_is_refused() -> None:
    assert rejected(sign(claims(), KEY), audience="billing") == "wrong audience"


def test_no_key_configured_trusts_nothing() -> None:
    assert rejected(sign(claims(), KEY), keys=[]) == "no verification key configured"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1.",
        "v1..",
        "v2.abc.def",
        "v1.abc",
        "v1.a.b.c",
        "v1.!!!.abc",
        "v1.abc.@@@",
        "v1." + "A" * 5000,
    ],
)
def test_malformed_tokens_are_refused_without_echo(token: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(token, keys=[KEY], audience="user", now=NOW)
    assert info.value.reason in {"malformed", "bad signature"}
    if len(token) > 4:
        assert token not in str(info.value)


def test_a_signed_payload_of_the_wrong_shape_is_malformed() -> None:
    import base64
    import hashlib
    import hmac
    import json

    def forge(body: object) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
        mac = hmac.new(KEY.encode(), b"svclink-context.v1." + payload.encode(), hashlib.sha256).digest()
        return f"v1.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    good = {"iss": "api", "aud": "user", "rid": "r", "iat": int(NOW), "exp": int(NOW) + 5}
    assert verify(forge(good), keys=[KEY], audience="user", now=NOW).caller == "api"
    for bad in (
        [1],
        {**good, "iat": "now"},
        {**good, "iss": ""},
        {**good, "clm": {"x": [1]}},
        {**good, "exp": True},
    ):
        assert rejected(forge(bad)) == "malformed"


def test_no_secret_in_errors() -> None:
    token = sign(claims(), KEY)
    for kwargs in ({"keys": [KEY], "audience": "x"}, {"keys": [OLD_KEY], "audience": "user"}):
        with pytest.raises(SignatureError) as info:
            verify(token, now=NOW, **kwargs)  # type: ignore[arg-type]
        text = str(info.value) + repr(info.value)
        assert KEY not in text and OLD_KEY not in text and token.split(".")[2] not in text


def test_claims_are_bounded() -> None:
    with pytest.raises(ValueError):
        claims(user_claims={f"c{i}": i for i in range(17)})
    with pytest.raises(ValueError):
        claims(user_claims={"nested": {"a": 1}})
    with pytest.raises(ValueError):
        claims(user_claims={"bad name!": 1})


@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_fails_cleanly(token: str) -> None:
    with pytest.raises(SignatureError):
        verify(token, keys=[KEY], audience="user", now=NOW)


@given(
    st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s),
    st.one_of(st.none(), st.text(min_size=1, max_size=40)),
)
def test_any_request_and_user_id_round_trip(request_id: str, user_id: str | None) -> None:
    token = sign(claims(request_id=request_id, user_id=user_id), KEY)
    got = verify(token, keys=[KEY], audience="user", now=NOW)
    assert (got.request_id, got.user_id) == (request_id, user_id)
