"""``svclink publish``, ``svclink listen`` and the broker line of ``svclink check``.

Both commands go through the sync side (pika) to the broker in ``amqp_url``. ``listen``
consumes from an exclusive queue of its own, which the broker deletes when its connection
closes: nothing is left behind, however the command ends (Ctrl-C, ``kill``, a crash).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from .._tls import failure_of
from ..core.errors import SvclinkError
from ..core.events.broker import default_name, is_memory
from ..core.events.envelope import Event, format_time
from ..core.settings import Settings, get_settings
from ..core.tls import describe


def run(args: argparse.Namespace) -> int:
    """Run ``svclink publish`` or ``svclink listen``; returns the exit code."""
    _quiet_transport_logs()
    if args.command == "publish":
        return publish(args.event_type, args.data, args.exchange, args.format)
    return listen(args.patterns, args.exchange)


def _quiet_transport_logs() -> None:
    """pika logs connection failures itself; the command reports them once, in one line."""
    for name in ("pika", "aio_pika", "aiormq"):
        logging.getLogger(name).addHandler(logging.NullHandler())


def _real_broker(settings: Settings) -> Settings:
    if is_memory(settings):
        raise SvclinkError(
            "amqp_url is memory://, the in-process broker, which no other process can reach; "
            "set SVCLINK_AMQP_URL to a RabbitMQ URL"
        )
    return settings


def publish(event_type: str, data: Any, exchange: str | None, layout: str | None = None) -> int:
    """Publish one event with confirms (in ``layout``: the envelope, or ``flat``); print its id on
    standard output."""
    from ..sync import Publisher

    settings = _real_broker(get_settings())
    publisher = Publisher(settings, connection_name=default_name(settings, "publish"))
    try:
        event = publisher.publish(  # an unroutable event: say so, exit 1
            event_type, data, exchange=exchange, unroutable="raise", format=layout
        )
    finally:
        publisher.close()
    print(event.event_id)
    where = exchange if exchange is not None else settings.event_exchange
    request_id = event.context.request_id if event.context else "-"
    print(f"svclink: published {event_type} to {where!r} (request id {request_id})", file=sys.stderr)
    return 0


# -- listen -------------------------------------------------------------------------------


def event_line(event: Event) -> str:
    """One event as one line of JSON."""
    return json.dumps(
        {
            "event_type": event.event_type,
            "event_id": event.event_id,
            "occurred_at": format_time(event.occurred_at),
            "source": event.source,
            "request_id": event.context.request_id if event.context else None,
            "format": event.format,
            "data": event.data,
        },
        ensure_ascii=False,
    )


def _queue_name() -> str:
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:40] or "host"
    return f"svclink.listen.{host}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def _log_to_stderr() -> None:
    """The consumer's own log lines (consuming, reconnecting) are the command's status lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("svclink: %(message)s"))
    logger = logging.getLogger("svclink.events")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def listen(patterns: list[str], exchange: str | None) -> int:
    """Print every event bound by ``patterns`` as one JSON line, until SIGINT or SIGTERM."""
    from ..sync import EventConsumer

    settings = _real_broker(get_settings())
    queue = _queue_name()
    consumer = EventConsumer(
        queue,
        exchange=exchange,
        bindings=patterns,
        max_attempts=1,  # printing does not fail in a way a retry would fix
        exclusive=True,
        connection_name=default_name(settings, "listen"),
    )

    @consumer.default
    def show(event: Event) -> None:
        try:
            print(event_line(event), flush=True)
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            consumer.stop()

    _log_to_stderr()
    print(
        f"svclink: listening on exchange {consumer.config.exchange!r} for {', '.join(patterns)} "
        f"(queue {queue}, deleted on exit); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    return _run_until_signalled(consumer)


def _run_until_signalled(consumer: Any) -> int:
    """Run the consumer on a thread; the first SIGINT/SIGTERM stops it, a second one gives up at once.

    The signal handlers only note the signal: ``stop()`` is called from this thread, outside
    the handler, so no lock the interrupted code holds is ever taken again.
    """
    signals: list[int] = []
    failure: list[BaseException] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)

    def target() -> None:
        try:
            consumer.run()
        except BaseException as exc:
            failure.append(exc)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=target, name="svclink-listen", daemon=True)
    try:
        thread.start()
        stopping = False
        while thread.is_alive():
            thread.join(0.1)
            if signals and not stopping:
                stopping = True
                consumer.stop()
            if len(signals) > 1:
                return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failure:
        raise failure[0]
    return 0


# -- check --------------------------------------------------------------------------------


def _where(url: str) -> str:
    """``url`` without its credentials."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path or '/'}"


def _handshake(url: str, settings: Settings, timeout: float) -> None:
    """Open and close an AMQP connection (credentials and vhost included), or a TCP one without pika."""
    try:
        import pika
    except ImportError:
        parts = urlsplit(url)
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return
    from ..sync._pika import parameters

    params = parameters(
        url, settings, default_name(settings, "check")
    )  # amqps:// with svclink's TLS settings
    params.socket_timeout = timeout
    params.stack_timeout = timeout * 2
    pika.BlockingConnection(params).close()


def _reason(exc: BaseException, settings: Settings) -> str:
    tls = failure_of(exc, settings.tls_client_cert is not None)
    if tls is not None:
        return describe(tls)
    while True:  # pika wraps the socket error twice, once in args and once in .exception
        inner = exc.args[0] if exc.args else getattr(exc, "exception", None)
        if not isinstance(inner, BaseException):
            break
        exc = inner
    text = str(exc) or type(exc).__name__
    if "ACCESS_REFUSED" in text or "AuthenticationError" in type(exc).__name__:
        return "the broker refused the credentials (ACCESS_REFUSED)"
    first = text.splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def broker_status(settings: Settings) -> tuple[bool, str]:
    """Whether a node of ``amqp_url`` accepts a connection, and a line that says so."""
    if is_memory(settings):
        return True, "broker: memory:// (the in-process broker; nothing to reach)"
    _quiet_transport_logs()
    errors = []
    for url in settings.amqp_url:
        try:
            _handshake(url, settings, settings.connect_timeout)
        except Exception as exc:  # anything at all: this is a report, not a call
            errors.append(f"{_where(url)}: {_reason(exc, settings)}")
            continue
        return True, f"broker: ok ({_where(url)})"
    return False, f"broker is not reachable: {'; '.join(errors)}"
