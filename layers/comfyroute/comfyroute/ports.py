"""The ports: what the job rules need from the world, as typed interfaces.

The Lambda glue wires each port to AWS once (``awslambda/wiring.py``); the unit tests wire
in-memory doubles (``tests/support/memory.py``). The rules in ``comfyroute.jobs`` and
``comfyroute.workflows`` see only these interfaces.

Standard library at run time: the records the ports exchange are imported for type checking
only, so the connection routes (authorizer, connect, disconnect) load no pydantic through here.
The small records defined here are NamedTuples: a dataclass costs several times as much to
create, and every handler's init creates these.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel

    from comfyroute.aws.uploads import StoredInput, UploadInfo, UploadTicket
    from comfyroute.config import Config
    from comfyroute.conversion.object_info import ObjectInfo
    from comfyroute.credentials import Credentials
    from comfyroute.executors.base import Executor, OutputFile
    from comfyroute.jobs.record import JobChange, JobRecord, Outcome
    from comfyroute.jobs.submit import PreparedJob, StartAnswer
    from comfyroute.protocol import ExecutorKind
    from comfyroute.workflows import WorkflowRecord


class Caller(NamedTuple):
    """Who sent a WebSocket command: the user (from the authorizer) and their connection."""

    user_id: str
    connection_id: str


class ConnectionRecord(NamedTuple):
    connection_id: str
    user_id: str
    connected_at: float
    gone: bool = False
    ttl: int | None = None
    # The API key (its key_hash) the connection authenticated with, so revoking the key can
    # close it; connections recorded without one have None.
    key_id: str | None = None


class ApiKeyRecord(NamedTuple):
    key_hash: str  # SHA-256 hex of the token; the token itself is never stored
    user_id: str
    created_at: float
    revoked: bool = False
    label: str | None = None


class StartInProgress(Exception):
    """Another request is starting the same job right now (same user, same job id)."""


class DifferentRequest(Exception):
    """A job id the user already used, sent again with a different request."""


class LoopStartFailed(Exception):
    """The job's follow loop could not be started; ``code`` is the service's reason."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class JobStore(Protocol):
    """Job records. Every write but ``insert`` is a ``JobChange`` (built by ``jobs.lifecycle``),
    applied in one conditional write that answers with the record it left."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def insert(self, record: JobRecord) -> Outcome:
        """Store a new job. Not applied when the id is taken: the outcome holds the existing record."""
        ...

    def apply(self, change: JobChange) -> Outcome:
        """Apply ``change`` if its conditions hold; either way the outcome holds the record as
        it now stands. ``JobNotFound`` when there is no such job."""
        ...

    def list_by_user(self, user_id: str, limit: int) -> list[JobRecord]:
        """The user's jobs, newest first."""
        ...


class ConnectionStore(Protocol):
    def put(self, connection_id: str, user_id: str) -> ConnectionRecord: ...

    def put_for_key(self, connection_id: str, user_id: str, key_id: str) -> ConnectionRecord:
        """Like ``put``, remembering the API key the connection authenticated with."""
        ...

    def get(self, connection_id: str) -> ConnectionRecord | None: ...

    def delete(self, connection_id: str) -> None: ...

    def mark_gone(self, connection_id: str) -> None:
        """Remember that pushes to the connection fail (the client left without a disconnect)."""
        ...


class WorkflowStore(Protocol):
    def get(self, user_id: str, workflow_id: str) -> WorkflowRecord | None: ...

    def put(self, record: WorkflowRecord) -> None: ...


class ApiKeyStore(Protocol):
    def get(self, key_hash: str) -> ApiKeyRecord | None: ...

    def put(self, record: ApiKeyRecord) -> None:
        """Store a new key; refuses (raises) a hash that is already stored."""
        ...

    def revoke(self, key_hash: str) -> None: ...


class Readable(Protocol):
    """A file-like source of bytes (``executors.download.CappedBody``, an open file)."""

    def read(self, size: int = -1, /) -> bytes: ...


class OutputStore(Protocol):
    """Output files, kept where clients can fetch them."""

    def put(self, job_id: str, index: int, file: OutputFile) -> OutputFile:
        """Keep the file's bytes (if it has any) and return it as the job record keeps it."""
        ...

    def put_stream(self, job_id: str, index: int, file: OutputFile, body: Readable) -> OutputFile:
        """Keep what ``body`` reads as ``file``'s bytes, chunk by chunk (never whole in memory);
        ``file`` as the job record keeps it, with its size."""
        ...

    def presign(self, output: OutputFile, expires_in: int) -> str | None:
        """A URL the client can fetch the file from for ``expires_in`` seconds."""
        ...

    def read(self, output: OutputFile) -> bytes | None:
        """The kept bytes, or None for a file that was left with the executor."""
        ...


