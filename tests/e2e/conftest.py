"""Fixtures for the end-to-end suite: one `comfyroute dev` stack per module, and per test a fresh
user whose executor secret points at that test's own fake ComfyUI (and RunPod endpoint).

The dev stack runs its own embedded moto server, so nothing here uses the moto-in-process
fixtures of ``tests/conftest.py``. Everything listens on 127.0.0.1 only.

Why a front for RunPod: ``RUNPOD_API_BASE`` is one setting for the whole stack, but the RunPod
tests each need a differently behaving ``FakeRunPod`` (healthy, failing, rate limited). Real
RunPod scopes jobs by endpoint id, so :class:`RunPodFront` does the same: each test registers
its fake under a new endpoint id and the front forwards ``/v2/{endpoint}/...`` to it verbatim.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from fakes import FakeComfyUI, FakeRunPod

from comfyroute_tools.dev.stack import DevStack

RUNPOD_API_KEY = "test-key"  # FakeRunPod's default key; only ever sent to loopback
# Step Functions really waits between polls: the template's 1 s start is the smallest whole
# number the state machine's Wait accepts, and a cap of 1 s keeps every job to about a second.
POLL_ENV = {"POLL_INTERVAL_START_SECONDS": "1", "POLL_INTERVAL_CAP_SECONDS": "1"}
FORWARD_TIMEOUT = 10.0
# Headers worth relaying between the backend's RunPod client and a fake (the rest are hop-level).
FORWARDED_REQUEST_HEADERS = ("Authorization", "Content-Type")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Retry-After")


class RunPodFront:
    """A loopback RunPod API base that routes each endpoint id to the FakeRunPod registered for it.

    Unknown endpoints get RunPod's 404. Requests and answers pass through unchanged (status,
    body, ``Authorization``, ``Retry-After``), so each fake still checks the key and rate-limits."""

    def __init__(self) -> None:
        self._routes: dict[str, FakeRunPod] = {}
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read assertions
                pass

            def do_GET(self) -> None:
                front._forward(self)

            def do_POST(self) -> None:
                front._forward(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The value for ``RUNPOD_API_BASE``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v2"

    def start(self) -> RunPodFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def add(self, runpod: FakeRunPod) -> str:
        """Route a new endpoint id to ``runpod`` and return the id."""
        endpoint_id = f"ep{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._routes[endpoint_id] = runpod
        return endpoint_id

    def remove(self, endpoint_id: str) -> None:
        with self._lock:
            self._routes.pop(endpoint_id, None)

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path).path.strip("/").split("/")
        with self._lock:
            target = self._routes.get(parts[1]) if len(parts) >= 2 and parts[0] == "v2" else None
        if target is None:
            self._reply(handler, 404, json.dumps({"error": "endpoint not found"}).encode(), {})
            return
        headers = {k: v for k in FORWARDED_REQUEST_HEADERS if (v := handler.headers.get(k)) is not None}
        conn = HTTPConnection("127.0.0.1", target.port, timeout=FORWARD_TIMEOUT)
        try:
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            relayed = {k: v for k in FORWARDED_RESPONSE_HEADERS if (v := resp.getheader(k)) is not None}
        except OSError as exc:  # the fake was stopped: answer like a gateway, not a dropped socket
            error = json.dumps({"error": f"endpoint unreachable: {type(exc).__name__}"}).encode()
            self._reply(handler, 502, error, {})
            return
        finally:
            conn.close()
        self._reply(handler, resp.status, payload, relayed)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


@pytest.fixture(scope="module")
def runpod_front() -> Iterator[RunPodFront]:
    front = RunPodFront().start()
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture(scope="module")
def dev_stack(runpod_front: RunPodFront) -> Iterator[DevStack]:
    """`comfyroute dev` on a free loopback port; users come from ``make_token``."""
    with DevStack(
        "127.0.0.1",
        0,
        runpod_api_base=runpod_front.url,
        runpod_api_key=RUNPOD_API_KEY,
        env_overrides=POLL_ENV,
        handler_log_level="WARNING",
        # A socket left open by a failing test must not outlive the module by long.
        idle_timeout=60,
        max_duration=300,
    ) as stack:
        yield stack


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    """This test's own ComfyUI, so ``submitted`` / ``deletes`` / files are this test's alone."""
    with FakeComfyUI(run_seconds=0.2) as server:
        yield server


@pytest.fixture
def make_token(dev_stack: DevStack) -> Callable[[FakeComfyUI], str]:
    """``make_token(comfy)``: an API token for a new user whose ``local`` executor is ``comfy``
    (their Secrets Manager secret, as a deployment would hold it) and whose RunPod key is the
    fakes' key. Only the token's hash is stored by the stack."""
    secrets = dev_stack.client("secretsmanager")
    prefix = dev_stack.env.get("SECRETS_PREFIX", "comfyroute")

    def make(comfy: FakeComfyUI) -> str:
        user_id = f"user-{uuid.uuid4().hex[:10]}"
        secrets.create_secret(
            Name=f"{prefix}/users/{user_id}",
            SecretString=json.dumps({"COMFYUI_ADDR": comfy.addr, "RUNPOD_API_KEY": RUNPOD_API_KEY}),
        )
        return dev_stack.issue_token(user_id, label="e2e")

    return make


@pytest.fixture
def token(make_token: Callable[[FakeComfyUI], str], comfy: FakeComfyUI) -> str:
    return make_token(comfy)


@pytest.fixture
def runpod_endpoint(runpod_front: RunPodFront) -> Iterator[Callable[[FakeRunPod], str]]:
    """``runpod_endpoint(fake)``: a RunPod endpoint id served by ``fake`` for this test."""
    added: list[str] = []

    def add(runpod: FakeRunPod) -> str:
        endpoint_id = runpod_front.add(runpod)
        added.append(endpoint_id)
        return endpoint_id

    yield add
    for endpoint_id in added:
        runpod_front.remove(endpoint_id)
