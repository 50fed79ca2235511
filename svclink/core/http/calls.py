"""The call flow as data: a plan in, attempt outcomes in, decisions out.

Like h11 for HTTP/1.1, :class:`Call` is a state machine that does no I/O. A driver asks
it for the next :class:`HTTPRequest`, performs it, and reports back either the response
(:meth:`Call.received`) or the kind of transport failure (:meth:`Call.failed`). The call
answers :class:`Retry` (sleep this long, then ask for the next request) or :class:`Done`
(the value to return), or raises the exception the caller should see. Time and
randomness are arguments, so the whole flow is tested without sockets or sleeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urljoin, urlsplit

import attrs

from ..context.outgoing import DEADLINE_HEADER
from ..errors import (
    TRANSPORT_CLASSES,
    APIException,
    CircuitOpen,
    RedirectNotFollowed,
    ResponseDecodeError,
    ResponseTooLarge,
    ServiceTimeout,
    ServiceTLSError,
    TLSFailure,
    TransportFailure,
    class_for_status,
)
from ..logs import logger
from ..observe import AttemptInfo, CallInfo, Observer, notify, watching
from ..policy.breaker import CircuitBreaker
from ..policy.budget import RetryBudget
from ..policy.retry import STOP, Decision, Outcome, RetryPolicy, parse_retry_after
from ..redact import given_secrets, redact
from ..tls import describe
from .attempts import Answer, HTTPRequest, NoResponse, counts_for_breaker
from .bodies import TooLarge
from .multipart import FileSpec
from .responses import NotJSON, Response, decode_json, error_details, excerpt
from .urls import same_origin

log = logger("svclink.http")

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: a 301, 302 or 303 is followed only after these: the others would have to become a GET
_REDIRECTABLE_METHODS = frozenset({"GET", "HEAD"})

_FAILURE_TEXT = {
    TransportFailure.CONNECT: "could not connect",
    TransportFailure.NOT_SENT: "connection broken while sending the request",
    TransportFailure.RESET: "connection broken before a response",
    TransportFailure.TIMEOUT: "no response in time",
    TransportFailure.POOL: "no free connection in the pool in time",
}


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
    #: the name the service's certificate must carry, when not the URL's host (``tls_server_hostname``)
    server_hostname: str | None = None
    max_response_size: int | None = None

    @property
    def request_id(self) -> str | None:
        """The request id sent, however the caller spelled the header's name."""
        return next((v for k, v in self.headers.items() if k.lower() == "x-request-id"), None)


@attrs.frozen
class Retry:
    """Sleep ``wait`` seconds, then ask the call for its next request."""

    wait: float


@attrs.frozen
class Done:
    """The call is over; ``value`` is what ``http_dispatch`` returns."""

    value: Any


@attrs.frozen(eq=False)
class Guard:
    """What a service keeps across its calls: its circuit breaker, retry budget and observers.

    Compared (and hashed) by identity: it holds live state, and the registry keeps weak
    references to the guards of live services."""

    breaker: CircuitBreaker | None = None
    budget: RetryBudget | None = None
    observers: tuple[Observer, ...] = ()


NO_GUARD = Guard()


def reset_guard(guard: Guard) -> None:
    """Close the breaker and empty the budget of ``guard``."""
    if guard.breaker is not None:
        guard.breaker.reset()
    if guard.budget is not None:
        guard.budget.reset()


