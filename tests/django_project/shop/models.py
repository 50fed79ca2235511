"""A shop's tables for the outbox and inbox tests: orders, and the shipments a consumer makes of them."""

from __future__ import annotations

from django.db import models


class Order(models.Model):  # type: ignore[misc]
    number = models.IntegerField(unique=True)


class Shipment(models.Model):  # type: ignore[misc]
    """One per order handled; deliberately not unique, so a duplicate handling shows as a second row."""

    order_number = models.IntegerField()
    event_id = models.CharField(max_length=255)
