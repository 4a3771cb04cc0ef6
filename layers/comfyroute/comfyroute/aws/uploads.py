"""Input files and workflows that clients upload straight to S3 with presigned POSTs.

``request_upload`` answers a client's ``request_upload {filename, content_type, size}`` with an
S3 presigned POST (``upload_ready``): the client sends a multipart form of every ``fields``
entry and then ``file`` to ``url``. The POST policy S3 checks pins everything that matters:

- the key, ``uploads/{upload_id}``: one object per upload, never chosen by the client;
- the size: ``content-length-range`` is exactly the declared size. Exact rather than
  ``[1, size]`` because the declared size is what was checked against the limit and what
  ``get_job`` reports; a client that miscounts learns it from S3 at once (EntityTooSmall /
  EntityTooLarge) instead of from a confusing executor failure later, and browsers
  (``File.size``) and the CLI (``stat``) always know the exact size up front;
- the content type, exactly, from ``ALLOWED_CONTENT_TYPES``;
- the owner, ``x-amz-meta-owner``: a hash of the user id fixed in the policy, so an upload
  can only ever be stored as its requester's. The hash (not the id) keeps user ids out of
  object metadata, which any presigned GET of the object would echo back;
- a short expiry (``UPLOAD_PRESIGN_SECONDS``).

``open_upload`` is the server side of ``run_job.files[].upload_id`` and
``run_job.workflow_upload_id``: the bytes with their name, size and content type, or an
``UploadError`` whose ``code`` and message name the problem: unknown or expired id, another
user's upload, not uploaded yet, over the size limit, a content type not allowed.

Uploads live under ``uploads/`` with their own short lifecycle rule (``UPLOAD_RETENTION_DAYS``,
one day by default, template.yaml). S3 runs lifecycle rules lazily, so ``open_upload`` also
refuses an object older than the retention itself. A job that uses an upload keeps its own copy
under ``jobs/{job_id}/inputs/`` (``keep_for_job``), which expires with the job's outputs.

The upload id carries the end of its POST window (``{expires_at:08x}.{random}``): when no object
is there, that tells "not uploaded yet" from "unknown or expired". A client that edits the
window only changes which of the two messages it gets; the key (the whole id) and the owner
check are what guard access.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from comfyroute.aws import clients as aws
from comfyroute.config import Config
from comfyroute.defaults import (
    UPLOAD_MAX_BYTES,
    UPLOAD_MAX_WORKFLOW_BYTES,
    UPLOAD_PRESIGN_SECONDS,
    UPLOAD_RETENTION_DAYS,
)
from comfyroute.text import safe_filename

UPLOAD_PREFIX = "uploads/"
OWNER_FIELD = "x-amz-meta-owner"
FILENAME_FIELD = "x-amz-meta-filename"
# boto3 returns user metadata without the x-amz-meta- prefix.
_OWNER_META = OWNER_FIELD.removeprefix("x-amz-meta-")
_FILENAME_META = FILENAME_FIELD.removeprefix("x-amz-meta-")

UPLOAD_ID_PATTERN = r"^[0-9a-f]{8}\.[A-Za-z0-9_-]{24}$"
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)
MAX_FILENAME_CHARS = 255

# What ComfyUI's loaders read, and nothing that a browser would run: LoadImage opens files
# with PIL (png, jpeg, webp, gif, bmp, tiff; not SVG, which is a script carrier PIL cannot
# read), LoadAudio and LoadVideo with PyAV. JSON is for workflows (workflow_upload_id).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff"})
AUDIO_TYPES = frozenset(
    {
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/mpeg",
        "audio/flac",
        "audio/x-flac",
        "audio/ogg",
        "audio/mp4",
        "audio/aac",
        "audio/webm",
    }
)
VIDEO_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-matroska"})
WORKFLOW_TYPES = frozenset({"application/json"})
ALLOWED_CONTENT_TYPES = IMAGE_TYPES | AUDIO_TYPES | VIDEO_TYPES | WORKFLOW_TYPES


# --------------------------------------------------------------------------- errors


class UploadError(ValueError):
    """An upload that cannot be requested or used; ``str()`` is safe to send to the client
    and ``code`` goes into the ``error`` message."""

    code = "upload_error"


class UploadNotAllowed(UploadError):
    """A filename, content type or size that no upload may have."""

    code = "upload_not_allowed"


class UploadTooLarge(UploadError):
    code = "upload_too_large"


class UploadNotFound(UploadError):
    """No such upload: never issued, its POST window closed without a file, or deleted."""

    code = "upload_not_found"


class UploadExpired(UploadNotFound):
    """The upload was there but is older than the uploads' retention."""

    code = "upload_expired"


