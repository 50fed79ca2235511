"""The settings for a fleet where not every service uses svclink, checked into their values.

``event_formats`` names the exchanges whose consumers read the flat layout,
and ``transient_exchanges`` those svclink declares not durable (as aio-pika and
FastStream do by default) so that code declaring them later with its defaults agrees.
Each converter takes the Python value or the ``SVCLINK_*`` environment string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .errors import ConfigurationError

#: the layouts a publish can write: svclink's envelope, or the flat layout hand-written consumers read
PUBLISH_FORMATS = ("envelope", "flat")


_EXCHANGE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def _exchange(field: str, name: object) -> str:
    if not isinstance(name, str) or not _EXCHANGE_RE.match(name) or name.startswith("amq."):
        raise ConfigurationError(field, "must name exchanges (letters, digits, '_.:-'), not amq.*")
    return name


def event_formats(value: object) -> Mapping[str, str]:
    """``{exchange: "flat" | "envelope"}``; from the environment as ``user_events=flat,orders=flat``."""
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        value = {name.strip(): layout.strip() for name, _, layout in pairs}
    if not isinstance(value, Mapping):
        raise ConfigurationError("event_formats", "must map exchange names to 'flat' or 'envelope'")
    checked = {}
    for name, layout in value.items():
        if layout not in PUBLISH_FORMATS:
            raise ConfigurationError(
                "event_formats", f"the format of {name!r} must be 'flat' or 'envelope', got {layout!r}"
            )
        checked[_exchange("event_formats", name)] = layout
    return MappingProxyType(checked)


def transient_exchanges(value: object) -> tuple[str, ...]:
    """Exchange names; from the environment as ``user_events,orders``."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Iterable):
        raise ConfigurationError("transient_exchanges", "must be a list of exchange names")
    return tuple(_exchange("transient_exchanges", name) for name in value)
