"""Stored node schemas in S3, under the outputs bucket's ``object-info/`` (``schemas.SchemaStore``).

Each object is gzipped JSON; when it was stored rides in its metadata (``stored-at``, epoch
seconds), so the TTL check needs no clock but the writer's.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from comfyroute.aws import clients as aws
from comfyroute.schemas import StoredSchemas

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class S3SchemaStore:
    def __init__(self, bucket: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.client = client or aws.s3()

    def get(self, key: str) -> StoredSchemas | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        data: bytes = answer["Body"].read()
        stored_at = _float(answer.get("Metadata", {}).get("stored-at"))
        if stored_at is None:
            modified = answer.get("LastModified")
            stored_at = modified.timestamp() if modified is not None else 0.0
        return StoredSchemas(data, stored_at)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/gzip",
            Metadata={"stored-at": f"{time.time():.3f}"},
        )


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
