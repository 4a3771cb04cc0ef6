"""The workflows table: saved workflows by (user, workflow id) (``ports.WorkflowStore``)."""

from __future__ import annotations

from comfyroute.aws import clients as aws
from comfyroute.aws.dynamo import plain, to_item
from comfyroute.workflows import WorkflowRecord


class DynamoWorkflows:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def put(self, record: WorkflowRecord) -> None:
        self.table.put_item(Item=to_item(record))

    def get(self, user_id: str, workflow_id: str) -> WorkflowRecord | None:
        item = self.table.get_item(Key={"user_id": user_id, "workflow_id": workflow_id}).get("Item")
        return WorkflowRecord.model_validate(plain(item)) if item else None
