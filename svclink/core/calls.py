"""The call flow as data: a plan in, attempt outcomes in, decisions out.

Like h11 for HTTP/1.1, :class:`Call` is a state machine that does no I/O. A driver asks
it for the next :class:`HTTPRequest`, performs it, and reports back either the response
(:meth:`Call.received`) or the kind of transport failure (:meth:`Call.failed`). The call
answers :class:`Retry` (sleep this long, then ask for the next request) or :class:`Done`
(the value to return), or raises the exception the caller should see. Time and
randomness are arguments, so the whole flow is tested without sockets or sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import attrs

from .errors import (
    TRANSPORT_CLASSES,
    APIException,
    RedirectNotFollowed,
    ResponseDecodeError,
    ServiceTimeout,
    TransportFailure,
    class_for_status,
)
from .responses import NotJSON, Response, decode_json, error_details, excerpt
from .retry import Outcome, RetryPolicy, parse_retry_after
from .urls import same_origin

log = logging.getLogger("svclink.http")

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

_FAILURE_TEXT = {
    TransportFailure.CONNECT: "could not connect",
    TransportFailure.RESET: "connection broken before a response",
    TransportFailure.TIMEOUT: "no response in time",
}

FileSpec = tuple[str, bytes] | tuple[str, bytes, str]


@attrs.frozen
class HTTPRequest:
    """One attempt, ready for a driver to send exactly as it is."""

    method: str
    url: str
    headers: Mapping[str, str]
    #: an encoded body (JSON), or None
    content: bytes | None
    #: multipart form fields and files, encoded by the HTTP library
    form: Mapping[str, str] | None
    files: Mapping[str, FileSpec] | None
    connect_timeout: float
    #: the time this attempt may take in all (reads included): the call's remaining budget
    timeout: float


@attrs.frozen
class CallPlan:
    """Everything decided about a call before the first byte is sent."""

    service: str
    method: str
    endpoint: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None
    form: Mapping[str, str] | None
    files: Mapping[str, FileSpec] | None
    timeout: float
    connect_timeout: float
    policy: RetryPolicy
    idempotency_key: str | None
    propagate_error: bool
    include_status_code: bool
    raw_response: bool
    #: an absolute deadline (monotonic) inherited from the request context, if any
    context_deadline: float | None = None

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-ID")


@attrs.frozen
class Retry:
    """Sleep ``wait`` seconds, then ask the call for its next request."""

    wait: float


@attrs.frozen
class Done:
    """The call is over; ``value`` is what ``http_dispatch`` returns."""

    value: Any


@attrs.define
class Call:
    """The live state of one call: attempts made, the deadline, the current URL and method."""

    plan: CallPlan
    deadline: float
    method: str
    url: str
    content: bytes | None
    with_body: bool = True
    attempts: int = 0
    retries: int = 0
    redirects: int = 0

    @classmethod
    def start(cls, plan: CallPlan, now: float) -> Call:
        deadline = now + plan.timeout
        if plan.context_deadline is not None:
            deadline = min(deadline, plan.context_deadline)
        return cls(plan, deadline, plan.method, plan.url, plan.content)

    def remaining(self, now: float) -> float:
        return self.deadline - now

    def request(self, now: float) -> HTTPRequest:
        """The next attempt; :class:`ServiceTimeout` if the deadline has already passed."""
        remaining = self.remaining(now)
        if remaining <= 0:
            raise self._error(ServiceTimeout, "deadline passed before the call could be sent")
        self.attempts += 1
        plan = self.plan
        return HTTPRequest(
            method=self.method,
            url=self.url,
            headers=plan.headers,
            content=self.content,
            form=plan.form if self.with_body else None,
            files=plan.files if self.with_body else None,
            connect_timeout=min(plan.connect_timeout, remaining),
            timeout=remaining,
        )

    def failed(self, failure: TransportFailure, detail: str, now: float, rand: float) -> Retry:
        """No response arrived; retry if the policy allows, else raise the mapped error."""
        decision = self.plan.policy.decide(
            method=self.method,
            outcome=Outcome(failure=failure),
            retries_done=self.retries,
            remaining=self.remaining(now),
            has_idempotency_key=self.plan.idempotency_key is not None,
            rand=rand,
        )
        if decision.retry:
            return self._retry(decision.wait, decision.reason)
        tried = f"after {self.attempts} attempt{'s' if self.attempts > 1 else ''} ({excerpt(detail, 100)})"
        if failure is TransportFailure.TIMEOUT or self.remaining(now) <= 0:
            raise self._error(ServiceTimeout, f"no response before the deadline {tried}")
        raise self._error(TRANSPORT_CLASSES[failure], f"{_FAILURE_TEXT[failure]} {tried}")

    def received(
        self,
        status: int,
        reason: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: float,
        wall: float,
        rand: float,
    ) -> Retry | Done:
        """A response arrived (``headers`` with lower-case names): retry, follow, or finish."""
        if status in _REDIRECTS and "location" in headers:
            return self._redirect(status, headers["location"])
        if status >= 400:
            decision = self.plan.policy.decide(
                method=self.method,
                outcome=Outcome(status=status, retry_after=parse_retry_after(headers, wall)),
                retries_done=self.retries,
                remaining=self.remaining(now),
                has_idempotency_key=self.plan.idempotency_key is not None,
                rand=rand,
            )
            if decision.retry:
                return self._retry(decision.wait, decision.reason)
        return Done(self._result(status, reason, headers, body))

    def _retry(self, wait: float, reason: str) -> Retry:
        self.retries += 1
        log.info(
            "retrying %s %s%s after %s in %.3fs (retry %d)",
            self.method, self.plan.service, self.plan.endpoint, reason, wait, self.retries,
        )  # fmt: skip
        return Retry(wait)

    def _redirect(self, status: int, location: str) -> Retry:
        target = urljoin(self.url, location)
        if not same_origin(self.plan.url, target):
            raise self._error(
                RedirectNotFollowed, "redirected to another origin, which is never followed", status
            )
        if self.redirects >= MAX_REDIRECTS:
            raise self._error(RedirectNotFollowed, f"more than {MAX_REDIRECTS} redirects", status)
        self.redirects += 1
        if status == 303 or (status in (301, 302) and self.method == "POST"):
            self.method, self.content, self.with_body = "GET", None, False
        self.url = target
        return Retry(0.0)

    def _result(self, status: int, reason: str, headers: Mapping[str, str], body: bytes) -> Any:
        plan = self.plan
        if plan.raw_response:
            return Response(status, headers, body, self.url)
        if status >= 400:
            if plan.propagate_error:
                details = error_details(status, reason, headers, body)
                raise self._error(
                    class_for_status(status),
                    details.message,
                    status,
                    error_code=details.error_code,
                    description=details.description,
                    body=details.body,
                )
            try:
                value = decode_json(headers, body)
            except NotJSON:
                value = body.decode("utf-8", "replace")
        else:
            try:
                value = decode_json(headers, body)
            except NotJSON as exc:
                raise self._error(
                    ResponseDecodeError, str(exc), status, body=excerpt(body.decode("utf-8", "replace"))
                ) from None
        return (value, status) if plan.include_status_code else value

    def _error(
        self, cls: type[APIException], message: str, status: int | None = None, **fields: Any
    ) -> APIException:
        plan = self.plan
        return cls(
            message,
            service=plan.service,
            method=self.method,
            endpoint=plan.endpoint,
            status_code=status,
            request_id=plan.request_id,
            **fields,
        )
