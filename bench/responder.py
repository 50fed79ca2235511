"""A fast loopback HTTP/1.1 responder for the benchmarks, run in its own process.

It answers every request with the same small JSON body, keeps connections alive and
parses no more than it must, so that the client side (svclink or the raw library) is
what the benchmark measures. Run: ``python bench/responder.py PORT_FILE [CERT KEY]``;
with a certificate chain and its key it speaks TLS (the TLS benchmarks).
"""

from __future__ import annotations

import asyncio
import ssl
import sys

BODY = b'{"id":5,"name":"ada"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


class Responder(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            assert self.transport is not None
            self.transport.write(RESPONSE)


async def serve(port_file: str, tls: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, "127.0.0.1", 0, backlog=1024, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    with open(port_file, "w") as f:
        f.write(str(port))
    await server.serve_forever()


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], server_context(*sys.argv[2:4]) if len(sys.argv) > 2 else None))
