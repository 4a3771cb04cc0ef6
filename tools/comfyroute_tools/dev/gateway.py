"""A WebSocket gateway that behaves like API Gateway's WebSocket APIs, on one local port.

What it reproduces, because the handlers depend on it:

* ``$connect`` runs the REQUEST authorizer first (identity sources missing -> 401 without
  calling it; an ``Unauthorized`` error -> 401; Deny or no matching Allow -> 403); then the
  ``$connect`` route, whose non-2xx ``statusCode`` refuses the handshake. Only then is the
  socket accepted.
* The WebSocket is served where a deployment is reached: ``/`` and ``/{stage}`` (the
  ``execute-api`` URL) and ``/ws`` (a custom domain whose API mapping is ``ws``, where nodetool's
  client connects); an upgrade anywhere else is refused with 403 before any handler runs.
* Each text frame becomes an API Gateway MESSAGE event, routed by the route selection expression
  (``$request.body.command``) or to ``$default``; the authorizer's context rides along in
  ``requestContext.authorizer``. ``$disconnect`` runs when the socket closes, for any reason.
* Binary frames: API Gateway documents that WebSocket APIs reject them and disconnect the client
  with 1003 (Binary media types for WebSocket APIs, API Gateway developer guide), so that is
  the default here (``binary_frames="reject"``), no route invoked. ``binary_frames="default_route"``
  is *not* API Gateway: it hands them to ``$default`` base64-encoded with ``isBase64Encoded``
  true, the way a binary-capable front would, so MessagePack clients (nodetool's web client)
  can be run against the handlers on one machine.
* Limits: messages over 128 KB close with 1009, idle connections (10 min) and old ones (2 h)
  close with 1001. (API Gateway also closes on a single frame over 32 KB; aiohttp hands over
  whole messages, so that one is not reproduced.)
* The Management API on the same origin: ``POST/GET/DELETE /@connections/{id}`` (also under
  ``/{stage}/``), answering 410 ``GoneException`` for unknown or closed connections, so
  boto3's ``apigatewaymanagementapi`` client works unchanged. With ``management_key`` set (the
  dev stack sets it when it listens beyond loopback) only SigV4-signed requests by that key get
  through, as only IAM principals do on API Gateway; others get 403 ``ForbiddenException``.

Handlers are synchronous (boto3), so they run in a thread pool and the event loop keeps
serving — including the Management API calls those very handlers make.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import mimetypes
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from comfyroute.defaults import MAX_MESSAGE_BYTES  # API Gateway's WebSocket message limit
from comfyroute_tools.dev.lambdas import DEFAULT_ACCOUNT_ID, DEFAULT_REGION
from comfyroute_tools.dev.sigv4 import SigningKey, verify

log = logging.getLogger("comfyroute_dev.gateway")

# A route handler gets the API Gateway event and returns the integration response.
RouteHandler = Callable[[dict[str, Any]], Any]
# An authorizer gets the REQUEST authorizer event and returns an IAM policy document response.
Authorizer = Callable[[dict[str, Any]], Mapping[str, Any]]
# Called with (connection_id, data) for every Management API post that reached a socket.
PostHook = Callable[[str, bytes], None]

IDLE_TIMEOUT_SECONDS = 600.0
MAX_DURATION_SECONDS = 7200.0
DEFAULT_IDENTITY_SOURCES = ("route.request.querystring.token",)
# Paths besides "/{stage}" where the WebSocket is served (see the module docstring).
DEFAULT_WEBSOCKET_PATHS = ("/", "/ws")
# RFC 6455 "unsupported data": what API Gateway closes with when a client sends a binary frame.
CLOSE_UNSUPPORTED_DATA = 1003
_ID_ALPHABET = string.ascii_letters + string.digits

# "reject": as API Gateway does. "default_route": to $default, base64 (not API Gateway).
BinaryFrames = Literal["reject", "default_route"]


class Unauthorized(Exception):
    """Raise from an authorizer (or any exception whose message is 'Unauthorized') for a 401."""

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class GatewayConfig:
    api_id: str = "devwsapi01"
    stage: str = "dev"
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    route_selection_expression: str = "$request.body.command"
    identity_sources: tuple[str, ...] = DEFAULT_IDENTITY_SOURCES
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    max_duration: float = MAX_DURATION_SECONDS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    web_dir: Path | None = None
    two_way_routes: frozenset[str] = frozenset()
    handler_threads: int = 32
    binary_frames: BinaryFrames = "reject"
    websocket_paths: tuple[str, ...] = DEFAULT_WEBSOCKET_PATHS
    # Management API callers must sign with this key (None: anyone who reaches the port).
    management_key: SigningKey | None = None


@dataclass
class Connection:
    connection_id: str
    ws: web.WebSocketResponse
    connected_at: float  # epoch seconds
    source_ip: str
    user_agent: str
    headers: dict[str, str]
    authorizer: dict[str, Any] | None
    last_active: float = field(default_factory=time.time)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    deleted: bool = False  # closed through the Management API

    @property
    def open(self) -> bool:
        return not self.ws.closed


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_connection_id() -> str:
    # API Gateway ids are 16 characters ending in "=", e.g. "L0SM9cOFvHcCIhw=".
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def _request_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def select_route(body: str | None, expression: str, routes: Mapping[str, Any]) -> str:
    """The route key a frame goes to: the value at ``$request.body.<path>`` when a route of
    that name exists, ``$default`` otherwise (non-JSON, missing key, unknown command)."""
    prefix = "$request.body."
    if body is None or not expression.startswith(prefix):
        return "$default"
    try:
        # Numbers stay text: route selection must not trip on Python's int-parsing limit
        # (4,300 digits) or on NaN, which API Gateway's own parser reads past.
        value: Any = json.loads(body, parse_int=str, parse_float=str, parse_constant=str)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "$default"
    for part in expression[len(prefix) :].split("."):
        if not isinstance(value, dict) or part not in value:
            return "$default"
        value = value[part]
    if isinstance(value, str) and value in routes and not value.startswith("$"):
        return value
    return "$default"


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """Whether an authorizer's IAM policy lets ``execute-api:Invoke`` on ``method_arn``:
    an explicit Deny wins, otherwise one matching Allow is needed."""
    document = policy.get("policyDocument") or {}
    statements = document.get("Statement") or []
    if isinstance(statements, Mapping):
        statements = [statements]
    allowed = False
    for st in statements:
        actions = st.get("Action", [])
        resources = st.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatchcase("execute-api:Invoke", a) for a in actions):
            continue
        if not any(fnmatchcase(method_arn, r) for r in resources):
            continue
        if str(st.get("Effect", "")).lower() == "deny":
            return False
        if str(st.get("Effect", "")).lower() == "allow":
            allowed = True
    return allowed


def _missing_identity(sources: tuple[str, ...], query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    lower_headers = {k.lower(): v for k, v in headers.items()}
    for source in sources:
        if source.startswith("route.request.querystring."):
            if not query.get(source.removeprefix("route.request.querystring.")):
                return source
        elif source.startswith("route.request.header.") and not lower_headers.get(
            source.removeprefix("route.request.header.").lower()
        ):
            return source
    return None


class Gateway:
    """API Gateway WebSocket + Management API + static files, served by aiohttp."""

    def __init__(
        self,
        routes: Mapping[str, RouteHandler],
        authorizer: Authorizer | None = None,
        config: GatewayConfig | None = None,
        *,
        on_post: PostHook | None = None,
        ready: bool = True,
        function_urls: Mapping[str, RouteHandler] | None = None,
    ) -> None:
        self.routes = dict(routes)
        # POST path prefix -> a function behind a Lambda function URL (payload format 2.0),
        # e.g. RunPod's webhook at /runpod/callback/...
        self.function_urls = dict(function_urls or {})
        self.authorizer = authorizer
        self.config = config or GatewayConfig()
        self.on_post = on_post
        self.connections: dict[str, Connection] = {}
        self.host = "127.0.0.1"
        self.port = 0
        self._pool = ThreadPoolExecutor(max_workers=self.config.handler_threads, thread_name_prefix="handler")
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Set by the owner once every handler is loaded: before that, a handshake would reach
        # an authorizer that cannot run yet, so clients get 503 "starting" and can retry.
        self.ready = threading.Event()
        if ready:
            self.ready.set()

    # -- addresses -------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def domain_name(self) -> str:
        return f"{self.host}:{self.port}"

    def method_arn(self, route_key: str) -> str:
        c = self.config
        return f"arn:aws:execute-api:{c.region}:{c.account_id}:{c.api_id}/{c.stage}/{route_key}"

    # -- the aiohttp application -----------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_message_bytes + 1024)
        app.router.add_get("/healthz", self._healthz)
        for prefix in ("", "/{stage}"):
            path = prefix + "/@connections/{connection_id}"
            app.router.add_post(path, self._post_to_connection)
            app.router.add_get(path, self._get_connection)
            app.router.add_delete(path, self._delete_connection)
        for prefix in self.function_urls:
            app.router.add_post(prefix.rstrip("/") + "/{tail:.*}", self._function_url)
        app.router.add_get("/{tail:.*}", self._root)
        return app

    async def start_async(self, host: str, port: int) -> None:
        self.host = host
        self._loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # With port 0 the OS picked one; the runner knows which.
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port

    async def stop_async(self, code: int = WSCloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        self._stopping = True
        conns = list(self.connections.values())
        await asyncio.gather(
            *(c.ws.close(code=code, message=reason.encode()) for c in conns if c.open), return_exceptions=True
        )
        # Let each connection's loop run its $disconnect and finish its in-flight handlers.
        pending = [t for c in conns for t in c.tasks]
        if pending:
            await asyncio.wait(pending, timeout=10)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- running in a background thread (tests, DevStack) -----------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> None:
        """Serve on ``host:port`` (0 = a free port) from a background thread; returns once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async(host, port))
            except BaseException as exc:
                failure.append(exc)
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="comfyroute-gateway", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"gateway did not start listening on {host}:{port} within {timeout}s")
        if failure:
            # Nothing is serving: forget the loop so stop() has nothing to wait for.
            self._thread.join(timeout)
            self._loop = self._thread = self._runner = None
            self._pool.shutdown(wait=False)
            raise failure[0]

    def stop(self, timeout: float = 15.0) -> None:
        """Close every socket with 1001, run their ``$disconnect``, stop serving."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            self._pool.shutdown(wait=False)
            return
        fut = asyncio.run_coroutine_threadsafe(self.stop_async(), loop)
        try:
            fut.result(timeout)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may have closed already
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- handlers in threads ---------------------------------------------------------------

    async def _run(self, fn: Callable[[dict[str, Any]], Any], event: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, event)

    # -- HTTP routes -----------------------------------------------------------------------

    async def _function_url(self, request: web.Request) -> web.StreamResponse:
        """A Lambda function URL request: the 2.0 event in, the handler's proxy answer out."""
        fn = next((f for prefix, f in self.function_urls.items() if request.path.startswith(prefix)), None)
        if fn is None or not self.ready.is_set():
            return web.Response(status=503 if fn is not None else 404)
        body = await request.content.read()
        now = time.time()
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": request.path,
            "rawQueryString": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "requestContext": {
                "http": {"method": request.method, "path": request.path, "sourceIp": request.remote or ""},
                "requestId": uuid.uuid4().hex,
                "timeEpoch": int(now * 1000),
            },
            "body": base64.b64encode(body).decode() if body else None,
            "isBase64Encoded": bool(body),
        }
        try:
            answer = await self._run(fn, event)
        except Exception:
            log.exception("function URL handler failed")
            return web.Response(status=502)
        answer = answer if isinstance(answer, dict) else {}
        return web.Response(status=int(answer.get("statusCode", 200)), text=str(answer.get("body") or ""))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok" if self.ready.is_set() else "starting",
                "connections": sum(c.open for c in self.connections.values()),
            },
            status=200 if self.ready.is_set() else 503,
        )

    def serves_websocket_at(self, path: str) -> bool:
        """Whether a WebSocket upgrade to ``path`` reaches the API (trailing slash optional)."""
        wanted = path.rstrip("/") or "/"
        paths = {*self.config.websocket_paths, f"/{self.config.stage}"}
        return wanted in {p.rstrip("/") or "/" for p in paths}

    async def _root(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if not self.serves_websocket_at(request.path):
                # No API is mapped there: refused before any authorizer or route runs.
                return web.json_response({"message": "Forbidden"}, status=403)
            return await self._websocket(request)
        return await self._static(request)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        web_dir = self.config.web_dir
        rel = request.match_info.get("tail", "") or "index.html"
        if web_dir is None or not web_dir.is_dir():
            if rel == "index.html":
                return web.Response(
                    text=f"comfyroute dev gateway: connect a WebSocket to {self.ws_url}/?token=...\n",
                    content_type="text/plain",
                )
            raise web.HTTPNotFound()
        root = web_dir.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise web.HTTPNotFound()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            raise web.HTTPNotFound()
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return web.FileResponse(target, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})

    # -- Management API --------------------------------------------------------------------

    def _gone(self) -> web.Response:
        # botocore reads the error code from this header; the body is what API Gateway sends.
        return web.json_response({"message": None}, status=410, headers={"x-amzn-ErrorType": "GoneException"})

    def _forbidden(self, request: web.Request, body: bytes) -> web.Response | None:
        key = self.config.management_key
        if key is None:
            return None
        reason = verify(key, request.method, request.raw_path, request.headers, body)
        if reason is None:
            return None
        log.warning("Management API %s from %s refused: %s", request.method, request.remote, reason)
        return web.json_response(
            {"message": "Forbidden"}, status=403, headers={"x-amzn-ErrorType": "ForbiddenException"}
        )

    def _live(self, request: web.Request) -> Connection | None:
        conn = self.connections.get(request.match_info["connection_id"])
        return conn if conn is not None and conn.open else None

    async def _post_to_connection(self, request: web.Request) -> web.Response:
        data = await request.read()
        refused = self._forbidden(request, data)
        if refused is not None:
            return refused
        conn = self._live(request)
        if conn is None:
            return self._gone()
        if len(data) > self.config.max_message_bytes:
            return web.json_response(
                {"message": f"Message too long: {len(data)} bytes; the limit is {self.config.max_message_bytes}"},
                status=413,
                headers={"x-amzn-ErrorType": "PayloadTooLargeException"},
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            if text is not None:
                await conn.ws.send_str(text)
            else:
                await conn.ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            return self._gone()
        if self.on_post is not None:
            try:
                self.on_post(conn.connection_id, data)
            except Exception:
                log.exception("post hook failed")
        return web.Response(status=200)

    async def _get_connection(self, request: web.Request) -> web.Response:
        refused = self._forbidden(request, await request.read())
        if refused is not None:
            return refused
        conn = self._live(request)
        if conn is None:
            return self._gone()
        return web.json_response(
            {
                "connectedAt": _iso(conn.connected_at),
                "lastActiveAt": _iso(conn.last_active),
                "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
            }
        )

    async def _delete_connection(self, request: web.Request) -> web.Response:
        refused = self._forbidden(request, await request.read())
        if refused is not None:
            return refused
        conn = self._live(request)
        if conn is None:
            return self._gone()
        conn.deleted = True
        await conn.ws.close(code=WSCloseCode.OK, message=b"deleted")
        return web.Response(status=204)

    # -- events ----------------------------------------------------------------------------

    def _base_context(self, conn_id: str, route_key: str, event_type: str, connected_at: float) -> dict[str, Any]:
        now = time.time()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": uuid.uuid4().hex[:16] + "=",
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.config.stage,
            "connectedAt": int(connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "requestId": uuid.uuid4().hex[:16] + "=",
            "domainName": self.domain_name,
            "connectionId": conn_id,
            "apiId": self.config.api_id,
        }

    @staticmethod
    def _query(request: web.Request) -> tuple[dict[str, str], dict[str, list[str]]]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for k, v in request.query.items():
            single[k] = v  # API Gateway keeps the last value
            multi.setdefault(k, []).append(v)
        return single, multi

    def _headers(self, request: web.Request) -> tuple[dict[str, str], dict[str, list[str]]]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            single[k] = v
            multi.setdefault(k, []).append(v)
        peer = request.remote or "127.0.0.1"
        extra = {"X-Forwarded-For": peer, "X-Forwarded-Port": str(self.port), "X-Forwarded-Proto": "http"}
        for k, v in extra.items():
            single.setdefault(k, v)
            multi.setdefault(k, [v])
        return single, multi

    def connect_event(
        self, request: web.Request, conn_id: str, connected_at: float, authorizer: dict[str, Any] | None
    ) -> dict[str, Any]:
        headers, multi_headers = self._headers(request)
        query, multi_query = self._query(request)
        ctx = self._base_context(conn_id, "$connect", "CONNECT", connected_at)
        ctx["identity"] = {
            "sourceIp": request.remote or "127.0.0.1",
            "userAgent": request.headers.get("User-Agent", ""),
        }
        if authorizer is not None:
            ctx["authorizer"] = authorizer
        event: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi_headers}
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = multi_query
        event["requestContext"] = ctx
        event["isBase64Encoded"] = False
        return event

    def authorizer_event(self, request: web.Request, conn_id: str, connected_at: float) -> dict[str, Any]:
        connect = self.connect_event(request, conn_id, connected_at, None)
        return {
            "type": "REQUEST",
            "methodArn": self.method_arn("$connect"),
            "headers": connect["headers"],
            "multiValueHeaders": connect["multiValueHeaders"],
            "queryStringParameters": connect.get("queryStringParameters", {}),
            "multiValueQueryStringParameters": connect.get("multiValueQueryStringParameters", {}),
            "stageVariables": {},
            "requestContext": connect["requestContext"],
        }

    def message_event(self, conn: Connection, route_key: str, body: str, *, base64_encoded: bool) -> dict[str, Any]:
        ctx = self._base_context(conn.connection_id, route_key, "MESSAGE", conn.connected_at)
        ctx["messageId"] = uuid.uuid4().hex[:16] + "="
        ctx["identity"] = {"sourceIp": conn.source_ip}
        if conn.authorizer is not None:
            ctx["authorizer"] = conn.authorizer
        return {"requestContext": ctx, "body": body, "isBase64Encoded": base64_encoded}

    def disconnect_event(self, conn: Connection, code: int | None, reason: str) -> dict[str, Any]:
        ctx = self._base_context(conn.connection_id, "$disconnect", "DISCONNECT", conn.connected_at)
        ctx["disconnectStatusCode"] = int(code) if code is not None else int(WSCloseCode.ABNORMAL_CLOSURE)
        ctx["disconnectReason"] = reason
        ctx["identity"] = {"sourceIp": conn.source_ip, "userAgent": conn.user_agent}
        if conn.authorizer is not None:
            ctx["authorizer"] = conn.authorizer
        # API Gateway sends the few headers it still has at disconnect time.
        headers = {"Host": self.domain_name, "x-api-key": "", "X-Forwarded-For": conn.source_ip}
        return {
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "requestContext": ctx,
            "isBase64Encoded": False,
        }

    # -- $connect --------------------------------------------------------------------------

    async def _authorize(self, request: web.Request, conn_id: str, connected_at: float) -> dict[str, Any] | None:
        if self.authorizer is None:
            return None
        query, _ = self._query(request)
        missing = _missing_identity(self.config.identity_sources, query, request.headers)
        if missing is not None:
            # API Gateway answers 401 without calling the authorizer when an identity source is absent.
            raise _Refused(401, "Unauthorized")
        event = self.authorizer_event(request, conn_id, connected_at)
        started = time.monotonic()
        try:
            policy = await self._run(lambda e: dict(self.authorizer(e)), event)  # type: ignore[misc]
        except Exception as exc:
            if str(exc) == "Unauthorized":
                raise _Refused(401, "Unauthorized") from None
            log.error("authorizer failed: %s", type(exc).__name__)
            raise _Refused(500, "Internal server error") from None
        if not policy_allows(policy, event["methodArn"]):
            raise _Refused(403, "Forbidden")
        context = {k: v for k, v in (policy.get("context") or {}).items() if v is not None}
        context["principalId"] = policy.get("principalId", "")
        context["integrationLatency"] = int((time.monotonic() - started) * 1000)
        return context

    async def _connect(self, request: web.Request, conn_id: str, connected_at: float) -> dict[str, Any] | None:
        authorizer = await self._authorize(request, conn_id, connected_at)
        handler = self.routes.get("$connect")
        if handler is not None:
            event = self.connect_event(request, conn_id, connected_at, authorizer)
            try:
                result = await self._run(handler, event)
            except Exception as exc:
                log.error("$connect handler failed: %s", type(exc).__name__)
                raise _Refused(500, "Internal server error") from None
            status = result.get("statusCode", 200) if isinstance(result, Mapping) else 200
            if not 200 <= int(status) < 300:
                raise _Refused(int(status), str(result.get("body") or "Forbidden"))
        return authorizer

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            return web.Response(status=503, text="shutting down")
        if not self.ready.is_set():
            return web.Response(status=503, text="starting; try again in a moment", headers={"Retry-After": "1"})
        conn_id = new_connection_id()
        connected_at = time.time()
        try:
            authorizer = await self._connect(request, conn_id, connected_at)
        except _Refused as refused:
            return web.json_response({"message": refused.message}, status=refused.status)
        ws = web.WebSocketResponse(max_msg_size=self.config.max_message_bytes, autoping=True)
        await ws.prepare(request)
        conn = Connection(
            connection_id=conn_id,
            ws=ws,
            connected_at=connected_at,
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
            headers=dict(request.headers),
            authorizer=authorizer,
        )
        self.connections[conn_id] = conn
        reason, code = "Client closed the connection", None
        try:
            reason, code = await self._serve(conn)
        finally:
            # Handlers still running for this connection finish before $disconnect, as their
            # posts to it would otherwise race the disconnect handler's cleanup.
            if conn.tasks:
                await asyncio.wait(set(conn.tasks), timeout=30)
            await self._disconnect(conn, code if code is not None else ws.close_code, reason)
        return ws

    async def _serve(self, conn: Connection) -> tuple[str, int | None]:
        """The receive loop; returns the disconnect reason and, when the gateway closed the
        socket, the code it sent (else the peer's code is read from the socket)."""
        ws, cfg = conn.ws, self.config
        while True:
            now = time.time()
            idle_left = conn.last_active + cfg.idle_timeout - now
            life_left = conn.connected_at + cfg.max_duration - now
            if idle_left <= 0 or life_left <= 0:
                why = "Idle timeout" if idle_left <= 0 else "Maximum connection duration"
                await ws.close(code=WSCloseCode.GOING_AWAY, message=f"Going away: {why}".encode())
                return why, int(WSCloseCode.GOING_AWAY)
            try:
                msg = await ws.receive(timeout=min(idle_left, life_left))
            except TimeoutError:
                continue  # the loop head closes it
            if msg.type == WSMsgType.TEXT:
                conn.last_active = time.time()
                self._dispatch(conn, msg.data, base64_encoded=False)
            elif msg.type == WSMsgType.BINARY:
                conn.last_active = time.time()
                if cfg.binary_frames == "reject":
                    # The close reason text is ours; API Gateway documents only the code.
                    await ws.close(code=CLOSE_UNSUPPORTED_DATA, message=b"Binary frames are not supported")
                    return "Unsupported binary frame", CLOSE_UNSUPPORTED_DATA
                self._dispatch(conn, base64.b64encode(msg.data).decode(), base64_encoded=True)
            elif msg.type == WSMsgType.ERROR:
                error = ws.exception()
                if getattr(error, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    return "Message too big", int(WSCloseCode.MESSAGE_TOO_BIG)
                return f"Connection error: {type(error).__name__}", int(WSCloseCode.ABNORMAL_CLOSURE)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                if self._stopping:
                    return "Server shutting down", int(WSCloseCode.GOING_AWAY)
                if conn.deleted:
                    return "Connection deleted", int(WSCloseCode.OK)
                return "Client closed the connection", None

    async def _disconnect(self, conn: Connection, code: int | None, reason: str) -> None:
        handler = self.routes.get("$disconnect")
        try:
            if handler is not None:
                await self._run(handler, self.disconnect_event(conn, code, reason))
        except Exception as exc:
            log.error("$disconnect handler failed for %s: %s", conn.connection_id, type(exc).__name__)
        finally:
            self.connections.pop(conn.connection_id, None)

    # -- messages --------------------------------------------------------------------------

    def _dispatch(self, conn: Connection, body: str, *, base64_encoded: bool) -> None:
        # API Gateway invokes the integration per message without waiting for the previous one.
        task = asyncio.get_running_loop().create_task(self._handle_message(conn, body, base64_encoded))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _handle_message(self, conn: Connection, body: str, base64_encoded: bool) -> None:
        route_key = (
            "$default" if base64_encoded else select_route(body, self.config.route_selection_expression, self.routes)
        )
        event = self.message_event(conn, route_key, body, base64_encoded=base64_encoded)
        request_id = event["requestContext"]["requestId"]
        handler = self.routes.get(route_key)
        if handler is None:
            await self._send_quietly(
                conn, {"message": "Forbidden", "connectionId": conn.connection_id, "requestId": request_id}
            )
            return
        try:
            result = await self._run(handler, event)
        except Exception as exc:
            log.error("%s handler failed: %s", route_key, type(exc).__name__)
            await self._send_quietly(
                conn,
                {"message": "Internal server error", "connectionId": conn.connection_id, "requestId": request_id},
            )
            return
        if route_key in self.config.two_way_routes and isinstance(result, Mapping) and result.get("body") is not None:
            await self._send_quietly(conn, result["body"])

    async def _send_quietly(self, conn: Connection, message: Any) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        if conn.open:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(text)