class UploadForbidden(UploadError):
    """The upload belongs to another user."""

    code = "upload_forbidden"


class UploadNotReady(UploadError):
    """The upload was issued and its POST window is still open, but no file has arrived."""

    code = "upload_not_ready"


# --------------------------------------------------------------------------- models


class UploadTicket(BaseModel):
    """The body of ``upload_ready``: POST ``fields`` then ``file`` (multipart) to ``url``."""

    model_config = ConfigDict(frozen=True)

    upload_id: str
    url: str
    fields: dict[str, str]
    method: Literal["POST"] = "POST"
    expires_in: int
    max_bytes: int


class UploadInfo(BaseModel):
    """An upload that is there and belongs to the caller (a HEAD, no bytes)."""

    model_config = ConfigDict(frozen=True)

    upload_id: str
    filename: str
    content_type: str
    size: int
    uploaded_at: float


class Upload(UploadInfo):
    data: bytes = Field(repr=False)


class StoredInput(BaseModel):
    """A job's own copy of an input file, listed by ``get_job``."""

    model_config = ConfigDict(frozen=True)

    name: str
    key: str
    size: int
    content_type: str


# --------------------------------------------------------------------------- pure rules


def normalize_content_type(content_type: object) -> str:
    """``Image/PNG; charset=x`` -> ``image/png``; the allow-list is checked separately."""
    if not isinstance(content_type, str):
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def describe_allowed_types() -> str:
    groups = (
        ("images", IMAGE_TYPES),
        ("audio", AUDIO_TYPES),
        ("video", VIDEO_TYPES),
        ("workflows", WORKFLOW_TYPES),
    )
    return "; ".join(f"{label}: {', '.join(sorted(types))}" for label, types in groups)


def check_content_type(content_type: object) -> str:
    """The normalized content type, or ``UploadNotAllowed`` naming what is allowed."""
    normal = normalize_content_type(content_type)
    if normal not in ALLOWED_CONTENT_TYPES:
        shown = str(content_type)[:100] if content_type not in (None, "") else "(none)"
        raise UploadNotAllowed(
            f"content type {shown!r} is not allowed for uploads; allowed are {describe_allowed_types()}"
        )
    return normal


def owner_tag(user_id: str) -> str:
    """What ``x-amz-meta-owner`` holds for ``user_id``: a hash, never the id itself."""
    return hashlib.sha256(f"comfyroute-upload-owner\0{user_id}".encode()).hexdigest()[:32]


def new_upload_id(expires_at: float) -> str:
    return f"{int(expires_at) & 0xFFFFFFFF:08x}.{secrets.token_urlsafe(18)}"


