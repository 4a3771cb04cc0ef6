"""The upload store (comfyroute.aws.uploads) under moto: presigned POSTs whose policy pins key,
size, content type and owner; open_upload's distinct refusals; a job's own copy; the template's
uploads/ lifecycle rule and CORS for browser POSTs.

moto 5.x ignores a presigned POST's content-length-range (it stores an oversized file and answers
204, where S3 answers 400 EntityTooLarge): these tests read the policy itself for what S3 would
enforce, and the dev stack enforces it in front of moto (tests/integration/test_dev_s3_post.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from cfnlint.decode import decode
from moto import mock_aws

from comfyroute.aws.uploads import (
    ALLOWED_CONTENT_TYPES,
    FILENAME_FIELD,
    OWNER_FIELD,
    UploadExpired,
    UploadForbidden,
    UploadNotAllowed,
    UploadNotFound,
    UploadNotReady,
    UploadStore,
    UploadTooLarge,
    check_content_type,
    job_input_key,
    owner_tag,
    upload_window_end,
)
from comfyroute.config import Config

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "comfyroute-outputs-test"
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=BotoConfig(signature_version="s3v4"))
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(s3: Any, clock: Clock) -> UploadStore:
    return UploadStore(BUCKET, client=s3, max_bytes=1000, max_workflow_bytes=500, expires_in=600, clock=clock)


def policy_of(fields: dict[str, str]) -> dict[str, Any]:
    return json.loads(base64.b64decode(fields["policy"]))


def post(ticket: Any, data: bytes, filename: str = "file.bin") -> requests.Response:
    return requests.post(ticket.url, data=ticket.fields, files={"file": (filename, data)}, timeout=10)


# --------------------------------------------------------------------------- request_upload


def test_ticket_is_a_presigned_post_whose_policy_pins_key_size_type_and_owner(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "cat photo.png", "image/png", len(PNG))
    assert ticket.method == "POST"
    assert ticket.expires_in == 600
    assert ticket.max_bytes == len(PNG)
    assert ticket.url.startswith("https://")
    assert BUCKET in ticket.url
    assert ticket.fields["key"] == f"uploads/{ticket.upload_id}"
    assert ticket.fields["Content-Type"] == "image/png"
    assert ticket.fields[OWNER_FIELD] == owner_tag("alice") != "alice"
    assert ticket.fields[FILENAME_FIELD] == "cat_photo.png"
    policy = policy_of(ticket.fields)
    conditions = policy["conditions"]
    assert ["content-length-range", len(PNG), len(PNG)] in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert {OWNER_FIELD: owner_tag("alice")} in conditions
    assert {"key": ticket.fields["key"]} in conditions
    assert {"bucket": BUCKET} in conditions
    expiration = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expiration - (time.time() + 600)) < 5
    assert abs(upload_window_end(ticket.upload_id) - (time.time() + 600)) < 5


def test_every_ticket_has_its_own_key(store: UploadStore) -> None:
    ids = {store.request_upload("alice", "a.png", "image/png", 10).upload_id for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("ctype", ["image/svg+xml", "text/html", "application/octet-stream", "", "image"])
def test_content_types_off_the_allow_list_are_refused(store: UploadStore, ctype: str) -> None:
    with pytest.raises(UploadNotAllowed, match="not allowed") as err:
        store.request_upload("alice", "x.bin", ctype, 10)
    assert "image/png" in str(err.value)  # the message says what is allowed
    assert err.value.code == "upload_not_allowed"


def test_content_type_is_normalized_before_the_check() -> None:
    assert check_content_type("Image/PNG; charset=binary") == "image/png"
    assert {"image/png", "image/jpeg", "audio/wav", "video/mp4", "application/json"} <= ALLOWED_CONTENT_TYPES


def test_the_declared_size_is_checked_against_the_limit_of_its_kind(store: UploadStore) -> None:
    assert store.request_upload("alice", "big.png", "image/png", 1000).max_bytes == 1000
    with pytest.raises(UploadTooLarge, match="1001 bytes; the limit is 1000"):
        store.request_upload("alice", "big.png", "image/png", 1001)
    # Workflows have their own, smaller limit.
    with pytest.raises(UploadTooLarge, match="workflow 'wf.json' is 501 bytes; the limit is 500"):
        store.request_upload("alice", "wf.json", "application/json", 501)


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "10"])
def test_sizes_that_are_not_a_positive_byte_count_are_refused(store: UploadStore, size: Any) -> None:
    with pytest.raises(UploadNotAllowed, match="size must be"):
        store.request_upload("alice", "a.png", "image/png", size)


@pytest.mark.parametrize("filename", ["", "   ", "x" * 256])
def test_filenames_must_be_given_and_bounded(store: UploadStore, filename: str) -> None:
    with pytest.raises(UploadNotAllowed, match="filename"):
        store.request_upload("alice", filename, "image/png", 10)


# --------------------------------------------------------------------------- open_upload


def test_an_uploaded_file_opens_with_its_bytes_name_size_and_type(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "cat.png", "image/png", len(PNG))
    assert post(ticket, PNG).status_code == 204
    upload = store.open_upload("alice", ticket.upload_id)
    assert upload.data == PNG
    assert (upload.filename, upload.size, upload.content_type) == ("cat.png", len(PNG), "image/png")
    assert "pixels" not in repr(upload)  # bytes stay out of logs


def test_another_users_upload_is_refused(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "cat.png", "image/png", len(PNG))
    post(ticket, PNG)
    with pytest.raises(UploadForbidden, match="belongs to another user") as err:
        store.open_upload("mallory", ticket.upload_id)
    assert err.value.code == "upload_forbidden"


@pytest.mark.parametrize("upload_id", ["nope", "../jobs/x", "", "0000000g.aaaaaaaaaaaaaaaaaaaaaaaa", 42])
def test_an_id_that_is_not_an_upload_id_is_unknown(store: UploadStore, upload_id: Any) -> None:
    with pytest.raises(UploadNotFound, match="unknown upload id"):
        store.open_upload("alice", upload_id)


def test_a_well_formed_id_never_issued_is_unknown_or_expired(store: UploadStore) -> None:
    with pytest.raises(UploadNotFound, match="unknown or expired") as err:
        store.open_upload("alice", "00000001.aaaaaaaaaaaaaaaaaaaaaaaa")
    assert not isinstance(err.value, UploadNotReady)


def test_an_upload_not_posted_yet_is_not_ready_until_its_window_closes(store: UploadStore, clock: Clock) -> None:
    ticket = store.request_upload("alice", "cat.png", "image/png", len(PNG))
    with pytest.raises(UploadNotReady, match="has not been uploaded yet") as err:
        store.open_upload("alice", ticket.upload_id)
    assert err.value.code == "upload_not_ready"
    clock.now += 601
    with pytest.raises(UploadNotFound, match="unknown or expired"):
        store.open_upload("alice", ticket.upload_id)


def test_an_upload_older_than_the_retention_has_expired(store: UploadStore, clock: Clock) -> None:
    ticket = store.request_upload("alice", "cat.png", "image/png", len(PNG))
    post(ticket, PNG)
    clock.now += 23 * 3600
    assert store.open_upload("alice", ticket.upload_id).data == PNG
    clock.now += 2 * 3600  # past one day: S3's lifecycle may not have run yet, we refuse anyway
    with pytest.raises(UploadExpired, match="expired") as err:
        store.open_upload("alice", ticket.upload_id)
    assert err.value.code == "upload_expired"


def test_moto_stores_an_oversized_post_but_open_upload_refuses_it(store: UploadStore) -> None:
    ticket = store.request_upload("alice", "big.png", "image/png", 1000)
    # S3 would answer 400 EntityTooLarge here; moto 5.x stores the file and answers 204.
    assert post(ticket, b"x" * 1500).status_code == 204
    with pytest.raises(UploadTooLarge, match="1500 bytes; the limit is 1000"):
        store.open_upload("alice", ticket.upload_id)


def test_open_workflow_takes_json_uploads_only(store: UploadStore) -> None:
    workflow = json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}).encode()
    wf_ticket = store.request_upload("alice", "wf.json", "application/json", len(workflow))
    post(wf_ticket, workflow)
    assert store.open_workflow("alice", wf_ticket.upload_id) == workflow
    img_ticket = store.request_upload("alice", "cat.png", "image/png", len(PNG))
    post(img_ticket, PNG)
    with pytest.raises(UploadNotAllowed, match="not a workflow"):
        store.open_workflow("alice", img_ticket.upload_id)


def test_keep_for_job_copies_the_upload_under_the_jobs_prefix(store: UploadStore, s3: Any) -> None:
    ticket = store.request_upload("alice", "cat.png", "image/png", len(PNG))
    post(ticket, PNG)
    kept = store.keep_for_job("alice", ticket.upload_id, "job-1", "input.png")
    assert kept.key == job_input_key("job-1", "input.png") == "jobs/job-1/inputs/input.png"
    assert (kept.name, kept.size, kept.content_type) == ("input.png", len(PNG), "image/png")
    obj = s3.get_object(Bucket=BUCKET, Key=kept.key)
    assert obj["Body"].read() == PNG
    assert obj["ContentType"] == "image/png"
    assert obj["Metadata"] == {"job-id": "job-1", "upload-id": ticket.upload_id}
    # The upload stays, so a retried run_job still finds it.
    assert store.open_upload("alice", ticket.upload_id).data == PNG
    with pytest.raises(UploadForbidden):
        store.keep_for_job("mallory", ticket.upload_id, "job-2", "input.png")


# --------------------------------------------------------------------------- config and template


def test_config_reads_the_upload_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOAD_MAX_BYTES", "123")
    monkeypatch.setenv("UPLOAD_MAX_WORKFLOW_BYTES", "45")
    monkeypatch.setenv("UPLOAD_PRESIGN_SECONDS", "60")
    monkeypatch.setenv("UPLOAD_RETENTION_DAYS", "2")
    config = Config.from_env()
    assert (config.upload_max_bytes, config.upload_max_workflow_bytes) == (123, 45)
    assert (config.upload_presign_seconds, config.upload_retention_days) == (60, 2)
    store = UploadStore.from_config(config, client=object())
    assert (store.max_bytes, store.max_workflow_bytes, store.expires_in) == (123, 45, 60)
    assert store.retention_seconds == 2 * 86400


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded, matches = decode(str(ROOT / "template.yaml"))
    assert not matches
    return json.loads(json.dumps(loaded))


def test_the_bucket_expires_uploads_on_their_own_short_rule(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["OutputsBucket"]["Properties"]
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-uploads"]["Prefix"] == "uploads/"
    assert rules["expire-uploads"]["ExpirationInDays"] == {"Ref": "UploadRetentionDays"}
    assert template["Parameters"]["UploadRetentionDays"]["Default"] == 1
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["UPLOAD_RETENTION_DAYS"] == {"Ref": "UploadRetentionDays"}
    assert int(env["UPLOAD_PRESIGN_SECONDS"]) <= 3600
    assert int(env["UPLOAD_MAX_BYTES"]) == Config().upload_max_bytes


def test_the_bucket_lets_browsers_post_uploads(template: dict[str, Any]) -> None:
    rules = template["Resources"]["OutputsBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
    post_rules = [r for r in rules if "POST" in r["AllowedMethods"]]
    assert len(post_rules) == 1
    assert post_rules[0]["AllowedHeaders"] == ["*"]
