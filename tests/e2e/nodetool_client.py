"""A test client that does on the wire what nodetool's web client does, for the nodetool e2e tests.

Behaviour taken from ``nodetool-ai/nodetool`` (read, not copied; docs/nodetool.md has the details):

* ``web/src/lib/websocket/WebSocketManager.ts``: every outbound frame is ``msgpackr``'s default
  ``pack`` in a binary frame (``send``); inbound binary frames are unpacked, text frames JSON-parsed
  (``handleMessage``); ``{type: "ping"}`` from the server is answered ``{type: "pong", ts}`` and
  ``pong`` is consumed (``handleLivenessFrame``); after 45 s without inbound traffic it sends
  ``{type: "ping", ts}`` and, with nothing back within 10 s, drops the socket and reconnects
  (``checkForSilence`` / ``probeLiveness`` / ``handleDeadConnection``); closes 1008, 1009, 1010,
  4000, 4001, 4003 end the connection for good (``shouldReconnect``).
* ``web/src/lib/websocket/GlobalWebSocketManager.ts``: the URL is ``BASE/ws`` with
  ``?api_key=<token>`` and, while a run is in flight, ``&resume_job=<job_id>`` — dropped after two
  failed connects (``buildAuthenticatedUrl``, ``MAX_HINTED_ATTEMPTS``); on every open it sends
  ``{type: "client_tools_manifest", tools}`` (``sendToolsManifest``); inbound messages are routed by
  ``thread_id`` / ``workflow_id`` / ``job_id`` and those with none are dropped (``routeMessage``).
* ``web/src/stores/WorkflowRunner.ts``: ``run_job`` is ``{type, command, data}`` with ``data`` =
  ``{type: "run_job_request", api_url, user_id, workflow_id, auth_token, job_type, execution_strategy,
  params, explicit_types, graph, resource_limits, settings, job_id}``; ``cancel_job``, ``pause_job``,
  ``resume_job`` carry ``{job_id, workflow_id}``; ``reconnect`` sends ``reconnect_job {job_id, workflow_id}``.
* ``web/src/stores/workflowUpdates.ts``: the runner keeps the highest ``job_seq`` of its own job
  (``jobReplayCursor``) and on every ``open`` while running sends
  ``reconnect_job {job_id, workflow_id, last_seq}`` (``resumeInFlightJob``); ``job_update`` drives the
  run's state (completed → idle, cancelled → cancelled, failed / timed_out → error); ``job_resumed``
  settles a reconnect; messages of type ``error`` are not looked at (``handleUpdate``).

The graph it runs is the one nodetool's importer makes of a ComfyUI workflow
(``tests/fixtures/nodetool/``); :func:`as_sent` puts back the fields nodetool leaves ``undefined``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nodetool"
# WebSocketManager's defaults.
HEARTBEAT_INTERVAL = 45.0
HEARTBEAT_TIMEOUT = 10.0
NO_RECONNECT_CODES = frozenset({1008, 1009, 1010, 4000, 4001, 4003})
MAX_HINTED_ATTEMPTS = 2
# One tool, in the shape FrontendToolRegistry.getManifest() gives: {name, description, parameters}.
TOOLS_MANIFEST = [
    {
        "name": "ui_add_node",
        "description": "Add a node to the current workflow",
        "parameters": {"type": "object", "properties": {"node_type": {"type": "string"}}, "required": ["node_type"]},
    }
]


class Undefined:
    """JavaScript's ``undefined`` as a value of an object msgpackr packs."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = Undefined()


# --------------------------------------------------------------------------- msgpackr's default pack


def msgpackr_pack(value: Any) -> bytes:
    """``value`` as msgpackr's default ``pack`` (``new Packr({useRecords: false})``) writes it.

    What differs from a generic encoder, and matters to a decoder: maps are always map16, a number
    outside the 32-bit integer range is a float64 (JavaScript has no other integers), ``undefined``
    is fixext 1 type 0 with a zero byte. Python ints stand for JavaScript numbers."""
    out = bytearray()
    _pack_into(out, value)
    return bytes(out)