def upload_window_end(upload_id: object) -> int:
    """When the POST window of ``upload_id`` closes (epoch seconds); ``UploadNotFound`` for
    anything that is not an upload id (it goes into an S3 key, so nothing else gets there)."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
        shown = upload_id[:80] if isinstance(upload_id, str) else type(upload_id).__name__
        raise UploadNotFound(f"unknown upload id {shown!r}: upload ids come from upload_ready")
    return int(upload_id[:8], 16)


def upload_key(upload_id: str) -> str:
    upload_window_end(upload_id)  # validates
    return f"{UPLOAD_PREFIX}{upload_id}"


def job_input_key(job_id: str, name: str) -> str:
    """Where a job keeps its copy of input ``name`` (expires with the job's outputs)."""
    return f"jobs/{job_id}/inputs/{safe_filename(name)}"


# --------------------------------------------------------------------------- the store


class UploadStore:
    """Uploads in ``bucket`` under ``uploads/``. ``clock`` is for tests."""

    def __init__(
        self,
        bucket: str,
        *,
        client: Any | None = None,
        max_bytes: int = UPLOAD_MAX_BYTES,
        max_workflow_bytes: int = UPLOAD_MAX_WORKFLOW_BYTES,
        expires_in: int = UPLOAD_PRESIGN_SECONDS,
        retention_days: int = UPLOAD_RETENTION_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0 or max_workflow_bytes <= 0:
            raise ValueError("upload size limits must be positive")
        if not 1 <= expires_in <= 7 * 24 * 3600:
            raise ValueError(f"upload presign seconds must be 1 to 604800 (S3's limit), not {expires_in}")
        if retention_days <= 0:
            raise ValueError(f"upload retention must be at least one day, not {retention_days}")
        self.bucket = bucket
        self.client = client or aws.s3()
        self.max_bytes = max_bytes
        self.max_workflow_bytes = max_workflow_bytes
        self.expires_in = expires_in
        self.retention_seconds = retention_days * 24 * 3600
        self._clock = clock

    @classmethod
    def from_config(cls, config: Config, client: Any | None = None) -> UploadStore:
        return cls(
            config.outputs_bucket,
            client=client,
            max_bytes=config.upload_max_bytes,
            max_workflow_bytes=config.upload_max_workflow_bytes,
            expires_in=config.upload_presign_seconds,
            retention_days=config.upload_retention_days,
        )

    def limit_for(self, content_type: str) -> int:
        return self.max_workflow_bytes if content_type in WORKFLOW_TYPES else self.max_bytes

    # ----------------------------------------------------------------- request_upload

    def request_upload(self, user: str, filename: str, content_type: str, size: int) -> UploadTicket:
        """A presigned POST for one file of exactly ``size`` bytes of ``content_type``."""
        if not user:
            raise ValueError("request_upload needs the caller's user id")
        if not isinstance(filename, str) or not filename.strip() or len(filename) > MAX_FILENAME_CHARS:
            raise UploadNotAllowed(f"filename must be 1 to {MAX_FILENAME_CHARS} characters")
        ctype = check_content_type(content_type)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UploadNotAllowed(f"size must be the file's length in bytes (at least 1), not {size!r}")
        limit = self.limit_for(ctype)
        if size > limit:
            what = "workflow" if ctype in WORKFLOW_TYPES else "file"
            raise UploadTooLarge(f"{what} {filename[:100]!r} is {size} bytes; the limit is {limit} bytes")
        upload_id = new_upload_id(self._clock() + self.expires_in)
        fields = {
            "Content-Type": ctype,
            OWNER_FIELD: owner_tag(user),
            # Metadata is ASCII on S3: keep a safe form of the name for get_job and downloads.
            FILENAME_FIELD: safe_filename(filename),
        }
        conditions: list[Any] = [{name: value} for name, value in fields.items()]
        conditions.append(["content-length-range", size, size])
        post = self.client.generate_presigned_post(
            self.bucket,
            upload_key(upload_id),
            Fields=fields,
            Conditions=conditions,
            ExpiresIn=self.expires_in,
        )
        return UploadTicket(
            upload_id=upload_id,
            url=post["url"],
            fields={str(k): str(v) for k, v in post["fields"].items()},
            expires_in=self.expires_in,
            max_bytes=size,
        )

    # ----------------------------------------------------------------- open_upload

    def head_upload(self, user: str, upload_id: str) -> UploadInfo:
        """What ``open_upload`` checks, without reading the bytes (for get_job, detection)."""
        window_end = upload_window_end(upload_id)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=upload_key(upload_id))
        except ClientError as exc:
            if not _is_missing(exc):
                raise
            now = self._clock()
            if now < window_end:
                raise UploadNotReady(
                    f"upload {upload_id} has not been uploaded yet: POST the file to the upload_ready url "
                    f"within the next {int(window_end - now)} seconds, then run the job"
                ) from None
            raise UploadNotFound(
                f"upload {upload_id} is unknown or expired: its upload window closed without a file, "
                "or it was deleted; request a new upload"
            ) from None
        metadata = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
        if metadata.get(_OWNER_META) != owner_tag(user):
            raise UploadForbidden(f"upload {upload_id} belongs to another user")
        uploaded_at = head["LastModified"].timestamp()
        if self._clock() - uploaded_at > self.retention_seconds:
            days = self.retention_seconds // 86400
            raise UploadExpired(f"upload {upload_id} has expired: uploads are kept {days} day(s); upload it again")
        ctype = normalize_content_type(head.get("ContentType"))
        if ctype not in ALLOWED_CONTENT_TYPES:
            raise UploadNotAllowed(f"upload {upload_id} has content type {ctype or '(none)'!r}, which is not allowed")
        size = int(head["ContentLength"])
        limit = self.limit_for(ctype)
        if size > limit:
            # The POST policy stops this on S3; an object put another way (or a lowered limit) is
            # still refused here.
            raise UploadTooLarge(f"upload {upload_id} is {size} bytes; the limit is {limit} bytes")
        return UploadInfo(
            upload_id=upload_id,
            filename=metadata.get(_FILENAME_META) or "upload",
            content_type=ctype,
            size=size,
            uploaded_at=uploaded_at,
        )

    def open_upload(self, user: str, upload_id: str) -> Upload:
        """The caller's upload with its bytes, or an ``UploadError`` naming the problem."""
        info = self.head_upload(user, upload_id)
        limit = self.limit_for(info.content_type)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=upload_key(upload_id))["Body"]
        except ClientError as exc:
            if _is_missing(exc):  # deleted between the two calls
                raise UploadNotFound(f"upload {upload_id} is unknown or expired") from None
            raise
        with body:
            data = body.read(limit + 1)
        if len(data) > limit:
            raise UploadTooLarge(f"upload {upload_id} is over the limit of {limit} bytes")
        return Upload(**info.model_dump(), data=data)

    def open_workflow(self, user: str, upload_id: str) -> bytes:
        """The bytes of an uploaded workflow (``workflow_upload_id``): JSON only."""
        info = self.head_upload(user, upload_id)
        if info.content_type not in WORKFLOW_TYPES:
            raise UploadNotAllowed(
                f"upload {upload_id} is {info.content_type}, not a workflow: upload workflows as application/json"
            )
        return self.open_upload(user, upload_id).data

    # ----------------------------------------------------------------- a job's copy

    def keep_for_job(self, user: str, upload_id: str, job_id: str, name: str) -> StoredInput:
        """Copy the upload (server side) to ``jobs/{job_id}/inputs/{name}``, where it expires with
        the job's outputs. The upload itself stays until its own lifecycle rule removes it, so a
        retried run_job finds it again."""
        info = self.head_upload(user, upload_id)
        key = job_input_key(job_id, name)
        self.client.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": upload_key(upload_id)},
            MetadataDirective="REPLACE",
            ContentType=info.content_type,
            Metadata={"job-id": job_id, "upload-id": upload_id},
        )
        return StoredInput(name=name, key=key, size=info.size, content_type=info.content_type)

    def keep_inline(self, job_id: str, name: str, data: bytes, content_type: str) -> StoredInput:
        """Store an inline input file (``run_job.data.files[].data``) as the job's input ``name``."""
        ctype = check_content_type(content_type)
        if len(data) > self.max_bytes:
            raise UploadTooLarge(f"file {name[:100]!r} is {len(data)} bytes; the limit is {self.max_bytes} bytes")
        key = job_input_key(job_id, name)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=ctype, Metadata={"job-id": job_id})
        return StoredInput(name=name, key=key, size=len(data), content_type=ctype)

    def read_input(self, key: str, size: int) -> bytes:
        """The bytes of a job's input copy; at most ``size`` are taken (a larger object is refused,
        so a job's memory stays what its inputs declared)."""
        if not key.startswith("jobs/") or "/inputs/" not in key:
            raise ValueError(f"{key[:100]!r} is not a job input key")
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if _is_missing(exc):
                raise UploadNotFound(f"input file {key.rsplit('/', 1)[-1]!r} of the job is gone") from None
            raise
        with body:
            data: bytes = body.read(size + 1)
        if len(data) != size:
            name = key.rsplit("/", 1)[-1]
            kind = UploadTooLarge if len(data) > size else UploadNotFound
            raise kind(f"input file {name!r} of the job changed: it is not the {size} bytes that were uploaded")
        return data


def _is_missing(exc: ClientError) -> bool:
    return aws.error_code(exc) in ("404", "NoSuchKey", "NotFound") or aws.http_status(exc) == 404
