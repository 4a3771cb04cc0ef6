"""FakeRunPod: RunPod's serverless API (``/v2/{endpoint_id}/...``) on loopback with a
worker-comfyui endpoint behind every endpoint id, following RunPod's contract as
tests/fakes/README.md summarises it: bearer auth, ``/run``, ``/status/{id}``, ``/cancel/{id}``,
``/health``, statuses driven by the clock, ``policy.executionTimeout`` and ``policy.ttl``,
webhooks, 429 on demand, the 10 MB ``/run`` limit."""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from ..comfyui import ComfyEngine, FakeComfyUI
from ..loopback import Handler, LoopbackServer, Reply
from .comfy import ComfyPort, HttpComfy, LocalComfy
from .jobs import TERMINAL, Job, Stopped
from .worker import OutputFormat, Worker

JSON_TYPE = "application/json"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_RUN_BODY = 10 * 1024 * 1024


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps({"error": message}).encode(), JSON_TYPE, headers)


def _json_reply(h: Handler, payload: Any) -> None:
    h.reply(200, json.dumps(payload).encode(), JSON_TYPE)


class FakeRunPod:
    """RunPod's serverless API with a worker-comfyui endpoint behind it (any endpoint id).

    ``url`` is the base to use as RUNPOD_API_BASE (``http://127.0.0.1:PORT/v2``). Workflows run
    on the attached ``comfy`` over HTTP, else on a private in-process ComfyEngine. Inspection
    for tests: ``runs`` (request bodies of /run), ``cancels`` (job ids), ``requests`` (a
    Counter by route: run, status, cancel, health, plus unauthorized and rate_limited),
    ``webhooks`` ((url, HTTP status or None) per delivery attempt), ``jobs`` (by id).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = "test-key",
        queue_seconds: float = 0.1,
        run_seconds: float = 0.2,
        output_format: OutputFormat = "v5",
        fail_with: str | None = None,
        rate_limit_first: int = 0,
        comfy: FakeComfyUI | None = None,
        s3_urls: bool = False,
        retention_seconds: float = 30 * 60,
        webhook_retry_seconds: float = 10.0,
        webhooks: bool = True,
    ) -> None:
        self.host, self._port = host, port
        self._api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.output_format = output_format
        self.fail_with = fail_with
        self.rate_limit_first = rate_limit_first
        self.s3_urls = s3_urls
        self.retention_seconds = retention_seconds
        self.webhook_retry_seconds = webhook_retry_seconds
        # False: webhooks are never called (a lost callback); the job is still found by polling.
        self.deliver_webhooks = webhooks
        self._engine: ComfyEngine | None = None
        if comfy is not None:
            self._comfy: ComfyPort = HttpComfy(comfy)
        else:
            self._engine = ComfyEngine(run_seconds=0)
            self._comfy = LocalComfy(self._engine)
        self.jobs: dict[str, Job] = {}
        self.runs: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        self.requests: Counter[str] = Counter()
        self.webhooks: list[tuple[str, int | None]] = []
        self._blobs: dict[str, bytes] = {}  # "s3" objects: /bucket/{job}/{filename}
        self._lock = threading.Lock()
        self._seen = 0
        self._shutdown = threading.Event()
        self._threads: list[threading.Thread] = []
        self._httpd: LoopbackServer | None = None

    def __repr__(self) -> str:  # the API key never appears
        return f"FakeRunPod(url={self.url if self._httpd else None!r}, output_format={self.output_format!r})"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeRunPod:
        if self._httpd is None:
            self._shutdown.clear()
            if self._engine is not None:
                self._engine.start()
            self._httpd = LoopbackServer((self.host, self._port), self)
            self._httpd.start()
        return self

    def stop(self) -> None:
        self._shutdown.set()
        for job in list(self.jobs.values()):
            job.stop.set()
        if self._httpd is not None:
            self._httpd.stop()
            self._httpd = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self._engine is not None:
            self._engine.stop()

    def __enter__(self) -> FakeRunPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeRunPod is not started")
        return self._httpd.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v2"

    def wait_for(self, job_id: str, statuses: frozenset[str] = TERMINAL, timeout: float = 5.0) -> str:
        """Block until the job reaches one of ``statuses`` (for tests); returns the status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                status = self.jobs[job_id].status
            if status in statuses:
                return status
            time.sleep(0.01)
        raise TimeoutError(f"job {job_id} still {status} after {timeout} s")

    # -- HTTP -----------------------------------------------------------------------------

    def handle(self, handler: Handler, method: str, body: bytes) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            self._seen += 1
            limited = self._seen <= self.rate_limit_first
        if limited:
            self.requests["rate_limited"] += 1
            raise _error(429, "Too many requests, please retry later.", {"Retry-After": "0"})
        if path.startswith("/bucket/"):  # presigned-URL style: no auth header
            blob = self._blobs.get(path[len("/bucket/") :])
            if blob is None:
                raise _error(404, "NoSuchKey")
            handler.reply(200, blob, "image/png" if path.endswith(".png") else "application/octet-stream")
            return
        expected = f"Bearer {self._api_key}".encode()
        if not hmac.compare_digest(handler.headers.get("Authorization", "").encode(), expected):
            self.requests["unauthorized"] += 1
            raise _error(401, "Unauthorized")
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v2":
            raise _error(404, "Not found")
        endpoint_id, action, rest = parts[1], parts[2], parts[3:]
        route = (method, action, len(rest))
        if route == ("POST", "run", 0):
            _json_reply(handler, self._run(endpoint_id, body))
        elif route in (("GET", "status", 1), ("POST", "status", 1)):
            self.requests["status"] += 1
            _json_reply(handler, self._find(endpoint_id, rest[0]).body())
        elif route == ("POST", "cancel", 1):
            _json_reply(handler, self._cancel(endpoint_id, rest[0]))
        elif route == ("GET", "health", 0):
            self.requests["health"] += 1
            _json_reply(handler, self._health(endpoint_id))
        else:
            raise _error(404, "Not found")

    def _run(self, endpoint_id: str, body: bytes) -> dict[str, Any]:
        self.requests["run"] += 1
        try:
            request = json.loads(body)
        except ValueError as exc:
            raise _error(400, "request body is not valid JSON") from exc
        if not isinstance(request, dict) or "input" not in request:
            raise _error(400, "request body must be a JSON object with an 'input' field")
        if len(body) > MAX_RUN_BODY:
            raise _error(413, "payload too large: /run accepts at most 10 MB")
        policy = request.get("policy") or {}
        timeout_ms = policy.get("executionTimeout")
        job = Job(
            id=f"{uuid.uuid4()}-u1",
            endpoint_id=endpoint_id,
            input=request["input"],
            webhook=request.get("webhook"),
            execution_timeout=timeout_ms / 1000 if isinstance(timeout_ms, int | float) else 600.0,
            ttl=policy["ttl"] / 1000 if isinstance(policy.get("ttl"), int | float) else 24 * 3600.0,
            submitted_at=time.monotonic(),
        )
        with self._lock:
            self.runs.append(request)
            self.jobs[job.id] = job
        thread = threading.Thread(target=self._work, args=(job,), name=f"fake-runpod-{job.id[:8]}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return {"id": job.id, "status": "IN_QUEUE"}

    def _find(self, endpoint_id: str, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.endpoint_id != endpoint_id or job.expired(time.monotonic(), self.retention_seconds):
                raise _error(404, f"job {job_id} not found")
            return job

    def _cancel(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        self.requests["cancel"] += 1
        job = self._find(endpoint_id, job_id)
        with self._lock:
            self.cancels.append(job_id)
            if job.status not in TERMINAL:
                job.status = "CANCELLED"
                job.finished_at = time.monotonic()
                job.stop.set()
            return {"id": job.id, "status": job.status}

    def _health(self, endpoint_id: str) -> dict[str, Any]:
        with self._lock:
            states = Counter(job.status for job in self.jobs.values() if job.endpoint_id == endpoint_id)
        running = states["IN_PROGRESS"]
        return {
            "jobs": {
                "completed": states["COMPLETED"],
                "failed": states["FAILED"] + states["TIMED_OUT"],
                "inProgress": running,
                "inQueue": states["IN_QUEUE"],
                "retried": 0,
            },
            "workers": {"idle": 0 if running else 1, "running": running},
        }

    # -- the job's life -------------------------------------------------------------------

    def _work(self, job: Job) -> None:
        try:
            job.wait_until(job.submitted_at + self.queue_seconds)
            started = time.monotonic()
            with self._lock:
                if job.status != "IN_QUEUE":
                    return
                job.status, job.started_at = "IN_PROGRESS", started
            if self.fail_with is not None:
                job.wait_until(started + self.run_seconds)
                self._finish(job, "FAILED", error=self.fail_with)
                return
            result = Worker(self._comfy, self.output_format, self._deliver).run(job)
            job.wait_until(started + self.run_seconds)
            if "error" in result:
                error = str(result.pop("error"))
                self._finish(job, "FAILED", output=result or None, error=error)
            else:
                self._finish(job, "COMPLETED", output=result)
        except (OSError, ValueError, KeyError) as exc:  # the worker's catch-all answer
            self._finish(job, "FAILED", error=f"An unexpected error occurred: {exc}")
        except Stopped as stopped:
            if job.comfy_prompt_id:
                with contextlib.suppress(Exception):
                    self._comfy.stop(job.comfy_prompt_id)
            if str(stopped) == "TIMED_OUT":
                self._finish(job, "TIMED_OUT")
            else:
                self._deliver_webhook(job)

    def _finish(self, job: Job, status: str, *, output: Any = None, error: str | None = None) -> None:
        with self._lock:
            if job.status in TERMINAL:  # cancelled meanwhile: the cancel wins
                return
            job.status, job.finished_at, job.output, job.error = status, time.monotonic(), output, error
        self._deliver_webhook(job)

    def _deliver(self, job: Job, filename: str, data: bytes) -> tuple[str, str]:
        if self.s3_urls:
            key = f"{job.id}/{filename}"
            self._blobs[key] = data
            return "s3_url", f"http://{self.host}:{self.port}/bucket/{key}"
        return "base64", base64.b64encode(data).decode()

    def _deliver_webhook(self, job: Job) -> None:
        if not job.webhook or not self.deliver_webhooks:
            return
        url = job.webhook
        host = urlsplit(url).hostname or ""
        if host not in LOOPBACK_HOSTS:  # a test double never calls out of the machine
            self.webhooks.append((url, None))
            return
        with self._lock:
            payload = json.dumps(job.body()).encode()
        for attempt in range(3):  # the first try and two retries, as RunPod does
            request = urllib.request.Request(
                url, data=payload, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    status: int | None = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            self.webhooks.append((url, status))
            if status == 200 or attempt == 2 or self._shutdown.wait(self.webhook_retry_seconds):
                return
