"""How long a stopping consumer waits for a broker that does not answer.

After ``stop()``, every wait for the broker (a declaration, the cancel of the consumer,
a confirm, the close) lasts at most ``connect_timeout`` seconds; a broker that has not
answered by then is abandoned: the connection is dropped, and the broker puts the
messages it had delivered and not seen acked back in the queue once it notices. So
``run()`` returns at most that long after the handlers in hand are done (the grace),
per step that waits, whatever the broker does.
"""

from __future__ import annotations

import attrs

from ..settings import Settings


@attrs.define
class StopWatch:
    """Whether a stopping consumer gives up on the broker, as a function of the driver's clock."""

    #: seconds a wait for the broker may last once a stop is seen
    bound: float
    _stop_seen: float | None = attrs.field(default=None, init=False)

    @classmethod
    def of(cls, settings: Settings) -> StopWatch:
        return cls(settings.connect_timeout)

    def abandon(self, *, stopping: bool, waiting_since: float | None, now: float) -> bool:
        """Whether to drop the connection now: a stop was asked for and the wait for the broker
        that began at ``waiting_since`` (None: none is under way) has lasted the bound, counted
        from the stop if the wait began before it."""
        if not stopping:
            return False
        if self._stop_seen is None:
            self._stop_seen = now
        return waiting_since is not None and now - max(waiting_since, self._stop_seen) >= self.bound
