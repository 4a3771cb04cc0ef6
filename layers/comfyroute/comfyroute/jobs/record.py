"""The job record, and the shape of a change to it.

``JobRecord`` is what the jobs table holds. ``JobChange`` is one conditional write, built only
by ``jobs.lifecycle`` and applied by a ``ports.JobStore``; ``Outcome`` is what the store
answers: the record the write left (or found, when its condition refused it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from comfyroute.executors.base import NodeOutcome, OutputFile, Progress
from comfyroute.jobkeys import job_key as job_key
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import NodeProblem

ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class JobNotFound(Exception):
    """A job that has no record (poll's Catch marks nothing and fails)."""


class InputRecord(BaseModel):
    """One input file of a job, as the job record keeps it: its own copy under ``key``
    (``jobs/{job_id}/inputs/``, expiring with the job's outputs); never its bytes."""

    model_config = ConfigDict(frozen=True)

    name: str
    size: int
    content_type: str
    key: str
    upload_id: str | None = None  # the upload it came from; None for an inline file


class JobRecord(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    job_id: str  # the backend's key (``job_key``); records from before scoping: the client's id
    user_id: str
    # The id the client chose, shown in every message; None on records from before scoping.
    client_job_id: str | None = None
    connection_id: str | None = None
    workflow_id: str | None = None
    executor: ExecutorKind
    endpoint_id: str | None = None
    executor_job_id: str | None = None
    status: JobStatus = JobStatus.QUEUED
    error: str | None = None
    # A failed job's problems per node (conversion problems, ComfyUI's node_errors), bounded as
    # messages carry them (``messages.bounded_errors``); ``errors_omitted`` counts the rest.
    errors: list[NodeProblem] | None = None
    errors_omitted: int | None = None
    message: str | None = None
    queue_position: int | None = None
    progress: Progress | None = None
    outputs: list[OutputFile] = Field(default_factory=list)
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float
    execution_arn: str | None = None
    # class_type per node id, so outputs can be named after the node that made them. Stored as
    # JSON text: node ids are the client's, and a map keyed by them could hold keys the table
    # refuses (empty ones), breaking the record and every listing of the user's jobs.
    node_classes: dict[str, str] = Field(default_factory=dict)
    # How each node ended, as the executor reported it: completed, cached or error.
    node_states: dict[str, NodeOutcome] = Field(default_factory=dict)
    inputs: list[InputRecord] = Field(default_factory=list)

    @field_validator("node_classes", mode="before")
    @classmethod
    def _classes_from_text(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    @field_serializer("node_classes", when_used="json")
    def _classes_as_text(self, v: dict[str, str]) -> str:
        return json.dumps(v, separators=(",", ":"))

    ttl: int | None = None
    # Following (docs/following.md): what the stream announced per node (so a new window does
    # not announce it again); "poll" once ComfyUI's /ws proved unusable; since when the executor
    # cannot be reached (the client was told once).
    nodes: dict[str, str] = Field(default_factory=dict)
    follow_by: str | None = None
    unreachable_since: float | None = None
    # RunPod's webhook: the SHA-256 of the callback secret (never the secret), the task token
    # of the waiting Arm state, when a callback came, and RunPod's timings of the finished job.
    callback_digest: str | None = None
    task_token: str | None = None
    webhook_seen_at: float | None = None
    delay_ms: int | None = None
    execution_ms: int | None = None

    @property
    def wire_id(self) -> str:
        """The job id the client knows."""
        return self.client_job_id or self.job_id

    @property
    def duration(self) -> float | None:
        end = self.finished_at or (None if self.status.terminal else time.time())
        return round((end or self.updated_at) - self.created_at, 3)


class JobChange:
    """One conditional write to a job record.

    ``values`` are set and ``remove`` fields unset, in one write that happens only while the
    job's status is in ``only_in`` (any status when None) and every field in ``only_unset`` is
    unset. Field names are ``JobRecord``'s; values are the record's own types.
    """

    __slots__ = ("job_id", "only_in", "only_unset", "remove", "values")

    def __init__(
        self,
        job_id: str,
        values: Mapping[str, Any],
        *,
        remove: Iterable[str] = (),
        only_in: Iterable[JobStatus] | None = None,
        only_unset: Iterable[str] = (),
    ) -> None:
        self.job_id = job_id
        self.values: Mapping[str, Any] = dict(values)
        self.remove = frozenset(remove)
        self.only_in = frozenset(only_in) if only_in is not None else None
        self.only_unset = frozenset(only_unset)
        unknown = (set(self.values) | self.remove | self.only_unset) - set(JobRecord.model_fields)
        if unknown:
            raise ValueError(f"not JobRecord fields: {sorted(unknown)}")
        if set(self.values) & self.remove:
            raise ValueError(f"fields both set and removed: {sorted(set(self.values) & self.remove)}")

    def __repr__(self) -> str:
        return (
            f"JobChange({self.job_id!r}, {dict(self.values)!r}, remove={sorted(self.remove)!r}, "
            f"only_in={sorted(self.only_in) if self.only_in is not None else None!r}, "
            f"only_unset={sorted(self.only_unset)!r})"
        )

    def allows(self, record: JobRecord) -> bool:
        """Whether the write's conditions hold for ``record`` (what a store checks atomically)."""
        if self.only_in is not None and record.status not in self.only_in:
            return False
        return all(getattr(record, name) is None for name in self.only_unset)


class Outcome(NamedTuple):
    """A conditional write's answer: the record after the write when ``applied``, else the
    record as it stood when the condition refused the write."""

    job: JobRecord
    applied: bool
