"""The ``svclink`` command line (also ``python -m svclink``).

``svclink demo``, ``svclink call``, ``svclink publish``, ``svclink listen``,
``svclink check``, ``svclink worker`` and ``svclink declare`` read the same settings as
the library: ``SVCLINK_*`` environment variables, or ``--settings MODULE`` naming a
module with a ``SVCLINK = {...}`` dict.
Errors are printed as one line each, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import attrs

from ..configuration import configure
from ..core.errors import APIException, SvclinkError
from ..core.settings import get_settings, install
from . import relay


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svclink", description="service-to-service calls and events")
    parser.add_argument("--settings", metavar="MODULE", help="a module with a SVCLINK = {...} settings dict")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", help="run a local demo service and call it from the sync and aio sides")

    call = commands.add_parser("call", help="call a service over HTTP and print the decoded body")
    call.add_argument("service")
    call.add_argument("method")
    call.add_argument("endpoint", help="a path such as /api/v1/users/")
    call.add_argument(
        "-p",
        "--path-param",
        action="append",
        type=_key_value,
        default=[],
        metavar="NAME=VALUE",
        help="fills {NAME} in the endpoint template",
    )
    call.add_argument("-q", "--query", action="append", type=_key_value, default=[], metavar="NAME=VALUE")
    call.add_argument("-H", "--header", action="append", type=_header, default=[], metavar="'Name: value'")
    call.add_argument("--json", type=_json, metavar="BODY", help="a JSON request body")
    call.add_argument("--url", help="the service's base URL, when the settings do not declare it")
    call.add_argument("--timeout", type=float, help="the call's whole time budget in seconds")

    publish = commands.add_parser("publish", help="publish one event")
    publish.add_argument("event_type")
    publish.add_argument("data", type=_json, metavar="JSON")
    publish.add_argument("--exchange", help="the topic exchange (default: the settings' event exchange)")
    publish.add_argument(
        "--format",
        choices=["envelope", "flat"],
        help="the body's layout: svclink's envelope, or flat for consumers that do not use svclink "
        "(default: the event_formats setting for the exchange, else envelope)",
    )

    listen = commands.add_parser("listen", help="print events as they arrive, until Ctrl-C")
    listen.add_argument("patterns", nargs="+", metavar="PATTERN", help="routing-key patterns such as user.*")
    listen.add_argument("--exchange", help="the topic exchange (default: the settings' event exchange)")

    from . import dead, declare, worker

    worker.add_arguments(commands.add_parser("worker", help="run consumers until SIGTERM (graceful stop)"))
    declare.add_arguments(
        commands.add_parser("declare", help="declare the consumers' exchanges, queues and bindings")
    )
    dead.add_parser(commands)

    check = commands.add_parser("check", help="check the settings, the required services and the broker")
    check.add_argument(
        "--no-broker", action="store_true", help="skip the broker (for a service that sends no events)"
    )
    relay.add_parser(commands)
    relay.add_prune_parser(commands)
    return parser


def _load_settings(module: str | None) -> None:
    if module is None:
        configure()
        return
    # as `python -m svclink` does: the current directory holds the user's project
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    values = getattr(importlib.import_module(module), "SVCLINK", None)
    if not isinstance(values, dict):
        raise SvclinkError(f"settings module {module!r} has no SVCLINK dict")
    configure(**values)


def _call(args: argparse.Namespace) -> int:
    from .. import sync

    if args.url:
        settings = get_settings()
        declared = tuple(dict.fromkeys((*settings.service_connections, args.service)))
        hosts = {**settings.service_hosts, args.service: args.url}
        install(attrs.evolve(settings, service_connections=declared, service_hosts=hosts))
    query: dict[str, list[str]] = {}
    for name, value in args.query:
        query.setdefault(name, []).append(value)
    body, status = sync.get_service(args.service).http_dispatch(
        args.method,
        args.endpoint,
        path_params=dict(args.path_param) or None,
        query_params=query,
        headers=dict(args.header),
        payload=args.json,
        response_timeout=args.timeout,
        include_status_code=True,
    )
    print(json.dumps(body, indent=2, ensure_ascii=False))
    print(f"status {status}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..health import check
    from .events import broker_status

    settings = get_settings()
    print(f"settings: ok (service {settings.service_name or '(unnamed)'}, "
          f"{len(settings.service_connections)} services declared)")  # fmt: skip
    problems = check(settings)
    for problem in problems:
        print(f"problem: {problem}")
    if not problems:
        print(f"required services: ok ({', '.join(settings.required_service_connections) or 'none'})")
    if args.no_broker:
        print("broker: not checked (--no-broker)")
        return 1 if problems else 0
    reachable, broker = broker_status(settings)
    print(broker if reachable else f"problem: {broker}")
    return 1 if problems or not reachable else 0


def _print_error(exc: BaseException) -> None:
    if isinstance(exc, APIException):
        fields = {
            "status_code": exc.status_code,
            "error_code": exc.error_code,
            "message": exc.message,
            "description": exc.description,
            "request_id": exc.request_id,
        }
        print(f"svclink: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(json.dumps({k: v for k, v in fields.items() if v is not None}, indent=2), file=sys.stderr)
    else:
        print(f"svclink: error: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from . import demo

            return demo.run()
        _load_settings(args.settings)
        if args.command == "call":
            return _call(args)
        if args.command == "check":
            return _check(args)
        if args.command == "relay":
            return relay.run(args)
        if args.command == "prune-inbox":
            return relay.prune(args)
        if args.command == "worker":
            from . import worker

            return worker.run(args)
        if args.command == "declare":
            from . import declare

            return declare.run(args)
        if args.command == "dead":
            from . import dead

            return dead.run(args)
        from . import events

        return events.run(args)
    except (SvclinkError, ImportError, OSError) as exc:
        _print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130