def _pack_into(out: bytearray, value: Any) -> None:
    if value is None:
        out.append(0xC0)
    elif value is UNDEFINED:
        out += b"\xd4\x00\x00"
    elif isinstance(value, bool):
        out.append(0xC3 if value else 0xC2)
    elif isinstance(value, int | float):
        _pack_number(out, value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        n = len(data)
        if n < 0x20:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += bytes((0xD9, n))
        elif n < 0x10000:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += data
    elif isinstance(value, list | tuple):
        n = len(value)
        if n < 0x10:
            out.append(0x90 | n)
        elif n < 0x10000:
            out += b"\xdc" + struct.pack(">H", n)
        else:
            out += b"\xdd" + struct.pack(">I", n)
        for item in value:
            _pack_into(out, item)
    elif isinstance(value, dict):
        if len(value) > 0xFFFF:
            raise ValueError("msgpackr's default pack refuses objects of more than 65535 keys")
        out += b"\xde" + struct.pack(">H", len(value))
        for key, item in value.items():
            _pack_into(out, str(key))
            _pack_into(out, item)
    else:
        raise TypeError(f"no JavaScript value for {type(value).__name__}")


def _pack_number(out: bytearray, number: float) -> None:
    if isinstance(number, float) and number.is_integer() and -(2**31) <= number < 2**32:
        number = int(number)  # JavaScript's 3.0 is 3
    if isinstance(number, int) and 0 <= number < 2**32:
        if number < 0x80:
            out.append(number)
        elif number < 0x100:
            out += bytes((0xCC, number))
        elif number < 0x10000:
            out += b"\xcd" + struct.pack(">H", number)
        else:
            out += b"\xce" + struct.pack(">I", number)
    elif isinstance(number, int) and -(2**31) <= number < 0:
        if number >= -0x20:
            out.append(0x100 + number)
        elif number >= -0x80:
            out += b"\xd0" + struct.pack(">b", number)
        elif number >= -0x8000:
            out += b"\xd1" + struct.pack(">h", number)
        else:
            out += b"\xd2" + struct.pack(">i", number)
    else:
        out += b"\xcb" + struct.pack(">d", float(number))


def unpack_reply(data: bytes | str) -> Any:
    """An inbound frame as WebSocketManager.handleMessage reads it: binary msgpack, text JSON."""
    if isinstance(data, bytes):
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    return json.loads(data)


# --------------------------------------------------------------------------- the graph as sent


def load_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def as_sent(graph: dict[str, Any]) -> dict[str, Any]:
    """``graph`` with the keys reactFlowNodeToGraphNode / reactFlowEdgeToGraphEdge set to ``undefined``
    back in their places (JSON fixtures cannot hold them)."""
    nodes = []
    for node in graph["nodes"]:
        ui = dict(node.get("ui_properties") or {})
        ui_sent = {
            "selected": ui.get("selected", False),
            "position": ui.get("position", {"x": 0, "y": 0}),
            "zIndex": ui.get("zIndex", 0),
            "width": ui.get("width", 280),
            "height": ui.get("height", UNDEFINED),
            "title": ui.get("title", UNDEFINED),
            "color": ui.get("color", UNDEFINED),
            "selectable": ui.get("selectable", True),
        }
        nodes.append(
            {
                "id": node["id"],
                "type": node["type"],
                "data": node.get("data", UNDEFINED),
                "parent_id": node.get("parent_id", UNDEFINED),
                "ui_properties": ui_sent,
                "dynamic_properties": node.get("dynamic_properties", {}),
                "dynamic_outputs": node.get("dynamic_outputs", {}),
                "sync_mode": node.get("sync_mode", "on_any"),
            }
        )
    edges = [
        {
            "id": edge.get("id") or str(uuid.uuid4()),
            "source": edge["source"],
            "sourceHandle": edge.get("sourceHandle") or "",
            "target": edge["target"],
            "targetHandle": edge.get("targetHandle") or "",
            "ui_properties": edge.get("ui_properties", UNDEFINED),
            "edge_type": edge.get("edge_type", "data"),
        }
        for edge in graph["edges"]
    ]
    return {"nodes": nodes, "edges": edges}


# --------------------------------------------------------------------------- the client


@dataclass
class Runner:
    """The part of nodetool's per-workflow runner store these tests look at."""

    workflow_id: str
    job_id: str | None = None
    state: str = "idle"  # idle | connecting | running | cancelled | error
    job_replay_cursor: int = 0
    queue_position: int | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)  # routed to this workflow or job


