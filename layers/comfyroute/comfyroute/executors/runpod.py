"""RunPod serverless endpoints running runpod-workers/worker-comfyui.

Follows RunPod's serverless API (the contract the tests' fake RunPod speaks): ``/run`` to submit, ``/status/{id}`` for
one look, ``/cancel/{id}``; six job statuses; outputs in the worker's 5.x format (``images[]``
of base64 or S3 URLs, ``errors[]`` as warnings) and its 2.x-4.x format (one ``message`` that is
a data URI, bare base64 or a URL).

worker-comfyui reports neither the node that produced an image nor anything but images, so
every output is ``node_id="runpod"``, ``output_name="images"``, ``kind="image"``. (A ComfyUI
filename prefix such as ``ComfyUI_00001_.png`` is the SaveImage node's ``filename_prefix``
input, not its node id, so it would only look like an id.)

The API key is held as a ``SecretStr`` and sent per request; it never enters the session, a
log line, an exception or the repr, and any text RunPod sends back is scrubbed of it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import mimetypes
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr, ValidationError

from comfyroute.defaults import MAX_OUTPUT_BYTES, RUNPOD_API_BASE
from comfyroute.executors.base import (
    RUNPOD_NODE_ID,
    ExecutorRejected,
    ExecutorStatus,
    ExecutorUnavailable,
    Lenient,
    OutputFile,
    Progress,
    Prompt,
    guess_content_type,
)
from comfyroute.executors.inputs import InputFile, describe_sizes, human_bytes, runpod_images
from comfyroute.http import DEFAULT_TIMEOUT, make_session
from comfyroute.protocol import ENDPOINT_ID_PATTERN, ExecutorKind, JobStatus
from comfyroute.text import NAME_PUNCTUATION, clip, redact, safe_filename

log = logging.getLogger(__name__)

DEFAULT_RUNPOD_API_BASE = RUNPOD_API_BASE

# RunPod job ids look like "c80ffee4-f315-4e25-a146-0f3d98cf024b-u1". They go into a URL path,
# so anything outside this alphabet (a slash, "..", "?", "%") is refused before it gets there.
RUNPOD_JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"

# Bounds from the contract: policy.executionTimeout is 5 s to 7 days; /run takes at most 10 MB.
MIN_EXECUTION_TIMEOUT_MS = 5_000
MAX_EXECUTION_TIMEOUT_MS = 7 * 24 * 3600 * 1000
MAX_RUN_PAYLOAD_BYTES = 10 * 1024 * 1024

RUNPOD_OUTPUT_NAME = "images"
DEFAULT_OUTPUT_FILENAME = "output.png"

MAX_ERROR_BODY_BYTES = 64 * 1024

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w.+=-]+)*?;base64,", re.IGNORECASE)
_CLASS_REPR = re.compile(r"^<class '(?:[\w.]*\.)?(?P<name>\w+)'>$")


# --------------------------------------------------------------------------- RunPod answers


# RunPod adds fields (delayTime, executionTime, workerId, ...): the models ignore them.
class RunResponse(Lenient):
    """The answer to ``POST /run``."""

    id: str | None = None
    status: str | None = None


class JobState(Lenient):
    """The answer to ``GET /status/{id}`` (and the body of a webhook call)."""

    id: str | None = None
    status: str
    output: Any = None
    error: Any = None
    delayTime: Any = None  # RunPod's names: ms queued, ms running
    executionTime: Any = None


class WorkerImage(Lenient):
    """One entry of worker-comfyui 5.x ``output.images``."""

    filename: str = ""
    type: str = "base64"
    data: str


# --------------------------------------------------------------------------- small pure helpers


def validate_endpoint_id(endpoint_id: object) -> str:
    """The endpoint id if it is safe to put in a URL path, else a ValueError naming the problem."""
    if not isinstance(endpoint_id, str):
        raise ValueError(f"RunPod endpoint id must be a string, not {type(endpoint_id).__name__}")
    if not endpoint_id:
        raise ValueError("RunPod endpoint id is empty; set the workflow's runpod_endpoint_id")
    if not re.fullmatch(ENDPOINT_ID_PATTERN, endpoint_id):
        raise ValueError(
            f"RunPod endpoint id {clip(endpoint_id, 80)!r} is invalid: use 1-64 letters, digits, '_' or '-'"
        )
    return endpoint_id


def _check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not re.fullmatch(RUNPOD_JOB_ID_PATTERN, job_id):
        shown = clip(job_id, 80) if isinstance(job_id, str) else type(job_id).__name__
        raise ExecutorRejected(f"RunPod job id {shown!r} is invalid: expected 1-128 letters, digits, '_' or '-'")
    return job_id


def _normalise_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"RunPod API base URL {base_url!r} must be an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise ValueError(f"RunPod API base URL {base_url!r} must not have a query or fragment")
    return base_url.strip().rstrip("/")


def _error_text(value: Any) -> str | None:
    """Readable text from an ``error`` / ``errors`` / ``details`` value, or None if empty.

    The runpod SDK reports a handler exception as JSON text
    ``{"error_type": "<class 'RuntimeError'>", "error_message": ..., "error_traceback": ...}``;
    the traceback is left out, it would swamp the message.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                return _error_text(parsed) or (text or None)
        return text or None
    if isinstance(value, dict):
        message = _error_text(value.get("error_message") or value.get("message") or value.get("error"))
        if message is None:
            return json.dumps(value, sort_keys=True, default=str) if value else None
        etype = value.get("error_type")
        if isinstance(etype, str) and etype:
            match = _CLASS_REPR.match(etype)
            return f"{match['name'] if match else etype}: {message}"
        return message
    if isinstance(value, list):
        parts = [t for t in (_error_text(v) for v in value) if t]
        return "; ".join(parts) or None
    return str(value)


