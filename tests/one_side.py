"""Run in an environment with one extra installed: that side works, the other names its extra.

Used by the ``sync-only`` and ``aio-only`` tox envs: ``python tests/one_side.py sync|aio``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OTHER = {"sync": ("httpx", "aio_pika"), "aio": ("requests", "pika")}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main(side: str) -> None:
    other_side = "aio" if side == "sync" else "sync"
    for module in OTHER[side]:
        assert importlib.util.find_spec(module) is None, f"{module} is installed; this env must not have it"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import svclink

    svclink.configure(
        service_connections=["user"], service_hosts={"user": f"http://127.0.0.1:{server.server_port}"}
    )
    if side == "sync":
        import svclink.sync

        body = svclink.sync.get_service("user").http_dispatch("GET", "/ping", query_params={"a": 1})
    else:
        import svclink.aio

        async def call() -> object:
            user = await svclink.aio.get_service("user")
            return await user.http_dispatch("GET", "/ping", query_params={"a": 1})

        body = asyncio.run(call())
    assert body == {"path": "/ping?a=1"}, body
    try:
        importlib.import_module(f"svclink.{other_side}")
    except ImportError as exc:
        assert f"svclink[{other_side}]" in str(exc), exc
    else:
        raise AssertionError(f"svclink.{other_side} imported without its extra")
    server.shutdown()
    print(f"svclink.{side} works alone; svclink.{other_side} asks for svclink[{other_side}]")


if __name__ == "__main__":
    import importlib

    main(sys.argv[1])
