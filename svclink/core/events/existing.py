"""Exchanges and queues that exist with other settings than svclink declares.

svclink declares its exchanges durable; aio-pika and FastStream declare theirs not durable
by default, and whichever side declares second is refused (``PRECONDITION_FAILED``). When
the broker refuses svclink's declaration because the exchange exists with another
durability (or auto-delete), svclink uses the exchange as it is (a passive declaration)
and warns once per exchange; an exchange of another type stays an error, since it would
route svclink's events differently. ``transient_exchanges`` makes svclink declare named
exchanges not durable itself, for when it declares them first. A queue with other
arguments stays an error that names the queue and what the consumer asked for.
"""

from __future__ import annotations

import logging
import re
import threading

from ..errors import EventError
from ..settings import Settings
from .broker import DeclareRefusal, declare_failed, exchange_failed
from .topology import QueueSpec

log = logging.getLogger("svclink.events")


#: the broker's reply when only these of an exchange's settings differ: such an exchange
#: routes as svclink expects, it only does not survive a broker restart (or goes away unused)
_HARMLESS_RE = re.compile(r"inequivalent arg '(durable|auto_delete)'")


_warned: set[str] = set()


_warned_lock = threading.Lock()


def durable(settings: Settings, exchange: str) -> bool:
    """Whether svclink declares ``exchange`` durable: yes, unless ``transient_exchanges`` names it
    (to agree with code that declares it later with aio-pika's or FastStream's defaults)."""
    return exchange not in settings.transient_exchanges


def use_as_is(detail: str) -> bool:
    """Whether the broker's reply ``detail`` to a refused exchange declaration says that only its
    durability or auto-delete differ."""
    return _HARMLESS_RE.search(detail) is not None


def refused_exchange(
    exchange: str, refusal: DeclareRefusal, detail: str, *, consumer: bool
) -> Exception | None:
    """What the broker's refusal to declare ``exchange`` means.

    None: it exists with another durability; declare it passively and use it as it is (then
    :func:`warn_existing`). Another type or arguments: an :class:`~svclink.EventError` naming
    the exchange (not the consumer's queues). Anything else: as any refused declaration of
    a consumer or a publisher.
    """
    if refusal is DeclareRefusal.CONFLICT:
        if use_as_is(detail):
            return None
        return EventError(f"exchange {exchange!r} exists with other settings: {detail}")
    return declare_failed(refusal, detail) if consumer else exchange_failed(exchange, refusal, detail)


def refused_queue(queue: QueueSpec, refusal: DeclareRefusal, detail: str) -> Exception:
    """What the broker's refusal to declare ``queue`` means: for a queue that exists with other
    arguments, an :class:`~svclink.EventError` naming it, the arguments the consumer declares
    and (in the broker's words) the one the queue has."""
    if refusal is DeclareRefusal.CONFLICT:
        asked = ", ".join(f"{k}={v!r}" for k, v in sorted(queue.arguments.items())) or "none"
        return EventError(
            f"queue {queue.name!r} exists with other arguments than the consumer declares "
            f"(arguments: {asked}); the broker says: {detail}"
        )
    return declare_failed(refusal, detail)


def warn_existing(exchange: str, detail: str) -> None:
    """Log, once per exchange and process, that ``exchange`` is used with the broker's settings."""
    with _warned_lock:
        if exchange in _warned:
            return
        _warned.add(exchange)
    log.warning(
        "exchange %r exists with other settings than svclink declares (a durable topic exchange): "
        "svclink uses it as it is; unless it is durable, it and its bindings are lost when the "
        "broker restarts (%s)",
        exchange,
        detail,
    )
