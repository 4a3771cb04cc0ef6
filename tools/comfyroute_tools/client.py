"""An asyncio client for the comfyroute WebSocket API.

One ``ComfyrouteClient`` holds one connection. A background reader parses every frame into a
protocol model and appends it to an in-memory buffer; requests (``get_job``, ``list_jobs``, ...)
and ``follow`` *claim* the messages they wait for by predicate, and ``messages()`` yields the
rest, so an answer to one request never swallows a progress update meant for another consumer.

Input files go with ``run_job(files=...)``: each small file rides inline (base64) while the frame
stays under 128 KB, the others are uploaded first (``upload``: ``request_upload``, then the
presigned POST). A workflow whose frame would pass 128 KB is uploaded too and sent as
``workflow_upload_id``. ``comfyroute_tools.uploads`` has the rules.

The API token travels as the ``token`` query parameter of the URL (API Gateway's authorizer reads
it from there). It is never shown: ``repr``, ``url`` and every exception message use the URL
without it, and text from the WebSocket library is scrubbed of it before it is re-raised.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any, Self, TypeAlias
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from comfyroute.http import make_session
from comfyroute.protocol import MAX_MESSAGE_BYTES, JobStatus
from comfyroute.protocol.commands import (
    CancelJob,
    GetJob,
    GetJobData,
    JobRef,
    ListJobs,
    ListJobsData,
    Ping,
    RequestUpload,
    RequestUploadData,
    describe_validation_error,
)
from comfyroute.protocol.server_messages import (
    ErrorMessage,
    JobList,
    JobMessage,
    JobOutput,
    JobState,
    JobUpdate,
    JobView,
    NodeProgress,
    NodeUpdate,
    OutputUpdate,
    OutputValue,
    Pong,
    ServerMessage,
    UploadReady,
    WorkflowSaved,
    parse_server_message,
)
from comfyroute.protocol.workflow_commands import EditorWorkflow, RunJob, RunJobData, SaveWorkflow, SaveWorkflowData
from comfyroute.text import NAME_PUNCTUATION, redact
from comfyroute.text import safe_filename as _safe_name
from comfyroute_tools.errors import ComfyrouteError, InvalidRequest, UploadFailed, UploadRefused
from comfyroute_tools.uploads import (
    PLACEHOLDER_UPLOAD_ID,
    WORKFLOW_CONTENT_TYPE,
    WORKFLOW_FILENAME,
    FilePayload,
    FileSpec,
    PendingFile,
    Progress,
    frame_size,
    placeholder_refs,
    plan_files,
    post_upload,
    resolve_files,
)

__all__ = [
    "AuthError",
    "ComfyrouteClient",
    "ComfyrouteError",
    "ConnectError",
    "ConnectionLost",
    "DownloadError",
    "FollowTimeout",
    "InvalidRequest",
    "JobResult",
    "RequestError",
    "RequestTimeout",
    "UploadFailed",
    "UploadRefused",
    "download",
    "download_blocking",
    "safe_filename",
    "split_token",
]

log = logging.getLogger(__name__)

TOKEN_PARAM = "token"
DEFAULT_REQUEST_TIMEOUT = 30.0
# How long follow() waits without hearing about its job before asking get_job: pushes can be
# lost (a reconnect gives a new connection id, a GoneException drops one) and the job record is
# the truth either way.
DEFAULT_POLL_INTERVAL = 30.0
DOWNLOAD_CHUNK = 64 * 1024


# --------------------------------------------------------------------------- errors
# ComfyrouteError, InvalidRequest, UploadFailed and UploadRefused live in comfyroute_tools.errors.


class ConnectError(ComfyrouteError):
    """The WebSocket connection could not be opened."""


class AuthError(ConnectError):
    """The server refused the handshake because of the token (HTTP 401 or 403)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ConnectionLost(ComfyrouteError):
    """The connection closed while a request or ``follow`` was waiting on it."""


class RequestTimeout(ComfyrouteError, TimeoutError):
    """No answer to a request within the request timeout."""


