"""ComfyUI's ``/ws`` on the fake's own HTTP port, spoken by the ``websockets`` library.

ComfyUI serves HTTP and ``/ws`` on one port (aiohttp upgrades the request in place), and
clients find the socket from the same address. The fake's HTTP side is the standard library's
``http.server``, which has already read the upgrade request by the time the route runs. So the
request is answered with websockets' sans-I/O ``ServerProtocol.accept`` (key, version and
header checks, the ``Sec-WebSocket-Accept`` answer) and the socket is then handed to its
threading ``ServerConnection``: framing, masking, ping/pong, size limits and the closing
handshake are the library's. No extensions are offered, so frames go uncompressed (as the fake always sent them).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.sync.server import ServerConnection

from ..loopback import Handler, Reply

TEXT_TYPE = "text/plain; charset=utf-8"
CLOSE_TIMEOUT = 1.0  # seconds a closing handshake may take before the socket is just cut


def take_over(handler: Handler) -> ServerConnection:
    """Answer the upgrade request ``handler`` has read and return the open websocket, which
    owns the socket from now on. Raises Reply for a request that is not a valid upgrade."""
    request = Request(handler.path, Headers(handler.headers.items()))
    response = ServerProtocol().accept(request)
    if response.status_code != 101:
        raise Reply(response.status_code, response.body, TEXT_TYPE)
    sock = handler.connection
    sock.settimeout(None)  # the HTTP idle timeout must not end a quiet websocket
    # The connection's protocol starts OPEN, past the handshake already answered: what the
    # client sends next is frames. request/response are what ServerConnection.handshake() would
    # have recorded had it read the request itself; they must be set before the first frame,
    # and are: the 101 goes out only now, and a client sends no frame before it has the answer.
    connection = ServerConnection(sock, ServerProtocol(state=OPEN), close_timeout=CLOSE_TIMEOUT)
    connection.request, connection.response = request, response
    sock.sendall(response.serialize())
    return connection


Hello = Callable[[str], list[dict[str, Any]]]


class ClientSockets:
    """The open websockets by clientId: one per client, as in ComfyUI's server (a reconnect
    replaces the old socket). One lock keeps each event whole and a connect's greeting ahead of
    any event for that client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[str, ServerConnection] = {}

    def serve(self, connection: ServerConnection, client_id: str, hello: Hello) -> None:
        """Register the socket, send ``hello(client_id)``, then read (and drop) what the client
        sends until it closes or goes away."""
        with self._lock:
            self._sockets[client_id] = connection
            for message in hello(client_id):
                self._send(connection, json.dumps(message))
        try:
            with contextlib.suppress(ConnectionClosed):
                for _ in connection:  # ComfyUI ignores what clients send; the library answers pings
                    pass
        finally:
            with self._lock:
                if self._sockets.get(client_id) is connection:
                    del self._sockets[client_id]

    def send(self, event: str, data: dict[str, Any] | bytes, client_id: str | None) -> None:
        """An event to ``client_id``'s socket, or to every socket when None; bytes go as a binary
        frame, anything else as ``{"type", "data"}`` JSON text."""
        frame: str | bytes = data if isinstance(data, bytes) else json.dumps({"type": event, "data": data})
        with self._lock:
            if client_id is None:
                targets = list(self._sockets.values())
            else:
                targets = [self._sockets[client_id]] if client_id in self._sockets else []
            for connection in targets:
                self._send(connection, frame)

    def close_all(self) -> None:
        with self._lock:
            connections = list(self._sockets.values())
        for connection in connections:
            connection.close(CloseCode.GOING_AWAY)

    def drop_all(self) -> int:
        with self._lock:
            connections = list(self._sockets.values())
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.socket.shutdown(socket.SHUT_RDWR)
        return len(connections)

    @staticmethod
    def _send(connection: ServerConnection, frame: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):  # gone: its reader ends and unregisters it
            connection.send(frame)
