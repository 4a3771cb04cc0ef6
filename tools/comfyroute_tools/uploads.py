"""Input files on the client side: what a file argument means, which files ride inline in the
``run_job`` frame, and the presigned POST that sends the others to the upload store.

An upload is two steps: ``request_upload {filename, content_type, size}`` over the WebSocket,
answered by ``upload_ready {upload_id, url, fields, ...}``; then one multipart/form-data POST to
``url`` with every ``fields`` entry and then the file as ``file`` (S3 ignores what follows
``file``). The POST policy admits exactly the declared size and content type, so the size sent
is the size measured here, and the body is streamed from disk, never read whole.

S3 answers a refused POST with XML (``<Error><Code>EntityTooLarge</Code><Message>...``); only
its Code, Message and size fields are shown: other elements of an S3 error can echo the
request's signature (``SignatureDoesNotMatch`` carries ``StringToSign``).
"""

from __future__ import annotations

import base64
import html
import io
import mimetypes
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeAlias
from urllib.parse import urlsplit

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder, MultipartEncoderMonitor  # type: ignore[import-untyped]

from comfyroute.protocol import MAX_MESSAGE_BYTES, UPLOAD_ID_PATTERN, input_name_problem
from comfyroute.protocol.server_messages import UploadReady
from comfyroute.protocol.workflow_commands import InputFileRef, RunJob, RunJobData
from comfyroute_tools.errors import InvalidRequest, UploadFailed, UploadRefused

DEFAULT_CONTENT_TYPE = "application/octet-stream"
WORKFLOW_CONTENT_TYPE = "application/json"
WORKFLOW_FILENAME = "workflow.json"
# (connect, read): S3 answers only once the whole body is in, and a big file on a slow line
# takes a while; the read timeout is the wait for that answer.
UPLOAD_TIMEOUT = (10.0, 300.0)
UPLOAD_CONNECT_ATTEMPTS = 3
# Stands in for an upload id while the frame is measured: as long as any id the protocol
# admits, so a frame that fits with it fits with the real id.
PLACEHOLDER_UPLOAD_ID = "u" * 128

# What ComfyUI's loaders read, spelled as the upload store expects them; the system's mimetypes
# table (which differs between machines) only for the rest.
_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".json": "application/json",
}

Progress: TypeAlias = Callable[[int, int], None]  # (bytes of the file sent, the file's size)


def guess_content_type(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    return _CONTENT_TYPES.get(ext) or mimetypes.guess_type(filename, strict=False)[0] or DEFAULT_CONTENT_TYPE


# --------------------------------------------------------------------------- what to send


@dataclass(frozen=True)
class FilePayload:
    """A file's bytes (in memory or on disk) with the name and type it is uploaded under."""

    filename: str
    content_type: str
    size: int
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, filename: str | None = None, content_type: str | None = None
    ) -> FilePayload:
        p = Path(path)
        try:
            st = p.stat()
        except OSError as exc:
            raise InvalidRequest(f"cannot read {p}: {exc.strerror or exc}") from None
        if not p.is_file():
            raise InvalidRequest(f"{p} is not a file")
        if not os.access(p, os.R_OK):
            raise InvalidRequest(f"cannot read {p}: permission denied")
        name = filename or p.name
        return cls(filename=name, content_type=content_type or guess_content_type(name), size=st.st_size, path=p)

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, filename: str, content_type: str | None = None
    ) -> FilePayload:
        raw = bytes(data)
        return cls(
            filename=filename, content_type=content_type or guess_content_type(filename), size=len(raw), data=raw
        )

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")

    def read(self) -> bytes:
        """The whole file, checked against the size measured when it was chosen."""
        if self.data is not None:
            return self.data
        with self.open() as f:
            data = f.read()
        if len(data) != self.size:
            raise InvalidRequest(f"{self.path} changed while it was being sent ({self.size} bytes, now {len(data)})")
        return data


@dataclass(frozen=True)
class PendingFile:
    """One ``run_job`` input file before it is sent: bytes to inline or upload, or a ready ref."""

    name: str
    payload: FilePayload | None = None
    ref: InputFileRef | None = None


# What run_job(files=...) takes: a path (named by its basename), (name, bytes), (name, Path),
# (name, upload_id) — a str in a pair is always an upload id — or a ready InputFileRef; or a
# mapping {name: bytes | Path | upload_id}.
FileSource: TypeAlias = str | os.PathLike[str] | tuple[str, Any] | InputFileRef
FileSpec: TypeAlias = Iterable[FileSource] | Mapping[str, Any]

