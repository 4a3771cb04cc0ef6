"""The request_upload and run_job-with-files events through their handlers under moto, with
ComfyUI faked by `responses` from its recorded /upload/image and /prompt answers."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import boto3
import pytest
import responses
from support import Stack, load_event
from support.recordings import body, load_recording

from comfyroute.awslambda.wiring import get_ports
from comfyroute.jobkeys import job_key

CONN = "Yf3kGdLhIAMCJMw="
COMFY = "http://127.0.0.1:8188"
JOB = "job-replay-files"
# alice's job as the backend keys it: table key, prompt id, ComfyUI subfolder and S3 prefix.
KEY = job_key("alice", JOB)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(61))  # 69 bytes, as the event declares
MASK = base64.b64decode("iVBORw0KGgo=")


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def invoke(stack: Stack, function: str, event: dict[str, Any], ctx: Any) -> Any:
    return stack.handler(function)(event, ctx)


def pushed(stack: Stack, type_: str, connection_id: str = CONN) -> list[dict[str, Any]]:
    return stack.management.messages(connection_id, type_)


def s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


def upload(stack: Stack, ctx: Any, user: str = "alice") -> str:
    """request_upload as ``user``, then the file stored as the presigned POST would store it."""
    event = load_event("request_upload")
    event["requestContext"]["authorizer"] = {"user_id": user}
    get_ports().connections.put(CONN, user)
    invoke(stack, "RequestUploadFunction", event, ctx)
    ready = pushed(stack, "upload_ready")[-1]
    fields = ready["fields"]
    s3().put_object(
        Bucket=stack.env["OUTPUTS_BUCKET"],
        Key=fields["key"],
        Body=PNG,
        ContentType=fields["Content-Type"],
        Metadata={"owner": fields["x-amz-meta-owner"], "filename": fields["x-amz-meta-filename"]},
    )
    return str(ready["upload_id"])


def run_job_event(upload_id: str) -> dict[str, Any]:
    event = load_event("run_job_files")
    event["body"] = event["body"].replace("UPLOAD_ID", upload_id)
    return event


def fake_comfy(http: responses.RequestsMock) -> None:
    ok = load_recording("post_prompt_custom_id")["resp"]["body"]
    http.post(f"{COMFY}/prompt", json={**ok, "prompt_id": KEY})
    http.get(f"{COMFY}/queue", json=body("queue_idle"))
    http.get(re.compile(rf"{re.escape(COMFY)}/history/.*"), json={})

    def stored(request: Any) -> tuple[int, dict[str, str], str]:
        # ComfyUI answers the name and subfolder it stored the file under (upload_image.json).
        name = re.search(rb'name="image"; filename="([^"]+)"', request.body).group(1).decode()
        answer = {**body("upload_image"), "name": name, "subfolder": f"comfyroute/{KEY}"}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)

    http.add_callback(responses.POST, f"{COMFY}/upload/image", callback=stored)


def test_request_upload_answers_a_presigned_post_pinned_to_size_type_and_owner(stack, lambda_context):
    get_ports().connections.put(CONN, "alice")
    assert invoke(stack, "RequestUploadFunction", load_event("request_upload"), lambda_context) == {"statusCode": 200}
    (ready,) = pushed(stack, "upload_ready")
    assert (ready["method"], ready["max_bytes"], ready["expires_in"], ready["ref"]) == ("POST", 69, 900, "up-1")
    assert ready["filename"] == "cat photo.png"
    fields = ready["fields"]
    assert fields["key"] == f"uploads/{ready['upload_id']}"
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 69, 69] in policy["conditions"]
    assert {"Content-Type": "image/png"} in policy["conditions"]
    assert {"x-amz-meta-owner": fields["x-amz-meta-owner"]} in policy["conditions"]
    assert "alice" not in json.dumps(ready)  # the owner is a hash, never the user id


def test_request_upload_of_a_type_not_allowed_is_refused_by_code(stack, lambda_context):
    get_ports().connections.put(CONN, "alice")
    event = load_event("request_upload")
    event["body"] = event["body"].replace("image/png", "text/html")
    invoke(stack, "RequestUploadFunction", event, lambda_context)
    (error,) = pushed(stack, "error")
    assert (error["code"], error["request"]) == ("upload_not_allowed", "request_upload")
    assert pushed(stack, "upload_ready") == []


def test_run_job_with_an_upload_and_an_inline_file_sends_both_into_the_jobs_subfolder(stack, lambda_context, http):
    upload_id = upload(stack, lambda_context)
    fake_comfy(http)
    assert invoke(stack, "RunJobFunction", run_job_event(upload_id), lambda_context) == {"statusCode": 200}
    uploads = [c.request for c in http.calls if c.request.url.endswith("/upload/image")]
    assert len(uploads) == 2
    assert PNG in uploads[0].body
    assert f"comfyroute/{KEY}".encode() in uploads[0].body
    assert MASK in uploads[1].body
    (submit,) = [c.request for c in http.calls if c.request.url.endswith("/prompt")]
    assert json.loads(submit.body)["prompt"]["1"]["inputs"]["image"] == f"comfyroute/{KEY}/input.png"
    bucket = stack.env["OUTPUTS_BUCKET"]
    kept = s3().get_object(Bucket=bucket, Key=f"jobs/{KEY}/inputs/input.png")
    assert (kept["Body"].read(), kept["ContentType"]) == (PNG, "image/png")
    assert s3().get_object(Bucket=bucket, Key=f"jobs/{KEY}/inputs/mask.png")["Body"].read() == MASK
    job = stack.table("JobsTable").get_item(Key={"job_id": KEY})["Item"]
    assert job["status"] == "queued"
    assert [(i["name"], int(i["size"]), i["content_type"]) for i in job["inputs"]] == [
        ("input.png", 69, "image/png"),
        ("mask.png", 8, "image/png"),
    ]
    get_job = load_event("get_job")
    get_job["body"] = get_job["body"].replace("job-replay-1", JOB)
    invoke(stack, "JobQueriesFunction", get_job, lambda_context)
    (view,) = pushed(stack, "job")
    assert view["job"]["inputs"] == [
        {"name": "input.png", "size": 69, "content_type": "image/png"},
        {"name": "mask.png", "size": 8, "content_type": "image/png"},
    ]


def test_run_job_with_another_users_upload_is_refused_and_records_nothing(stack, lambda_context, http):
    upload_id = upload(stack, lambda_context, user="bob")
    get_ports().connections.put(CONN, "alice")
    fake_comfy(http)
    invoke(stack, "RunJobFunction", run_job_event(upload_id), lambda_context)
    (error,) = pushed(stack, "error")
    assert (error["code"], error["request"], error["job_id"]) == ("upload_forbidden", "run_job", JOB)
    assert error["message"] == f"data.files[0] (input.png): upload {upload_id} belongs to another user"
    assert "Item" not in stack.table("JobsTable").get_item(Key={"job_id": KEY})
    assert len(http.calls) == 0  # ComfyUI never heard of it