class NodetoolClient:
    """One nodetool browser tab: the shared socket (GlobalWebSocketManager + WebSocketManager) and
    one workflow's runner (WorkflowRunner + workflowUpdates). Every wait is bounded."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        workflow_id: str,
        *,
        tools: list[dict[str, Any]] | None = None,
        open_timeout: float = 10.0,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.tools = TOOLS_MANIFEST if tools is None else tools
        self.open_timeout = open_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.runner = Runner(workflow_id)
        self.sent: list[dict[str, Any]] = []
        self.unrouted: list[dict[str, Any]] = []  # no job_id / workflow_id / thread_id: nodetool drops them
        self.liveness: list[dict[str, Any]] = []  # ping / pong frames consumed by WebSocketManager
        self.close_code: int | None = None
        self.consecutive_connect_failures = 0
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._last_inbound = 0.0

    # -- connection ------------------------------------------------------------------------

    def url(self) -> str:
        """GlobalWebSocketManager.buildAuthenticatedUrl."""
        params: dict[str, str] = {}
        if self.api_key:
            params["api_key"] = self.api_key
        if self.consecutive_connect_failures < MAX_HINTED_ATTEMPTS and self.running_job():
            params["resume_job"] = self.runner.job_id or ""
        query = urlencode(params)
        return f"{self.base_url}/ws" + (f"?{query}" if query else "")

    def running_job(self) -> str | None:
        return self.runner.job_id if self.runner.state == "running" else None

    async def connect(self) -> None:
        """Open the socket; then what the ``open`` listeners do: the tools manifest, and
        ``reconnect_job`` with the replay cursor when a run is in flight."""
        try:
            self._ws = await connect(self.url(), open_timeout=self.open_timeout, max_size=None)
        except Exception:
            self.consecutive_connect_failures += 1
            raise
        self.consecutive_connect_failures = 0
        self.close_code = None
        self._last_inbound = time.monotonic()
        self._reader = asyncio.create_task(self._read())
        if self.tools:
            await self.send({"type": "client_tools_manifest", "tools": self.tools})
        job_id = self.running_job()
        if job_id:
            await self.send(
                {
                    "type": "reconnect_job",
                    "command": "reconnect_job",
                    "data": {
                        "job_id": job_id,
                        "workflow_id": self.runner.workflow_id,
                        "last_seq": self.runner.job_replay_cursor,
                    },
                }
            )

    async def drop(self) -> None:
        """The network goes away: no closing handshake, the server sees the TCP connection die."""
        if self._ws is not None:
            self._ws.transport.abort()
        await self._stop_reader()

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.close()
        await self._stop_reader()

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await self._reader
            self._reader = None

    async def __aenter__(self) -> NodetoolClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending ---------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """WebSocketManager.send: msgpackr pack, binary frame."""
        if self._ws is None:
            raise RuntimeError("not connected")
        self.sent.append(message)
        await self._ws.send(msgpackr_pack(message))

    async def ping(self) -> None:
        await self.send({"type": "ping", "ts": time.time()})

    async def run_job(
        self,
        graph: dict[str, Any],
        *,
        params: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        resource_limits: dict[str, Any] | None = None,
        api_url: str = "",
        user_id: str = "1",
        auth_token: str = "local_token",
    ) -> str:
        """WorkflowRunner.run (localhost defaults for user and token; api_url is BASE_URL)."""
        job_id = str(uuid.uuid4())
        self.runner.job_id = job_id
        self.runner.state = "running"
        self.runner.job_replay_cursor = 0
        request: dict[str, Any] = {
            "type": "run_job_request",
            "api_url": api_url,
            "user_id": user_id,
            "workflow_id": self.runner.workflow_id,
            "auth_token": auth_token,
            "job_type": "workflow",
            "execution_strategy": "subprocess" if resource_limits else "threaded",
            "params": params or {},
            "explicit_types": False,
            "graph": as_sent(graph),
            "resource_limits": resource_limits if resource_limits is not None else UNDEFINED,
            "settings": dict(settings or {}),
        }
        await self.send({"type": "run_job", "command": "run_job", "data": {**request, "job_id": job_id}})
        return job_id

    async def job_command(self, command: str) -> None:
        """cancel_job / pause_job / resume_job: {job_id, workflow_id} of the runner's job."""
        if command == "cancel_job":
            self.runner.state = "cancelled"  # WorkflowRunner.cancel sets it before sending
        data = {"job_id": self.runner.job_id, "workflow_id": self.runner.workflow_id}
        await self.send({"type": command, "command": command, "data": data})

    async def cancel_job(self) -> None:
        await self.job_command("cancel_job")

    async def reconnect_job(self, job_id: str) -> None:
        """WorkflowRunner.reconnect: no last_seq."""
        self.runner.job_id = job_id
        self.runner.state = "running"
        data = {"job_id": job_id, "workflow_id": self.runner.workflow_id}
        await self.send({"type": "reconnect_job", "command": "reconnect_job", "data": data})

    # -- receiving -------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                self._last_inbound = time.monotonic()
                await self._handle(unpack_reply(frame))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            if self._ws is not None and self._ws.close_code is not None:
                self.close_code = self._ws.close_code
            self._arrived.set()

    async def _handle(self, message: Any) -> None:
        if not isinstance(message, dict):
            self.unrouted.append({"frame": message})
            return
        kind = message.get("type")
        if kind in ("ping", "pong"):
            self.liveness.append(message)
            if kind == "ping":
                with contextlib.suppress(ConnectionClosed, RuntimeError):
                    await self.send({"type": "pong", "ts": time.time()})
            return
        keys = {message.get(k) for k in ("thread_id", "workflow_id", "job_id")} - {None, ""}
        runner = self.runner
        if runner.workflow_id in keys or (runner.job_id is not None and message.get("job_id") == runner.job_id):
            runner.messages.append(message)
            self._update_runner(message)
        else:
            self.unrouted.append(message)

    def _update_runner(self, message: dict[str, Any]) -> None:
        """The bits of workflowUpdates.handleUpdate the tests assert on."""
        runner = self.runner
        seq = message.get("job_seq")
        if isinstance(seq, int) and message.get("job_id") == runner.job_id and seq > runner.job_replay_cursor:
            runner.job_replay_cursor = seq
        if message.get("type") == "job_resumed" and message.get("job_id") == runner.job_id:
            if message.get("status") == "running" and runner.state != "cancelled":
                runner.state = "running"
            elif message.get("status") == "unknown" or message.get("replay_count") == 0:
                runner.state = "idle"
            return
        if message.get("type") != "job_update" or message.get("job_id") not in (None, runner.job_id):
            return
        status = message.get("status")
        if status in ("running", "queued") and runner.state != "error":
            runner.state = "running"
        elif status == "completed":
            runner.state = "idle"
        elif status == "cancelled":
            runner.state = "cancelled"
        elif status in ("failed", "timed_out"):
            runner.state = "error"
        runner.queue_position = message.get("queue_position") if status == "queued" else None

    async def wait_for(self, check: Callable[[], Any], what: str, timeout: float) -> Any:
        """``check()``'s first truthy value as frames arrive; AssertionError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while not (result := check()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{what}: not within {timeout:g}s (runner {self.runner.state}, close {self.close_code})"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.25))
        return result

    async def wait_for_state(self, *states: str, timeout: float) -> str:
        state: str = await self.wait_for(
            lambda: self.runner.state if self.runner.state in states else None, f"runner state in {states}", timeout
        )
        return state

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.runner.messages if m.get("type") == kind]

    async def probe_liveness(self) -> bool:
        """WebSocketManager.probeLiveness: a ping, then any inbound frame within the grace period."""
        before = self._last_inbound
        await self.ping()
        try:
            await self.wait_for(
                lambda: self._last_inbound > before, "an answer to the heartbeat", self.heartbeat_timeout
            )
        except AssertionError:
            return False
        return True