_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


def _checked_name(name: Any, what: str) -> str:
    problem = input_name_problem(name)
    if problem:
        raise InvalidRequest(f"{what}: {problem}")
    return str(name)


def _pending(source: Any) -> PendingFile:
    if isinstance(source, InputFileRef):
        return PendingFile(name=source.name, ref=source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        name = _checked_name(path.name, f"file {path}")
        return PendingFile(name=name, payload=FilePayload.from_path(path))
    if isinstance(source, bytes | bytearray | memoryview):
        raise InvalidRequest("a file given as bytes needs a name: pass (name, bytes)")
    if isinstance(source, tuple) and len(source) == 2:
        name = _checked_name(source[0], f"file {source[0]!r}")
        value = source[1]
        if isinstance(value, bytes | bytearray | memoryview):
            return PendingFile(name=name, payload=FilePayload.from_bytes(value, filename=name))
        if isinstance(value, os.PathLike):
            return PendingFile(name=name, payload=FilePayload.from_path(value, filename=name))
        if isinstance(value, str):
            if os.sep in value or (os.altsep and os.altsep in value) or os.path.exists(value):
                raise InvalidRequest(
                    f"file {name!r}: {value!r} looks like a path, but a str beside a name is an upload id; "
                    "pass a pathlib.Path for a file on disk"
                )
            if not _UPLOAD_ID.match(value):
                raise InvalidRequest(f"file {name!r}: {value[:80]!r} is not an upload id")
            return PendingFile(name=name, ref=InputFileRef(name=name, upload_id=value))
        raise InvalidRequest(
            f"file {name!r}: expected bytes, a pathlib.Path or an upload id, not {type(value).__name__}"
        )
    raise InvalidRequest(
        "a file is a path, (name, bytes), (name, Path), (name, upload_id) or an InputFileRef, "
        f"not {type(source).__name__}"
    )


def resolve_files(files: FileSpec) -> list[PendingFile]:
    """Each file argument checked (name, readable, no name twice) before anything is sent."""
    items: Iterable[Any] = files.items() if isinstance(files, Mapping) else files
    if isinstance(files, str | bytes | os.PathLike):
        raise InvalidRequest("files must be a list of files (or a {name: file} mapping), not a single path")
    pending = [_pending(item) for item in items]
    seen: set[str] = set()
    for p in pending:
        if p.name in seen:
            raise InvalidRequest(f"input file name {p.name!r} is given more than once; each name must be unique")
        seen.add(p.name)
    return pending


# --------------------------------------------------------------------------- inline or upload


def frame_size(data: RunJobData) -> int:
    """Bytes of the ``run_job`` frame that carries ``data``, measured as it is sent."""
    return len(RunJob(command="run_job", data=data).model_dump_json(exclude_none=True).encode())


def _inline_ref(p: PendingFile, payload: FilePayload) -> InputFileRef:
    content_type = payload.content_type if payload.content_type != DEFAULT_CONTENT_TYPE else None
    return InputFileRef(name=p.name, data=base64.b64encode(payload.read()).decode("ascii"), content_type=content_type)


def placeholder_refs(pending: list[PendingFile]) -> list[InputFileRef]:
    """The files as refs, each one not given as a ref standing in as an upload."""
    return [p.ref or InputFileRef(name=p.name, upload_id=PLACEHOLDER_UPLOAD_ID) for p in pending]


def plan_files(
    data: RunJobData, pending: list[PendingFile], limit: int = MAX_MESSAGE_BYTES
) -> tuple[list[InputFileRef], list[int]]:
    """Which files ride inline: the smallest first, as many as keep the frame within ``limit``.

    Returns the ``files`` list in the caller's order, with a placeholder upload id for each file
    that must be uploaded, and the indices of those files. Only files that can fit are read."""
    refs = placeholder_refs(pending)
    size = frame_size(data.model_copy(update={"files": refs}))
    payloads = {i: p.payload for i, p in enumerate(pending) if p.payload is not None}
    by_size = sorted(payloads, key=lambda i: payloads[i].size)
    uploads: list[int] = []
    for n, i in enumerate(by_size):
        payload = payloads[i]
        # base64 is 4/3 of the bytes: skip reading what cannot fit.
        if size + 4 * ((payload.size + 2) // 3) > limit:
            uploads.extend(by_size[n:])  # sorted by size: nothing larger fits either
            break
        candidate = [*refs]
        candidate[i] = _inline_ref(pending[i], payload)
        grown = frame_size(data.model_copy(update={"files": candidate}))
        if grown > limit:
            uploads.extend(by_size[n:])
            break
        refs, size = candidate, grown
    return refs, sorted(uploads)


# --------------------------------------------------------------------------- the presigned POST


def _host_of(url: str) -> str:
    return urlsplit(url).netloc or "?"


def _xml_text(body: str, tag: str) -> str | None:
    m = re.search(rf"<{tag}>([^<]{{0,2000}})</{tag}>", body)
    return html.unescape(m.group(1)).strip() if m else None


def describe_refusal(status: int, body: bytes, filename: str, host: str) -> UploadRefused:
    """The error for a refused POST, from S3's XML where there is some."""
    text = body[:20_000].decode("utf-8", "replace")
    code, message = _xml_text(text, "Code"), _xml_text(text, "Message")
    detail = message
    proposed, largest, smallest = (_xml_text(text, t) for t in ("ProposedSize", "MaxSizeAllowed", "MinSizeAllowed"))
    if code == "EntityTooLarge" and proposed and largest:
        detail = f"{message} (sent {proposed} bytes; the upload admits at most {largest})"
    elif code == "EntityTooSmall" and proposed and smallest:
        detail = f"{message} (sent {proposed} bytes; the upload needs at least {smallest})"
    what = f"HTTP {status} {code}" if code else f"HTTP {status}"
    return UploadRefused(
        f"upload of {filename} refused by {host} ({what}){': ' + detail if detail else ''}",
        status=status,
        code=code,
        detail=detail,
    )


def _check_ready(ready: UploadReady, payload: FilePayload) -> None:
    scheme = urlsplit(ready.url).scheme
    if scheme not in ("http", "https") or not urlsplit(ready.url).hostname:
        raise UploadFailed(f"upload of {payload.filename}: refusing an upload URL with scheme {scheme or 'none'!r}")
    if "file" in ready.fields:
        raise UploadFailed(f"upload of {payload.filename}: the upload form already has a 'file' field")
    if payload.size > ready.max_bytes:
        raise UploadFailed(
            f"upload of {payload.filename}: the file is {payload.size} bytes; "
            f"the upload admits at most {ready.max_bytes}"
        )


def post_upload(
    ready: UploadReady,
    payload: FilePayload,
    *,
    progress: Progress | None = None,
    session: requests.Session | None = None,
) -> None:
    """POST ``payload`` to the presigned form in ``ready`` (blocking); raises ``UploadRefused``
    with S3's code when the store says no, ``UploadFailed`` when it cannot be reached."""
    _check_ready(ready, payload)
    host = _host_of(ready.url)
    sess = session or requests.Session()
    try:
        for attempt in range(1, UPLOAD_CONNECT_ATTEMPTS + 1):
            with payload.open() as stream:
                encoder = MultipartEncoder(
                    fields=[*ready.fields.items(), ("file", (payload.filename, stream, payload.content_type))]
                )
                # Everything but the file's bytes: the fields before it and the closing boundary.
                overhead = encoder.len - payload.size

                def report(monitor: MultipartEncoderMonitor, overhead: int = overhead) -> None:
                    if progress is not None:
                        progress(max(0, min(payload.size, monitor.bytes_read - overhead)), payload.size)

                monitor = MultipartEncoderMonitor(encoder, report)
                try:
                    resp = sess.post(
                        ready.url,
                        data=monitor,
                        headers={"Content-Type": monitor.content_type},
                        timeout=UPLOAD_TIMEOUT,
                        allow_redirects=False,
                    )
                except requests.ConnectionError as exc:
                    # Nothing reached the store when the connection could not be made: try again
                    # with a fresh body. Anything later is reported, not repeated.
                    if attempt < UPLOAD_CONNECT_ATTEMPTS and monitor.bytes_read == 0:
                        continue
                    raise UploadFailed(
                        f"upload of {payload.filename} to {host} failed ({type(exc).__name__})"
                    ) from None
                except requests.RequestException as exc:
                    raise UploadFailed(
                        f"upload of {payload.filename} to {host} failed ({type(exc).__name__})"
                    ) from None
            if resp.status_code in (200, 201, 204):
                if progress is not None:
                    progress(payload.size, payload.size)
                return
            raise describe_refusal(resp.status_code, resp.content, payload.filename, host)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
    finally:
        if session is None:
            sess.close()
