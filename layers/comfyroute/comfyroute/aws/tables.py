"""DynamoDB repositories: connections, jobs, workflows and API keys.

Records are pydantic models; conversion to and from DynamoDB items (Decimal numbers, no
empty strings needed) happens only here.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from comfyroute.aws import clients as aws
from comfyroute.protocol import ExecutorKind, JobStatus

ACTIVE_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def to_item(model: BaseModel) -> dict[str, Any]:
    """A model as a DynamoDB item: floats as Decimal, None values left out."""
    return json.loads(model.model_dump_json(exclude_none=True), parse_float=Decimal)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dynamo_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return to_item(value)
    if isinstance(value, list):
        return [_dynamo_value(v) for v in value]
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return json.loads(json.dumps(value), parse_float=Decimal)
    return value


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


# --------------------------------------------------------------------------- connections


class ConnectionRecord(BaseModel):
    connection_id: str
    user_id: str
    connected_at: float
    gone: bool = False
    ttl: int | None = None


class Connections:
    # API Gateway closes a connection after 2 hours at the most; keep the row a bit longer.
    TTL_SECONDS = 3 * 3600

    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def put(self, connection_id: str, user_id: str) -> ConnectionRecord:
        now = time.time()
        rec = ConnectionRecord(
            connection_id=connection_id, user_id=user_id, connected_at=now, ttl=int(now + self.TTL_SECONDS)
        )
        self.table.put_item(Item=to_item(rec))
        return rec

    def get(self, connection_id: str) -> ConnectionRecord | None:
        item = self.table.get_item(Key={"connection_id": connection_id}).get("Item")
        return ConnectionRecord.model_validate(_plain(item)) if item else None

    def delete(self, connection_id: str) -> None:
        self.table.delete_item(Key={"connection_id": connection_id})

    def mark_gone(self, connection_id: str) -> None:
        try:
            self.table.update_item(
                Key={"connection_id": connection_id},
                UpdateExpression="SET gone = :t",
                ConditionExpression=Attr("connection_id").exists(),
                ExpressionAttributeValues={":t": True},
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise


# --------------------------------------------------------------------------- jobs


class StoredOutput(BaseModel):
    """One output file of a job, as kept on the job record."""

    node_id: str
    node_name: str
    output_name: str
    output_type: str
    filename: str
    content_type: str
    size: int = 0
    key: str | None = None  # S3 key in the outputs bucket
    url: str | None = None  # where the executor left it, when we did not copy it


class StoredProgress(BaseModel):
    node_id: str | None = None
    value: float
    max: float


class JobRecord(BaseModel):
    model_config = ConfigDict(use_enum_values=False)

    job_id: str
    user_id: str
    connection_id: str | None = None
    workflow_id: str | None = None
    executor: ExecutorKind
    endpoint_id: str | None = None
    executor_job_id: str | None = None
    status: JobStatus = JobStatus.QUEUED
    error: str | None = None
    message: str | None = None
    queue_position: int | None = None
    progress: StoredProgress | None = None
    outputs: list[StoredOutput] = Field(default_factory=list)
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float
    execution_arn: str | None = None
    # class_type per node id, so outputs can be named after the node that made them.
    node_classes: dict[str, str] = Field(default_factory=dict)
    ttl: int | None = None

    @property
    def duration(self) -> float | None:
        end = self.finished_at or (None if self.status.terminal else time.time())
        return round((end or self.updated_at) - self.created_at, 3)


class JobExists(Exception):
    def __init__(self, record: JobRecord) -> None:
        super().__init__(record.job_id)
        self.record = record


class Jobs:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def create(self, record: JobRecord) -> None:
        """Insert a new job; ``JobExists`` (with the stored record) if the id is taken."""
        try:
            self.table.put_item(Item=to_item(record), ConditionExpression=Attr("job_id").not_exists())
        except ClientError as exc:
            if _is_condition_failure(exc):
                existing = self.get(record.job_id)
                if existing is not None:
                    raise JobExists(existing) from None
            raise

    def get(self, job_id: str) -> JobRecord | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return JobRecord.model_validate(_plain(item)) if item else None

    def update(self, job_id: str, *, only_if_active: bool = False, remove: tuple[str, ...] = (), **fields: Any) -> bool:
        """Set ``fields`` (and ``updated_at``). With ``only_if_active`` the write happens only
        while the job is queued or running, so a finished job is never reopened by a late
        writer; returns False when that condition stops it."""
        fields["updated_at"] = time.time()
        names = {f"#{k}": k for k in fields} | {f"#{k}": k for k in remove}
        values = {f":{k}": _dynamo_value(v) for k, v in fields.items()}
        expr = "SET " + ", ".join(f"#{k} = :{k}" for k in fields)
        if remove:
            expr += " REMOVE " + ", ".join(f"#{k}" for k in remove)
        kwargs: dict[str, Any] = {
            "Key": {"job_id": job_id},
            "UpdateExpression": expr,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        condition = Attr("job_id").exists()
        if only_if_active:
            condition = condition & Attr("status").is_in(list(ACTIVE_STATUSES))
        kwargs["ConditionExpression"] = condition
        try:
            self.table.update_item(**kwargs)
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def list_by_user(self, user_id: str, limit: int = 20) -> list[JobRecord]:
        resp = self.table.query(
            IndexName="by_user",
            KeyConditionExpression=Key("user_id").eq(user_id),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [JobRecord.model_validate(_plain(i)) for i in resp.get("Items", [])]


# --------------------------------------------------------------------------- workflows


class WorkflowRecord(BaseModel):
    user_id: str
    workflow_id: str
    name: str | None = None
    graph_json: str | None = None
    prompt_json: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    updated_at: float


class Workflows:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def put(self, record: WorkflowRecord) -> None:
        self.table.put_item(Item=to_item(record))

    def get(self, user_id: str, workflow_id: str) -> WorkflowRecord | None:
        item = self.table.get_item(Key={"user_id": user_id, "workflow_id": workflow_id}).get("Item")
        return WorkflowRecord.model_validate(_plain(item)) if item else None


# --------------------------------------------------------------------------- API keys


class ApiKeyRecord(BaseModel):
    key_hash: str
    user_id: str
    created_at: float
    revoked: bool = False
    label: str | None = None


class ApiKeys:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def put(self, record: ApiKeyRecord) -> None:
        self.table.put_item(Item=to_item(record), ConditionExpression=Attr("key_hash").not_exists())

    def get(self, key_hash: str) -> ApiKeyRecord | None:
        item = self.table.get_item(Key={"key_hash": key_hash}).get("Item")
        return ApiKeyRecord.model_validate(_plain(item)) if item else None

    def revoke(self, key_hash: str) -> None:
        self.table.update_item(
            Key={"key_hash": key_hash},
            UpdateExpression="SET revoked = :t",
            ExpressionAttributeValues={":t": True},
        )
