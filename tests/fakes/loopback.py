"""The HTTP plumbing both fakes share: a threaded standard-library server on loopback that starts
in milliseconds on a free port and, when stopped, really stops (keep-alive connections are cut
too, so a client of a stopped fake sees a refused or dropped connection, never a stale answer)."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol


class Reply(Exception):
    """Raised by route code to answer at once."""

    def __init__(
        self, status: int, body: bytes = b"", content_type: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status, self.body, self.content_type, self.headers = status, body, content_type, headers or {}


class App(Protocol):
    def handle(self, handler: Handler, method: str, body: bytes) -> None:
        """Answer one request (``handler.reply``), or raise Reply."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection does not pin a thread forever
    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        # http.server writes headers and body separately: with Nagle's algorithm and the
        # client's delayed ACK every keep-alive request then takes ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read assertions, not logs
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            self.server.app.handle(self, method, body)
        except Reply as reply:
            self.reply(reply.status, reply.body, reply.content_type, reply.headers)

    def reply(
        self, status: int, body: bytes = b"", content_type: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer(ThreadingHTTPServer):
    """Serves ``app`` from a daemon thread between ``start()`` and ``stop()``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        super().__init__(address, Handler)
        self.app = app
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._open.clear()
