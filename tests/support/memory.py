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

from comfyroute.config import Config
from comfyroute.conversion.object_info import ObjectInfo, bundled_object_info
from comfyroute.credentials import Credentials, CredentialsError
from comfyroute.executors.base import ExecutorStatus, OutputFile, Prompt
from comfyroute.jobs.record import JobChange, JobNotFound, JobRecord, Outcome
from comfyroute.jobs.submit import PreparedJob, StartAnswer
from comfyroute.ports import ApiKeyRecord, Caller, ConnectionRecord, LoopStartFailed, StartInProgress
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

    def put(self, job_id: str, index: int, file: OutputFile) -> OutputFile:
        self.puts += 1
        if file.data is None:
            return file
        key = f"jobs/{job_id}/{index:03d}-{file.filename}"
        self.objects[key] = file.data
        return file.model_copy(update={"key": key, "data": None})

    def presign(self, output: OutputFile, expires_in: int) -> str | None:
        return f"memory://{output.key}?expires={expires_in}" if output.key else output.url

    def read(self, output: OutputFile) -> bytes | None:
        return self.objects.get(output.key) if output.key else None


class MemoryStateMachine:
    """One loop per job id, as Step Functions' execution names make it."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self.stopped: list[tuple[str, str]] = []
        self.refuse_with: str | None = None  # the error code the next start fails with

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        if self.refuse_with:
            code, self.refuse_with = self.refuse_with, None
            raise LoopStartFailed(code)
        self.started.setdefault(job_id, payload)
        return f"memory:execution:{job_id}"

    def stop(self, execution_id: str, cause: str) -> None:
        self.stopped.append((execution_id, cause))


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
    looks: int = 0
    cancelled: list[str] = field(default_factory=list)

    def submit(self, prompt: Prompt, job_id: str) -> str:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append((prompt, job_id))
        if self.on_submit is not None:
            self.on_submit(job_id)
        return f"exec-{job_id}"

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
    """One start per (user, job id); a repeat gets the stored answer, as Powertools gives it."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], StartAnswer] = {}
        self.in_progress: set[tuple[str, str]] = set()

    def __call__(self, request: PreparedJob, start: Callable[[PreparedJob], StartAnswer]) -> StartAnswer:
        key = (request.user_id, request.job_id)
        if key in self.in_progress:
            raise StartInProgress(request.job_id)
        if key in self.answers:
            return self.answers[key]
        self.in_progress.add(key)
        try:
            answer = start(request)
        finally:
            # An exception leaves no answer behind, as Powertools deletes the in-progress record.
            self.in_progress.discard(key)
        self.answers[key] = answer
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


def stored_job(ports: MemoryPorts, job_id: str = "j1", **fields: Any) -> JobRecord:
    """A job as a finished start leaves it (queued on its executor, loop started), stored."""
    now = time.time()
    values: dict[str, Any] = {
        "job_id": job_id,
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
    ports.jobs.records[job_id] = record
    return record


if TYPE_CHECKING:
    # mypy holds the doubles to the ports' interfaces.
    def _is_ports(ports: MemoryPorts) -> Ports:
        return ports
