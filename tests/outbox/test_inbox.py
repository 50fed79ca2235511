"""``dedupe``: a handler's effects happen once per event id and queue, whatever the deliveries.

Every store on its sides, against real RabbitMQ, PostgreSQL and Redis: the same event published
three times (as a resend after a lost confirm would) is handled once; a handler that fails keeps
nothing (its writes and the inbox record roll back together) and its retry is handled once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from sqlalchemy import create_engine, insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from svclink.contrib.redis import AsyncRedisInbox, RedisInbox
from svclink.contrib.sqlalchemy import AsyncSqlInbox, SqlInbox, inbox_session
from svclink.core.events.envelope import Event
from svclink.core.events.topology import topology

from ..events_support import EventEnv, RabbitView, eventually
from ..outbox_support import REDIS_URL, pg_url, query
from .shop_tables import shipments

pytestmark = pytest.mark.rabbitmq

#: (side, store): Django's ORM is synchronous, so its inbox serves svclink.sync consumers
CASES = [("sync", "sql"), ("sync", "redis"), ("sync", "django"), ("aio", "sql"), ("aio", "redis")]


class Shop:
    """A deduplicating handler of one store and side, and where its effects can be counted."""

    def __init__(self, env: EventEnv, kind: str, sql_database: str, django_pg: str, fail_first: int) -> None:
        self.kind, self.side = kind, env.side
        self.calls: list[str] = []
        self.effects: list[str] = []  # the Redis store's handler has no database: its effects are here
        self.fail_first = fail_first
        self.tag = uuid.uuid4().hex[:8]
        self._closers: list[Callable[[], Any]] = []
        self.store = self._store(sql_database)

    def _store(self, sql_database: str) -> Any:
        if self.kind == "django":
            from svclink.contrib.django import DjangoInbox

            return DjangoInbox("pg")
        if self.kind == "redis":
            if self.side == "sync":
                client = redis.Redis.from_url(REDIS_URL)
                self._closers.append(client.close)
                return RedisInbox(client)
            return AsyncRedisInbox(redis.asyncio.Redis.from_url(REDIS_URL))
        if self.side == "sync":
            engine = create_engine(pg_url(sql_database, "+psycopg"))
            self._closers.append(engine.dispose)
            return SqlInbox(sessionmaker(engine))
        self.async_engine = create_async_engine(pg_url(sql_database, "+psycopg"))
        return AsyncSqlInbox(async_sessionmaker(self.async_engine))

    def _failing(self, event: Event) -> bool:
        self.calls.append(event.event_id)
        return len(self.calls) <= self.fail_first

    def handler(self) -> Callable[[Event], Any]:
        if self.side == "sync":

            def ship(event: Event) -> None:
                fail = self._failing(event)
                if self.kind == "django":
                    from ..django_project.shop.models import Shipment

                    Shipment.objects.using("pg").create(order_number=event.data["n"], event_id=event.event_id)
                elif self.kind == "sql":
                    inbox_session().execute(
                        insert(shipments).values(order_number=event.data["n"], event_id=event.event_id)
                    )
                if fail:
                    raise RuntimeError("the handler fails after its writes")
                if self.kind == "redis":
                    self.effects.append(event.event_id)

            return ship

        async def ship_async(event: Event) -> None:
            fail = self._failing(event)
            if self.kind == "sql":
                await inbox_session().execute(
                    insert(shipments).values(order_number=event.data["n"], event_id=event.event_id)
                )
            if fail:
                raise RuntimeError("the handler fails after its writes")
            if self.kind == "redis":
                self.effects.append(event.event_id)

        return ship_async

    def shipped(self, event_ids: list[str], sql_database: str, django_pg: str) -> list[str]:
        """The event ids shipped (one per shipment row, or per effect), among ``event_ids``."""
        if self.kind == "redis":
            return [e for e in self.effects if e in event_ids]
        ids = ", ".join(f"'{e}'" for e in event_ids)
        if self.kind == "django":
            rows = query(django_pg, f"SELECT event_id FROM shop_shipment WHERE event_id IN ({ids})")
        else:
            rows = query(sql_database, f"SELECT event_id FROM shipments WHERE event_id IN ({ids})")
        return [str(r[0]) for r in rows]

    def close(self, env: EventEnv) -> None:
        """Close the sync store's connections. The aio store's belong to the consumer's loop, which
        has ended: its engine forgets them (the asyncio Redis client's go with it)."""
        for close in self._closers:
            close()
        if self.side == "aio" and self.kind == "sql" and env.runner is not None:
            env.runner.run(self.async_engine.dispose(close=False))


@pytest.fixture(params=CASES, ids=[f"{side}-{store}" for side, store in CASES])
def case(request: pytest.FixtureRequest) -> Iterator[tuple[EventEnv, str]]:
    side, kind = request.param
    env = EventEnv(side, RabbitView())
    yield env, kind
    env.close()


@pytest.fixture
def env(case: tuple[EventEnv, str]) -> EventEnv:
    return case[0]


@pytest.fixture
def shop_factory(
    case: tuple[EventEnv, str], sql_database: str, django_pg: str
) -> Iterator[Callable[[int], Shop]]:
    env, kind = case
    made: list[Shop] = []

    def make(fail_first: int = 0) -> Shop:
        shop = Shop(env, kind, sql_database, django_pg, fail_first)
        made.append(shop)
        return shop

    yield make
    for shop in made:
        shop.close(env)


def run_consumer(env: EventEnv, shop: Shop, queue: str, register: str) -> Any:
    """A consumer on ``queue`` whose handler deduplicates through ``shop``'s store, declared either
    way the API offers: ``EventConsumer(dedupe=store)`` or ``@consumer.on(..., dedupe=store)``."""
    kwargs: dict[str, Any] = {"exchange": env.exchange, "connection_name": env.connection_name}
    kwargs["retry_delays"] = [0.2]
    if register == "consumer":
        consumer = env.module.EventConsumer(queue, settings=env.settings, dedupe=shop.store, **kwargs)
        consumer.on("order.*")(shop.handler())
    else:
        consumer = env.module.EventConsumer(queue, settings=env.settings, **kwargs)
        consumer.on("order.*", dedupe=shop.store)(shop.handler())
    topo = topology(consumer.config)
    env._queues += [q.name for q in (*topo.retry_queues, topo.dead_queue)]
    running = env.start(consumer)
    eventually(lambda: env.broker.consumers(queue) >= 1, what="the consumer")
    return running


@pytest.mark.parametrize("register", ["consumer", "handler"])
def test_the_same_event_three_times_is_handled_once(
    env: EventEnv, shop_factory: Callable[[int], Shop], sql_database: str, django_pg: str, register: str
) -> None:
    shop = shop_factory(0)
    queue = env.queue("inbox")
    running = run_consumer(env, shop, queue, register)
    first = env.publish("order.created", {"n": 1}, event_id=f"order-1-{shop.tag}")
    for _ in range(2):
        env.publish("order.created", {"n": 1}, event_id=first.event_id)
    last = env.publish("order.created", {"n": 2}, event_id=f"order-2-{shop.tag}")
    eventually(lambda: last.event_id in shop.calls, what="the last event handled")
    # aio handlers run concurrently: a duplicate that came while the first ran is retried, then acked
    eventually(lambda: env.broker.count(queue) == 0 and env.broker.count(f"{queue}.retry.200") == 0)
    running.stop()
    assert sorted(shop.calls) == sorted([first.event_id, last.event_id])
    assert sorted(shop.shipped([first.event_id, last.event_id], sql_database, django_pg)) == sorted(
        [first.event_id, last.event_id]
    )


def test_a_failed_handler_keeps_nothing_and_its_retry_is_handled_once(
    env: EventEnv, shop_factory: Callable[[int], Shop], sql_database: str, django_pg: str
) -> None:
    shop = shop_factory(1)
    queue = env.queue("inbox")
    running = run_consumer(env, shop, queue, "handler")
    event = env.publish("order.created", {"n": 3}, event_id=f"order-3-{shop.tag}")
    env.publish("order.created", {"n": 3}, event_id=event.event_id)
    eventually(lambda: len(shop.calls) >= 2, what="the failed call and its retry")
    eventually(lambda: env.broker.count(queue) == 0 and env.broker.count(f"{queue}.retry.200") == 0)
    running.stop()
    assert shop.calls == [event.event_id, event.event_id]  # failed, then retried; the duplicate skipped
    assert shop.shipped([event.event_id], sql_database, django_pg) == [event.event_id]


@pytest.mark.parametrize("side", ["sync", "aio"])
def test_a_wrong_dedupe_is_refused_when_registered(side: str) -> None:
    import svclink
    import svclink.aio
    import svclink.sync

    module = svclink.sync if side == "sync" else svclink.aio
    svclink.configure(amqp_url="memory://")
    consumer = module.EventConsumer("inbox.refused")
    with pytest.raises(svclink.InvalidEvent, match="dedupe must be True, False, None or an inbox store"):
        consumer.on("order.created", dedupe="yes")
    with pytest.raises(svclink.InvalidEvent, match="dedupe must be"):
        module.EventConsumer("inbox.refused", dedupe=3)
    other_side = AsyncRedisInbox(None) if side == "sync" else RedisInbox(None)
    with pytest.raises(TypeError, match=r"a svclink\.(sync|aio) consumer needs its twin"):
        consumer.on("order.created", dedupe=other_side)