class FollowTimeout(ComfyrouteError, TimeoutError):
    """``follow`` gave up before the job reached a terminal status."""

    def __init__(self, message: str, *, last_status: JobStatus | None) -> None:
        super().__init__(message)
        self.last_status = last_status


class RequestError(ComfyrouteError):
    """The server answered a command with an ``error`` message."""

    def __init__(self, error: ErrorMessage) -> None:
        what = f"{error.request} refused" if error.request else "server error"
        job = f" (job {error.job_id})" if error.job_id else ""
        super().__init__(f"{what}{job}: {error.message} [{error.code}]")
        self.error = error

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def request(self) -> str | None:
        return self.error.request


class DownloadError(ComfyrouteError):
    """An output could not be fetched or did not match what the server announced."""


# --------------------------------------------------------------------------- results


class JobResult(JobState):
    """Where ``follow`` left a job: its terminal status and every output it produced."""

    model_config = ConfigDict(frozen=True)

    outputs: list[JobOutput] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is JobStatus.COMPLETED


def _output_key(out: JobOutput) -> tuple[str, str, str]:
    return (out.node_id, out.output_name, out.value.filename)


def _fields_of(model: type[BaseModel], source: BaseModel) -> dict[str, Any]:
    """The fields ``source`` shares with ``model`` (the messages repeat the job's fields)."""
    return source.model_dump(include=set(model.model_fields) - {"type"})


def _as_job_output(update: OutputUpdate) -> JobOutput:
    return JobOutput.model_validate(_fields_of(JobOutput, update))


def _update_from_view(view: JobView) -> JobUpdate:
    return JobUpdate.model_validate(_fields_of(JobUpdate, view))


# --------------------------------------------------------------------------- URL / token


