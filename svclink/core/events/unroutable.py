"""What a publish does when no queue is bound for its event: warn (the default) or raise.

A publish is sent ``mandatory``: the broker returns a message that no queue takes. With
``unroutable="raise"`` that is :class:`~svclink.UnroutableError`, for events that must
reach someone. With ``"warn"`` the publish returns, its :class:`Event` says
``routed=False``, the observers' ``on_unroutable`` hook is told, and a WARNING names the
exchange and routing key, at most once a minute per pair: a subscriber that is not
deployed yet must not fail the publisher's request, nor flood its log.
"""

from __future__ import annotations

import logging
import threading

import attrs

from ..errors import InvalidEvent
from ..observe import UnroutableInfo, notify
from ..setting_values import UNROUTABLE_CHOICES
from ..settings import Settings
from .message import OutgoingMessage

log = logging.getLogger("svclink.events")

#: seconds between two warnings for the same exchange and routing key
WARN_INTERVAL = 60.0


def policy(settings: Settings, unroutable: object) -> str:
    """The policy of one publish: its ``unroutable`` argument, else the setting."""
    if unroutable is None:
        return settings.unroutable
    if unroutable not in UNROUTABLE_CHOICES:
        raise InvalidEvent("unroutable must be 'warn' or 'raise' (or None for the setting)")
    return str(unroutable)


@attrs.define
class Warnings:
    """When each (exchange, routing key) was last warned about, so that a pair is warned about
    at most once per :data:`WARN_INTERVAL`."""

    interval: float = WARN_INTERVAL
    _last: dict[tuple[str, str], float] = attrs.field(factory=dict, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def due(self, exchange: str, routing_key: str, now: float) -> bool:
        """Whether to warn about the pair at ``now`` (and, if so, count it as warned)."""
        with self._lock:
            last = self._last.get((exchange, routing_key))
            if last is not None and now - last < self.interval:
                return False
            if len(self._last) > 10_000:  # routing keys made per event: keep the table bounded
                self._last.clear()
            self._last[(exchange, routing_key)] = now
            return True


WARNINGS = Warnings()


def report(settings: Settings, message: OutgoingMessage, *, now: float) -> None:
    """A message went unrouted under ``"warn"``: tell the observers, and the log when due."""
    info = UnroutableInfo(
        exchange=message.exchange,
        routing_key=message.routing_key,
        event_type=message.properties.type or "",
        event_id=message.properties.message_id or "",
    )
    notify(settings.observers, "on_unroutable", info)
    if WARNINGS.due(message.exchange, message.routing_key, now):
        log.warning(
            "event %s was not routed: no queue is bound to exchange %r for routing key %r "
            "(published anyway and dropped by the broker; declare the consumers' queues with "
            "svclink declare, or publish with unroutable='raise'); this warning repeats at most "
            "once a minute for this exchange and key",
            info.event_id, message.exchange, message.routing_key,
        )  # fmt: skip
