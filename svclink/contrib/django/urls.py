"""URLs of svclink's Django app: ``path("", include("svclink.contrib.django.urls"))`` serves
``/metrics`` (Prometheus, with ``svclink[prometheus]``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path


def metrics(request: HttpRequest) -> HttpResponse:
    """svclink's metrics in the format the scraper asks for."""
    from ..prometheus import exposition

    body, content_type = exposition(request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)


urlpatterns = [path("metrics", metrics, name="svclink-metrics")]
