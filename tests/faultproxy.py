"""A TCP proxy on 127.0.0.1 that misbehaves on demand (test code, not product code).

Put it in front of the HTTP test server or RabbitMQ and switch its ``mode``:

- ``"pass"``: forward bytes both ways;
- ``"delay"``: hold each chunk from the upstream for ``delay`` seconds;
- ``"trickle"``: forward the upstream's bytes ``trickle`` at a time, ``pause`` apart;
- ``"reset"``: accept, read what the client sends, then reset the connection (RST);
- ``"blackhole"``: accept and never answer;

and :meth:`cut` resets every open connection at once (a broker restart, a network blip).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


def _reset(sock: socket.socket) -> None:
    """Reset ``sock``: shutdown() first, because close() alone does not wake a thread blocked in recv()."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    __test__ = False

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.delay = 0.0
        self.trickle = 1
        self.pause = 0.05
        #: cleared, the proxy stops reading what clients send (their socket buffers fill up)
        self.reading = threading.Event()
        self.reading.set()
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut."""
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _reset(sock)
        return len(sockets) // 2

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode == "blackhole":
            self._track(client)
            return  # held open, never answered, until cut() or close()
        if mode == "reset":
            client.settimeout(1.0)
            with contextlib.suppress(OSError):
                client.recv(65536)
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):  # forward each chunk at once, as the wire would (no Nagle stalls)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._track(client, upstream)
        threading.Thread(target=self._pump, args=(client, upstream, "request"), daemon=True).start()
        self._pump(upstream, client, mode)

    def _pump(self, src: socket.socket, dst: socket.socket, mode: str) -> None:
        try:
            while True:
                if mode == "request":
                    self.reading.wait()
                data = src.recv(65536)
                if not data:
                    break
                if mode == "delay":
                    time.sleep(self.delay)
                if mode == "trickle":
                    for i in range(0, len(data), self.trickle):
                        dst.sendall(data[i : i + self.trickle])
                        time.sleep(self.pause)
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
