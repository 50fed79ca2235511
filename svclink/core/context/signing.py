"""Signed caller context: who is calling, for which user and request, for whom, until when.

A token is ``v1.<payload>.<mac>``: the payload is compact JSON (base64url, no padding)
and the MAC is HMAC-SHA256 over ``"svclink-context.v1." + payload`` with the shared
signing key. The MAC is checked, in constant time, against every verification key
before the payload is even parsed, so a forged token is never decoded. Then the
audience must be the receiving service and the clock must be inside
``[issued_at - CLOCK_SKEW, expires_at)``.

Time is an argument (``now``, wall-clock seconds): this module reads no clock. No
error message ever carries a key, a MAC or the token itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..errors import SvclinkError

VERSION = "v1"
_DOMAIN = b"svclink-context.v1."
#: a token issued this far in the future (by a fast clock) is still accepted
CLOCK_SKEW = 30.0
MAX_TOKEN_LENGTH = 4096
MAX_CLAIMS = 16
MAX_STRING = 256
_B64_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")

Scalar = str | int | float | bool | None


class SignatureError(SvclinkError, ValueError):
    """A signed context was not accepted; ``reason`` says why in a few safe words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"signed context rejected: {reason}")
        self.reason = reason


def check_claims(claims: object) -> Mapping[str, Scalar]:
    """User claims as a read-only mapping: at most 16 short names of scalar values."""
    if claims is None:
        return MappingProxyType({})
    if not isinstance(claims, Mapping):
        raise ValueError("user claims must be a mapping")
    if len(claims) > MAX_CLAIMS:
        raise ValueError(f"at most {MAX_CLAIMS} user claims may travel with a call")
    checked: dict[str, Scalar] = {}
    for name, value in claims.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError("a user claim name must be a short identifier")
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise ValueError(f"user claim {name!r} is longer than {MAX_STRING} characters")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"user claim {name!r} must be a str, number, bool or None")
        checked[name] = value
    return MappingProxyType(checked)


@attrs.frozen
class Claims:
    """What a token asserts; ``audience`` is the service it was made for."""

    caller: str
    audience: str
    request_id: str
    issued_at: int
    expires_at: int
    user_id: str | None = None
    user_claims: Mapping[str, Scalar] = attrs.field(factory=dict, converter=check_claims, eq=False)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64_RE.match(text):
        raise SignatureError("malformed")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError("malformed") from None


def _mac(key: str, payload: str) -> bytes:
    return hmac.new(key.encode(), _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()


def sign(claims: Claims, key: str) -> str:
    """The token for ``claims``, signed with ``key``."""
    body: dict[str, Any] = {
        "iss": claims.caller,
        "aud": claims.audience,
        "rid": claims.request_id,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
    }
    if claims.user_id is not None:
        body["sub"] = claims.user_id
    if claims.user_claims:
        body["clm"] = dict(claims.user_claims)
    payload = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{VERSION}.{payload}.{_b64encode(_mac(key, payload))}"


def _authentic(token: str, keys: Iterable[str]) -> str:
    """The payload part of ``token`` if one of ``keys`` made its MAC."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise SignatureError("malformed")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise SignatureError("malformed")
    payload, mac = parts[1], _b64decode(parts[2])
    _b64decode(payload)
    matched = False
    for key in keys:
        # every key is tried, so the time taken does not say which one matched
        matched |= hmac.compare_digest(_mac(key, payload), mac)
    if not matched:
        raise SignatureError("bad signature")
    return payload


def _string(body: Mapping[str, Any], name: str, optional: bool = False) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_STRING:
        raise SignatureError("malformed")
    return value


def _timestamp(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SignatureError("malformed")
    return value


def _decode(payload: str) -> Claims:
    try:
        body = json.loads(_b64decode(payload))
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("malformed") from None
    if not isinstance(body, dict):
        raise SignatureError("malformed")
    try:
        return Claims(
            caller=_string(body, "iss"),
            audience=_string(body, "aud"),
            request_id=_string(body, "rid"),
            issued_at=_timestamp(body, "iat"),
            expires_at=_timestamp(body, "exp"),
            user_id=_string(body, "sub", optional=True),
            user_claims=body.get("clm"),
        )
    except ValueError as exc:
        if isinstance(exc, SignatureError):
            raise
        raise SignatureError("malformed") from None


def verify(token: str, *, keys: Iterable[str], audience: str, now: float) -> Claims:
    """The claims of ``token``, or :class:`SignatureError` with the reason.

    ``keys`` are every key that may have signed it (the current signing key and the
    ones being rotated out); ``audience`` is the service checking it; ``now`` is the
    wall clock in seconds since the epoch.
    """
    keys = [k for k in keys if k]
    if not keys:
        raise SignatureError("no verification key configured")
    claims = _decode(_authentic(token, keys))
    if not hmac.compare_digest(claims.audience.encode(), audience.encode()):
        raise SignatureError("wrong audience")
    if claims.issued_at > now + CLOCK_SKEW:
        raise SignatureError("issued in the future")
    if now >= claims.expires_at:
        raise SignatureError("expired")
    return claims
