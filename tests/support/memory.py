"""In-memory doubles of every port (``comfyroute.ports``), for fast unit tests of the job rules.

Each double keeps what it was given in plain attributes the tests read (``jobs.records``,
``pusher.sent``, ``executor.cancelled``, ...). ``MemoryJobs`` applies a ``JobChange`` with the
same conditions the DynamoDB store puts in its ``UpdateItem`` (``tests/integration/
test_job_store.py`` holds both to the same behaviour).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from comfyroute.aws.uploads import (
    WORKFLOW_TYPES,
    StoredInput,
    UploadExpired,
    UploadForbidden,
    UploadInfo,
    UploadNotAllowed,
    UploadNotFound,
    UploadNotReady,
    UploadTicket,
    UploadTooLarge,
    check_content_type,
    job_input_key,
    new_upload_id,
    upload_window_end,
)
from comfyroute.config import Config
from comfyroute.conversion.object_info import ObjectInfo, bundled_object_info
from comfyroute.credentials import Credentials, CredentialsError
from comfyroute.executors.base import ExecutorStatus, OutputFile, Prompt
from comfyroute.executors.inputs import InputFile
from comfyroute.jobs.record import JobChange, JobNotFound, JobRecord, Outcome, job_key
from comfyroute.jobs.submit import PreparedJob, StartAnswer
from comfyroute.ports import (
    ApiKeyRecord,
    Caller,
    ConnectionRecord,
    DifferentRequest,
    LoopStartFailed,
    Readable,
    StartInProgress,
)
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.schemas import ObjectInfoUnavailable
from comfyroute.workflows import WorkflowRecord

if TYPE_CHECKING:
    from comfyroute.ports import Ports


class MemoryJobs:
    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self.changes: list[JobChange] = []
        self.reads = 0  # get() calls: the rules read a job once and learn the rest from writes

    def get(self, job_id: str) -> JobRecord | None:
        self.reads += 1
        return self.records.get(job_id)

    def insert(self, record: JobRecord) -> Outcome:
        existing = self.records.get(record.job_id)
        if existing is not None:
            return Outcome(existing, applied=False)
        self.records[record.job_id] = _stored(record)
        return Outcome(self.records[record.job_id], applied=True)

    def apply(self, change: JobChange) -> Outcome:
        self.changes.append(change)
        current = self.records.get(change.job_id)
        if current is None:
            raise JobNotFound(f"job {change.job_id} has no record")
        if not change.allows(current):
            return Outcome(current, applied=False)
        data = {name: getattr(current, name) for name in JobRecord.model_fields}
        data.update(change.values)
        for name in change.remove:
            data.pop(name, None)
        new = _stored(JobRecord.model_validate(data))
        self.records[change.job_id] = new
        return Outcome(new, applied=True)

    def list_by_user(self, user_id: str, limit: int) -> list[JobRecord]:
        mine = sorted((r for r in self.records.values() if r.user_id == user_id), key=lambda r: -r.created_at)
        return mine[:limit]


def _stored(record: JobRecord) -> JobRecord:
    # What a table keeps is the record's JSON: output bytes, for one, never get there.
    return JobRecord.model_validate_json(record.model_dump_json())


class MemoryConnections:
    def __init__(self) -> None:
        self.records: dict[str, ConnectionRecord] = {}

    def put(self, connection_id: str, user_id: str) -> ConnectionRecord:
        record = ConnectionRecord(connection_id=connection_id, user_id=user_id, connected_at=time.time())
        self.records[connection_id] = record
        return record

    def put_for_key(self, connection_id: str, user_id: str, key_id: str) -> ConnectionRecord:
        record = ConnectionRecord(connection_id=connection_id, user_id=user_id, connected_at=time.time(), key_id=key_id)
        self.records[connection_id] = record
        return record

    def get(self, connection_id: str) -> ConnectionRecord | None:
        return self.records.get(connection_id)

    def delete(self, connection_id: str) -> None:
        self.records.pop(connection_id, None)

    def mark_gone(self, connection_id: str) -> None:
        if connection_id in self.records:
            self.records[connection_id] = self.records[connection_id]._replace(gone=True)


class MemoryWorkflows:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], WorkflowRecord] = {}

    def get(self, user_id: str, workflow_id: str) -> WorkflowRecord | None:
        return self.records.get((user_id, workflow_id))

    def put(self, record: WorkflowRecord) -> None:
        self.records[(record.user_id, record.workflow_id)] = record


class MemoryApiKeys:
    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}

    def get(self, key_hash: str) -> ApiKeyRecord | None:
        return self.records.get(key_hash)

    def put(self, record: ApiKeyRecord) -> None:
        if record.key_hash in self.records:
            raise ValueError("key hash already stored")
        self.records[record.key_hash] = record

    def revoke(self, key_hash: str) -> None:
        self.records[key_hash] = self.records[key_hash]._replace(revoked=True)


class MemoryOutputs:
    """Keeps bytes by key; presigned URLs are ``memory://{key}?expires={seconds}``."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self.streamed = 0

    def put(self, job_id: str, index: int, file: OutputFile) -> OutputFile:
        self.puts += 1
        if file.data is None:
            return file
        key = f"jobs/{job_id}/{index:03d}-{file.filename}"
        self.objects[key] = file.data
        return file.model_copy(update={"key": key, "data": None})

    def put_stream(self, job_id: str, index: int, file: OutputFile, body: Readable) -> OutputFile:
        self.puts += 1
        self.streamed += 1
        parts = []
        while chunk := body.read(64 * 1024):  # in parts, as upload_fileobj reads
            parts.append(chunk)
        data = b"".join(parts)
        key = f"jobs/{job_id}/{index:03d}-{file.filename}"
        self.objects[key] = data
        return file.model_copy(update={"key": key, "data": None, "size": len(data)})

    def presign(self, output: OutputFile, expires_in: int) -> str | None:
        return f"memory://{output.key}?expires={expires_in}" if output.key else None

    def read(self, output: OutputFile) -> bytes | None:
        return self.objects.get(output.key) if output.key else None


