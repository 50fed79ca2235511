"""Test helpers usable from sync and aio code alike: the in-process ``memory://`` broker.

Configure ``amqp_url="memory://"`` and svclink's publishers and consumers use
:func:`get_broker`'s broker instead of RabbitMQ; inspect it in assertions::

    from svclink.testing import get_broker
    assert get_broker().message_count("notifications.user_events.dead") == 0
"""

from .memory import (
    Confirm,
    ConnectionClosed,
    MemoryBroker,
    MemoryBrokerError,
    MemoryConnection,
    MemoryDelivery,
    MemoryMessage,
    get_broker,
    reset,
)

__all__ = [
    "Confirm",
    "ConnectionClosed",
    "MemoryBroker",
    "MemoryBrokerError",
    "MemoryConnection",
    "MemoryDelivery",
    "MemoryMessage",
    "get_broker",
    "reset",
]
