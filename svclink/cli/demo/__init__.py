"""``svclink demo``: a small user service on 127.0.0.1, called from both sides, step by step.

It needs nothing but svclink[all]: the service runs in a thread of this process and the
events go through the in-process ``memory://`` broker (or ``SVCLINK_AMQP_URL`` when set,
under names unique to the run, deleted at the end).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import svclink
from svclink import context

from .event_steps import events
from .http_steps import aio_calls, sync_calls, user_service


def run(out: Callable[[str], None] = print) -> int:
    """Run the demo, printing each step; returns the process exit code."""
    started = time.perf_counter()
    with user_service() as url:
        out(f"svclink {svclink.__version__} demo: user service listening on {url}")
        svclink.configure(
            service_name="demo",
            service_connections=["user"],
            service_hosts={"user": url},
            response_timeout=5,
        )
        with context.bind(request_id="demo-request-1"):
            out("HTTP calls from the sync side (requests), request id demo-request-1:")
            sync_calls(out)
            out("The same calls from the aio side (httpx):")
            asyncio.run(aio_calls(out))
    code = events(out)
    out(f"done in {time.perf_counter() - started:.2f} s")
    return code
