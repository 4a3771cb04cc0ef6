"""Job output files in S3, under ``jobs/{job_id}/``, and presigned URLs to them (``ports.OutputStore``)."""

from __future__ import annotations

from typing import Any

from comfyroute.aws import clients as aws
from comfyroute.contenttypes import safe_content_type
from comfyroute.executors.base import OutputFile
from comfyroute.text import safe_filename


def output_key(job_id: str, index: int, file: OutputFile) -> str:
    # Deterministic: a poll that Step Functions retries writes the same keys again
    # instead of adding copies.
    return f"jobs/{job_id}/{index:03d}-{safe_filename(file.node_id)}-{safe_filename(file.filename)}"


class S3Outputs:
    def __init__(self, bucket: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self.client = client or aws.s3()

    def put(self, job_id: str, index: int, file: OutputFile) -> OutputFile:
        if file.data is None:
            return file
        key = output_key(job_id, index, file)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=file.data,
            ContentType=safe_content_type(file.content_type, file.filename),
            Metadata={"job-id": job_id, "node-id": file.node_id},
        )
        return file.model_copy(update={"key": key, "data": None})

    def presign(self, output: OutputFile, expires_in: int) -> str | None:
        if output.key is None:
            return None  # never an executor's own URL: what it names is not ours to vouch for
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": output.key,
                # From the allow-list, and always as a download: a file an executor made is never
                # rendered by a browser as a page of our bucket's origin (text/html, SVG).
                "ResponseContentType": safe_content_type(output.content_type, output.filename),
                "ResponseContentDisposition": f'attachment; filename="{safe_filename(output.filename)}"',
            },
            ExpiresIn=expires_in,
        )
        return url

    def read(self, output: OutputFile) -> bytes | None:
        if output.key is None:
            return None
        data: bytes = self.client.get_object(Bucket=self.bucket, Key=output.key)["Body"].read()
        return data
