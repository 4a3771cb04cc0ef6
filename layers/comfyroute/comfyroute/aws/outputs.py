"""Job output files in S3, under ``jobs/{job_id}/``, and presigned URLs to them (``ports.OutputStore``)."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, cast

from comfyroute.aws import clients as aws
from comfyroute.contenttypes import safe_content_type
from comfyroute.executors.base import OutputFile
from comfyroute.text import safe_filename

if TYPE_CHECKING:
    from comfyroute.ports import Readable

# upload_fileobj's parts: 8 MB (S3's minimum is 5 MB), one at a time and no threads, so a
# 100 MB output costs the uploader one part of memory.
PART_BYTES = 8 * 1024 * 1024


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

    def put_stream(self, job_id: str, index: int, file: OutputFile, body: Readable) -> OutputFile:
        # Here, not at import: s3transfer is only for the Follow task, not every handler.
        from boto3.s3.transfer import TransferConfig

        key = output_key(job_id, index, file)
        streaming = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=1, use_threads=False
        )
        self.client.upload_fileobj(
            cast("IO[bytes]", body),  # s3transfer only calls read(size)
            self.bucket,
            key,
            ExtraArgs={
                "ContentType": safe_content_type(file.content_type, file.filename),
                "Metadata": {"job-id": job_id, "node-id": file.node_id},
            },
            Config=streaming,
        )
        size = getattr(body, "count", None)
        if not isinstance(size, int):
            size = self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        return file.model_copy(update={"key": key, "data": None, "size": size})

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
