"""``svclink worker``: run consumers in production, with graceful stop, health endpoints and limits.

Each ``TARGET`` is ``module:attribute`` naming an ``EventConsumer`` (sync or aio) or a
list of them, or a module, whose module-level consumers are all run. Sync consumers run
on threads of their own, aio consumers together on one event loop; the main thread
waits for signals. The first SIGTERM or SIGINT stops every consumer (see
:meth:`~svclink.sync.EventConsumer.stop`): no more messages are taken, the handlers in
flight finish within the grace and are acked, prefetched messages go back to the queue,
and the process exits 0. A second signal, or the grace running out, exits 1 at once:
the broker puts the unfinished messages back in the queue as they were.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, ModuleType
from typing import Any

import attrs

from ..core.errors import SvclinkError
from ..core.events.consumer import BaseConsumer
from ..core.events.running import State, exit_code, probe
from ..core.logs import logger
from ..core.settings import get_settings, install

log = logger("svclink.worker")

#: a sync or aio EventConsumer (``run()`` is each side's own: called, or awaited)
Consumer = Any

#: how long after the grace the worker waits for a handler that cannot be interrupted (sync)
_MARGIN = 2.0


def add_arguments(parser: argparse.ArgumentParser, *, targets_required: bool = True) -> None:
    """The worker's options, shared by ``svclink worker`` and ``manage.py svclink_worker``."""
    parser.add_argument(
        "targets",
        nargs="+" if targets_required else "*",
        metavar="TARGET",
        help="module:attribute naming a consumer or a list of them, or a module (all its consumers)",
    )
    parser.add_argument("--concurrency", type=int, help="handlers in flight per consumer (default: settings)")
    parser.add_argument(
        "--grace", type=float, help="seconds a stop waits for handlers in flight (default 30)"
    )
    parser.add_argument("--handler-timeout", type=float, help="seconds a handler may run (default 300)")
    parser.add_argument("--health-port", type=int, help="serve /livez and /readyz on this port")
    parser.add_argument("--health-host", default="0.0.0.0", help="the address to serve them on")
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics on this port (svclink[prometheus])"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument(
        "--declare-only", action="store_true", help="declare the consumers' queues and bindings, then exit"
    )
    parser.add_argument(
        "--relay",
        metavar="DATABASE",
        help="also run the outbox relay, stopped with the consumers: of this database URL "
        "(svclink worker) or database alias (manage.py svclink_worker)",
    )


def apply_options(args: argparse.Namespace) -> None:
    """Install the options as settings, before the targets are imported: they are the defaults
    of every consumer made then that does not set its own."""
    changes = {
        "consumer_concurrency": args.concurrency,
        "consumer_grace": args.grace,
        "handler_timeout": args.handler_timeout,
        "worker_health_port": args.health_port,
    }
    values = {k: v for k, v in changes.items() if v is not None}
    if values:
        settings = get_settings()
        try:
            install(attrs.evolve(settings, **values))
        except ValueError as exc:  # a ConfigurationError naming the setting
            raise SvclinkError(str(exc)) from None


def consumers_in(module: ModuleType) -> list[Consumer]:
    """The consumers defined at the top level of ``module``, in the order they appear."""
    found: list[Consumer] = []
    for value in vars(module).values():
        for candidate in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(candidate, BaseConsumer) and candidate not in found:
                found.append(candidate)
    return found


def load(targets: Iterable[str]) -> list[Consumer]:
    """The consumers ``targets`` name; a :class:`SvclinkError` that says which target is wrong."""
    if os.getcwd() not in sys.path:  # as ``python -m`` does: the project's modules import
        sys.path.insert(0, os.getcwd())
    consumers: list[Consumer] = []
    for target in targets:
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SvclinkError(f"target {target!r}: cannot import {module_name!r}: {exc}") from None
        if not attribute:
            found = consumers_in(module)
            if not found:
                raise SvclinkError(f"target {target!r}: the module defines no EventConsumer")
        else:
            value = getattr(module, attribute, None)
            listed = list(value) if isinstance(value, (list, tuple)) else [value]
            found = [c for c in listed if isinstance(c, BaseConsumer)]
            if not found or len(found) < len(listed):
                raise SvclinkError(
                    f"target {target!r} is a {type(value).__name__}, not an EventConsumer or a list of them"
                )
        consumers += [c for c in found if c not in consumers]
    return consumers


