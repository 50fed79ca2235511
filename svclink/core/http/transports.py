"""Which HTTP library carries a service's calls: names checked once, when settings are built.

The drivers own the libraries; core only knows their names, so a typo in
``SVCLINK_AIO_TRANSPORT`` fails at configure time with the field named.
"""

from __future__ import annotations

from ..errors import ConfigurationError

#: the sync side's transports; the first is the default
SYNC_TRANSPORTS = ("requests", "urllib3")
#: the aio side's transports; the first is the default
AIO_TRANSPORTS = ("httpx", "aiohttp")


def check_transport(field: str, value: object, known: tuple[str, ...]) -> str:
    """``value`` as one of the ``known`` transport names (any case, spaces around allowed)."""
    if isinstance(value, str) and value.strip().lower() in known:
        return value.strip().lower()
    raise ConfigurationError(field, f"must be one of {', '.join(known)}, got {value!r}")
