"""Exchanges a fleet's other services declared first, with other settings than svclink's.

svclink declares its exchanges durable; aio-pika and FastStream declare theirs not durable
by default. Whichever side declares second would fail with ``PRECONDITION_FAILED``. When
the broker refuses svclink's declaration because the exchange exists with another
durability (or auto-delete), svclink uses the exchange as it is (a passive declaration)
and warns once per exchange; an exchange of another type stays an error, since it would
route svclink's events differently.
"""

from __future__ import annotations

import re
import threading

from ..logs import logger

log = logger("svclink.events")


#: the broker's reply when only these of an exchange's settings differ: such an exchange
#: routes as svclink expects, it only does not survive a broker restart (or goes away unused)
_HARMLESS_RE = re.compile(r"inequivalent arg '(durable|auto_delete)'")


_warned: set[str] = set()


_warned_lock = threading.Lock()


def use_as_is(detail: str) -> bool:
    """Whether the broker's refusal ``detail`` (the reply text of a ``PRECONDITION_FAILED``
    on an exchange declaration) means: declare it passively and use it as it is."""
    return _HARMLESS_RE.search(detail) is not None


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