@attrs.define
class Call:
    """The live state of one call: attempts made, the deadline, the current URL and method."""

    plan: CallPlan
    deadline: float
    method: str
    url: str
    content: bytes | None
    guard: Guard = NO_GUARD
    started: float = 0.0
    attempt_started: float = 0.0
    attempts: int = 0
    retries: int = 0
    redirects: int = 0

    @classmethod
    def start(cls, plan: CallPlan, now: float, guard: Guard = NO_GUARD) -> Call:
        deadline = now + plan.timeout
        if plan.context_deadline is not None:
            deadline = min(deadline, plan.context_deadline)
        if guard.budget is not None:
            guard.budget.called(now)
        return cls(plan, deadline, plan.method, plan.url, plan.content, guard, now)

    def remaining(self, now: float) -> float:
        return self.deadline - now

    def request(self, now: float) -> HTTPRequest:
        """The next attempt; :class:`ServiceTimeout` if the deadline has passed, or
        :class:`CircuitOpen` if the service's breaker refuses it."""
        remaining = self.remaining(now)
        if remaining <= 0:
            raise self._fail(ServiceTimeout, "deadline passed before the call could be sent", now)
        breaker = self.guard.breaker
        if breaker is not None and not breaker.allow(now):
            raise self._fail(
                CircuitOpen,
                f"circuit open after repeated failures; next probe in {breaker.retry_in(now):.1f}s",
                now,
            )
        self.attempts += 1
        self.attempt_started = now
        plan = self.plan
        headers = dict(plan.headers)
        # the callee learns how long we will wait, so it can give up (and shorten its own calls) in time
        headers[DEADLINE_HEADER] = str(int(remaining * 1000) or 1)  # whole ms, at least 1
        return HTTPRequest(
            method=self.method,
            url=self.url,
            headers=headers,
            content=self.content,
            form=plan.form,
            files=plan.files,
            connect_timeout=min(plan.connect_timeout, remaining),
            timeout=remaining,
            max_response_size=plan.max_response_size,
        )

    def outcome(
        self, result: Answer | NoResponse | TooLarge, *, now: float, wall: float, rand: float
    ) -> Retry | Done:
        """What the attempt came to: the driver's answer, or the exception its send raised
        (handed over outside the ``except`` block, so that the error raised from here carries
        no chained transport exception, whose text svclink does not control)."""
        if isinstance(result, NoResponse):
            return self.failed(result.kind, result.detail, now, rand, result.tls, reused=result.reused)
        if isinstance(result, TooLarge):
            self.oversized(result, now)
        status, reason, headers, body = result
        return self.received(status, reason, headers, body, now=now, wall=wall, rand=rand)

    def failed(
        self,
        failure: TransportFailure,
        detail: str,
        now: float,
        rand: float,
        tls: TLSFailure | None = None,
        *,
        reused: bool = False,
    ) -> Retry:
        """No response arrived; retry if the policy allows, else raise the mapped error.

        A refused TLS handshake (``tls``) is raised at once: another attempt meets the same
        certificates, and the service is not down, so its circuit breaker does not count it.
        """
        if tls is not None:
            self._observe_attempt(None, f"tls_{tls.value}", now, STOP)
            hostname = self.plan.server_hostname or urlsplit(self.url).hostname
            message = describe(tls, hostname)
            self._observe_call(None, ServiceTLSError.__name__, now)
            raise self._error(ServiceTLSError, message, failure=tls)
        if self.guard.breaker is not None and counts_for_breaker(failure, reused):
            self.guard.breaker.failed(now)
        decision = self._decide(Outcome(failure=failure), now, rand)
        self._observe_attempt(None, failure.value, now, decision)
        if decision.retry:
            return self._retry(decision)
        tried = f"after {self.attempts} attempt{'s' if self.attempts > 1 else ''} ({excerpt(detail, 100)})"
        if failure is TransportFailure.TIMEOUT or self.remaining(now) <= 0:
            raise self._fail(ServiceTimeout, f"no response before the deadline {tried}", now)
        raise self._fail(TRANSPORT_CLASSES[failure], f"{_FAILURE_TEXT[failure]} {tried}", now)

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
        self._count_status(status, now)
        decision = STOP
        if status >= 400:
            outcome = Outcome(status=status, retry_after=parse_retry_after(headers, wall))
            decision = self._decide(outcome, now, rand)
        self._observe_attempt(status, None, now, decision)
        if decision.retry:
            return self._retry(decision)
        if status in _REDIRECTS and "location" in headers:
            return self._redirect(status, headers["location"])
        try:
            value = self._result(status, reason, headers, body)
        except APIException as exc:
            self._observe_call(status, type(exc).__name__, now)
            raise
        self._observe_call(status, None, now)
        return Done(value)

    def oversized(self, too_large: TooLarge, now: float) -> NoReturn:
        """The response's body was over ``max_response_size``: raise :class:`ResponseTooLarge`."""
        self._count_status(too_large.status, now)
        size = f" (it announced {too_large.declared})" if too_large.declared is not None else ""
        error = self._error(
            ResponseTooLarge,
            f"response body over max_response_size of {too_large.limit} bytes{size}",
            too_large.status,
        )
        assert isinstance(error, ResponseTooLarge)
        error.size, error.limit = too_large.declared, too_large.limit
        self._observe_call(too_large.status, ResponseTooLarge.__name__, now)
        raise error

    def _count_status(self, status: int, now: float) -> None:
        breaker = self.guard.breaker
        if breaker is not None:
            if status >= 500:
                breaker.failed(now)
            else:
                breaker.succeeded()

    def _decide(self, outcome: Outcome, now: float, rand: float) -> Decision:
        decision = self.plan.policy.decide(
            method=self.method,
            outcome=outcome,
            retries_done=self.retries,
            remaining=self.remaining(now),
            has_idempotency_key=self.plan.idempotency_key is not None,
            rand=rand,
        )
        budget = self.guard.budget
        if decision.retry and budget is not None and not budget.try_retry(now):
            log.info(
                "not retrying %s %s%s: retry budget spent", self.method, self.plan.service, self.plan.endpoint
            )
            notify(self.guard.observers, "on_retry_budget", self.plan.service)
            return STOP
        return decision

    def _retry(self, decision: Decision) -> Retry:
        self.retries += 1
        log.info(
            "retrying %s %s%s after %s in %.3fs (retry %d)",
            self.method, self.plan.service, self.plan.endpoint, decision.reason, decision.wait, self.retries,
        )  # fmt: skip
        return Retry(decision.wait)

    def _observe_attempt(
        self, status: int | None, failure: str | None, now: float, decision: Decision
    ) -> None:
        if watching(self.guard.observers):
            plan = self.plan
            info = AttemptInfo(
                plan.service, self.method, plan.endpoint, self.attempts, status, failure,
                now - self.attempt_started, decision.retry, decision.wait,
            )  # fmt: skip
            notify(self.guard.observers, "on_attempt", info)

    def _observe_call(self, status: int | None, error: str | None, now: float) -> None:
        if watching(self.guard.observers):
            plan = self.plan
            info = CallInfo(
                plan.service, self.method, plan.endpoint, self.attempts, status, error, now - self.started
            )
            notify(self.guard.observers, "on_call", info)

    def _fail(self, cls: type[APIException], message: str, now: float) -> APIException:
        self._observe_call(None, cls.__name__, now)
        return self._error(cls, message)

    def _redirect(self, status: int, location: str) -> Retry:
        target = urljoin(self.url, location)
        if not same_origin(self.plan.url, target):
            raise self._error(
                RedirectNotFollowed, "redirected to another origin, which is never followed", status
            )
        if status in (301, 302, 303) and self.method not in _REDIRECTABLE_METHODS:
            raise self._error(
                RedirectNotFollowed,
                f"a {self.method} was answered with {status} and Location {excerpt(target, 200)}; "
                "it is not followed, as that would re-send it as a GET without its body",
                status,
            )
        if self.redirects >= MAX_REDIRECTS:
            raise self._error(RedirectNotFollowed, f"more than {MAX_REDIRECTS} redirects", status)
        self.redirects += 1
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
        # the server's words, but never with the credentials we sent it quoted back
        secrets = given_secrets(plan.headers, plan.url) + given_secrets({}, self.url)
        message = redact(message, secrets)
        if fields.get("description") is not None:
            fields["description"] = redact(fields["description"], secrets)
        return cls(
            message,
            service=plan.service,
            method=self.method,
            endpoint=plan.endpoint,
            status_code=status,
            request_id=plan.request_id,
            **fields,
        )