class Uploads(Protocol):
    """Files clients upload with presigned POSTs (``uploads/``), and jobs' own copies of their
    input files (``jobs/{job_id}/inputs/``). Every refusal is an ``aws.uploads.UploadError``
    whose ``code`` and message name the problem."""

    @property
    def max_bytes(self) -> int:
        """The limit of one input file (not a workflow)."""
        ...

    def request_upload(self, user: str, filename: str, content_type: str, size: int) -> UploadTicket:
        """A presigned POST for exactly ``size`` bytes of ``content_type``, owned by ``user``."""
        ...

    def head_upload(self, user: str, upload_id: str) -> UploadInfo:
        """The user's upload as it is (name, size, type), without its bytes."""
        ...

    def open_workflow(self, user: str, upload_id: str) -> bytes:
        """The bytes of the user's uploaded workflow (application/json only)."""
        ...

    def keep_for_job(self, user: str, upload_id: str, job_id: str, name: str) -> StoredInput:
        """Copy the user's upload to the job's inputs, as ``name``."""
        ...

    def keep_inline(self, job_id: str, name: str, data: bytes, content_type: str) -> StoredInput:
        """Store an inline input file (``files[].data``) as the job's input ``name``."""
        ...

    def read_input(self, key: str, size: int) -> bytes:
        """The bytes of a job's input copy (``UploadNotFound`` once it is gone; no more than
        ``size`` bytes are read: a larger object is refused)."""
        ...


class StateMachine(Protocol):
    """The job's follow loop (Step Functions), one execution per job named after it."""

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        """Start the loop for ``job_id`` and return its execution id; a loop already started
        for the job is not started twice (its id is returned). ``LoopStartFailed`` otherwise."""
        ...

    def stop(self, execution_id: str, cause: str) -> None:
        """Stop the loop; one that has already ended is left alone."""
        ...

    def wake(self, task_token: str, output: dict[str, Any]) -> bool:
        """End the loop's wait for ``task_token`` with ``output``; False when that wait is
        already over (timed out, or woken by someone else)."""
        ...


class Pusher(Protocol):
    def send_all(self, connection_id: str, messages: Sequence[BaseModel]) -> bool:
        """Push the messages in order; False when the connection is gone. ``Throttled`` (from
        ``aws/push.py``) when the push service asks us to slow down."""
        ...


class MessageLog(Protocol):
    """Every message of a job's stream, numbered per job (``job_seq``) and kept while the job is."""

    def append(self, job_id: str, messages: Sequence[dict[str, Any]], *, ttl: int | None) -> list[int]:
        """Keep ``messages`` (in order) under the job's next numbers, and return those numbers."""
        ...

    def last_seq(self, job_id: str) -> int:
        """The job's newest number (0: nothing logged)."""
        ...

    def read(self, job_id: str, after: int, upto: int, *, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """``(job_seq, message)`` for ``after < job_seq <= upto``, oldest first, at most ``limit``."""
        ...


class JobAttach(Protocol):
    """What ``$connect`` does with nodetool's ``resume_job``, without the job rules loaded."""

    def attach(self, job_id: str, user_id: str, connection_id: str) -> bool:
        """The job's pushes go to ``connection_id`` from now on, if it is ``user_id``'s and
        still active (one conditional write); whether it was."""
        ...


class CredentialSource(Protocol):
    def load(self, user_id: str) -> Credentials:
        """The user's executor credentials (``CredentialsError`` when their secret is unusable)."""
        ...


class ExecutorFactory(Protocol):
    def __call__(self, kind: ExecutorKind, user_id: str, endpoint_id: str | None) -> Executor: ...


class StartOnce(Protocol):
    """Runs the start of a job at most once per (user, job id): a repeat gets the first answer."""

    def __call__(self, request: PreparedJob, start: Callable[[PreparedJob], StartAnswer]) -> StartAnswer:
        """``start(request)`` the first time, the stored answer after; ``StartInProgress`` while
        another request is inside ``start`` for the same job; ``DifferentRequest`` when the
        stored start was for a request with another ``request_hash``."""
        ...


class SchemaSource(Protocol):
    """The node schemas (ComfyUI's ``/object_info``) a job is converted with, per executor
    (``schemas.ObjectInfoSource``: live and cached for ComfyUI, a stored snapshot per RunPod
    endpoint, the bundled core snapshot as the fallback)."""

    def get(self, kind: ExecutorKind, user_id: str, endpoint_id: str | None, classes: Collection[str]) -> ObjectInfo:
        """Schemas holding ``classes`` where the executor has them; ``schemas.ObjectInfoUnavailable``
        when none can be had."""
        ...


class Ports(Protocol):
    """Everything the routes use, wired once per process."""

    @property
    def config(self) -> Config: ...

    @property
    def jobs(self) -> JobStore: ...

    @property
    def connections(self) -> ConnectionStore: ...

    @property
    def workflows(self) -> WorkflowStore: ...

    @property
    def api_keys(self) -> ApiKeyStore: ...

    @property
    def outputs(self) -> OutputStore: ...

    @property
    def uploads(self) -> Uploads: ...

    @property
    def state_machine(self) -> StateMachine: ...

    @property
    def pusher(self) -> Pusher: ...

    @property
    def credentials(self) -> CredentialSource: ...

    @property
    def executors(self) -> ExecutorFactory: ...

    @property
    def start_once(self) -> StartOnce: ...

    @property
    def message_log(self) -> MessageLog: ...

    @property
    def job_attach(self) -> JobAttach: ...

    @property
    def object_info(self) -> SchemaSource: ...
