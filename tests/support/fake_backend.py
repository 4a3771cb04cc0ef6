"""Scripted stand-ins for the comfyroute backend, shared by the client, CLI and browser tests.

``FakeServer`` is not the backend: it plays scripted job timelines (success, failure, refusal, a
dropped connection, a job that runs until cancelled) so a client's behaviour can be checked:
pairing of answers, output collection, reconnect + get_job catch-up, downloads, uploads, errors,
token handling. Commands are parsed with the real ``parse_command``, so a malformed client frame
fails the test. ``FileServer`` serves outputs as presigned URLs do; ``UploadServer`` takes
presigned POSTs as S3 does, policy checks and XML errors included.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from requests_toolbelt.multipart.decoder import MultipartDecoder
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.commands import CancelJob, GetJob, ListJobs, Ping, RequestUpload, parse_command
from comfyroute.protocol.server_messages import (
    ErrorMessage,
    JobInput,
    JobList,
    JobMessage,
    JobOutput,
    JobUpdate,
    JobView,
    NodeProgress,
    OutputUpdate,
    OutputValue,
    Pong,
    ServerMessage,
    UploadReady,
    WorkflowSaved,
    encode,
)
from comfyroute.protocol.workflow_commands import RunJob, SaveWorkflow

# Characters that must be URL-encoded, so a client that forgets to encode is caught.
TOKEN = "tok/en+with&odd=chars"

PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "test"}},
}

# Inline output: small enough to travel as base64 in the message.
INLINE_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
# Presigned-URL output: larger than one download chunk, so streaming is exercised.
URI_BYTES = bytes((i * 7 + 3) % 256 for i in range(200_000))
URI_PATH = "/jobs/out/000-9-clip.webp"
INLINE_PATH = "/jobs/out/000-2-test_00001_.png"


class FileServer:
    """Presigned-URL stand-in: serves fixed bytes over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        files: dict[str, bytes] = {URI_PATH: URI_BYTES, INLINE_PATH: INLINE_BYTES}
        self.files = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(urlsplit(self.path).path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, path: str) -> str:
        # A query like a presigned URL's, to check it never shows up in messages.
        return f"{self.base}{path}?X-Amz-Signature=deadbeefsignature"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeServer:
    """A comfyroute WebSocket server double running in its own thread and event loop.

    ``mode`` picks what ``run_job`` does: ``success``, ``failed``, ``reject``, ``drop`` (the
    connection is cut after ``running``; the finished job is then available via get_job),
    ``silent`` (finishes without pushing anything after ``running``) or ``hang`` (runs until
    ``cancel_job``). ``on_running`` is called in the server thread once a
    job is running (the Ctrl-C test sends SIGINT from there).

    With an ``UploadServer``, ``request_upload`` is answered with a presigned POST to it (or
    refused as the real store refuses: content type, size), and ``run_job``'s ``files`` and
    ``workflow_upload_id`` are resolved against what arrived there; a job's input files show in
    its ``get_job`` view. ``job_inputs`` keeps the bytes each job got.
    """

    def __init__(self, files: FileServer, uploads: UploadServer | None = None, *, token: str = TOKEN) -> None:
        self.files = files
        self.uploads = uploads
        self.token = token
        self.mode = "success"
        self.max_upload_bytes = MAX_UPLOAD_BYTES
        self.admit_delta = 0  # the upload policy admits size + admit_delta bytes (S3 refuses the rest)
        self.echo_ref = True  # a server that does not echo request_upload's ref is allowed too
        # job id -> [(name, bytes, content type)] and the workflows that came by upload
        self.job_inputs: dict[str, list[tuple[str, bytes, str]]] = {}
        self.uploaded_workflows: dict[str, Any] = {}
        self.workflow_ids: dict[str, str] = {}  # job id -> the workflow_id it was sent with ("wf-1" if none)
        self.on_running: Callable[[], None] | None = None
        # The terminal update's output_count (the backend counts the output_updates before it).
        self.output_count: int | None = None
        self.noise_before_job = False  # send another job's progress before a get_job answer
        self.mute: set[str] = set()  # commands to ignore (for request timeouts)
        self.junk_before_pong = False  # send frames no client can parse before a pong
        self.received: list[tuple[int, Any]] = []  # (connection number, parsed command)
        self.tokens_seen: list[str | None] = []
        self.connections = 0
        self.jobs: dict[str, JobView] = {}
        self._cancel: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def commands(self, name: str) -> list[Any]:
        return [cmd for _, cmd in self.received if cmd.command == name]

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeServer:
        self.thread.start()
        assert self._ready.wait(10), "fake server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, process_request=self._check_token) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _check_token(self, conn: ServerConnection, request: Request) -> Response | None:
        token = parse_qs(urlsplit(request.path).query).get("token", [None])[0]
        self.tokens_seen.append(token)
        if token != self.token:
            return conn.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    # ------------------------------------------------------------------ protocol

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for raw in ws:
                cmd = parse_command(raw)
                self.received.append((number, cmd))
                if cmd.command in self.mute:
                    continue
                task = asyncio.create_task(self._answer(ws, cmd))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()

    async def _send(self, ws: ServerConnection, msg: ServerMessage) -> None:
        await ws.send(encode(msg))

    async def _answer(self, ws: ServerConnection, cmd: Any) -> None:
        if isinstance(cmd, Ping):
            if self.junk_before_pong:
                await ws.send('{"type": "from_the_future", "x": 1}')
                await ws.send("not json at all")
            await self._send(ws, Pong())
        elif isinstance(cmd, RunJob):
            await self._run(ws, cmd)
        elif isinstance(cmd, GetJob):
            if self.noise_before_job:
                await self._send(ws, NodeProgress(job_id="someone-else", node_id="7", progress=1, total=3))
            view = self.jobs.get(cmd.data.job_id)
            if view is None:
                await self._send(
                    ws,
                    ErrorMessage(
                        message=f"no job {cmd.data.job_id}", code="not_found", request="get_job", job_id=cmd.data.job_id
                    ),
                )
            else:
                await self._send(ws, JobMessage(job=view))
        elif isinstance(cmd, ListJobs):
            await self._send(ws, JobList(jobs=list(self.jobs.values())[: cmd.data.limit]))
        elif isinstance(cmd, CancelJob):
            event = self._cancel.get(cmd.data.job_id)
            if event is None:
                await self._send(
                    ws,
                    ErrorMessage(
                        message="job is not running", code="conflict", request="cancel_job", job_id=cmd.data.job_id
                    ),
                )
            else:
                event.set()
        elif isinstance(cmd, RequestUpload):
            await self._send(ws, self._upload_answer(cmd))
        elif isinstance(cmd, SaveWorkflow):
            settings = cmd.data.settings.model_dump(mode="json", exclude_none=True) if cmd.data.settings else {}
            await self._send(ws, WorkflowSaved(workflow_id=cmd.data.workflow_id, settings=settings))

    def _upload_answer(self, cmd: RequestUpload) -> ServerMessage:
        assert self.uploads is not None, "this FakeServer has no UploadServer"
        d = cmd.data

        def refuse(message: str, code: str) -> ErrorMessage:
            return ErrorMessage(message=message, code=code, request="request_upload")

        if d.content_type not in ALLOWED_UPLOAD_TYPES:
            return refuse(f"content type '{d.content_type}' is not allowed for uploads", "upload_not_allowed")
        if d.size > self.max_upload_bytes:
            return refuse(
                f"file '{d.filename}' is {d.size} bytes; the limit is {self.max_upload_bytes} bytes", "upload_too_large"
            )
        upload_id, fields = self.uploads.issue(d.filename, d.content_type, d.size, admit=d.size + self.admit_delta)
        return UploadReady(
            upload_id=upload_id,
            url=self.uploads.url,
            fields=fields,
            expires_in=UPLOAD_WINDOW_SECONDS,
            max_bytes=d.size,  # what the server means; admit_delta makes the store disagree
            filename=d.filename,
            ref=d.ref if self.echo_ref else None,
        )

    def _resolve_inputs(self, cmd: RunJob) -> tuple[list[tuple[str, bytes, str]], Any, str | None]:
        """The job's files, the uploaded workflow, or the refusal (as the real server words it)."""
        inputs: list[tuple[str, bytes, str]] = []
        for f in cmd.data.files or []:
            if f.upload_id is not None:
                stored = self.uploads.get(f.upload_id) if self.uploads else None
                if stored is None:
                    return [], None, f"upload {f.upload_id} is unknown or expired: request a new upload"
                inputs.append((f.name, stored.data, stored.content_type))
            else:
                data = f.decoded()
                assert data is not None
                inputs.append((f.name, data, f.content_type or "application/octet-stream"))
        workflow = None
        if cmd.data.workflow_upload_id is not None:
            stored = self.uploads.get(cmd.data.workflow_upload_id) if self.uploads else None
            if stored is None:
                return [], None, f"upload {cmd.data.workflow_upload_id} is unknown or expired: request a new upload"
            workflow = json.loads(stored.data)
        return inputs, workflow, None

    def outputs(self, *, inline: bool) -> list[JobOutput]:
        first = OutputValue(
            filename="../../test_00001_.png",  # a hostile name: must not escape the output dir
            content_type="image/png",
            size=len(INLINE_BYTES),
            uri=self.files.url(INLINE_PATH) if not inline else None,
            data=base64.b64encode(INLINE_BYTES).decode() if inline else None,
        )
        second = OutputValue(
            filename="clip.webp", content_type="image/webp", size=len(URI_BYTES), uri=self.files.url(URI_PATH)
        )
        return [
            JobOutput(node_id="2", node_name="SaveImage", output_name="images", output_type="image", value=first),
            JobOutput(
                node_id="9", node_name="SaveAnimatedWEBP", output_name="images", output_type="image", value=second
            ),
        ]

    def _record(
        self, job_id: str, status: JobStatus, *, error: str | None = None, outputs: list[JobOutput] | None = None
    ) -> JobView:
        view = JobView(
            job_id=job_id,
            workflow_id=self.workflow_ids.get(job_id, "wf-1"),
            status=status,
            executor=ExecutorKind.LOCAL,
            error=error,
            created_at=1_700_000_000.0,
            updated_at=1_700_000_002.5,
            duration=2.5,
            outputs=outputs or [],
            inputs=[JobInput(name=n, size=len(b), content_type=t) for n, b, t in self.job_inputs.get(job_id, [])],
        )
        self.jobs[job_id] = view
        return view

    async def _run(self, ws: ServerConnection, cmd: RunJob) -> None:
        job_id = cmd.data.job_id
        assert job_id is not None, "the client always sends a job id"

        def update(status: JobStatus, **kw: Any) -> JobUpdate:
            return JobUpdate(
                job_id=job_id, workflow_id=self.workflow_ids[job_id], status=status, executor=ExecutorKind.LOCAL, **kw
            )

        self.workflow_ids[job_id] = cmd.data.workflow_id or "wf-1"
        inputs, workflow, refusal = self._resolve_inputs(cmd)
        if refusal is not None:
            await self._send(
                ws, ErrorMessage(message=refusal, code="upload_not_found", request="run_job", job_id=job_id)
            )
            return
        self.job_inputs[job_id] = inputs
        if workflow is not None:
            self.uploaded_workflows[job_id] = workflow
        if self.mode == "reject":
            await self._send(
                ws,
                ErrorMessage(
                    message="node 2: SaveImage needs 'images'", code="bad_request", request="run_job", job_id=job_id
                ),
            )
            return
        await self._send(ws, update(JobStatus.QUEUED))
        self._record(job_id, JobStatus.QUEUED)
        await self._send(ws, update(JobStatus.RUNNING))
        self._record(job_id, JobStatus.RUNNING)
        if self.on_running is not None:
            self.on_running()
        if self.mode == "success":
            for step in (1, 2):
                await self._send(ws, NodeProgress(job_id=job_id, node_id="1", progress=step, total=2))
            for out in self.outputs(inline=True):
                await self._send(ws, OutputUpdate(job_id=job_id, **out.model_dump()))
            self._record(job_id, JobStatus.COMPLETED, outputs=self.outputs(inline=False))
            await self._send(ws, update(JobStatus.COMPLETED, duration=2.5, output_count=self.output_count))
        elif self.mode == "failed":
            error = "ImageBlur (node 3): blur_radius must be at least 1"
            self._record(job_id, JobStatus.FAILED, error=error)
            await self._send(ws, update(JobStatus.FAILED, error=error))
        elif self.mode == "silent":
            # The job finishes but its pushes are lost (a GoneException, say).
            self._record(job_id, JobStatus.COMPLETED, outputs=self.outputs(inline=False))
        elif self.mode == "drop":
            self._record(job_id, JobStatus.COMPLETED, outputs=self.outputs(inline=False))
            ws.transport.abort()  # a network drop: no close frame
        elif self.mode == "hang":
            event = self._cancel[job_id] = asyncio.Event()
            await event.wait()
            self._record(job_id, JobStatus.CANCELLED, error="cancelled by the user")
            await self._send(ws, update(JobStatus.CANCELLED, error="cancelled by the user"))