def _failure_text(job: JobState) -> str:
    output = job.output if isinstance(job.output, dict) else {}
    main = _error_text(job.error) or _error_text(output.get("errors"))
    details = _error_text(output.get("details"))
    if main and details and details not in main:
        return clip(f"{main}: {details}")
    return clip(main or details or f"RunPod job {job.status}")


def _in_progress(output: Any) -> tuple[str | None, Progress | None]:
    """What a running job tells us: runpod's progress_update puts a string (or a worker's own
    dict) in ``output`` while the job is IN_PROGRESS."""
    if isinstance(output, str):
        return (clip(output.strip()) or None), None
    if not isinstance(output, dict):
        return None, None
    message = next((v for k in ("message", "status") if isinstance(v := output.get(k), str) and v), None)
    value = output.get("value", output.get("progress"))
    maximum = output.get("max", output.get("total"))
    progress = None
    if _is_number(value):
        if not _is_number(maximum) or maximum <= 0:
            # A bare number is a fraction (0.4) or a percentage (40).
            maximum = 1.0 if value <= 1 else 100.0
        node = output.get("node")
        progress = Progress(node_id=node if isinstance(node, str) else None, value=value, max=maximum)
    return (clip(message) if message else None), progress


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _warnings(output: Any) -> list[str]:
    """worker-comfyui 5.x ``output.errors``: things that went wrong without failing the job."""
    if not isinstance(output, dict):
        return []
    errors = output.get("errors")
    if isinstance(errors, str):
        errors = [errors]
    if not isinstance(errors, list):
        return []
    return [t for t in (_error_text(e) for e in errors) if t]


def parse_job_state(job: JobState) -> ExecutorStatus:
    """RunPod's job status mapped onto ours (a pure function of one /status answer), with
    RunPod's timings once the job is over."""
    status = _parse_job_state(job)
    if not status.state.terminal:
        return status
    from comfyroute.executors.runpod_webhook import timings

    spent = timings({"delayTime": job.delayTime, "executionTime": job.executionTime})
    return status.model_copy(update={"delay_ms": spent.delay_ms, "execution_ms": spent.execution_ms})


