"""Memory and handles: RSS and open file descriptors before and after many calls and publishes."""

from __future__ import annotations

import asyncio
import gc
import os

import svclink.aio
import svclink.sync


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _snapshot() -> tuple[int, int]:
    gc.collect()
    return _rss_kib(), _fds()


def growth(url: str, n: int) -> dict[str, int]:
    """Make ``n`` sync calls, ``n`` aio calls and (memory://) ``n`` publishes per side; report growth."""
    user = svclink.sync.get_service("user")
    user.http_dispatch("GET", "/warm")
    rss0, fds0 = _snapshot()
    for _ in range(n):
        user.http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    async def aio_calls() -> None:
        service = await svclink.aio.get_service("user")
        for _ in range(n):
            await service.http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    asyncio.run(aio_calls())
    rss1, fds1 = _snapshot()
    figures = {"calls": 2 * n, "rss_growth_kib": rss1 - rss0, "fd_growth": fds1 - fds0}
    publish = getattr(svclink.sync, "get_publisher", None)
    if publish is not None:
        figures.update(_publish_growth(n))
    return figures


def _publish_growth(n: int) -> dict[str, int]:
    settings = svclink.get_settings()
    svclink.configure(
        service_name=settings.service_name,
        service_connections=settings.service_connections,
        service_hosts=dict(settings.service_hosts),
        amqp_url="memory://",
    )
    publisher = svclink.sync.get_publisher()
    publisher.publish("bench.warm", {"i": 0}, exchange="bench", mandatory=False)
    rss0, fds0 = _snapshot()
    for i in range(n):
        publisher.publish("bench.tick", {"i": i}, exchange="bench", mandatory=False)
    rss1, fds1 = _snapshot()
    return {"publishes": n, "publish_rss_growth_kib": rss1 - rss0, "publish_fd_growth": fds1 - fds0}