class Worker:
    """Runs consumers until signalled; see the module's docstring."""

    def __init__(self, consumers: Sequence[Consumer], *, health: tuple[str, int] | None = None) -> None:
        if not consumers:
            raise SvclinkError("no consumers to run")
        self.consumers = list(consumers)
        self.grace = max(c.grace for c in self.consumers)
        self._health = health
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failures: list[tuple[Consumer, BaseException]] = []
        self._signals: list[int] = []

    # running

    def _run_sync(self, consumer: Consumer) -> None:
        try:
            consumer.run()
        except BaseException as exc:
            self._failures.append((consumer, exc))

    async def _run_aio(self, consumers: list[Consumer]) -> None:
        self._loop = asyncio.get_running_loop()

        async def one(consumer: Consumer) -> None:
            try:
                await consumer.run()
            except BaseException as exc:
                self._failures.append((consumer, exc))

        await asyncio.gather(*(one(c) for c in consumers))

    def _start(self) -> None:
        for consumer in self.consumers:
            if not consumer.asynchronous:
                name = f"svclink-consumer:{consumer.config.queue}"
                self._threads.append(threading.Thread(target=self._run_sync, args=(consumer,), name=name))
        aio = [c for c in self.consumers if c.asynchronous]
        if aio:
            target = lambda: asyncio.run(self._run_aio(aio))  # noqa: E731
            self._threads.append(threading.Thread(target=target, name="svclink-consumers-aio"))
        for thread in self._threads:
            thread.daemon = True  # a handler that cannot be interrupted never keeps the process alive
            thread.start()

    def _alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def run(self) -> int:
        """Run every consumer until a signal or a failure; the exit status."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        server = self._serve_health()
        try:
            self._start()
            return self._wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if server is not None:
                server.shutdown()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Only note it: the main loop calls ``stop()``, outside the interrupted code."""
        self._signals.append(signum)

    def _wait(self) -> int:
        stops = 0  # stop() calls made on every consumer
        deadline = None  # when a stop must be over
        while self._alive():
            for thread in self._threads:
                thread.join(0.05)
            wanted = min(2, len(self._signals) + (1 if self._failures else 0))
            if wanted > stops:
                stops = self._stop(stops, wanted)
                deadline = time.monotonic() + (self.grace + _MARGIN if stops == 1 else _MARGIN)
            if deadline is not None and time.monotonic() > deadline:
                log.error("worker: consumers still running after the grace; exiting, their messages go back")
                return 1
        for consumer, exc in self._failures:
            log.error("worker: consumer %s failed: %s", consumer.config.queue, exc)
        in_time = deadline is None or time.monotonic() <= deadline - _MARGIN
        return exit_code(signals=len(self._signals), in_time=in_time, failed=bool(self._failures))

    def _stop(self, made: int, wanted: int) -> int:
        """Call ``stop()`` on every consumer until each has had ``wanted`` calls (a second abandons)."""
        if wanted == 1 and self._failures and not self._signals:
            log.warning("worker: a consumer failed; stopping the others")
        elif wanted == 1:
            log.info("worker: stopping; handlers in flight have %gs to finish", self.grace)
        else:
            log.warning("worker: stopping now; unfinished messages go back to the queue")
        for _ in range(wanted - made):
            for consumer in self.consumers:
                consumer.stop()
        return wanted

    # health

    def responsive(self) -> bool:
        """Whether every consumer's thread is alive and the event loop (if any) answers within 2 s.

        A worker draining after SIGTERM is still live (only not ready): an orchestrator that
        restarted it for that would cut the grace short."""
        if not all(t.is_alive() for t in self._threads):
            return False
        loop = self._loop
        if loop is None:
            return True
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=2)
        except Exception:
            return False
        return True

    def _serve_health(self) -> ThreadingHTTPServer | None:
        if self._health is None:
            return None
        worker = self

        class Probe(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                states = {c.config.queue: c.state for c in worker.consumers}
                answer = probe(self.path.split("?")[0], states, worker.responsive())
                status, body = answer if answer is not None else (404, {"error": "not found"})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Probes every few seconds are not worth a log line each."""

        server = ThreadingHTTPServer(self._health, Probe)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="svclink-health", daemon=True).start()
        host, port = server.server_address[:2]
        log.info("worker: health on http://%s:%s/livez and /readyz", host, port)
        return server


def configure_logging(level: str) -> None:
    """One line per record on standard error, at ``level``."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise SvclinkError(f"--log-level: unknown level {level!r}")
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("pika", "aio_pika", "aiormq"):  # their lines repeat the consumer's, with tracebacks
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.CRITICAL)


def run_consumers(consumers: list[Consumer], args: argparse.Namespace) -> int:
    """Declare only, or run ``consumers`` as a worker; the exit status."""
    if args.declare_only:
        from .declare import declare_all

        return declare_all(consumers)
    if getattr(args, "metrics_port", None) is not None:
        from ..contrib.prometheus import serve

        serve(args.metrics_port, args.health_host)
        log.info("worker: metrics on http://%s:%s/metrics", args.health_host, args.metrics_port)
    port = get_settings().worker_health_port
    worker = Worker(consumers, health=None if port is None else (args.health_host, port))
    queues = ", ".join(c.config.queue for c in consumers)
    log.info("worker: running %d consumers (%s), pid %d", len(consumers), queues, os.getpid())
    return worker.run()


@attrs.frozen
class ServiceName:
    """What the worker reads of a consumer's config: the name it logs and probes it by."""

    queue: str


class RelayRunner:
    """The outbox relay as one of the worker's services: started, signalled, drained and probed
    with the consumers (its batch in hand finishes within the grace). Its state is the relay's
    own (see :class:`~svclink.core.events.outbox.RelayPace`): ready only while its batches
    reach the broker and the database."""

    asynchronous = False

    def __init__(self, relay: Any, grace: float) -> None:
        self.relay = relay
        self.grace = grace
        self.config = ServiceName("outbox relay")
        self._stopping = False

    @property
    def state(self) -> State:
        state: State = self.relay.state
        return State.DRAINING if self._stopping and state is not State.STOPPED else state

    def run(self) -> None:
        self.relay.run()

    def stop(self) -> None:
        self._stopping = True
        self.relay.stop()


def relay_runner(store: Any) -> RelayRunner:
    """The relay of ``--relay``, on an outbox ``store`` (a SQLAlchemy or Django one)."""
    from ..sync.relay import Relay

    return RelayRunner(Relay(store), get_settings().consumer_grace)


def run(args: argparse.Namespace) -> int:
    """``svclink worker``."""
    configure_logging(args.log_level)
    apply_options(args)
    consumers = load(args.targets)
    if args.relay and not args.declare_only:
        from ..contrib.sqlalchemy import SqlOutbox

        consumers.append(relay_runner(SqlOutbox(args.relay)))
    return run_consumers(consumers, args)