@dataclass
class _Uploaded:
    owner: str
    filename: str
    content_type: str
    data: bytes
    uploaded_at: float


class MemoryUploads:
    """``ports.Uploads`` in memory, with the rules of ``aws.uploads.UploadStore`` (same errors
    and codes). ``post(ticket, data)`` is the client's POST to S3, checked as the policy
    would; ``objects`` holds the jobs' input copies by key; ``clock`` is settable."""

    def __init__(self, *, max_bytes: int = 1024 * 1024, max_workflow_bytes: int = 4 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_workflow_bytes = max_workflow_bytes
        self.expires_in = 900
        self.retention_seconds = 86400
        self.now = time.time()
        self.issued: dict[str, tuple[str, UploadTicket, str, str]] = {}  # id -> owner, ticket, name, type
        self.uploads: dict[str, _Uploaded] = {}
        self.objects: dict[str, tuple[bytes, str]] = {}  # key -> bytes, content type

    def clock(self) -> float:
        return self.now

    def _limit(self, content_type: str) -> int:
        return self.max_workflow_bytes if content_type in WORKFLOW_TYPES else self.max_bytes

    def request_upload(self, user: str, filename: str, content_type: str, size: int) -> UploadTicket:
        ctype = check_content_type(content_type)
        if size > self._limit(ctype):
            raise UploadTooLarge(f"file {filename!r} is {size} bytes; the limit is {self._limit(ctype)} bytes")
        upload_id = new_upload_id(self.now + self.expires_in)
        ticket = UploadTicket(
            upload_id=upload_id,
            url="memory://uploads/",
            fields={"key": f"uploads/{upload_id}", "Content-Type": ctype},
            expires_in=self.expires_in,
            max_bytes=size,
        )
        self.issued[upload_id] = (user, ticket, filename, ctype)
        return ticket

    def post(self, ticket: UploadTicket, data: bytes) -> None:
        """The client's POST, refused as S3 refuses it (a ValueError naming S3's code)."""
        owner, issued, filename, ctype = self.issued[ticket.upload_id]
        if len(data) != issued.max_bytes:
            raise ValueError("EntityTooLarge" if len(data) > issued.max_bytes else "EntityTooSmall")
        self.uploads[ticket.upload_id] = _Uploaded(owner, filename, ctype, data, self.now)

    def upload(self, user: str, data: bytes, content_type: str = "image/png", filename: str = "f") -> str:
        """request_upload and POST in one, for tests: the new upload id."""
        ticket = self.request_upload(user, filename, content_type, len(data))
        self.post(ticket, data)
        return ticket.upload_id

    def head_upload(self, user: str, upload_id: str) -> UploadInfo:
        window_end = upload_window_end(upload_id)
        found = self.uploads.get(upload_id)
        if found is None:
            if self.now < window_end and upload_id in self.issued:
                raise UploadNotReady(f"upload {upload_id} has not been uploaded yet")
            raise UploadNotFound(f"upload {upload_id} is unknown or expired")
        if found.owner != user:
            raise UploadForbidden(f"upload {upload_id} belongs to another user")
        if self.now - found.uploaded_at > self.retention_seconds:
            raise UploadExpired(f"upload {upload_id} has expired")
        if len(found.data) > self._limit(found.content_type):
            raise UploadTooLarge(f"upload {upload_id} is {len(found.data)} bytes")
        return UploadInfo(
            upload_id=upload_id,
            filename=found.filename,
            content_type=found.content_type,
            size=len(found.data),
            uploaded_at=found.uploaded_at,
        )

    def open_workflow(self, user: str, upload_id: str) -> bytes:
        info = self.head_upload(user, upload_id)
        if info.content_type not in WORKFLOW_TYPES:
            raise UploadNotAllowed(
                f"upload {upload_id} is {info.content_type}, not a workflow: upload workflows as application/json"
            )
        return self.uploads[upload_id].data

    def keep_for_job(self, user: str, upload_id: str, job_id: str, name: str) -> StoredInput:
        info = self.head_upload(user, upload_id)
        key = job_input_key(job_id, name)
        self.objects[key] = (self.uploads[upload_id].data, info.content_type)
        return StoredInput(name=name, key=key, size=info.size, content_type=info.content_type)

    def keep_inline(self, job_id: str, name: str, data: bytes, content_type: str) -> StoredInput:
        key = job_input_key(job_id, name)
        self.objects[key] = (data, check_content_type(content_type))
        return StoredInput(name=name, key=key, size=len(data), content_type=content_type)

    def read_input(self, key: str, size: int) -> bytes:
        if key not in self.objects:
            raise UploadNotFound(f"input {key} is gone")
        data = self.objects[key][0]
        if len(data) != size:
            raise UploadTooLarge(f"input {key} changed")
        return data


class MemoryStateMachine:
    """One loop per job id, as Step Functions' execution names make it."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self.stopped: list[tuple[str, str]] = []
        self.woken: dict[str, dict[str, Any]] = {}
        self.refuse_with: str | None = None  # the error code the next start fails with

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        if self.refuse_with:
            code, self.refuse_with = self.refuse_with, None
            raise LoopStartFailed(code)
        self.started.setdefault(job_id, payload)
        return f"memory:execution:{job_id}"

    def stop(self, execution_id: str, cause: str) -> None:
        self.stopped.append((execution_id, cause))

    def wake(self, task_token: str, output: dict[str, Any]) -> bool:
        if task_token in self.woken:
            return False
        self.woken[task_token] = output
        return True


class RecordingPusher:
    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.gone: set[str] = set()

    def send_all(self, connection_id: str, messages: Sequence[BaseModel]) -> bool:
        if connection_id in self.gone:
            return False
        self.sent[connection_id].extend(m.model_dump(mode="json", exclude_none=True) for m in messages)
        return True

    def messages(self, connection_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.sent[connection_id] if type_ is None or m["type"] == type_]


@dataclass
class FakeExecutor:
    """An executor that answers what the test scripted: successive ``statuses`` (the last one
    repeats), ``files`` (or an exception) for ``outputs``, ``submit_error`` for ``submit``."""

    kind: ExecutorKind = ExecutorKind.LOCAL
    statuses: list[ExecutorStatus] = field(default_factory=list)
    files: list[OutputFile] | Exception = field(default_factory=list)
    submit_error: Exception | None = None
    on_submit: Callable[[str], None] | None = None  # runs inside submit (e.g. a cancel racing it)
    submitted: list[tuple[Prompt, str]] = field(default_factory=list)
    # The input files of each submit_with_files, by job id.
    inputs: dict[str, list[InputFile]] = field(default_factory=dict)
    looks: int = 0
    cancelled: list[str] = field(default_factory=list)

    def submit(self, prompt: Prompt, job_id: str) -> str:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append((prompt, job_id))
        if self.on_submit is not None:
            self.on_submit(job_id)
        return f"exec-{job_id}"

    def submit_with_files(self, prompt: Prompt, job_id: str, files: Sequence[InputFile]) -> str:
        if self.submit_error is None:
            self.inputs[job_id] = list(files)
        return self.submit(prompt, job_id)

    def status(self, executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        self.looks += 1
        if not self.statuses:
            return ExecutorStatus(state=JobStatus.QUEUED)
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def outputs(self, executor_job_id: str) -> list[OutputFile]:
        if isinstance(self.files, Exception):
            raise self.files
        return list(self.files)

    def cancel(self, executor_job_id: str) -> None:
        self.cancelled.append(executor_job_id)


@dataclass
class FakeExecutors:
    """The executor factory: every job gets ``executor``; ``refuse`` makes building one fail
    (a user's unusable secret)."""

    executor: FakeExecutor = field(default_factory=FakeExecutor)
    refuse: Exception | None = None
    built: list[tuple[ExecutorKind, str, str | None]] = field(default_factory=list)

    def __call__(self, kind: ExecutorKind, user_id: str, endpoint_id: str | None) -> FakeExecutor:
        self.built.append((kind, user_id, endpoint_id))
        if self.refuse is not None:
            raise self.refuse
        return self.executor


class MemoryCredentials:
    def __init__(self, by_user: dict[str, Credentials] | None = None) -> None:
        self.by_user = by_user or {}

    def load(self, user_id: str) -> Credentials:
        if user_id == "broken":
            raise CredentialsError("secret comfyroute/users/broken is not a JSON object")
        return self.by_user.get(user_id, Credentials())


class MemoryStartOnce:
    """One start per (user, job id); a repeat gets the stored answer, as Powertools gives it,
    and a repeat with another request hash ``DifferentRequest`` (Powertools' payload validation)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], StartAnswer] = {}
        self.hashes: dict[tuple[str, str], str] = {}
        self.in_progress: set[tuple[str, str]] = set()

    def __call__(self, request: PreparedJob, start: Callable[[PreparedJob], StartAnswer]) -> StartAnswer:
        key = (request.user_id, request.job_id)
        if key in self.in_progress:
            raise StartInProgress(request.job_id)
        if key in self.answers:
            if self.hashes[key] != request.request_hash:
                raise DifferentRequest(request.job_id)
            return self.answers[key]
        self.in_progress.add(key)
        try:
            answer = start(request)
        finally:
            # An exception leaves no answer behind, as Powertools deletes the in-progress record.
            self.in_progress.discard(key)
        self.answers[key] = answer
        self.hashes[key] = request.request_hash
        return answer


class MemoryMessageLog:
    """``ports.MessageLog``: each job's messages in order, with their numbers."""

    def __init__(self) -> None:
        self.logged: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.counters: dict[str, int] = defaultdict(int)
        self.ttls: dict[str, int | None] = {}

    def append(self, job_id: str, messages: Sequence[dict[str, Any]], *, ttl: int | None) -> list[int]:
        first = self.counters[job_id] + 1
        self.counters[job_id] += len(messages)
        seqs = list(range(first, self.counters[job_id] + 1))
        self.logged[job_id].extend(zip(seqs, [dict(m) for m in messages], strict=True))
        self.ttls.setdefault(job_id, ttl)
        return seqs

    def last_seq(self, job_id: str) -> int:
        return self.counters.get(job_id, 0)

    def read(self, job_id: str, after: int, upto: int, *, limit: int) -> list[tuple[int, dict[str, Any]]]:
        return [(s, dict(m)) for s, m in self.logged.get(job_id, []) if after < s <= upto][:limit]


class MemoryJobAttach:
    """``ports.JobAttach`` over a ``MemoryJobs``: the same condition as the DynamoDB update."""

    def __init__(self, jobs: MemoryJobs) -> None:
        self.jobs = jobs

    def attach(self, job_id: str, user_id: str, connection_id: str) -> bool:
        job = self.jobs.records.get(job_id)
        if job is None or job.user_id != user_id or job.status.terminal:
            return False
        self.jobs.records[job_id] = job.model_copy(update={"connection_id": connection_id, "updated_at": time.time()})
        return True


class MemorySchemas:
    """``ports.SchemaSource``: the bundled core snapshot unless a test sets ``info`` (or
    ``unavailable``); records what each job asked for."""

    def __init__(self) -> None:
        self.info: ObjectInfo | None = None
        self.unavailable: str | None = None
        self.asked: list[tuple[ExecutorKind, str, str | None, frozenset[str]]] = []

    def get(self, kind: ExecutorKind, user_id: str, endpoint_id: str | None, classes: Collection[str]) -> ObjectInfo:
        self.asked.append((kind, user_id, endpoint_id, frozenset(classes)))
        if self.unavailable:
            raise ObjectInfoUnavailable(self.unavailable)
        return self.info if self.info is not None else bundled_object_info()


@dataclass
class MemoryPorts:
    """``comfyroute.ports.Ports`` in memory."""

    config: Config = field(default_factory=lambda: Config(state_machine_arn="memory:stateMachine:jobs"))
    jobs: MemoryJobs = field(default_factory=MemoryJobs)
    connections: MemoryConnections = field(default_factory=MemoryConnections)
    workflows: MemoryWorkflows = field(default_factory=MemoryWorkflows)
    api_keys: MemoryApiKeys = field(default_factory=MemoryApiKeys)
    outputs: MemoryOutputs = field(default_factory=MemoryOutputs)
    uploads: MemoryUploads = field(default_factory=MemoryUploads)
    state_machine: MemoryStateMachine = field(default_factory=MemoryStateMachine)
    pusher: RecordingPusher = field(default_factory=RecordingPusher)
    credentials: MemoryCredentials = field(default_factory=MemoryCredentials)
    executors: FakeExecutors = field(default_factory=FakeExecutors)
    start_once: MemoryStartOnce = field(default_factory=MemoryStartOnce)
    message_log: MemoryMessageLog = field(default_factory=MemoryMessageLog)
    object_info: MemorySchemas = field(default_factory=MemorySchemas)
    job_attach: MemoryJobAttach = field(init=False)

    def __post_init__(self) -> None:
        self.job_attach = MemoryJobAttach(self.jobs)

    @property
    def executor(self) -> FakeExecutor:
        return self.executors.executor


# --------------------------------------------------------------------------- a caller and a job

CONN = "conn-1"
ALICE = Caller(user_id="alice", connection_id=CONN)


def connected_ports() -> MemoryPorts:
    """Ports with alice connected on ``CONN``."""
    ports = MemoryPorts()
    ports.connections.put(CONN, "alice")
    return ports


def key(job_id: str = "j1", user_id: str = "alice") -> str:
    """The backend's key of the client's ``job_id`` (``jobs.record.job_key``)."""
    return job_key(user_id, job_id)


def stored_job(ports: MemoryPorts, job_id: str = "j1", **fields: Any) -> JobRecord:
    """A job as a finished start leaves it (queued on its executor, loop started), stored
    under its key; ``job_id`` is the client's id."""
    now = time.time()
    values: dict[str, Any] = {
        "job_id": key(job_id, fields.get("user_id", "alice")),
        "client_job_id": job_id,
        "user_id": "alice",
        "connection_id": CONN,
        "executor": ExecutorKind.LOCAL,
        "executor_job_id": f"exec-{job_id}",
        "execution_arn": f"memory:execution:{job_id}",
        "status": JobStatus.QUEUED,
        "created_at": now,
        "updated_at": now,
        "deadline": now + 3600,
        "node_classes": {"2": "SaveImage"},
    }
    values.update(fields)
    record = JobRecord.model_validate(values)
    ports.jobs.records[record.job_id] = record
    return record


if TYPE_CHECKING:
    # mypy holds the doubles to the ports' interfaces.
    def _is_ports(ports: MemoryPorts) -> Ports:
        return ports
