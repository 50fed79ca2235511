"""Integrations: Django (:mod:`svclink.contrib.django`), Celery (:mod:`svclink.contrib.celery`)
and any ASGI app (:mod:`svclink.contrib.asgi`).

Each reads incoming requests, tasks and messages through the one function in core
(:func:`svclink.context.incoming`), so they trust and refuse exactly the same things.
"""
