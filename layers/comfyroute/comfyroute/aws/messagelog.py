"""The job messages table: ``ports.MessageLog`` on DynamoDB.

One item per message, keyed ``(job_id, job_seq)``; the item at ``job_seq = 0`` is the job's
counter (``last_seq``), advanced with one atomic ``ADD`` per batch of messages, so two
functions pushing for the same job (notify, cancel_job) never hand out the same number.
Messages are kept as their JSON text: nothing in them is queried, and it keeps floats exact.
Items expire with the job (the table's TTL).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from boto3.dynamodb.conditions import Key

from comfyroute.aws import clients as aws

COUNTER_SEQ = 0


class DynamoMessageLog:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def append(self, job_id: str, messages: Sequence[dict[str, Any]], *, ttl: int | None) -> list[int]:
        if not messages:
            return []
        update: dict[str, Any] = {
            "Key": {"job_id": job_id, "job_seq": COUNTER_SEQ},
            "UpdateExpression": "ADD last_seq :n",
            "ExpressionAttributeValues": {":n": len(messages)},
            "ReturnValues": "UPDATED_NEW",
        }
        if ttl is not None:
            update["UpdateExpression"] += " SET #ttl = if_not_exists(#ttl, :ttl)"
            update["ExpressionAttributeNames"] = {"#ttl": "ttl"}
            update["ExpressionAttributeValues"][":ttl"] = ttl
        last = _int(self.table.update_item(**update)["Attributes"]["last_seq"])
        seqs = list(range(last - len(messages) + 1, last + 1))
        with self.table.batch_writer() as batch:
            for seq, message in zip(seqs, messages, strict=True):
                item: dict[str, Any] = {"job_id": job_id, "job_seq": seq, "body": json.dumps(message)}
                if ttl is not None:
                    item["ttl"] = ttl
                batch.put_item(Item=item)
        return seqs

    def last_seq(self, job_id: str) -> int:
        item = self.table.get_item(Key={"job_id": job_id, "job_seq": COUNTER_SEQ}, ConsistentRead=True).get("Item")
        return _int(item["last_seq"]) if item else 0

    def read(self, job_id: str, after: int, upto: int, *, limit: int) -> list[tuple[int, dict[str, Any]]]:
        if upto <= after:
            return []
        out: list[tuple[int, dict[str, Any]]] = []
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("job_id").eq(job_id) & Key("job_seq").between(after + 1, upto),
            "ConsistentRead": True,
        }
        while len(out) < limit:
            page = self.table.query(**query, Limit=limit - len(out))
            out.extend((_int(item["job_seq"]), json.loads(str(item["body"]))) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return out


def _int(value: object) -> int:
    # DynamoDB numbers come back as Decimal.
    return int(str(value))
