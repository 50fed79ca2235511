"""The parcels app's consumer, found by ``manage.py svclink_worker`` without being named.

Its queue and exchange come from ``WORKER_QUEUE`` and ``WORKER_EXCHANGE`` (each test its own).
"""

from __future__ import annotations

import os

from django.db import connection

from svclink.sync import Event, EventConsumer

from .models import Parcel

orders = EventConsumer(
    os.environ["WORKER_QUEUE"], exchange=os.environ["WORKER_EXCHANGE"], max_attempts=3, retry_delays=[0.2]
)


@orders.on("order.paid")
def make_parcel(event: Event) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    Parcel.objects.create(number=event.data["n"], attempt=event.attempt, backend_pid=pid)
