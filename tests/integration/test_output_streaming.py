"""S3Outputs.put_stream under moto: a file larger than one part goes up in parts, whole, and
never sits in memory whole."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from comfyroute.aws.outputs import PART_BYTES, S3Outputs
from comfyroute.executors.base import ExecutorUnavailable, OutputFile
from comfyroute.executors.download import CappedBody

BUCKET = "outputs"
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    """S3 as moto's server in a process of its own: memory measured here is the uploader's
    alone (moto in this process would keep every part too)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except EndpointConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield client
    finally:
        server.terminate()
        server.wait(10)


def pattern(total: int) -> Iterator[bytes]:
    """``total`` bytes in CHUNK parts, each part different, made as they are read."""
    for i in range(0, total, CHUNK):
        yield (i // CHUNK).to_bytes(4, "big") * (min(CHUNK, total - i) // 4)


def test_a_file_of_several_parts_arrives_whole_without_being_held_whole(s3) -> None:  # type: ignore[no-untyped-def]
    total = 9 * PART_BYTES // 2 // CHUNK * CHUNK  # 4.5 parts: multipart, with a short last part
    expected = hashlib.sha256(b"".join(pattern(total))).hexdigest()
    file = OutputFile(node_id="9", output_name="images", kind="image", filename="big.png", content_type="image/png")
    body = CappedBody(pattern(total), cap=total, what="big.png", on_error=lambda exc: ExecutorUnavailable("gone"))
    tracemalloc.start()
    try:
        kept = S3Outputs(BUCKET, s3).put_stream("job-1", 0, file, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (kept.size, kept.data) == (total, None)
    assert kept.key == "jobs/job-1/000-9-big.png"
    stored = s3.get_object(Bucket=BUCKET, Key=kept.key)  # type: ignore[attr-defined]
    assert stored["ContentType"] == "image/png"
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == expected
    # A part (and its copy on the way out) at a time, not the 36 MB file: the Follow task
    # runs in a small function, and a 100 MB output costs it no more than this one.
    assert peak < 2.5 * PART_BYTES, f"peak {peak} bytes while streaming {total}"
    assert body.small is None


def test_an_output_over_the_cap_stores_nothing(s3) -> None:  # type: ignore[no-untyped-def]
    from comfyroute.executors.base import ExecutorRejected

    file = OutputFile(node_id="9", output_name="images", kind="image", filename="big.png", content_type="image/png")
    body = CappedBody(pattern(3 * CHUNK), cap=2 * CHUNK, what="big.png", on_error=lambda exc: ExecutorUnavailable("x"))
    with pytest.raises(ExecutorRejected, match="over the limit"):
        S3Outputs(BUCKET, s3).put_stream("job-2", 0, file, body)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/job-2/")  # type: ignore[attr-defined]
    assert listed.get("KeyCount", 0) == 0
