"""The dev stack's moto refuses presigned POST uploads as S3 does (tools/comfyroute_tools/dev/s3post.py).

Real HTTP POSTs (requests, multipart) against moto on loopback with the policy middleware in
front, with presigned POSTs made by comfyroute.aws.uploads.UploadStore and boto3 themselves;
then the same through a started DevStack, with the url a client gets from upload_ready.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig

from comfyroute.aws.uploads import UploadNotReady, UploadStore, UploadTicket
from comfyroute_tools.dev.s3post import (
    PolicyEnforcingMotoServer,
    PostForm,
    PostRefused,
    check_policy,
    parse_post_form,
)

BUCKET = "comfyroute-outputs-s3post"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
CREDENTIALS = {"testing": "testing"}


def free_port(first: int = 27100, last: int = 27199) -> int:
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {first}-{last}")


@pytest.fixture(scope="module")
def moto() -> Iterator[PolicyEnforcingMotoServer]:
    server = PolicyEnforcingMotoServer("127.0.0.1", free_port(), credentials=CREDENTIALS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(moto: PolicyEnforcingMotoServer) -> Any:
    host, port = moto.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(signature_version="s3v4"),
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def store(s3: Any) -> UploadStore:
    return UploadStore(BUCKET, client=s3, max_bytes=10_000, expires_in=300)


def post(url: str, fields: dict[str, str], data: bytes, **kwargs: Any) -> requests.Response:
    return requests.post(url, data=fields, files={"file": ("upload.bin", data)}, timeout=10, **kwargs)


def error_of(resp: requests.Response) -> dict[str, str]:
    assert resp.headers["Content-Type"] == "application/xml"
    return dict(re.findall(r"<(\w+)>([^<]*)</\1>", resp.text))


def stored(s3: Any, ticket: UploadTicket) -> bool:
    return bool(s3.list_objects_v2(Bucket=BUCKET, Prefix=ticket.fields["key"]).get("KeyCount"))


def test_an_exact_upload_is_stored_with_its_type_and_owner(store: UploadStore, s3: Any) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    resp = post(ticket.url, ticket.fields, PNG)
    assert resp.status_code == 204, resp.text
    upload = store.open_upload("alice", ticket.upload_id)
    assert (upload.data, upload.content_type, upload.filename) == (PNG, "image/png", "in.png")


def test_an_oversized_upload_is_entity_too_large_and_not_stored(store: UploadStore, s3: Any) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    resp = post(ticket.url, ticket.fields, PNG + b"!")
    assert resp.status_code == 400
    error = error_of(resp)
    assert error["Code"] == "EntityTooLarge"
    assert error["Message"] == "Your proposed upload exceeds the maximum allowed size"
    assert (error["ProposedSize"], error["MaxSizeAllowed"]) == (str(len(PNG) + 1), str(len(PNG)))
    assert not stored(s3, ticket)
    with pytest.raises(UploadNotReady):
        store.open_upload("alice", ticket.upload_id)


def test_a_short_upload_is_entity_too_small(store: UploadStore, s3: Any) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    resp = post(ticket.url, ticket.fields, PNG[:-1])
    assert resp.status_code == 400
    error = error_of(resp)
    assert error["Code"] == "EntityTooSmall"
    assert (error["ProposedSize"], error["MinSizeAllowed"]) == (str(len(PNG) - 1), str(len(PNG)))
    assert not stored(s3, ticket)


@pytest.mark.parametrize(
    ("field", "value", "condition"),
    [
        ("Content-Type", "text/html", '["eq", "$Content-Type", "image/png"]'),
        ("x-amz-meta-owner", "someone-else", '["eq", "$x-amz-meta-owner"'),
        ("key", "jobs/other/outputs.png", '["eq", "$key", "uploads/'),
    ],
)
def test_a_changed_field_fails_its_policy_condition(
    store: UploadStore, s3: Any, field: str, value: str, condition: str
) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    resp = post(ticket.url, {**ticket.fields, field: value}, PNG)
    assert resp.status_code == 403
    error = error_of(resp)
    assert error["Code"] == "AccessDenied"
    assert error["Message"].startswith("Invalid according to Policy: Policy Condition failed: ")
    assert condition in error["Message"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/").get("KeyCount", 0) == 0
    assert not stored(s3, ticket)


def test_a_field_the_policy_does_not_name_is_refused_but_x_ignore_is_not(store: UploadStore, s3: Any) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    resp = post(ticket.url, {**ticket.fields, "x-amz-meta-extra": "1"}, PNG)
    assert resp.status_code == 403
    assert error_of(resp)["Message"] == "Invalid according to Policy: Extra input fields: x-amz-meta-extra"
    assert post(ticket.url, {**ticket.fields, "x-ignore-note": "1"}, PNG).status_code == 204


def test_a_missing_field_fails_its_condition(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    fields = {k: v for k, v in ticket.fields.items() if k != "x-amz-meta-owner"}
    resp = post(ticket.url, fields, PNG)
    assert resp.status_code == 403
    assert '["eq", "$x-amz-meta-owner", ' in error_of(resp)["Message"]


def test_an_edited_policy_no_longer_matches_its_signature(store: UploadStore, s3: Any) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    policy = json.loads(base64.b64decode(ticket.fields["policy"]))
    policy["conditions"] = [
        ["content-length-range", 1, 10**9] if isinstance(c, list) and c[0] == "content-length-range" else c
        for c in policy["conditions"]
    ]
    forged = base64.b64encode(json.dumps(policy).encode()).decode()
    resp = post(ticket.url, {**ticket.fields, "policy": forged}, PNG * 2)
    assert resp.status_code == 403
    assert error_of(resp)["Code"] == "SignatureDoesNotMatch"
    assert not stored(s3, ticket)


def test_an_unknown_access_key_is_refused(s3: Any) -> None:
    other = boto3.client(
        "s3",
        endpoint_url=s3.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="someone",
        aws_secret_access_key="else",
        config=BotoConfig(signature_version="s3v4"),
    )
    presigned = other.generate_presigned_post(BUCKET, "uploads/x")
    resp = post(presigned["url"], presigned["fields"], b"x")
    assert resp.status_code == 403
    assert error_of(resp)["Code"] == "InvalidAccessKeyId"


def test_an_expired_policy_is_refused(s3: Any) -> None:
    presigned = s3.generate_presigned_post(BUCKET, "uploads/late", ExpiresIn=-5)
    resp = post(presigned["url"], presigned["fields"], b"late")
    assert resp.status_code == 403
    assert error_of(resp)["Message"] == "Invalid according to Policy: Policy expired."


def test_sigv2_posts_are_checked_too(s3: Any) -> None:
    v2 = boto3.client(
        "s3",
        endpoint_url=s3.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    presigned = v2.generate_presigned_post(BUCKET, "uploads/v2", Conditions=[["content-length-range", 1, 3]])
    assert "signature" in presigned["fields"]
    assert post(presigned["url"], presigned["fields"], b"abc").status_code == 204
    assert error_of(post(presigned["url"], presigned["fields"], b"abcd"))["Code"] == "EntityTooLarge"
    assert error_of(post(presigned["url"], {**presigned["fields"], "signature": "AAAA"}, b"abc"))["Code"] == (
        "SignatureDoesNotMatch"
    )


def test_posts_without_a_policy_or_a_file_are_refused(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    anonymous = post(ticket.url, {"key": "uploads/anon", "Content-Type": "image/png"}, PNG)
    assert anonymous.status_code == 403
    assert error_of(anonymous)["Code"] == "AccessDenied"
    no_file = requests.post(ticket.url, files={k: (None, v) for k, v in ticket.fields.items()}, timeout=10)
    assert no_file.status_code == 400
    assert error_of(no_file)["Message"] == "POST requires exactly one file upload per request."


def test_a_browsers_refused_upload_is_readable_across_origins(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "in.png", "image/png", len(PNG))
    resp = post(ticket.url, ticket.fields, PNG + b"!", headers={"Origin": "http://127.0.0.1:3001"})
    assert resp.status_code == 400
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_every_other_s3_call_passes_through_untouched(s3: Any, moto: PolicyEnforcingMotoServer) -> None:
    assert moto.policy is not None
    refused_before = len(moto.policy.refused)
    s3.put_object(Bucket=BUCKET, Key="jobs/j/out.png", Body=b"out", ContentType="image/png")
    assert s3.get_object(Bucket=BUCKET, Key="jobs/j/out.png")["Body"].read() == b"out"
    # DeleteObjects is a POST to the bucket too (with ?delete and an XML body).
    deleted = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "jobs/j/out.png"}]})
    assert [d["Key"] for d in deleted["Deleted"]] == ["jobs/j/out.png"]
    assert len(moto.policy.refused) == refused_before


# --------------------------------------------------------------------------- the pure checks


def form_body(parts: list[tuple[str, str | bytes, bool]]) -> tuple[str, bytes]:
    boundary = "b0undary"
    out = b""
    for name, value, is_file in parts:
        disposition = f'form-data; name="{name}"' + ('; filename="f.bin"' if is_file else "")
        data = value.encode() if isinstance(value, str) else value
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


def test_field_names_are_case_insensitive_and_fields_after_the_file_are_ignored() -> None:
    ctype, body = form_body([("Key", "uploads/a", False), ("file", b"12345", True), ("x-late", "1", False)])
    form = parse_post_form(ctype, body)
    assert form.fields == {"key": "uploads/a"}
    assert form.file_size == 5


def test_starts_with_and_bucket_conditions() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    policy = {
        "expiration": "2026-01-01T00:00:10.000Z",
        "conditions": [["starts-with", "$key", "uploads/"], {"bucket": "b-one"}, ["content-length-range", 0, 9]],
    }
    check_policy(policy, "b-one", PostForm(fields={"key": "uploads/x"}, file_seen=True, file_size=3), now)
    with pytest.raises(PostRefused, match=r'\["starts-with", "\$key", "uploads/"\]'):
        check_policy(policy, "b-one", PostForm(fields={"key": "jobs/x"}, file_seen=True), now)
    with pytest.raises(PostRefused, match=r'\["eq", "\$bucket", "b-one"\]'):
        check_policy(policy, "b-two", PostForm(fields={"key": "uploads/x"}, file_seen=True), now)


# --------------------------------------------------------------------------- through the dev stack


def test_the_dev_stacks_upload_url_enforces_the_policy(tmp_path: Any) -> None:
    from comfyroute.config import Config
    from comfyroute_tools.dev.stack import running

    with running(port=free_port(27200, 27299), state_file=tmp_path / "dev.json") as stack:
        # What a request_upload handler in the stack would answer: the store from the handlers'
        # environment (AWS_ENDPOINT_URL points boto3 at the stack's moto).
        store = UploadStore.from_config(Config.from_env())
        ticket = store.request_upload("dev", "in.png", "image/png", len(PNG))
        assert ticket.url.startswith(stack.moto_endpoint)
        too_big = post(ticket.url, ticket.fields, PNG * 2)
        assert too_big.status_code == 400
        assert error_of(too_big)["Code"] == "EntityTooLarge"
        assert post(ticket.url, ticket.fields, PNG).status_code == 204
        assert store.open_upload("dev", ticket.upload_id).data == PNG
