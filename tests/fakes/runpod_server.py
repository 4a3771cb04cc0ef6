"""A fake RunPod serverless API (``/v2/{endpoint_id}/...``) running worker-comfyui, on loopback.

It follows /work/shared/reference/runpod/CONTRACT.md: bearer auth, ``/run``, ``/status/{id}``,
``/cancel/{id}``, ``/health``; IN_QUEUE -> IN_PROGRESS -> COMPLETED (or FAILED, CANCELLED,
TIMED_OUT) driven by the clock; worker-comfyui's 5.x (``images[]``) and 2.x-4.x (``message``)
output formats; ``policy.executionTimeout`` and ``policy.ttl``; webhooks; 429 on demand.

Workflows really run: through an attached FakeComfyUI over HTTP (upload, /prompt, /history,
/view, exactly what the worker does), or else through a private in-process ComfyEngine, so
the images are real PNGs, byte-identical to what the fake ComfyUI serves for the same prompt.

Run it by hand: ``python -m tests.fakes.runpod_server --port 8189`` and point
``RUNPOD_API_BASE`` at the printed URL.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import json
import posixpath
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode, urlsplit

from .comfyui import ComfyEngine, FakeComfyUI

OutputFormat = Literal["v5", "v4", "v4-bare"]
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
JSON_TYPE = "application/json"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
V4_OUTPUT_PATH = "/comfyui/output"  # where worker-comfyui 2.x-4.x looked for images


# ---------------------------------------------------------------------------------------------
# The worker's view of ComfyUI: over HTTP (an attached FakeComfyUI) or in process
# ---------------------------------------------------------------------------------------------


class ComfyPort(Protocol):
    def upload(self, name: str, data: bytes) -> str | None: ...
    def queue(self, prompt: Any, client_id: str) -> tuple[int, str]: ...
    def history(self, prompt_id: str) -> dict[str, Any]: ...
    def view(self, filename: str, subfolder: str, folder: str) -> bytes | None: ...
    def stop(self, prompt_id: str) -> None: ...


class HttpComfy:
    """Talks to a FakeComfyUI the way worker-comfyui talks to its ComfyUI."""

    def __init__(self, fake: FakeComfyUI) -> None:
        self.fake = fake  # read at call time: the fake may be started after FakeRunPod is built

    def _call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, bytes]:
        headers = dict(self.fake.required_headers)
        if ctype:
            headers["Content-Type"] = ctype
        request = urllib.request.Request(self.fake.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def upload(self, name: str, data: bytes) -> str | None:
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode() + data
        body += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'.encode()
        body += f"--{boundary}--\r\n".encode()
        status, _ = self._call("POST", "/upload/image", body, f"multipart/form-data; boundary={boundary}")
        return None if status == 200 else f"Error uploading {name}: HTTP {status}"

    def queue(self, prompt: Any, client_id: str) -> tuple[int, str]:
        body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
        status, raw = self._call("POST", "/prompt", body, "application/json")
        return status, raw.decode("utf-8", "replace")

    def history(self, prompt_id: str) -> dict[str, Any]:
        status, raw = self._call("GET", f"/history/{quote(prompt_id)}")
        return json.loads(raw) if status == 200 else {}

    def view(self, filename: str, subfolder: str, folder: str) -> bytes | None:
        query = urlencode({"filename": filename, "subfolder": subfolder, "type": folder})
        status, raw = self._call("GET", f"/view?{query}")
        return raw if status == 200 else None

    def stop(self, prompt_id: str) -> None:
        self._call("POST", "/queue", json.dumps({"delete": [prompt_id]}).encode(), "application/json")
        self._call("POST", "/interrupt", json.dumps({"prompt_id": prompt_id}).encode(), "application/json")


class LocalComfy:
    """The same calls against a private in-process engine (no attached FakeComfyUI)."""

    def __init__(self, engine: ComfyEngine) -> None:
        self.engine = engine

    def upload(self, name: str, data: bytes) -> str | None:
        saved = self.engine.store.upload(name, data, overwrite=True)
        return None if saved else f"Error uploading {name}: HTTP 400"

    def queue(self, prompt: Any, client_id: str) -> tuple[int, str]:
        try:
            status, payload = self.engine.submit({"prompt": prompt, "client_id": client_id})
        except Exception:
            return 500, "500 Internal Server Error\n\nServer got itself in trouble"
        return status, json.dumps(payload)

    def history(self, prompt_id: str) -> dict[str, Any]:
        return self.engine.history(prompt_id)

    def view(self, filename: str, subfolder: str, folder: str) -> bytes | None:
        return self.engine.store.get(folder, subfolder, filename)

    def stop(self, prompt_id: str) -> None:
        self.engine.delete_pending([prompt_id])
        self.engine.interrupt(prompt_id)


def queue_error_message(status: int, text: str) -> str:
    """worker-comfyui 5.x's wording for a prompt ComfyUI refused (handler.queue_workflow)."""
    if status != 400:
        return f"Error queuing workflow: {status} Server Error"
    try:
        data = json.loads(text)
    except ValueError:
        return f"ComfyUI validation failed (could not parse error response): {text}"
    message = "Workflow validation failed"
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message", message)
        if error.get("type") == "prompt_outputs_failed_validation":
            message = "Workflow validation failed"
    elif error is not None:
        message = str(error)
    details = []
    for node_id, node_error in data.get("node_errors", {}).items():
        if isinstance(node_error, dict):
            details.extend(f"Node {node_id} ({key}): {value}" for key, value in node_error.items())
        else:
            details.append(f"Node {node_id}: {node_error}")
    if details:
        return f"{message}:\n" + "\n".join(f"• {detail}" for detail in details)
    return f"{message}. Raw response: {text}"


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    id: str
    endpoint_id: str
    input: Any
    webhook: str | None
    execution_timeout: float | None  # seconds, from the start of the run
    ttl: float  # seconds, from submission
    submitted_at: float
    status: str = "IN_QUEUE"
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: str | None = None
    comfy_prompt_id: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def body(self) -> dict[str, Any]:
        """The /status answer."""
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        # delayTime is the wait before a worker picked the job up (so far, while queued).
        waited_until = self.started_at or self.finished_at or time.monotonic()
        out["delayTime"] = int((waited_until - self.submitted_at) * 1000)
        if self.started_at is not None:
            out["workerId"] = "fake-worker-1"
            if self.finished_at is not None:
                out["executionTime"] = int((self.finished_at - self.started_at) * 1000)
        if self.output is not None:
            out["output"] = self.output
        if self.error is not None:
            out["error"] = self.error
        return out


