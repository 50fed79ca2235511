"""Durations given in seconds: one rule for every timeout svclink accepts.

A timeout is a positive, finite number of seconds. Anything longer than
:data:`MAX_SECONDS` (a year) means "as long as it takes" and is clamped to it: the
platform's own limits (``time_t`` in ``socket.settimeout``, ``threading.TIMEOUT_MAX``,
a float's range for a huge int) are far above a year, so a clamped value never
overflows in a driver, and no real call tells a year from longer.
"""

from __future__ import annotations

import math

#: the longest duration svclink passes on; longer ones are clamped to it
MAX_SECONDS = 365 * 24 * 3600.0


def seconds(value: object) -> float | None:
    """``value`` as seconds in (0, :data:`MAX_SECONDS`], or None if it is not a positive,
    finite number (a bool, a string, NaN, infinity, zero or less)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not value > 0:
        return None
    return MAX_SECONDS if value >= MAX_SECONDS else float(value)