def _parse_job_state(job: JobState) -> ExecutorStatus:
    status = job.status.upper()
    output = job.output
    if status == "IN_QUEUE":
        return ExecutorStatus(state=JobStatus.QUEUED)
    if status == "IN_PROGRESS":
        message, progress = _in_progress(output)
        return ExecutorStatus(state=JobStatus.RUNNING, message=message, progress=progress)
    if status == "COMPLETED":
        # worker-comfyui 2.x-4.x returns its failures as a normal result.
        if isinstance(output, dict) and output.get("status") == "error":
            text = _error_text(output.get("message")) or "worker-comfyui reported an error without a message"
            return ExecutorStatus(state=JobStatus.FAILED, error=clip(text))
        warnings = _warnings(output)
        message = clip("worker warnings: " + "; ".join(warnings)) if warnings else None
        return ExecutorStatus(state=JobStatus.COMPLETED, message=message)
    if status == "FAILED":
        return ExecutorStatus(state=JobStatus.FAILED, error=_failure_text(job))
    if status == "CANCELLED":
        return ExecutorStatus(state=JobStatus.CANCELLED, message="RunPod job was cancelled")
    if status == "TIMED_OUT":
        text = _error_text(job.error) or (
            "RunPod job TIMED_OUT: it expired in the queue or its worker stopped reporting"
        )
        return ExecutorStatus(state=JobStatus.TIMED_OUT, error=clip(text))
    # A status we cannot interpret is reported as a failure rather than as "still running":
    # the poll loop would otherwise keep a job alive until its deadline on a state nobody can
    # read, and the job's own status string in the error makes the API change visible at once.
    return ExecutorStatus(
        state=JobStatus.FAILED,
        error=f"RunPod returned an unknown job status {clip(job.status, 64)!r}",
    )


def _decode_base64(text: str, filename: str, max_bytes: int) -> tuple[bytes, str | None]:
    """Bytes of bare base64 or a ``data:<type>;base64,`` URI, and the URI's content type."""
    mime = None
    match = _DATA_URI.match(text)
    if match:
        mime = match["mime"].lower() if match["mime"] else None
        text = text[match.end() :]
    compact = "".join(text.split())
    # Refuse before decoding: base64 is 4 characters per 3 bytes.
    if len(compact) // 4 * 3 > max_bytes + 3:
        raise ExecutorRejected(
            f"RunPod output {filename!r} is about {len(compact) // 4 * 3} bytes; the limit is {max_bytes}"
        )
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ExecutorRejected(f"RunPod output {filename!r} is not valid base64: {exc}") from None
    if len(data) > max_bytes:
        raise ExecutorRejected(f"RunPod output {filename!r} is {len(data)} bytes; the limit is {max_bytes}")
    return data, mime


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _image(filename: str, content_type: str, *, data: bytes | None = None, url: str | None = None) -> OutputFile:
    return OutputFile(
        node_id=RUNPOD_NODE_ID,
        output_name=RUNPOD_OUTPUT_NAME,
        kind="image",
        filename=filename,
        content_type=content_type,
        data=data,
        url=url,
    )


def _from_worker_image(raw: Any, index: int, max_bytes: int) -> OutputFile | None:
    try:
        image = WorkerImage.model_validate(raw)
    except ValidationError as exc:
        raise ExecutorRejected(
            f"RunPod output.images[{index}] is malformed: {exc.errors(include_url=False)[0]['msg']}"
        ) from None
    filename = safe_filename(image.filename, default=f"output_{index}.png", keep=NAME_PUNCTUATION)
    kind = image.type.lower()
    if kind == "s3_url":
        if not _is_http_url(image.data):
            raise ExecutorRejected(f"RunPod output {filename!r} has type s3_url but its data is not an http(s) URL")
        return _image(filename, guess_content_type(filename, "image/png"), url=image.data)
    if kind == "base64":
        data, mime = _decode_base64(image.data, filename, max_bytes)
        return _image(filename, mime or guess_content_type(filename, "image/png"), data=data)
    # Skip what we cannot read rather than lose the images we can.
    log.warning("skipping RunPod output %r of unknown type %r", filename, clip(image.type, 32))
    return None


def _from_message(message: str, max_bytes: int) -> OutputFile:
    """worker-comfyui 2.x-4.x: the last image as a data URI, bare base64 or an S3 URL."""
    text = message.strip()
    if _is_http_url(text):
        name = PurePosixPath(urlsplit(text).path).name or DEFAULT_OUTPUT_FILENAME
        filename = safe_filename(name, default="output_0.png", keep=NAME_PUNCTUATION)
        return _image(filename, guess_content_type(filename, "image/png"), url=text)
    data, mime = _decode_base64(text, DEFAULT_OUTPUT_FILENAME, max_bytes)
    filename = DEFAULT_OUTPUT_FILENAME
    if mime and mime != "image/png":
        ext = mimetypes.guess_extension(mime)
        if ext:
            filename = f"output{ext}"
    return _image(filename, mime or "image/png", data=data)


