"""The client's presigned POST (comfyroute_tools.uploads.post_upload) against the dev stack's S3:
moto behind the policy middleware (tools/comfyroute_tools/dev/s3post.py), with tickets made by
the server's own UploadStore. So the streamed multipart body, its field order and its
Content-Length pass the checks S3 makes, the bytes the store keeps are the bytes sent, and S3's
real refusals read as the client says they do."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from comfyroute.aws.uploads import UploadStore, UploadTicket
from comfyroute.protocol.server_messages import UploadReady
from comfyroute_tools.dev.s3post import PolicyEnforcingMotoServer
from comfyroute_tools.errors import UploadRefused
from comfyroute_tools.uploads import FilePayload, post_upload

BUCKET = "comfyroute-outputs-client-post"
CREDENTIALS = {"testing": "testing"}
PHOTO = bytes((i * 31 + 7) % 256 for i in range(700_000)) + b"\r\n--x--\r\n"


def free_port(first: int = 28100, last: int = 28199) -> int:
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {first}-{last}")


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = PolicyEnforcingMotoServer("127.0.0.1", free_port(), credentials=CREDENTIALS)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=BotoConfig(signature_version="s3v4"),
        )
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        server.stop()


@pytest.fixture
def store(s3: Any) -> UploadStore:
    return UploadStore(BUCKET, client=s3, max_bytes=2_000_000, expires_in=300)


def ready_of(ticket: UploadTicket, **changes: Any) -> UploadReady:
    # What the request_upload handler sends: the ticket's fields as an upload_ready message.
    return UploadReady.model_validate({**ticket.model_dump(), **changes})


def test_a_streamed_file_passes_the_policy_and_arrives_whole(store: UploadStore, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(PHOTO)
    ticket = store.request_upload("alice", "photo.png", "image/png", len(PHOTO))
    seen: list[int] = []

    post_upload(ready_of(ticket), FilePayload.from_path(path), progress=lambda sent, _total: seen.append(sent))

    upload = store.open_upload("alice", ticket.upload_id)
    assert upload.data == PHOTO
    assert (upload.content_type, upload.size) == ("image/png", len(PHOTO))
    assert seen[-1] == len(PHOTO)


def test_bytes_under_the_declared_size_are_entity_too_small(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "a.png", "image/png", 1000)

    with pytest.raises(UploadRefused) as err:
        post_upload(ready_of(ticket), FilePayload.from_bytes(b"x" * 999, filename="a.png"))
    assert (err.value.status, err.value.code) == (400, "EntityTooSmall")
    assert "sent 999 bytes; the upload needs at least 1000" in str(err.value)


def test_bytes_over_the_declared_size_are_entity_too_large(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "a.png", "image/png", 1000)
    # A client that believes it may send more than it declared: the store still says no.
    lying = ready_of(ticket, max_bytes=5000)

    with pytest.raises(UploadRefused) as err:
        post_upload(lying, FilePayload.from_bytes(b"x" * 1001, filename="a.png"))
    assert (err.value.status, err.value.code) == (400, "EntityTooLarge")
    assert "sent 1001 bytes; the upload admits at most 1000" in str(err.value)


def test_another_content_type_than_the_policy_is_access_denied(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "a.png", "image/png", 3)
    fields = {**ticket.fields, "Content-Type": "image/jpeg"}

    with pytest.raises(UploadRefused) as err:
        post_upload(ready_of(ticket, fields=fields), FilePayload.from_bytes(b"abc", filename="a.png"))
    assert (err.value.status, err.value.code) == (403, "AccessDenied")
    assert "Policy Condition failed" in str(err.value)
    assert ticket.fields["x-amz-signature"] not in str(err.value)
