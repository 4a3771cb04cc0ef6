"""The API keys table: SHA-256 of each token and the user it belongs to."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.conditions import Attr

from comfyroute.aws import clients as aws
from comfyroute.aws.dynamo import plain, to_item
from comfyroute.ports import ApiKeyRecord


class DynamoApiKeys:
    def __init__(self, table_name: str) -> None:
        self.table = aws.dynamodb().Table(table_name)

    def put(self, record: ApiKeyRecord) -> None:
        self.table.put_item(Item=to_item(record), ConditionExpression=Attr("key_hash").not_exists())

    def get(self, key_hash: str) -> ApiKeyRecord | None:
        item = self.table.get_item(Key={"key_hash": key_hash}).get("Item")
        return _record(plain(item)) if item else None

    @classmethod
    def from_table(cls, table: Any) -> DynamoApiKeys:
        """The store over a given boto3 ``Table`` (tools reaching another endpoint or account)."""
        store = cls.__new__(cls)
        store.table = table
        return store

    def list_keys(self, user_id: str | None = None) -> list[ApiKeyRecord]:
        """Every issued key (or one user's), oldest first. A scan: the table holds one row per
        key an operator issued, and only the CLI asks."""
        records: list[ApiKeyRecord] = []
        kwargs: dict[str, Any] = {}
        if user_id is not None:
            kwargs["FilterExpression"] = Attr("user_id").eq(user_id)
        while True:
            resp = self.table.scan(**kwargs)
            records.extend(_record(plain(i)) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return sorted(records, key=lambda r: r.created_at)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def revoke(self, key_hash: str) -> None:
        self.table.update_item(
            Key={"key_hash": key_hash},
            UpdateExpression="SET revoked = :t",
            ExpressionAttributeValues={":t": True},
        )


def _record(item: dict[str, Any]) -> ApiKeyRecord:
    label = item.get("label")
    return ApiKeyRecord(
        key_hash=str(item["key_hash"]),
        user_id=str(item["user_id"]),
        created_at=float(item["created_at"]),
        revoked=bool(item.get("revoked", False)),
        label=str(label) if label is not None else None,
    )
