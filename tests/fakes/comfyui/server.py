"""FakeComfyUI: the ComfyEngine served over HTTP and ``/ws`` on one loopback port, with ComfyUI
0.3.64's status codes, content types and bodies as recorded in tests/fixtures/comfyui/, behind
an optional access gate (required headers) and path prefix, like a tunnel or reverse proxy."""

from __future__ import annotations

import copy
import email.policy
import hmac
import json
import posixpath
import uuid
from collections.abc import Callable
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..loopback import Handler, LoopbackServer, Reply
from .engine import ComfyEngine
from .files import FOLDER_TYPES, content_type_for, split_annotated
from .websocket import ClientSockets, take_over

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
SERVER_ERROR = b"500 Internal Server Error\n\nServer got itself in trouble"

Route = Callable[[Handler, str, dict[str, str], bytes], None]


def _json_reply(h: Handler, payload: Any, status: int = 200) -> None:
    h.reply(status, json.dumps(payload).encode(), JSON_TYPE)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise Reply(500, SERVER_ERROR, TEXT_TYPE) from exc


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename or None, bytes)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


class FakeComfyUI:
    """A ComfyUI server on loopback that behaves like the recordings (see tests/fakes/README.md).

    Usable as a context manager or with ``start()`` / ``stop()``. Inspection for tests:
    ``submitted`` (every prompt POSTed, valid or not), ``interrupts`` (the prompt_id asked for,
    or None), ``deletes`` (prompt ids asked to be removed from the queue), ``files`` (names
    served by /view), ``requests`` ((method, path) of every request), ``ws_clients`` (the
    clientId of every websocket that connected).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        run_seconds: float = 0.2,
        node_seconds: float | None = None,
        progress_steps: int = 0,
        required_headers: dict[str, str] | None = None,
        prefix: str = "",
        cache: bool = False,
        websocket: bool = True,
    ) -> None:
        self.host, self._port = host, port
        self.required_headers = dict(required_headers or {})
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.engine = ComfyEngine(
            run_seconds=run_seconds, node_seconds=node_seconds, progress_steps=progress_steps, cache=cache
        )
        self.sockets = ClientSockets()
        self.engine.on_event = self.sockets.send
        self.submitted: list[dict[str, Any]] = []
        self.interrupts: list[str | None] = []
        self.deletes: list[str] = []
        self.files: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.ws_clients: list[str] = []
        # False: /ws upgrades are refused with 403, as by a tunnel that passes no websockets
        # (HTTP keeps working). May be changed while the server runs.
        self.websocket = websocket
        self._httpd: LoopbackServer | None = None

    def __repr__(self) -> str:  # never shows the required header values
        return f"FakeComfyUI(url={self.url if self._httpd else None!r}, headers={sorted(self.required_headers)})"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeComfyUI:
        if self._httpd is None:
            self._httpd = LoopbackServer((self.host, self._port), self)
            self.engine.start()
            self._httpd.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self.sockets.close_all()
            self._httpd.stop()
            self._httpd = None
        self.engine.stop()

    def drop_websockets(self) -> int:
        """Cut every open websocket without a closing handshake (a tunnel dropping them) while
        HTTP keeps working; answers how many were cut. New sockets are still accepted unless
        ``websocket`` is False."""
        return self.sockets.drop_all()

    def __enter__(self) -> FakeComfyUI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeComfyUI is not started")
        return self._httpd.port

    @property
    def addr(self) -> str:
        """``host:port`` (no scheme, no prefix), the COMFYUI_ADDR form."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL including the path prefix, e.g. ``http://127.0.0.1:8188/comfy``."""
        return f"http://{self.addr}{self.prefix}"

    # -- convenience for tests ------------------------------------------------------------

    def file_bytes(self, filename: str, subfolder: str = "", folder: str = "output") -> bytes | None:
        return self.engine.store.get(folder, subfolder, filename)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return self.engine.wait_idle(timeout)

    def pause(self) -> None:
        """Hold the queue: new prompts stay in ``queue_pending`` until ``resume()``."""
        self.engine.pause()

    def resume(self) -> None:
        self.engine.resume()

    # -- routing --------------------------------------------------------------------------

    def _authorised(self, handler: Handler) -> bool:
        for name, expected in self.required_headers.items():
            got = handler.headers.get(name)
            if got is None or not hmac.compare_digest(got.encode(), expected.encode()):
                return False
        return True

    def handle(self, handler: Handler, method: str, body: bytes) -> None:
        url = urlsplit(handler.path)
        path = url.path
        self.requests.append((method, path))
        if not self._authorised(handler):
            raise Reply(401, b"Unauthorized", TEXT_TYPE)
        if self.prefix:
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                raise Reply(404, b"404: Not Found", TEXT_TYPE)
            path = path[len(self.prefix) :] or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route = self._route(method, path)
        if route is None:
            raise Reply(404, b"404: Not Found", TEXT_TYPE)
        try:
            route(handler, path, query, body)
        except Reply:
            raise
        except Exception as exc:  # anything unexpected is ComfyUI's generic 500
            raise Reply(500, SERVER_ERROR, TEXT_TYPE) from exc

    def _route(self, method: str, path: str) -> Route | None:
        exact: dict[tuple[str, str], Route] = {
            ("POST", "/prompt"): self._post_prompt,
            ("GET", "/queue"): self._get_queue,
            ("POST", "/queue"): self._post_queue,
            ("POST", "/interrupt"): self._post_interrupt,
            ("GET", "/view"): self._view,
            ("GET", "/object_info"): self._object_info,
            ("POST", "/upload/image"): self._upload,
            ("GET", "/ws"): self._websocket,
        }
        if (method, path) in exact:
            return exact[(method, path)]
        if method == "GET" and path.startswith("/history/"):
            return self._get_history
        return None

    # -- routes ---------------------------------------------------------------------------

    def _websocket(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        """ComfyUI's /ws: ``status`` on connect, the running node re-sent to the running prompt's
        client, then the events of that client's prompts until the client closes."""
        if "websocket" not in h.headers.get("Upgrade", "").lower():
            raise Reply(400, b"No WebSocket UPGRADE hdr: None", TEXT_TYPE)  # aiohttp's answer
        if not self.websocket:
            raise Reply(403, b"Forbidden", TEXT_TYPE)
        connection = take_over(h)
        h.close_connection = True
        sid = query.get("clientId") or uuid.uuid4().hex
        self.ws_clients.append(sid)
        self.sockets.serve(connection, sid, self._ws_hello)

    def _ws_hello(self, sid: str) -> list[dict[str, Any]]:
        queue_info = {"exec_info": {"queue_remaining": self.engine.queue_remaining()}}
        hello: list[dict[str, Any]] = [{"type": "status", "data": {"status": queue_info, "sid": sid}}]
        # server.py: "On reconnect if we are the currently executing client send the current node"
        current = self.engine.current_node_of(sid)
        if current is not None:
            hello.append({"type": "executing", "data": {"node": current}})
        return hello

    def _post_prompt(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        data = _json_body(body)
        if not isinstance(data, dict):
            raise Reply(500, SERVER_ERROR, TEXT_TYPE)
        if "prompt" in data:
            self.submitted.append(copy.deepcopy(data["prompt"]))
        status, payload = self.engine.submit(data)
        _json_reply(h, payload, status)

    def _get_queue(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        _json_reply(h, self.engine.queue())

    def _post_queue(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        data = _json_body(body)
        if not isinstance(data, dict):
            raise Reply(500, SERVER_ERROR, TEXT_TYPE)
        if "delete" in data:
            ids = [str(x) for x in data["delete"]]
            self.deletes.extend(ids)
            self.engine.delete_pending(ids)
        h.reply(200)

    def _post_interrupt(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        self.interrupts.append(prompt_id)
        self.engine.interrupt(prompt_id)
        h.reply(200)

    def _get_history(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        _json_reply(h, self.engine.history(path[len("/history/") :]))

    def _object_info(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        _json_reply(h, self.engine.object_info_now())

    def _view(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        # The checks and status codes of ComfyUI's /view, in its order: a traversing or absolute
        # filename is 400, a subfolder that leaves the folder 403, anything absent 404.
        if "filename" not in query:
            raise Reply(404)
        raw = query["filename"]
        folder, in_name, filename = split_annotated(raw, default=query.get("type", "output"))
        if not filename or raw.startswith("/") or ".." in raw or folder not in FOLDER_TYPES:
            raise Reply(400)
        subfolder = in_name
        if "subfolder" in query:
            sub = posixpath.normpath(query["subfolder"]) if query["subfolder"] else "."
            if sub.startswith(("/", "..")):
                raise Reply(403)
            subfolder = posixpath.normpath(posixpath.join(sub, in_name)).strip(".").strip("/")
        data = self.engine.store.get(folder, subfolder, filename)
        if data is None:
            raise Reply(404)
        self.files.append(filename)
        h.reply(200, data, content_type_for(filename), {"Content-Disposition": f'filename="{filename}"'})

    def _upload(self, h: Handler, path: str, query: dict[str, str], body: bytes) -> None:
        fields = parse_multipart(h.headers.get("Content-Type", ""), body)
        image = fields.get("image")
        if image is None or not image[0]:
            raise Reply(400)

        def text(name: str, default: str = "") -> str:
            return fields[name][1].decode() if name in fields else default

        saved = self.engine.store.upload(
            image[0],
            image[1],
            subfolder=text("subfolder"),
            folder=text("type", "input") or "input",
            overwrite=text("overwrite") in ("true", "1"),
        )
        if saved is None:
            raise Reply(400)
        _json_reply(h, saved)
