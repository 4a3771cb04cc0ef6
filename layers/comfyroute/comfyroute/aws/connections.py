"""The connections table: which user each WebSocket connection belongs to."""

from __future__ import annotations

import time
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from comfyroute.aws import clients as aws
from comfyroute.aws.dynamo import CONDITION_FAILED, plain, to_item
from comfyroute.ports import ConnectionRecord


class DynamoConnections:
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

    def put_for_key(self, connection_id: str, user_id: str, key_id: str) -> ConnectionRecord:
        now = time.time()
        rec = ConnectionRecord(
            connection_id=connection_id,
            user_id=user_id,
            connected_at=now,
            ttl=int(now + self.TTL_SECONDS),
            key_id=key_id,
        )
        self.table.put_item(Item=to_item(rec))
        return rec

    @classmethod
    def from_table(cls, table: Any) -> DynamoConnections:
        """The store over a given boto3 ``Table`` (tools reaching another endpoint or account)."""
        store = cls.__new__(cls)
        store.table = table
        return store

    def list_by_key(self, key_id: str) -> list[str]:
        """The ids of the connections recorded for an API key (index ``by_key``), for
        ``comfyroute keys revoke``."""
        ids: list[str] = []
        kwargs: dict[str, Any] = {"IndexName": "by_key", "KeyConditionExpression": Key("key_id").eq(key_id)}
        while True:
            resp = self.table.query(**kwargs)
            ids.extend(str(item["connection_id"]) for item in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return ids
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def get(self, connection_id: str) -> ConnectionRecord | None:
        item = self.table.get_item(Key={"connection_id": connection_id}).get("Item")
        return _record(plain(item)) if item else None

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
            if aws.error_code(exc) != CONDITION_FAILED:
                raise


def _record(item: dict[str, Any]) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=str(item["connection_id"]),
        user_id=str(item["user_id"]),
        connected_at=float(item["connected_at"]),
        gone=bool(item.get("gone", False)),
        ttl=int(item["ttl"]) if item.get("ttl") is not None else None,
        key_id=str(item["key_id"]) if item.get("key_id") is not None else None,
    )
