"""``ports.JobAttach`` on the jobs table, for ``$connect``: one conditional ``UpdateItem``.

``$connect`` loads no pydantic and none of the job rules, so this writes the item itself
rather than through ``jobs.lifecycle.attach``; the condition is the same (an active job), plus
the owner: a ``resume_job`` naming someone else's job changes nothing.
"""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from comfyroute.aws import clients as aws
from comfyroute.aws.dynamo import CONDITION_FAILED, to_value


class DynamoJobAttach:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def attach(self, job_id: str, user_id: str, connection_id: str) -> bool:
        try:
            self.table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET #c = :c, #u = :now",
                ConditionExpression="attribute_exists(job_id) AND #owner = :owner AND #s IN (:queued, :running)",
                ExpressionAttributeNames={
                    "#c": "connection_id",
                    "#u": "updated_at",
                    "#owner": "user_id",
                    "#s": "status",
                },
                ExpressionAttributeValues={
                    ":c": connection_id,
                    ":now": to_value(time.time()),
                    ":owner": user_id,
                    ":queued": "queued",
                    ":running": "running",
                },
            )
        except ClientError as exc:
            if aws.error_code(exc) == CONDITION_FAILED:
                return False
            raise
        return True
