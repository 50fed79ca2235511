"""The idempotent-consumer inbox, as decisions: which store a handler uses and how it is wrapped.

Delivery is at least once (a confirm lost in flight means a resend; a consumer killed after
its handler ran and before its ack gets the message again). ``@consumer.on(..., dedupe=True)``
makes a handler's effects happen at most once per event id and consumer queue: its store
records ``(queue, event_id)`` and runs the handler only the first time. With a database store
the record and the handler's own writes commit in one transaction; a Redis store (no
transaction to share) records the key beside the handler's effects, a weaker guarantee.

A store is an object with ``asynchronous`` (a ``bool``) and ``once(queue, event_id, call)``,
which runs ``call()`` (awaited for an asynchronous store) if the event is new and returns
whether it ran. Nothing here touches a database; the stores do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import EventError, InvalidEvent
from ..logs import logger
from .envelope import Event

log = logger("svclink.events")

#: the Redis key prefix of the inbox
REDIS_PREFIX = "svclink:inbox:"
#: what a Redis inbox key holds while its handler runs, and once it has returned
RUNNING, DONE = b"running", b"done"


class EventInFlight(EventError):
    """Another consumer is handling this event right now (Redis store): the delivery is retried later."""


class InboxStore(Protocol):
    """Where a deduplicating handler records the events it has handled."""

    #: whether ``once`` is awaited (stores for svclink.aio) or called (svclink.sync)
    asynchronous: bool

    def once(self, queue: str, event_id: str, call: Callable[[], Any]) -> Any:
        """Run ``call`` if ``event_id`` is new on ``queue``; answers whether it ran."""
        ...


_default_store: Callable[[], InboxStore] | None = None


def set_default_store(factory: Callable[[], InboxStore] | None) -> None:
    """The store ``dedupe=True`` uses when the consumer names none (the Django app sets its own)."""
    global _default_store
    _default_store = factory


def store_for(dedupe: object, consumer_store: InboxStore | None, *, asynchronous: bool) -> InboxStore | None:
    """The store a handler registered with ``dedupe`` uses, or None when it does not deduplicate.

    ``dedupe`` is ``None`` (the consumer's choice), ``False``, ``True`` (the consumer's store,
    else the default one), or a store. A store of the other side's kind is a ``TypeError``.
    """
    if dedupe is None:
        store = consumer_store
    elif dedupe is False:
        store = None
    elif dedupe is True:
        store = consumer_store or (_default_store() if _default_store is not None else None)
        if store is None:
            raise InvalidEvent(
                "dedupe=True needs an inbox store: pass one (EventConsumer(..., dedupe=SqlInbox(sessions)), "
                "dedupe=RedisInbox(client)), or add svclink.contrib.django to INSTALLED_APPS"
            )
    else:
        store = check_store(dedupe)
    if store is not None and store.asynchronous != asynchronous:
        side, other = ("svclink.aio", "svclink.sync") if asynchronous else ("svclink.sync", "svclink.aio")
        raise TypeError(f"this inbox store is for {other} consumers; a {side} consumer needs its twin")
    return store


def check_store(value: object) -> InboxStore:
    """``value`` as an inbox store, or :class:`InvalidEvent` saying what ``dedupe`` takes."""
    if isinstance(value, bool) or not callable(getattr(value, "once", None)):
        raise InvalidEvent(f"dedupe must be True, False, None or an inbox store, not {type(value).__name__}")
    if not isinstance(getattr(value, "asynchronous", None), bool):
        raise InvalidEvent("an inbox store must say whether it is asynchronous (a bool 'asynchronous')")
    return value  # type: ignore[return-value]  # checked above


def deduplicated(handler: Callable[[Event], Any], store: InboxStore, queue: str) -> Callable[[Event], Any]:
    """``handler`` run through ``store``: at most once per event id on ``queue``."""
    if store.asynchronous:

        async def run_async(event: Event) -> None:
            ran = await store.once(queue, event.event_id, functools.partial(handler, event))
            if not ran:
                log.info("consumer %s: event %s was handled before; acked", queue, event.event_id)

        return functools.update_wrapper(run_async, handler)

    def run(event: Event) -> None:
        if not store.once(queue, event.event_id, functools.partial(handler, event)):
            log.info("consumer %s: event %s was handled before; acked", queue, event.event_id)

    return functools.update_wrapper(run, handler)


def redis_key(queue: str, event_id: str) -> str:
    """The Redis key that records ``event_id`` on ``queue``."""
    return f"{REDIS_PREFIX}{queue}:{event_id}"


def taken(state: bytes | str | None, key: str) -> bool:
    """What a Redis store does when its ``SET NX`` found the key: ``True`` when the event was
    handled (ack it), :class:`EventInFlight` while another handler runs it; ``False`` when the key
    has gone meanwhile (claim again)."""
    if state is None:
        return False
    if state in (RUNNING, RUNNING.decode()):  # a client may decode responses
        raise EventInFlight(f"another consumer is handling this event now ({key}); retried later")
    return True