class _Stopped(Exception):
    """The job was cancelled or timed out while the worker was busy with it."""


class _Reply(Exception):
    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.payload, self.headers = status, payload, headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _RunPodHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, payload, headers, ctype = self.server.app.handle(self, method, body)
        except _Reply as reply:
            status, payload, headers, ctype = reply.status, reply.payload, reply.headers, JSON_TYPE
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class _RunPodHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: FakeRunPod


class FakeRunPod:
    """RunPod's serverless API with a worker-comfyui endpoint behind it (any endpoint id).

    ``url`` is the base to use as RUNPOD_API_BASE (``http://127.0.0.1:PORT/v2``). Inspection
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
        self._httpd: _RunPodHTTPServer | None = None

    def __repr__(self) -> str:  # the API key never appears
        return f"FakeRunPod(url={self.url if self._httpd else None!r}, output_format={self.output_format!r})"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeRunPod:
        if self._httpd is None:
            self._shutdown.clear()
            if self._engine is not None:
                self._engine.start()
            self._httpd = _RunPodHTTPServer((self.host, self._port), _Handler)
            self._httpd.app = self
            thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
            thread.start()
        return self

    def stop(self) -> None:
        self._shutdown.set()
        for job in list(self.jobs.values()):
            job.stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
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
        return int(self._httpd.server_address[1])

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

    def handle(self, handler: _Handler, method: str, body: bytes) -> tuple[int, Any, dict[str, str], str]:
        path = urlsplit(handler.path).path
        with self._lock:
            self._seen += 1
            limited = self._seen <= self.rate_limit_first
        if limited:
            self.requests["rate_limited"] += 1
            raise _Reply(429, {"error": "Too many requests, please retry later."}, {"Retry-After": "0"})
        if path.startswith("/bucket/"):  # presigned-URL style: no auth header
            blob = self._blobs.get(path[len("/bucket/") :])
            if blob is None:
                raise _Reply(404, {"error": "NoSuchKey"})
            return 200, blob, {}, "image/png" if path.endswith(".png") else "application/octet-stream"
        expected = f"Bearer {self._api_key}".encode()
        if not hmac.compare_digest(handler.headers.get("Authorization", "").encode(), expected):
            self.requests["unauthorized"] += 1
            raise _Reply(401, {"error": "Unauthorized"})
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v2":
            raise _Reply(404, {"error": "Not found"})
        endpoint_id, action, rest = parts[1], parts[2], parts[3:]
        route = (method, action, len(rest))
        if route == ("POST", "run", 0):
            return 200, self._run(endpoint_id, body), {}, JSON_TYPE
        if route in (("GET", "status", 1), ("POST", "status", 1)):
            self.requests["status"] += 1
            return 200, self._find(endpoint_id, rest[0]).body(), {}, JSON_TYPE
        if route == ("POST", "cancel", 1):
            return 200, self._cancel(endpoint_id, rest[0]), {}, JSON_TYPE
        if route == ("GET", "health", 0):
            self.requests["health"] += 1
            return 200, self._health(endpoint_id), {}, JSON_TYPE
        raise _Reply(404, {"error": "Not found"})

    def _run(self, endpoint_id: str, body: bytes) -> dict[str, Any]:
        self.requests["run"] += 1
        try:
            request = json.loads(body)
        except ValueError as exc:
            raise _Reply(400, {"error": "request body is not valid JSON"}) from exc
        if not isinstance(request, dict) or "input" not in request:
            raise _Reply(400, {"error": "request body must be a JSON object with an 'input' field"})
        if len(body) > 10 * 1024 * 1024:
            raise _Reply(413, {"error": "payload too large: /run accepts at most 10 MB"})
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
            now = time.monotonic()
            expired = job is not None and (
                now > job.submitted_at + job.ttl
                or (job.finished_at is not None and now > job.finished_at + self.retention_seconds)
            )
            if job is None or job.endpoint_id != endpoint_id or expired:
                raise _Reply(404, {"error": f"job {job_id} not found"})
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

    # -- the worker -----------------------------------------------------------------------

    def _sleep_until(self, job: Job, when: float) -> None:
        """Wait, but stop early when the job is cancelled or outruns executionTimeout."""
        while True:
            now = time.monotonic()
            limit = when
            if job.started_at is not None and job.execution_timeout is not None:
                if now >= job.started_at + job.execution_timeout:
                    raise _Stopped("TIMED_OUT")
                limit = min(when, job.started_at + job.execution_timeout)
            if now >= when:
                return
            if job.stop.wait(max(0.0, limit - now)):
                raise _Stopped("CANCELLED")

    def _work(self, job: Job) -> None:
        try:
            self._sleep_until(job, job.submitted_at + self.queue_seconds)
            with self._lock:
                if job.status != "IN_QUEUE":
                    return
                job.status, job.started_at = "IN_PROGRESS", time.monotonic()
            assert job.started_at is not None
            if self.fail_with is not None:
                self._sleep_until(job, job.started_at + self.run_seconds)
                self._finish(job, "FAILED", error=self.fail_with)
                return
            result = self._handler(job)
            self._sleep_until(job, job.started_at + self.run_seconds)
            if "error" in result:
                error = str(result.pop("error"))
                self._finish(job, "FAILED", output=result or None, error=error)
            else:
                self._finish(job, "COMPLETED", output=result)
        except (OSError, ValueError, KeyError) as exc:  # the worker's catch-all answer
            self._finish(job, "FAILED", error=f"An unexpected error occurred: {exc}")
        except _Stopped as stopped:
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

    def _handler(self, job: Job) -> dict[str, Any]:
        """worker-comfyui's handler(): returns its result dict (``error`` -> FAILED)."""
        data = job.input
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return {"error": "Invalid JSON format in input"}
        if data is None:
            return {"error": "Please provide input"}
        if not isinstance(data, dict) or data.get("workflow") is None:
            return {"error": "Missing 'workflow' parameter"}
        images = data.get("images")
        if images is not None and (
            not isinstance(images, list)
            or not all(isinstance(i, dict) and "name" in i and "image" in i for i in images)
        ):
            return {"error": "'images' must be a list of objects with 'name' and 'image' keys"}
        upload_errors = []
        for image in images or []:
            try:
                blob = base64.b64decode(str(image["image"]).split(",", 1)[-1], validate=True)
            except ValueError as exc:
                upload_errors.append(f"Error decoding base64 for {image['name']}: {exc}")
                continue
            if (problem := self._comfy.upload(str(image["name"]), blob)) is not None:
                upload_errors.append(problem)
        if upload_errors:
            return {"error": "Failed to upload one or more input images", "details": upload_errors}

        status, text = self._comfy.queue(data["workflow"], str(uuid.uuid4()))
        if status != 200:
            if self.output_format == "v5":
                return {"error": queue_error_message(status, text)}
            return {"error": f"Error queuing workflow: HTTP Error {status}: Bad Request"}
        prompt_id = json.loads(text)["prompt_id"]
        job.comfy_prompt_id = prompt_id
        entry = self._await_history(job, prompt_id)
        if self.output_format == "v5":
            return self._v5_result(job, prompt_id, entry)
        return self._v4_result(job, entry)

    def _await_history(self, job: Job, prompt_id: str) -> dict[str, Any]:
        while True:
            entry = self._comfy.history(prompt_id).get(prompt_id)
            if entry is not None:
                return entry
            self._sleep_until(job, time.monotonic() + 0.01)

    def _deliver(self, job: Job, filename: str, data: bytes) -> tuple[str, str]:
        if self.s3_urls:
            key = f"{job.id}/{filename}"
            self._blobs[key] = data
            return "s3_url", f"http://{self.host}:{self.port}/bucket/{key}"
        return "base64", base64.b64encode(data).decode()

    def _v5_result(self, job: Job, prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        errors: list[str] = []
        for name, info in entry.get("status", {}).get("messages", []):
            if name == "execution_error":
                errors.append(
                    "Workflow execution error: "
                    f"Node Type: {info.get('node_type')}, Node ID: {info.get('node_id')}, "
                    f"Message: {info.get('exception_message')}"
                )
        outputs = entry.get("outputs", {})
        if not outputs and not errors:
            errors.append(f"No outputs found in history for prompt {prompt_id}.")
        images = []
        for node_output in outputs.values():
            for image in node_output.get("images", []):
                if image.get("type") == "temp":  # the worker skips previews
                    continue
                blob = self._comfy.view(image["filename"], image.get("subfolder", ""), image.get("type", "output"))
                if blob is None:
                    errors.append(f"Failed to fetch image data for {image['filename']} from /view endpoint.")
                    continue
                kind, data = self._deliver(job, image["filename"], blob)
                images.append({"filename": image["filename"], "type": kind, "data": data})
        result: dict[str, Any] = {}
        if images:
            result["images"] = images
        if errors:
            result["errors"] = errors
        if not images and errors:
            return {"error": "Job processing failed", "details": errors}
        if not images:
            result["status"] = "success_no_images"
            result["images"] = []
        return result

    def _v4_result(self, job: Job, entry: dict[str, Any]) -> dict[str, Any]:
        outputs = entry.get("outputs", {})
        if not outputs:  # the old worker polled history until its retries ran out
            return {"error": "Max retries reached while waiting for image generation"}
        last: dict[str, Any] | None = None
        for node_output in outputs.values():
            for image in node_output.get("images", []):
                last = image
        if last is None:
            return {
                "status": "error",
                "message": f"the image does not exist in the specified output folder: {V4_OUTPUT_PATH}/",
            }
        path = posixpath.join(last.get("subfolder", ""), last["filename"])
        blob = (
            self._comfy.view(last["filename"], last.get("subfolder", ""), "output")
            if last.get("type") == "output"
            else None
        )
        if blob is None:
            message = f"the image does not exist in the specified output folder: {V4_OUTPUT_PATH}/{path}"
            return {"status": "error", "message": message}
        kind, data = self._deliver(job, last["filename"], blob)
        if kind == "base64" and self.output_format == "v4":
            data = f"data:image/png;base64,{data}"
        return {"status": "success", "message": data}

    def _deliver_webhook(self, job: Job) -> None:
        if not job.webhook:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake RunPod serverless API (worker-comfyui) on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8189)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--queue-seconds", type=float, default=0.5)
    parser.add_argument("--run-seconds", type=float, default=2.0)
    parser.add_argument("--output-format", choices=["v5", "v4", "v4-bare"], default="v5")
    parser.add_argument("--comfy-port", type=int, help="also start a FakeComfyUI on this port and run jobs on it")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        comfy = None
        if args.comfy_port is not None:
            comfy = stack.enter_context(FakeComfyUI(args.host, args.comfy_port, run_seconds=0.1))
            print(f"fake ComfyUI listening on {comfy.url}", flush=True)
        fake = FakeRunPod(
            args.host,
            args.port,
            api_key=args.api_key,
            queue_seconds=args.queue_seconds,
            run_seconds=args.run_seconds,
            output_format=args.output_format,
            comfy=comfy,
        )
        stack.enter_context(fake)
        print(f"fake RunPod listening: RUNPOD_API_BASE={fake.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
