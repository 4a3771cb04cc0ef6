"""The jobs table: ``ports.JobStore`` on DynamoDB.

Each ``JobChange`` is one ``UpdateItem`` whose condition carries the change's own
(``only_in`` status, ``only_unset`` fields), with ``ReturnValues=ALL_NEW`` when it is applied
and ``ReturnValuesOnConditionCheckFailure=ALL_OLD`` when it is not: either way the caller
learns the record's state from the write itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError
from pydantic import ValidationError

from comfyroute.aws import clients as aws
from comfyroute.aws.dynamo import CONDITION_FAILED, from_wire, plain, to_item, to_value
from comfyroute.jobs.record import JobChange, JobNotFound, JobRecord, Outcome
from comfyroute.protocol import ExecutorKind, JobStatus

logger = Logger(child=True)


class DynamoJobs:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def get(self, job_id: str) -> JobRecord | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return _record(plain(item)) if item else None

    def insert(self, record: JobRecord) -> Outcome:
        try:
            self.table.put_item(
                Item=to_item(record),
                ConditionExpression=Attr("job_id").not_exists(),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            existing = _refused_by(exc)
            if existing is None:
                raise
            return Outcome(existing, applied=False)
        return Outcome(record, applied=True)

    def apply(self, change: JobChange) -> Outcome:
        names = {f"#{k}": k for k in (*change.values, *change.remove)}
        values = {f":{k}": to_value(v) for k, v in change.values.items()}
        expr = " ".join(
            part
            for part in (
                ("SET " + ", ".join(f"#{k} = :{k}" for k in change.values)) if change.values else "",
                ("REMOVE " + ", ".join(f"#{k}" for k in sorted(change.remove))) if change.remove else "",
            )
            if part
        )
        request: dict[str, Any] = {
            "Key": {"job_id": change.job_id},
            "UpdateExpression": expr,
            "ConditionExpression": _condition(change),
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:  # DynamoDB refuses an empty map
            request["ExpressionAttributeValues"] = values
        try:
            answer = self.table.update_item(**request)
        except ClientError as exc:
            if aws.error_code(exc) != CONDITION_FAILED:
                raise
            current = _refused_by(exc)
            if current is None:
                raise JobNotFound(f"job {change.job_id} has no record") from None
            return Outcome(current, applied=False)
        return Outcome(_record(plain(answer["Attributes"])), applied=True)

    def list_by_user(self, user_id: str, limit: int = 20) -> list[JobRecord]:
        resp = self.table.query(
            IndexName="by_user",
            KeyConditionExpression=Key("user_id").eq(user_id),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [_listed(plain(i)) for i in resp.get("Items", [])]


def _condition(change: JobChange) -> ConditionBase:
    condition: ConditionBase = Attr("job_id").exists()
    if change.only_in is not None:
        condition = condition & Attr("status").is_in(sorted(s.value for s in change.only_in))
    for name in sorted(change.only_unset):
        condition = condition & Attr(name).not_exists()
    return condition


def _refused_by(exc: ClientError) -> JobRecord | None:
    """The record a conditional write found (``ALL_OLD`` on a failed condition), if any."""
    if aws.error_code(exc) != CONDITION_FAILED:
        return None
    item: Mapping[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
    return _record(from_wire(item)) if item else None


def _record(item: Mapping[str, Any]) -> JobRecord:
    return JobRecord.model_validate(item)


def _listed(item: Mapping[str, Any]) -> JobRecord:
    """A listed job; one whose record cannot be read (written by a bug, or by an older version)
    shows as failed, saying so, rather than failing the listing of every job of its user."""
    try:
        return _record(item)
    except ValidationError as exc:
        logger.error("unreadable job record", extra={"job_key": str(item.get("job_id")), "errors": exc.error_count()})

    def number(name: str) -> float:
        value = item.get(name)
        return float(value) if isinstance(value, int | float) else 0.0

    def text(name: str) -> str | None:
        value = item.get(name)
        return value if isinstance(value, str) else None

    return JobRecord(
        job_id=text("job_id") or "unknown",
        client_job_id=text("client_job_id"),
        user_id=text("user_id") or "",
        workflow_id=text("workflow_id"),
        executor=ExecutorKind.LOCAL,
        status=JobStatus.FAILED,
        error="this job's record could not be read",
        created_at=number("created_at"),
        updated_at=number("updated_at"),
        deadline=number("deadline"),
    )