# --------------------------------------------------------------------------- the upload store

ALLOWED_UPLOAD_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/gif", "audio/wav", "audio/mpeg", "video/mp4", "application/json"}
)
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
UPLOAD_WINDOW_SECONDS = 900


@dataclass(frozen=True)
class StoredUpload:
    data: bytes
    content_type: str
    filename: str


@dataclass
class _Policy:
    fields: dict[str, str]
    min_bytes: int
    max_bytes: int
    expires_at: float


def _s3_error(code: str, message: str, **extra: Any) -> bytes:
    parts = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{parts}'
        f"<RequestId>0123456789ABCDEF</RequestId></Error>"
    ).encode()


class UploadServer:
    """An S3 presigned-POST stand-in on 127.0.0.1 that checks a POST as S3 checks its policy.

    ``issue`` makes the form fields of one upload (key, Content-Type, a signed policy token);
    a POST must carry them all, unchanged and no others, before ``file`` (S3 ignores fields
    after it), with a Content-Length and exactly the admitted number of bytes. Refusals are S3's
    XML errors with S3's codes; stored files are kept (``objects``) so a test can check the exact
    bytes that arrived. CORS as the bucket's rule allows: preflights answered, every answer
    readable by a page of another origin."""

    def __init__(self) -> None:
        self.objects: dict[str, StoredUpload] = {}
        self.posts: list[dict[str, Any]] = []  # what each POST looked like
        self._policies: dict[str, _Policy] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _cors(self) -> None:
                if self.headers.get("Origin"):
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.send_header("Access-Control-Expose-Headers", "ETag, Location")

            def _answer(self, status: int, body: bytes = b"", content_type: str = "application/xml") -> None:
                self.send_response(status)
                self._cors()
                if body:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_OPTIONS(self) -> None:
                self.send_response(200)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Methods", "POST")
                wanted = self.headers.get("Access-Control-Request-Headers")
                if wanted:
                    self.send_header("Access-Control-Allow-Headers", wanted)
                self.send_header("Access-Control-Max-Age", "600")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = self.headers.get("Content-Length")
                if length is None:
                    self.close_connection = True
                    self._answer(
                        411, _s3_error("MissingContentLength", "You must provide the Content-Length HTTP header.")
                    )
                    return
                body = self.rfile.read(int(length))
                status, reply = server._post(self.headers.get("Content-Type", ""), body, self.headers.get("Origin"))
                self._answer(status, reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> UploadServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def issue(
        self,
        filename: str,
        content_type: str,
        size: int,
        *,
        admit: int | None = None,
        expires_in: int = UPLOAD_WINDOW_SECONDS,
    ) -> tuple[str, dict[str, str]]:
        """A new upload id and its form fields; the policy admits exactly ``admit`` bytes
        (``size`` unless a test wants S3 to refuse the file)."""
        expires_at = time.time() + expires_in
        upload_id = f"{int(expires_at):08x}.{secrets.token_urlsafe(18)[:24]}"
        key = f"uploads/{upload_id}"
        signature = secrets.token_hex(16)
        fields = {
            "key": key,
            "Content-Type": content_type,
            "x-amz-meta-filename": filename.encode("ascii", "replace").decode(),
            "policy": base64.b64encode(json.dumps({"key": key, "size": size}).encode()).decode(),
            "x-amz-signature": signature,
        }
        admitted = size if admit is None else admit
        self._policies[key] = _Policy(dict(fields), admitted, admitted, expires_at)
        return upload_id, fields

    def expire(self, upload_id: str) -> None:
        self._policies[f"uploads/{upload_id}"].expires_at = time.time() - 1

    def get(self, upload_id: str) -> StoredUpload | None:
        return self.objects.get(f"uploads/{upload_id}")

    def _post(self, content_type: str, body: bytes, origin: str | None) -> tuple[int, bytes]:
        try:
            parts = MultipartDecoder(body, content_type).parts
        except Exception:
            return 400, _s3_error(
                "MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data."
            )
        fields: dict[str, str] = {}
        order: list[str] = []
        file: Any = None
        for part in parts:
            disposition = part.headers.get(b"Content-Disposition", b"").decode()
            name = _disposition_param(disposition, "name")
            order.append(name or "?")
            if name == "file":
                file = part
                break  # S3 ignores whatever follows the file
            if name:
                fields[name] = part.text
        self.posts.append({"order": order, "origin": origin, "fields": dict(fields)})
        if file is None:
            return 400, _s3_error("InvalidArgument", "POST requires exactly one file upload per request.")
        key = fields.get("key")
        policy = self._policies.get(key or "")
        if policy is None:
            return 403, _s3_error("AccessDenied", "Access Denied")
        if fields.get("x-amz-signature") != policy.fields["x-amz-signature"]:
            return 403, _s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if time.time() > policy.expires_at:
            return 403, _s3_error("AccessDenied", "Invalid according to Policy: Policy expired.")
        for name, value in policy.fields.items():
            if fields.get(name) != value:
                return 403, _s3_error(
                    "AccessDenied",
                    f'Invalid according to Policy: Policy Condition failed: ["eq", "${name}", "{value}"]',
                )
        extra = sorted(set(fields) - set(policy.fields))
        if extra:
            return 403, _s3_error(
                "AccessDenied", f"Invalid according to Policy: Extra input fields: {', '.join(extra)}"
            )
        data = file.content
        if len(data) > policy.max_bytes:
            return 400, _s3_error(
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=len(data),
                MaxSizeAllowed=policy.max_bytes,
            )
        if len(data) < policy.min_bytes:
            return 400, _s3_error(
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
                ProposedSize=len(data),
                MinSizeAllowed=policy.min_bytes,
            )
        filename = _disposition_param(file.headers.get(b"Content-Disposition", b"").decode(), "filename") or ""
        self.objects[key or ""] = StoredUpload(data=data, content_type=fields["Content-Type"], filename=filename)
        return 204, b""


def _disposition_param(header: str, param: str) -> str | None:
    m = re.search(rf'(?:^|;)\s*{param}="([^"]*)"', header)
    return m.group(1) if m else None
