"""Job output files in S3, under ``jobs/{job_id}/``, and presigned URLs to them."""

from __future__ import annotations

import re
from typing import Any

from comfyroute.aws import clients as aws
from comfyroute.aws.tables import StoredOutput
from comfyroute.executors.base import OutputFile

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str) -> str:
    """A filename fit for an S3 key and a download: no paths, no odd characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip("._") or "output"
    return base[:120]


def output_key(job_id: str, index: int, file: OutputFile) -> str:
    # Deterministic: a poll that Step Functions retries writes the same keys again
    # instead of adding copies.
    return f"jobs/{job_id}/{index:03d}-{safe_filename(file.node_id)}-{safe_filename(file.filename)}"


class OutputStore:
    def __init__(self, bucket: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.client = client or aws.s3()

    def put(self, job_id: str, index: int, file: OutputFile, node_name: str) -> StoredOutput:
        stored = StoredOutput(
            node_id=file.node_id,
            node_name=node_name,
            output_name=file.output_name,
            output_type=file.kind,
            filename=file.filename,
            content_type=file.content_type,
            size=file.size,
        )
        if file.data is None:
            return stored.model_copy(update={"url": file.url})
        key = output_key(job_id, index, file)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=file.data,
            ContentType=file.content_type,
            Metadata={"job-id": job_id, "node-id": file.node_id},
        )
        return stored.model_copy(update={"key": key})

    def presign(self, output: StoredOutput, expires_in: int) -> str | None:
        if output.key is None:
            return output.url
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": output.key,
                "ResponseContentType": output.content_type,
                "ResponseContentDisposition": f'inline; filename="{safe_filename(output.filename)}"',
            },
            ExpiresIn=expires_in,
        )

    def read(self, output: StoredOutput) -> bytes | None:
        if output.key is None:
            return None
        return self.client.get_object(Bucket=self.bucket, Key=output.key)["Body"].read()