def parse_outputs(output: Any, max_bytes: int) -> list[OutputFile]:
    """The files in a COMPLETED job's ``output``, in either worker format (a pure function)."""
    if not isinstance(output, dict):
        return []
    files: list[OutputFile] = []
    message = output.get("message")
    if output.get("status") == "success" and isinstance(message, str) and message.strip():
        files.append(_from_message(message, max_bytes))
    images = output.get("images")
    if isinstance(images, list):
        for index, raw in enumerate(images):
            image = _from_worker_image(raw, index, max_bytes)
            if image is not None:
                files.append(image)
    elif images is not None:
        raise ExecutorRejected(f"RunPod output.images is a {type(images).__name__}, expected a list")
    return files


# --------------------------------------------------------------------------- the executor


class RunPodExecutor:
    """One RunPod serverless endpoint running worker-comfyui."""

    kind = ExecutorKind.RUNPOD

    def __init__(
        self,
        api_key: str | SecretStr,
        endpoint_id: str,
        *,
        base_url: str = DEFAULT_RUNPOD_API_BASE,
        execution_timeout_ms: int | None = 600_000,
        ttl_ms: int | None = None,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        session: requests.Session | None = None,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not key.get_secret_value().strip():
            raise ValueError("RunPod API key is empty; set RUNPOD_API_KEY in the user's secret")
        if execution_timeout_ms is not None and not (
            MIN_EXECUTION_TIMEOUT_MS <= execution_timeout_ms <= MAX_EXECUTION_TIMEOUT_MS
        ):
            raise ValueError(
                f"execution_timeout_ms={execution_timeout_ms} is outside RunPod's range "
                f"{MIN_EXECUTION_TIMEOUT_MS}-{MAX_EXECUTION_TIMEOUT_MS} ms (5 s to 7 days)"
            )
        if ttl_ms is not None and ttl_ms <= 0:
            raise ValueError(f"ttl_ms={ttl_ms} must be positive")
        if max_output_bytes <= 0:
            raise ValueError(f"max_output_bytes={max_output_bytes} must be positive")
        self._api_key = key
        self.endpoint_id = validate_endpoint_id(endpoint_id)
        self.base_url = _normalise_base_url(base_url)
        self.execution_timeout_ms = execution_timeout_ms
        self.ttl_ms = ttl_ms
        self.max_output_bytes = max_output_bytes
        # A status answer carries every image as base64 (4/3 of the bytes) plus JSON around it.
        self._max_body_bytes = max_output_bytes * 4 // 3 + 1024 * 1024
        self._session = session if session is not None else make_session(retry_post=True)

    def __repr__(self) -> str:
        return f"RunPodExecutor(endpoint_id={self.endpoint_id!r}, base_url={self.base_url!r})"

    # ----------------------------------------------------------------- Executor

    def submit(self, prompt: Prompt, job_id: str, *, webhook: str | None = None) -> str:
        """POST /run; with ``webhook`` RunPod POSTs the job's status object there when it ends."""
        run_body = self.run_body(prompt)
        if webhook is not None:
            from comfyroute.executors.runpod_webhook import run_body_with_webhook

            run_body = run_body_with_webhook(run_body, webhook)
        body = json.dumps(run_body, separators=(",", ":")).encode()
        if len(body) > MAX_RUN_PAYLOAD_BYTES:
            raise ExecutorRejected(
                f"the workflow is {len(body)} bytes as a RunPod /run request; RunPod's limit is "
                f"{MAX_RUN_PAYLOAD_BYTES} bytes"
            )
        # A read timeout here is reported as unavailable although RunPod may have taken the job
        # (/run has no idempotency key): whoever retries the submit may start a second one.
        return self._post_run(body, job_id)

    def status(self, executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        # submitted_at is not needed: /run answers with an id RunPod already knows, so a 404
        # means the job is gone (results are kept 30 min after the end, status until ttl).
        job = self._fetch_state(executor_job_id)
        if job is None:
            return ExecutorStatus(state=JobStatus.FAILED, error=self._expired_text(executor_job_id))
        return parse_job_state(job)

    def outputs(self, executor_job_id: str) -> list[OutputFile]:
        job = self._fetch_state(executor_job_id)
        if job is None:
            raise ExecutorRejected(self._expired_text(executor_job_id))
        state = parse_job_state(job)
        if state.state in (JobStatus.QUEUED, JobStatus.RUNNING):
            raise ExecutorRejected(f"RunPod job {executor_job_id} is {job.status}; outputs exist once it is COMPLETED")
        if state.state is not JobStatus.COMPLETED:
            return []  # FAILED / CANCELLED / TIMED_OUT / 2.x "error": no images to collect
        warnings = _warnings(job.output)
        if warnings:
            log.warning("RunPod job %s finished with worker warnings: %s", executor_job_id, state.message)
        return parse_outputs(job.output, self.max_output_bytes)

    def cancel(self, executor_job_id: str) -> None:
        job_id = _check_job_id(executor_job_id)
        resp = self._call("POST", f"cancel/{job_id}", action="/cancel")
        with resp:
            if resp.status_code == 404:
                log.info("RunPod job %s is unknown or expired; nothing to cancel", job_id)
                return
            try:
                self._raise_for_status(resp, "/cancel")
            except ExecutorRejected as exc:
                # Best effort: the job may already have ended; the caller records it cancelled.
                log.warning("RunPod cancel of job %s refused: %s", job_id, exc)

    # ----------------------------------------------------------------- helpers

    def run_body(self, prompt: Prompt) -> dict[str, Any]:
        """The JSON body of ``POST /run``; unset policy keys are left to RunPod's defaults."""
        policy: dict[str, int] = {}
        if self.execution_timeout_ms is not None:
            policy["executionTimeout"] = self.execution_timeout_ms
        if self.ttl_ms is not None:
            policy["ttl"] = self.ttl_ms
        body: dict[str, Any] = {"input": {"workflow": prompt}}
        if policy:
            body["policy"] = policy
        return body

    # ----------------------------------------------------------------- input files

    def submit_with_files(
        self, prompt: Prompt, job_id: str, files: Sequence[InputFile], *, webhook: str | None = None
    ) -> str:
        """``submit`` with the job's input files as worker-comfyui's ``input.images`` (base64, under
        the names the prompt uses). Refused before anything is sent when the body would pass
        RunPod's /run limit. ``webhook``: as for :meth:`submit`."""
        if not files:
            return self.submit(prompt, job_id, webhook=webhook)
        body = self.run_body_with_files(prompt, files)
        if webhook is not None:
            from comfyroute.executors.runpod_webhook import run_body_with_webhook

            body = run_body_with_webhook(body, webhook)
        encoded = json.dumps(body, separators=(",", ":")).encode()
        if len(encoded) > MAX_RUN_PAYLOAD_BYTES:
            raise ExecutorRejected(
                f"the workflow and its input files ({describe_sizes(files)}) are {len(encoded)} bytes "
                f"({human_bytes(len(encoded))}) as a RunPod /run request, with the files in base64; RunPod "
                f"accepts at most {MAX_RUN_PAYLOAD_BYTES} bytes (10 MB): send smaller files, or run the job "
                "on a ComfyUI executor"
            )
        return self._post_run(encoded, job_id)

    def run_body_with_files(self, prompt: Prompt, files: Sequence[InputFile]) -> dict[str, Any]:
        body = self.run_body(prompt)
        body["input"]["images"] = runpod_images(files)
        return body

    def _post_run(self, body: bytes, job_id: str) -> str:
        resp = self._call("POST", "run", data=body, action="/run")
        with resp:
            self._raise_for_status(resp, "/run")
            answer = self._json(resp, "/run", self._max_body_bytes)
        try:
            run = RunResponse.model_validate(answer)
        except ValidationError:
            run = RunResponse()
        if not run.id:
            raise ExecutorRejected(
                f"RunPod /run on endpoint {self.endpoint_id} answered without a job id: "
                f"{self._scrub(clip(json.dumps(answer, default=str), 300))}"
            )
        executor_job_id = _check_job_id(run.id)
        log.info("RunPod job %s submitted for job %s on endpoint %s", executor_job_id, job_id, self.endpoint_id)
        return executor_job_id

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{self.endpoint_id}/{path}"

    def _call(self, method: str, path: str, *, action: str, data: bytes | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            # stream=True so that bodies are read with a size bound (see _json).
            return self._session.request(
                method, self._url(path), data=data, headers=headers, timeout=DEFAULT_TIMEOUT, stream=True
            )
        except requests.RequestException as exc:
            # requests' messages name the URL (endpoint and job id), never the headers.
            raise ExecutorUnavailable(
                f"RunPod {action} on endpoint {self.endpoint_id} could not be reached: "
                f"{self._scrub(clip(str(exc), 500))}"
            ) from None

    def _fetch_state(self, executor_job_id: str) -> JobState | None:
        job_id = _check_job_id(executor_job_id)
        resp = self._call("GET", f"status/{job_id}", action="/status")
        with resp:
            if resp.status_code == 404:
                return None
            self._raise_for_status(resp, "/status")
            answer = self._json(resp, "/status", self._max_body_bytes)
        try:
            return JobState.model_validate(answer)
        except ValidationError:
            raise ExecutorUnavailable(
                f"RunPod /status for job {job_id} answered without a status string: "
                f"{self._scrub(clip(json.dumps(answer, default=str), 300))}"
            ) from None

    def _expired_text(self, job_id: str) -> str:
        return (
            f"RunPod job {job_id} is expired or unknown on endpoint {self.endpoint_id} (HTTP 404): "
            "RunPod drops a job's result 30 minutes after it ends, and its status after the ttl"
        )

    def _raise_for_status(self, resp: requests.Response, action: str) -> None:
        code = resp.status_code
        if code < 300:
            return
        if code in (401, 403):
            raise ExecutorRejected(
                f"RunPod refused the API key (HTTP {code}) on {action} for endpoint {self.endpoint_id}; "
                "check RUNPOD_API_KEY in the user's secret"
            )
        detail = self._error_detail(resp)
        if code == 429:
            raise ExecutorUnavailable(
                f"RunPod {action} on endpoint {self.endpoint_id} is rate limited (HTTP 429) after retries"
            )
        if code >= 500 or code == 408:
            raise ExecutorUnavailable(
                f"RunPod {action} on endpoint {self.endpoint_id} failed with HTTP {code} after retries: {detail}"
            )
        raise ExecutorRejected(f"RunPod {action} on endpoint {self.endpoint_id} refused (HTTP {code}): {detail}")

    def _error_detail(self, resp: requests.Response) -> str:
        try:
            raw = self._read(resp, MAX_ERROR_BODY_BYTES, truncate=True)
        except requests.RequestException:
            return "(no body)"
        text = raw.decode("utf-8", errors="replace").strip()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            text = _error_text(parsed.get("error") or parsed.get("message") or parsed.get("detail")) or text
        return self._scrub(clip(text, 500)) or "(no body)"

    def _read(self, resp: requests.Response, limit: int, *, truncate: bool = False) -> bytes:
        chunks: list[bytes] = []
        total = 0
        for chunk in resp.iter_content(chunk_size=256 * 1024):
            total += len(chunk)
            if total > limit:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (total - limit)])
                    break
                raise ExecutorRejected(
                    f"RunPod answer is larger than {limit} bytes (max_output_bytes={self.max_output_bytes})"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _json(self, resp: requests.Response, action: str, limit: int) -> Any:
        try:
            raw = self._read(resp, limit)
        except requests.RequestException as exc:
            raise ExecutorUnavailable(
                f"RunPod {action} on endpoint {self.endpoint_id}: reading the answer failed: "
                f"{self._scrub(clip(str(exc), 300))}"
            ) from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            # A proxy's HTML error page with a 200 is more likely than RunPod breaking its API.
            raise ExecutorUnavailable(
                f"RunPod {action} on endpoint {self.endpoint_id} answered HTTP {resp.status_code} "
                f"with a body that is not JSON: {self._scrub(clip(raw.decode('utf-8', 'replace'), 200))!r}"
            ) from None

    def _scrub(self, text: str) -> str:
        return redact(text, [self._api_key.get_secret_value()])