def split_token(url: str) -> tuple[str, str | None]:
    """``url`` without its ``token`` query parameter, and that token if it had one."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    token = next((v for k, v in query if k == TOKEN_PARAM), None)
    rest = urlencode([(k, v) for k, v in query if k != TOKEN_PARAM])
    return urlunsplit(parts._replace(query=rest)), token


def _url_with_token(url: str, token: str) -> str:
    base, _ = split_token(url)
    parts = urlsplit(base)
    query = [*parse_qsl(parts.query, keep_blank_values=True), (TOKEN_PARAM, token)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _check_ws_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidRequest(f"not a WebSocket URL: {url!r} (expected ws://host:port/... or wss://...)")


# --------------------------------------------------------------------------- client

Predicate = Callable[[ServerMessage], bool]
# (file name, bytes sent, file size): run_job's uploads, one file after the other.
UploadsProgress: TypeAlias = Callable[[str, int, int], None]
Command: TypeAlias = RunJob | CancelJob | GetJob | ListJobs | SaveWorkflow | Ping | RequestUpload


def _is_error_for(msg: ServerMessage, request: str, job_id: str | None = None) -> bool:
    if not isinstance(msg, ErrorMessage) or msg.request != request:
        return False
    return job_id is None or msg.job_id in (None, job_id)


def _concerns_job(msg: ServerMessage, job_id: str) -> bool:
    """Messages ``follow`` consumes: the job's updates and a refusal of the job itself.

    An error carrying the job id is only about the job when it answers ``run_job`` (or names no
    request); a refused ``cancel_job`` or ``get_job`` leaves the job running and is left to
    ``messages()`` and the request that asked."""
    if isinstance(msg, JobUpdate | NodeProgress | NodeUpdate | OutputUpdate):
        return msg.job_id == job_id
    if isinstance(msg, ErrorMessage):
        if msg.code == "in_progress":
            # A resent run_job while the first is still being submitted: the job goes on and
            # the first request's answer follows (the web client reads it the same way).
            return False
        if msg.job_id == job_id:
            return msg.request in (None, "run_job")
        return msg.job_id is None and msg.request == "run_job"
    return False


class ComfyrouteClient:
    """An async context manager around one comfyroute WebSocket connection."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        open_timeout: float = 10,
        max_size: int = MAX_MESSAGE_BYTES,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 0.5,
        buffer_size: int = 10_000,
    ) -> None:
        if not token:
            raise InvalidRequest("an API token is required")
        self.url, _ = split_token(url)  # what may be shown: never the token
        _check_ws_url(self.url)
        self._token = token
        self._full_url = _url_with_token(self.url, token)
        self.open_timeout = open_timeout
        self.max_size = max_size
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        # Bounded so a client that never reads messages() cannot grow without limit; the
        # oldest unclaimed message goes first.
        self._buffer: deque[ServerMessage] = deque(maxlen=buffer_size)
        self._cond = asyncio.Condition()
        self._claims: list[Predicate] = []
        self._lost: str | None = None
        self._closing = False
        # One request_upload at a time, so its upload_ready (or refusal) is surely its own even
        # from a server that does not echo ``ref``.
        self._upload_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ComfyrouteClient(url={self.url!r}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._lost is None

    def _redact(self, text: str) -> str:
        return redact(text, {self._token, quote(self._token, safe=""), quote(self._token)})

    # ------------------------------------------------------------------ connection

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection; ``AuthError`` when the token is refused, ``ConnectError`` otherwise."""
        if self.connected:
            return
        await self._drop()
        try:
            ws = await ws_connect(self._full_url, open_timeout=self.open_timeout, max_size=self.max_size)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise AuthError(
                    f"{self.url} refused the API token (HTTP {status}): check --token or COMFYROUTE_TOKEN",
                    status=status,
                ) from None
            raise ConnectError(f"{self.url} refused the WebSocket handshake (HTTP {status})") from None
        except InvalidURI:
            raise InvalidRequest(f"not a valid WebSocket URL: {self.url!r}") from None
        except (OSError, WebSocketException) as exc:  # TimeoutError is an OSError
            detail = self._redact(str(exc)) or type(exc).__name__
            raise ConnectError(f"cannot connect to {self.url}: {detail}") from None
        self._ws = ws
        self._lost = None
        self._closing = False
        self._reader = asyncio.create_task(self._read(ws), name="comfyroute-reader")

    async def reconnect(self) -> None:
        """A new connection after a drop, retried with backoff; a refused token is not retried."""
        await self._drop()
        delay = self.reconnect_delay
        last: ConnectError | None = None
        for attempt in range(1, self.reconnect_attempts + 1):
            try:
                await self.connect()
                return
            except AuthError:
                raise
            except ConnectError as exc:
                last = exc
                log.warning("reconnect attempt %d/%d failed: %s", attempt, self.reconnect_attempts, exc)
                if attempt < self.reconnect_attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        raise ConnectError(f"could not reconnect after {self.reconnect_attempts} attempts: {last}")

    async def close(self) -> None:
        self._closing = True
        await self._drop()
        async with self._cond:
            self._lost = "the client was closed"
            self._cond.notify_all()

    async def _drop(self) -> None:
        ws, reader = self._ws, self._reader
        self._ws, self._reader = None, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(self, ws: ClientConnection) -> None:
        reason = "the server closed the connection"
        try:
            async for raw in ws:
                try:
                    msg = parse_server_message(raw)
                except ValidationError as exc:
                    # A newer server may send something this client does not know: say so, go on.
                    log.warning(
                        "ignoring a server message this client cannot parse: %s", describe_validation_error(exc)
                    )
                    continue
                async with self._cond:
                    self._buffer.append(msg)
                    self._cond.notify_all()
            if ws.close_code is not None:
                reason = f"the server closed the connection (code {ws.close_code})"
        except ConnectionClosed as exc:
            reason = f"the connection dropped ({self._redact(str(exc))})"
        finally:
            async with self._cond:
                if self._ws is ws or self._ws is None:
                    self._lost = "the client was closed" if self._closing else reason
                self._cond.notify_all()

    # ------------------------------------------------------------------ message plumbing

    @contextlib.contextmanager
    def _claim(self, predicate: Predicate) -> Iterator[None]:
        self._claims.append(predicate)
        try:
            yield
        finally:
            self._claims.remove(predicate)

    def _pop_first(self, predicate: Predicate) -> ServerMessage | None:
        for i, msg in enumerate(self._buffer):
            if predicate(msg):
                del self._buffer[i]
                return msg
        return None

    async def _next(self, predicate: Predicate, *, timeout: float | None, what: str) -> ServerMessage:
        """The first buffered or arriving message matching ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self._cond:
            while True:
                msg = self._pop_first(predicate)
                if msg is not None:
                    return msg
                if self._lost is not None:
                    raise ConnectionLost(f"{self.url}: {self._lost} while waiting for {what}")
                if self._ws is None:
                    raise ConnectionLost(f"not connected to {self.url}: call connect() first")
                try:
                    if deadline is None:
                        await self._cond.wait()
                    else:
                        async with asyncio.timeout(max(deadline - loop.time(), 0)):
                            await self._cond.wait()
                except TimeoutError:
                    raise RequestTimeout(f"no answer to {what} within {timeout:g}s from {self.url}") from None

    async def _send(self, command: Command) -> None:
        text = command.model_dump_json(exclude_none=True)
        size = len(text.encode())
        if size > MAX_MESSAGE_BYTES:
            hint = "" if command.command == "run_job" else " (run_job uploads a workflow this big by itself)"
            raise InvalidRequest(
                f"{command.command} is {size} bytes; a WebSocket message may carry at most "
                f"{MAX_MESSAGE_BYTES} bytes{hint}"
            )
        if self._ws is None or self._lost is not None:
            raise ConnectionLost(f"not connected to {self.url}: {self._lost or 'call connect() first'}")
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise ConnectionLost(
                f"{self.url}: the connection dropped while sending {command.command} ({self._redact(str(exc))})"
            ) from None

    async def _request(
        self, command: GetJob | ListJobs | SaveWorkflow | Ping | RequestUpload, predicate: Predicate
    ) -> ServerMessage:
        # Claim before sending so messages() cannot take the answer first.
        with self._claim(predicate):
            await self._send(command)
            msg = await self._next(predicate, timeout=self.request_timeout, what=command.command)
        if isinstance(msg, ErrorMessage):
            raise RequestError(msg)
        return msg

    async def messages(self) -> AsyncGenerator[ServerMessage, None]:
        """Every server message no request or ``follow`` is waiting for, in arrival order.

        Ends when the client is closed; raises ``ConnectionLost`` when the connection drops."""

        def unclaimed(msg: ServerMessage) -> bool:
            return not any(claim(msg) for claim in self._claims)

        while True:
            try:
                msg = await self._next(unclaimed, timeout=None, what="messages")
            except ConnectionLost:
                if self._closing:
                    return
                raise
            yield msg

    # ------------------------------------------------------------------ commands

    async def run_job(
        self,
        *,
        graph: dict[str, Any] | None = None,
        prompt: dict[str, Any] | None = None,
        workflow: dict[str, Any] | None = None,
        workflow_id: str | None = None,
        workflow_upload_id: str | None = None,
        job_id: str | None = None,
        params: dict[str, dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        files: FileSpec | None = None,
        upload_progress: UploadsProgress | None = None,
    ) -> str:
        """Send ``run_job`` and return its job id (a new uuid4 unless given: the idempotency key,
        so sending the same id again cannot start a second job). Progress comes via ``follow``.

        The workflow is one of ``graph`` (nodetool), ``prompt`` (ComfyUI API format),
        ``workflow`` (a ComfyUI editor workflow.json, as saved), ``workflow_upload_id``, or a
        saved workflow by ``workflow_id`` alone. A workflow whose frame would pass 128 KB is
        uploaded first and sent as ``workflow_upload_id``.

        ``files``: each a path (named by its basename), ``(name, bytes)``, ``(name, Path)``,
        ``(name, upload_id)`` or an ``InputFileRef``, or a ``{name: bytes | Path | upload_id}``
        mapping. The workflow refers to a file by its name (LoadImage's ``image``). Small files
        ride inline while the frame stays under 128 KB; the rest are uploaded, reporting to
        ``upload_progress(name, sent, size)``."""
        fields = {
            "job_id": job_id or str(uuid.uuid4()),
            "workflow_id": workflow_id,
            "graph": graph,
            "prompt": prompt,
            "workflow": workflow,
            "workflow_upload_id": workflow_upload_id,
            "params": params,
            "settings": settings,
        }
        data = self._run_job_data({k: v for k, v in fields.items() if v is not None})
        pending = resolve_files(files) if files is not None else []
        data = await self._fit_workflow(data, {"graph": graph, "prompt": prompt, "workflow": workflow}, pending)
        if pending:
            refs, to_upload = plan_files(data, pending)
            size = frame_size(data.model_copy(update={"files": refs}))
            if size > MAX_MESSAGE_BYTES:
                # Refused before any upload: the uploads could not make it fit.
                raise InvalidRequest(
                    f"run_job would be {size} bytes with every large file uploaded; a WebSocket message may "
                    f"carry at most {MAX_MESSAGE_BYTES} bytes (fewer files, or smaller params)"
                )
            for i in to_upload:
                payload = pending[i].payload
                assert payload is not None

                def report(sent: int, total: int, name: str = pending[i].name) -> None:
                    if upload_progress is not None:
                        upload_progress(name, sent, total)

                upload_id = await self.upload(payload, progress=report)
                refs[i] = refs[i].model_copy(update={"upload_id": upload_id})
            # Every ref is a checked InputFileRef and resolve_files refused repeated names.
            data = data.model_copy(update={"files": refs})
        await self._send(RunJob(command="run_job", data=data))
        assert data.job_id is not None
        return data.job_id

    @staticmethod
    def _run_job_data(fields: dict[str, Any]) -> RunJobData:
        try:
            return RunJobData.model_validate(fields)
        except ValidationError as exc:
            raise InvalidRequest(f"run_job: {describe_validation_error(exc, prefix=('data',))}") from None

    async def _fit_workflow(self, data: RunJobData, given: dict[str, Any], pending: list[PendingFile]) -> RunJobData:
        """``data`` as it is when its frame fits (with every file as an upload), else with the
        workflow uploaded and named by ``workflow_upload_id``."""
        if frame_size(data.model_copy(update={"files": placeholder_refs(pending) or None})) <= MAX_MESSAGE_BYTES:
            return data
        source = next(((k, v) for k, v in given.items() if v is not None), None)
        if source is None:
            return data  # nothing to move out of the frame; _send says how big it is
        kind, body = source
        fields = data.model_dump(mode="json", exclude_none=True, exclude={kind})
        moved = self._run_job_data({**fields, "workflow_upload_id": PLACEHOLDER_UPLOAD_ID})
        if frame_size(moved.model_copy(update={"files": placeholder_refs(pending) or None})) > MAX_MESSAGE_BYTES:
            return data  # the rest (params, many files) is too big by itself: uploading cannot help
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        log.info("the %s makes run_job %d bytes; uploading it (%d bytes)", kind, frame_size(data), len(text))
        upload_id = await self.upload(text, filename=WORKFLOW_FILENAME, content_type=WORKFLOW_CONTENT_TYPE)
        return moved.model_copy(update={"workflow_upload_id": upload_id})

    async def run(
        self,
        *,
        timeout: float | None = None,
        on_message: Callable[[ServerMessage], None] | None = None,
        **run_job: Any,
    ) -> JobResult:
        """``run_job(**run_job)`` (files and all), then ``follow`` it to the end."""
        job_id = await self.run_job(**run_job)
        return await self.follow(job_id, timeout=timeout, on_message=on_message)

    async def request_upload(self, filename: str, content_type: str, size: int) -> UploadReady:
        """Ask for a presigned POST for one file; ``RequestError`` when the server refuses it
        (a content type or size it does not take: ``upload_not_allowed``, ``upload_too_large``)."""
        ref = uuid.uuid4().hex[:16]
        try:
            data = RequestUploadData(filename=filename, content_type=content_type, size=size, ref=ref)
        except ValidationError as exc:
            raise InvalidRequest(f"request_upload: {describe_validation_error(exc, prefix=('data',))}") from None

        def answer(msg: ServerMessage) -> bool:
            return (isinstance(msg, UploadReady) and msg.ref in (ref, None)) or _is_error_for(msg, "request_upload")

        async with self._upload_lock:
            msg = await self._request(RequestUpload(command="request_upload", data=data), answer)
        assert isinstance(msg, UploadReady)
        return msg

    async def upload(
        self,
        source: str | os.PathLike[str] | bytes | FilePayload,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
        session: requests.Session | None = None,
    ) -> str:
        """Upload one file and return its upload id, for ``run_job``'s ``files`` or
        ``workflow_upload_id``.

        ``source`` is a path or the bytes (then ``filename`` names them). The content type is
        guessed from the name unless given. ``progress(sent, size)`` is called from a worker
        thread as the bytes go out. Raises ``RequestError`` when the server refuses the upload,
        ``UploadRefused`` (with S3's ``code``, e.g. ``EntityTooLarge``) when the store refuses
        the POST, ``UploadFailed`` when the store cannot be reached."""
        if isinstance(source, FilePayload):
            payload = source
        elif isinstance(source, bytes | bytearray | memoryview):
            payload = FilePayload.from_bytes(source, filename=filename or "upload.bin", content_type=content_type)
        else:
            payload = FilePayload.from_path(source, filename=filename, content_type=content_type)
        ready = await self.request_upload(payload.filename, payload.content_type, payload.size)
        await asyncio.to_thread(post_upload, ready, payload, progress=progress, session=session)
        return ready.upload_id

    async def cancel_job(self, job_id: str) -> None:
        """Ask for the job to be cancelled; the ``cancelled`` job_update arrives via ``follow``."""
        await self._send(CancelJob(command="cancel_job", data=self._job_ref(job_id)))

    async def get_job(self, job_id: str) -> JobView:
        """The job with all its outputs, asking page after page (``outputs_next``) as the server
        splits them to fit its frames."""
        ref = self._job_ref(job_id)

        def answer(msg: ServerMessage) -> bool:
            return (isinstance(msg, JobMessage) and msg.job.job_id == job_id) or _is_error_for(msg, "get_job", job_id)

        outputs: list[JobOutput] = []
        offset: int | None = 0
        view: JobView | None = None
        while offset is not None:
            data = GetJobData(job_id=ref.job_id, outputs_offset=offset)
            msg = await self._request(GetJob(command="get_job", data=data), answer)
            assert isinstance(msg, JobMessage)
            view = msg.job
            outputs.extend(view.outputs)
            following = view.outputs_next
            # A server that does not page answers without outputs_next: that is the whole job.
            offset = following if following is not None and following > offset else None
        assert view is not None
        return view.model_copy(update={"outputs": outputs, "outputs_offset": None, "outputs_next": None})

    async def list_jobs(self, limit: int = 20) -> list[JobView]:
        try:
            data = ListJobsData(limit=limit)
        except ValidationError as exc:
            raise InvalidRequest(f"list_jobs: {describe_validation_error(exc, prefix=('data',))}") from None

        def answer(msg: ServerMessage) -> bool:
            return isinstance(msg, JobList) or _is_error_for(msg, "list_jobs")

        msg = await self._request(ListJobs(command="list_jobs", data=data), answer)
        assert isinstance(msg, JobList)
        return msg.jobs

    async def save_workflow(
        self,
        workflow_id: str,
        *,
        graph: dict[str, Any] | None = None,
        prompt: dict[str, Any] | None = None,
        workflow: dict[str, Any] | EditorWorkflow | None = None,
        settings: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> WorkflowSaved:
        """Save a workflow under ``workflow_id``: a nodetool ``graph``, an API ``prompt`` or a
        ComfyUI editor ``workflow`` (workflow.json as saved), with its executor settings."""
        fields = {
            "workflow_id": workflow_id,
            "graph": graph,
            "prompt": prompt,
            "workflow": workflow,
            "settings": settings,
            "name": name,
        }
        try:
            data = SaveWorkflowData.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            raise InvalidRequest(f"save_workflow: {describe_validation_error(exc, prefix=('data',))}") from None

        def answer(msg: ServerMessage) -> bool:
            return (isinstance(msg, WorkflowSaved) and msg.workflow_id == workflow_id) or _is_error_for(
                msg, "save_workflow"
            )

        msg = await self._request(SaveWorkflow(command="save_workflow", data=data), answer)
        assert isinstance(msg, WorkflowSaved)
        return msg

    async def ping(self) -> None:
        def answer(msg: ServerMessage) -> bool:
            return isinstance(msg, Pong) or _is_error_for(msg, "ping")

        await self._request(Ping(command="ping"), answer)

    @staticmethod
    def _job_ref(job_id: str) -> JobRef:
        try:
            return JobRef(job_id=job_id)
        except ValidationError as exc:
            raise InvalidRequest(f"job id {job_id!r}: {describe_validation_error(exc)}") from None

    # ------------------------------------------------------------------ follow

    async def follow(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_message: Callable[[ServerMessage], None] | None = None,
        confirm_outputs: bool = True,
    ) -> JobResult:
        """Consume the job's messages until a terminal ``job_update``; return status and outputs.

        A dropped connection is reopened and the job's state caught up with ``get_job``; so is a
        silence longer than ``poll_interval``. With ``confirm_outputs`` a completed job's output
        list is checked against ``get_job`` too, so an output pushed after the final update, or
        lost, is not missed (unless the terminal update counts the outputs before it, and all of them
        arrived). ``on_message`` sees every update consumed (and a ``job_update``
        made from each catch-up). A refusal of the job raises ``RequestError``; running past
        ``timeout`` raises ``FollowTimeout`` (the job keeps running: cancel it if you wish)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        outputs: dict[tuple[str, str, str], JobOutput] = {}
        last: JobUpdate | None = None

        def merge(extra: list[JobOutput]) -> None:
            for out in extra:
                outputs.setdefault(_output_key(out), out)

        def result(update: JobUpdate) -> JobResult:
            return JobResult(**_fields_of(JobResult, update), outputs=list(outputs.values()))

        async def catch_up() -> JobUpdate:
            view = await self.get_job(job_id)
            merge(view.outputs)
            update = _update_from_view(view)
            if on_message is not None:
                on_message(update)
            return update

        def concerns(msg: ServerMessage) -> bool:
            return _concerns_job(msg, job_id)

        with self._claim(concerns):
            while True:
                wait = self.poll_interval
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        status = last.status if last else None
                        raise FollowTimeout(
                            f"job {job_id} did not finish within {timeout:g}s (last status: {status or 'unknown'})",
                            last_status=status,
                        )
                    wait = min(wait, remaining)
                try:
                    msg = await self._next(concerns, timeout=wait, what=f"updates of job {job_id}")
                except RequestTimeout:
                    if deadline is not None and loop.time() >= deadline:
                        continue  # the loop head raises FollowTimeout
                    last = await catch_up()
                    if last.status.terminal:
                        return result(last)
                    continue
                except ConnectionLost as exc:
                    if self._closing:
                        raise
                    log.warning("%s; reconnecting to catch up on job %s", exc, job_id)
                    await self.reconnect()
                    last = await catch_up()
                    if last.status.terminal:
                        return result(last)
                    continue
                if isinstance(msg, ErrorMessage):
                    raise RequestError(msg)  # the caller reports it: not also via on_message
                if on_message is not None:
                    on_message(msg)
                if isinstance(msg, OutputUpdate):
                    merge([_as_job_output(msg)])
                elif isinstance(msg, JobUpdate):
                    last = msg
                    if msg.status.terminal:
                        # A terminal update that counts the outputs before it, all of them
                        # here, leaves nothing to confirm.
                        counted = msg.output_count is not None and len(outputs) >= msg.output_count
                        if msg.status is JobStatus.COMPLETED and confirm_outputs and not counted:
                            await self._confirm_outputs(job_id, merge)
                        return result(msg)

    async def _confirm_outputs(self, job_id: str, merge: Callable[[list[JobOutput]], None]) -> None:
        try:
            view = await self.get_job(job_id)
        except (RequestError, RequestTimeout, ConnectionLost) as exc:
            # The streamed outputs stand on their own; the check is only a safety net.
            log.warning("could not confirm the outputs of job %s: %s", job_id, exc)
            return
        merge(view.outputs)


# --------------------------------------------------------------------------- downloads


def safe_filename(name: str, default: str = "output") -> str:
    """The server's file name as a local one: one path component, readable punctuation kept."""
    return _safe_name(name, default, keep=NAME_PUNCTUATION, unicode=True)


def _reserve(dest_dir: Path, name: str) -> Path:
    """Create an empty file under a name nobody has, so concurrent downloads never overwrite."""
    stem, ext = os.path.splitext(name)
    for n in range(10_000):
        path = dest_dir / (name if n == 0 else f"{stem}-{n}{ext}")
        try:
            path.open("xb").close()
        except FileExistsError:
            continue
        return path
    raise DownloadError(f"{name}: no free file name in {dest_dir}")


def _host_of(uri: str) -> str:
    # Presigned URLs carry a signature in the query: name the host, never the whole URL.
    return urlsplit(uri).netloc or "?"


def _write_inline(value: OutputValue, name: str, dest_dir: Path) -> Path:
    assert value.data is not None
    try:
        payload = base64.b64decode(value.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DownloadError(f"{name}: the inline data is not valid base64 ({exc})") from None
    if len(payload) != value.size:
        raise DownloadError(f"{name}: the inline data is {len(payload)} bytes; the server announced {value.size}")
    path = _reserve(dest_dir, name)
    try:
        path.write_bytes(payload)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _fetch(value: OutputValue, name: str, dest_dir: Path, session: requests.Session | None) -> Path:
    assert value.uri is not None
    uri, host = value.uri, _host_of(value.uri)
    if urlsplit(uri).scheme not in ("http", "https"):
        raise DownloadError(f"{name}: refusing to fetch a {urlsplit(uri).scheme or 'scheme-less'} URI")
    sess = session or make_session()
    # A hidden part file until the size checks out (not mkstemp: its 0600 mode would stick to the
    # output, unlike the inline path's umask-default files).
    tmp = dest_dir / f".{name}.{uuid.uuid4().hex[:12]}.part"
    try:
        written = 0
        with tmp.open("xb") as f, sess.get(uri, stream=True) as resp:
            if resp.status_code != 200:
                raise DownloadError(f"{name}: HTTP {resp.status_code} from {host}")
            for chunk in resp.iter_content(DOWNLOAD_CHUNK):
                written += len(chunk)
                if written > value.size:
                    raise DownloadError(f"{name}: {host} sent more than the {value.size} bytes announced")
                f.write(chunk)
        if written != value.size:
            raise DownloadError(f"{name}: got {written} bytes from {host}; the server announced {value.size}")
        path = _reserve(dest_dir, name)
        os.replace(tmp, path)
        return path
    except requests.RequestException as exc:
        raise DownloadError(f"{name}: download from {host} failed ({type(exc).__name__})") from None
    finally:
        tmp.unlink(missing_ok=True)
        if session is None:
            sess.close()


def download_blocking(
    output: OutputValue | JobOutput | OutputUpdate, dest_dir: str | Path, *, session: requests.Session | None = None
) -> Path:
    """Save one output under ``dest_dir`` (created if missing) and return its path.

    Inline base64 ``data`` wins over the ``uri``; the byte count must equal the announced
    ``size``; the file keeps the server's name, sanitised, with ``-1``, ``-2``, ... added
    rather than overwriting anything."""
    value = output if isinstance(output, OutputValue) else output.value
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    name = safe_filename(value.filename)
    if value.data is not None:
        return _write_inline(value, name, dest)
    if not value.uri:
        raise DownloadError(f"{name}: the output has neither a 'uri' nor inline 'data'")
    return _fetch(value, name, dest, session)


async def download(
    output: OutputValue | JobOutput | OutputUpdate, dest_dir: str | Path, *, session: requests.Session | None = None
) -> Path:
    """``download_blocking`` in a worker thread, so the event loop keeps reading messages."""
    return await asyncio.to_thread(download_blocking, output, dest_dir, session=session)
