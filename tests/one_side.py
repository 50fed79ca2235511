"""Run in an environment with one extra installed: that side works, the other names its extra.

Used by the ``sync-only``, ``aio-only`` and ``aiohttp-only`` tox envs:
``python tests/one_side.py sync|aio|aiohttp``. Every transport of the side is called; the
aiohttp transport only where ``svclink[aiohttp]`` is installed, and where it is not,
choosing it fails with a message that names that extra.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OTHER = {
    "sync": ("httpx", "aio_pika", "aiohttp"),
    "aio": ("requests", "pika"),
    "aiohttp": ("requests", "pika"),
}
#: the transports each environment must carry a call over
TRANSPORTS = {"sync": ("requests", "urllib3"), "aio": ("httpx",), "aiohttp": ("httpx", "aiohttp")}


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


def call(side: str, transport: str, url: str) -> object:
    """One call to the server at ``url`` through ``side`` over ``transport``."""
    import svclink

    svclink.configure(
        service_connections=["user"], service_hosts={"user": url}, **{f"{side}_transport": transport}
    )
    if side == "sync":
        import svclink.sync

        return svclink.sync.get_service("user").http_dispatch("GET", "/ping", query_params={"a": 1})
    import svclink.aio

    async def call() -> object:
        user = await svclink.aio.get_service("user")
        return await user.http_dispatch("GET", "/ping", query_params={"a": 1})

    return asyncio.run(call())


def main(env: str) -> None:
    side = "sync" if env == "sync" else "aio"
    other_side = "aio" if side == "sync" else "sync"
    for module in OTHER[env]:
        assert importlib.util.find_spec(module) is None, f"{module} is installed; this env must not have it"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    for transport in TRANSPORTS[env]:
        body = call(side, transport, url)
        assert body == {"path": "/ping?a=1"}, (transport, body)
    if env == "aio":
        import svclink

        try:
            call("aio", "aiohttp", url)
        except svclink.ConfigurationError as exc:
            assert "svclink[aiohttp]" in str(exc), exc
        else:
            raise AssertionError("the aiohttp transport worked without aiohttp installed")
    try:
        importlib.import_module(f"svclink.{other_side}")
    except ImportError as exc:
        assert f"svclink[{other_side}]" in str(exc), exc
    else:
        raise AssertionError(f"svclink.{other_side} imported without its extra")
    server.shutdown()
    over = ", ".join(TRANSPORTS[env])
    print(f"svclink.{side} works alone over {over}; svclink.{other_side} asks for svclink[{other_side}]")


if __name__ == "__main__":
    import importlib

    main(sys.argv[1])
