"""A parcel per order paid: what the worker test's consumer writes through the ORM."""

from __future__ import annotations

from django.db import models


class Parcel(models.Model):  # type: ignore[misc]
    number = models.IntegerField()
    #: the delivery attempt that wrote it
    attempt = models.IntegerField()
    #: the PostgreSQL backend that served the handler's connection
    backend_pid = models.IntegerField()
