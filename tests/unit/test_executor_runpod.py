"""RunPodExecutor against `responses` mocks that answer like CONTRACT.md says RunPod does.

Fixtures in tests/fixtures/runpod/ are built from /work/shared/reference/runpod/CONTRACT.md
(see the README there); nothing here talks to the real RunPod.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import responses

from comfyroute.executors.base import (
    Executor,
    ExecutorError,
    ExecutorRejected,
    ExecutorUnavailable,
)
from comfyroute.executors.runpod import DEFAULT_RUNPOD_API_BASE, RunPodExecutor
from comfyroute.http import make_session
from comfyroute.protocol import ExecutorKind, JobStatus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runpod"
API_KEY = "rpa_SECRET_9f2c1e7b4d"
ENDPOINT = "ep_123"
BASE = "https://runpod.test/v2"
JOB = "c80ffee4-f315-4e25-a146-0f3d98cf024b-u1"
PROMPT = {"3": {"class_type": "KSampler", "inputs": {}}}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
RETRIES = 2

RUN_URL = f"{BASE}/{ENDPOINT}/run"
STATUS_URL = f"{BASE}/{ENDPOINT}/status/{JOB}"
CANCEL_URL = f"{BASE}/{ENDPOINT}/cancel/{JOB}"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def make_executor(**kwargs: Any) -> RunPodExecutor:
    # No backoff: `responses` does not sleep between retries anyway, and tests stay fast.
    session = make_session(retry_post=True, retries=RETRIES, backoff_factor=0)
    kwargs.setdefault("base_url", BASE)
    return RunPodExecutor(API_KEY, ENDPOINT, session=session, **kwargs)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def executor() -> RunPodExecutor:
    return make_executor()


def assert_no_key(text: str) -> None:
    assert API_KEY not in text
    assert API_KEY[4:] not in text


# --------------------------------------------------------------------------- the plan's scenarios


def test_plan_submit_then_completed_data_uri(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.post(RUN_URL, json={"id": JOB, "status": "IN_QUEUE"})
    completed = {
        "id": JOB,
        "status": "COMPLETED",
        "output": {"message": "data:image/png;base64,aWltYWdl", "status": "success"},
    }
    rsps.get(STATUS_URL, json=completed)
    rsps.get(STATUS_URL, json=completed)

    assert executor.submit(PROMPT, "job-1") == JOB
    assert executor.status(JOB).state is JobStatus.COMPLETED
    files = executor.outputs(JOB)

    assert len(files) == 1
    assert files[0].data is not None
    assert base64.b64encode(files[0].data).decode() == "aWltYWdl"  # prefix stripped
    assert files[0].data == b"iimage"
    assert (files[0].filename, files[0].content_type, files[0].kind) == ("output.png", "image/png", "image")


def test_plan_failed_gpu_oom(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.post(RUN_URL, json={"id": JOB, "status": "IN_QUEUE"})
    rsps.get(STATUS_URL, json={"id": JOB, "status": "FAILED", "error": "GPU OOM"})

    executor.submit(PROMPT, "job-1")
    status = executor.status(JOB)

    assert status.state is JobStatus.FAILED
    assert status.error is not None
    assert "GPU OOM" in status.error


# --------------------------------------------------------------------------- submit


def test_submit_sends_workflow_policy_and_bearer_key(rsps: responses.RequestsMock) -> None:
    expected = {"input": {"workflow": PROMPT}, "policy": {"executionTimeout": 120_000, "ttl": 3_600_000}}
    rsps.post(
        RUN_URL,
        json=load("run_ok.json"),
        match=[
            responses.matchers.json_params_matcher(expected, strict_match=True),
            responses.matchers.header_matcher({"Authorization": f"Bearer {API_KEY}"}),
        ],
    )
    executor = make_executor(execution_timeout_ms=120_000, ttl_ms=3_600_000)

    assert executor.submit(PROMPT, "job-1") == JOB


@pytest.mark.parametrize(
    ("kwargs", "policy"),
    [
        ({}, {"executionTimeout": 600_000}),
        ({"execution_timeout_ms": None}, None),
        ({"execution_timeout_ms": None, "ttl_ms": 60_000}, {"ttl": 60_000}),
    ],
)
def test_submit_omits_unset_policy_keys(
    rsps: responses.RequestsMock, kwargs: dict[str, Any], policy: dict[str, int] | None
) -> None:
    rsps.post(RUN_URL, json=load("run_ok.json"))
    make_executor(**kwargs).submit(PROMPT, "job-1")

    body = json.loads(rsps.calls[0].request.body)
    assert body["input"] == {"workflow": PROMPT}
    assert body.get("policy") == policy
    assert ("policy" in body) is (policy is not None)


def test_base_url_trailing_slash_is_normalised(rsps: responses.RequestsMock) -> None:
    rsps.post(RUN_URL, json=load("run_ok.json"))
    executor = make_executor(base_url=BASE + "/")

    executor.submit(PROMPT, "job-1")

    assert rsps.calls[0].request.url == RUN_URL
    assert RunPodExecutor(API_KEY, ENDPOINT).base_url == DEFAULT_RUNPOD_API_BASE


@pytest.mark.parametrize("code", [401, 403])
def test_submit_refused_key_is_rejected_without_the_key(rsps: responses.RequestsMock, code: int) -> None:
    rsps.post(RUN_URL, status=code, json={"error": f"bad key {API_KEY}"})

    with pytest.raises(ExecutorRejected, match="refused the API key") as info:
        make_executor().submit(PROMPT, "job-1")
    assert f"HTTP {code}" in str(info.value)
    assert_no_key(str(info.value))


@pytest.mark.parametrize("code", [400, 404])
def test_submit_client_errors_carry_runpods_message(rsps: responses.RequestsMock, code: int) -> None:
    rsps.post(RUN_URL, status=code, json={"error": "endpoint ep_123 does not accept this input"})

    with pytest.raises(ExecutorRejected, match="does not accept this input") as info:
        make_executor().submit(PROMPT, "job-1")
    assert f"HTTP {code}" in str(info.value)


def test_submit_plain_text_error_body_is_quoted(rsps: responses.RequestsMock) -> None:
    rsps.post(RUN_URL, status=400, body="Bad Request: input.workflow is required")

    with pytest.raises(ExecutorRejected, match=r"input\.workflow is required"):
        make_executor().submit(PROMPT, "job-1")


def test_submit_retries_429_once_then_succeeds(rsps: responses.RequestsMock) -> None:
    rsps.post(RUN_URL, status=429, headers={"Retry-After": "0"}, json={"error": "rate limited"})
    rsps.post(RUN_URL, json=load("run_ok.json"))

    assert make_executor().submit(PROMPT, "job-1") == JOB
    assert len(rsps.calls) == 2


def test_submit_5xx_after_retries_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.post(RUN_URL, status=503, json={"error": "no capacity"})

    with pytest.raises(ExecutorUnavailable, match="HTTP 503 after retries"):
        make_executor().submit(PROMPT, "job-1")
    assert len(rsps.calls) == RETRIES + 1


def test_submit_500_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.post(RUN_URL, status=500, body="internal error")

    with pytest.raises(ExecutorUnavailable, match="internal error"):
        make_executor().submit(PROMPT, "job-1")


def test_submit_connection_error_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.post(RUN_URL, body=requests.ConnectionError("connection refused"))

    with pytest.raises(ExecutorUnavailable, match="could not be reached"):
        make_executor().submit(PROMPT, "job-1")


@pytest.mark.parametrize("answer", [{"status": "IN_QUEUE"}, {"id": "", "status": "IN_QUEUE"}, ["x"]])
def test_submit_answer_without_id_is_rejected(rsps: responses.RequestsMock, answer: Any) -> None:
    rsps.post(RUN_URL, json=answer)

    with pytest.raises(ExecutorRejected, match="without a job id"):
        make_executor().submit(PROMPT, "job-1")


@pytest.mark.parametrize("bad_id", ["../../x", "a/b", "id?x=1", "a" * 129])
def test_submit_refuses_a_job_id_unfit_for_a_url(rsps: responses.RequestsMock, bad_id: str) -> None:
    rsps.post(RUN_URL, json={"id": bad_id, "status": "IN_QUEUE"})

    with pytest.raises(ExecutorRejected, match=r"job id .* is invalid"):
        make_executor().submit(PROMPT, "job-1")


def test_submit_non_json_answer_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.post(RUN_URL, body="<html>gateway</html>", content_type="text/html")

    with pytest.raises(ExecutorUnavailable, match="not JSON"):
        make_executor().submit(PROMPT, "job-1")


def test_submit_over_runpods_payload_limit_is_rejected_before_sending(rsps: responses.RequestsMock) -> None:
    big = {"1": {"class_type": "LoadImage", "inputs": {"image": "x" * (10 * 1024 * 1024)}}}

    with pytest.raises(ExecutorRejected, match="RunPod's limit"):
        make_executor().submit(big, "job-1")
    assert len(rsps.calls) == 0


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("fixture", "state"),
    [
        ("status_in_queue.json", JobStatus.QUEUED),
        ("status_in_progress.json", JobStatus.RUNNING),
        ("status_completed_v5_base64.json", JobStatus.COMPLETED),
        ("status_failed_error.json", JobStatus.FAILED),
        ("status_cancelled.json", JobStatus.CANCELLED),
        ("status_timed_out.json", JobStatus.TIMED_OUT),
    ],
)
def test_every_runpod_status_maps(
    rsps: responses.RequestsMock, executor: RunPodExecutor, fixture: str, state: JobStatus
) -> None:
    rsps.get(
        STATUS_URL,
        json=load(fixture),
        match=[responses.matchers.header_matcher({"Authorization": f"Bearer {API_KEY}"})],
    )

    status = executor.status(JOB, submitted_at=0.0)

    assert status.state is state
    assert (status.error is not None) is (state in (JobStatus.FAILED, JobStatus.TIMED_OUT))


def test_pending_statuses_carry_no_message(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_in_queue.json"))
    rsps.get(STATUS_URL, json=load("status_in_progress.json"))

    queued, running = executor.status(JOB), executor.status(JOB)

    assert (queued.message, running.message, running.progress) == (None, None, None)


def test_in_progress_string_output_is_the_message(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_in_progress_message.json"))

    status = executor.status(JOB)

    assert status.state is JobStatus.RUNNING
    assert status.message == "sampling 12/20"


def test_in_progress_progress_dict_becomes_progress(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(
        STATUS_URL,
        json={
            "id": JOB,
            "status": "IN_PROGRESS",
            "output": {"message": "sampling", "progress": 12, "total": 20},
        },
    )

    status = executor.status(JOB)

    assert status.message == "sampling"
    assert status.progress is not None
    assert (status.progress.value, status.progress.max) == (12, 20)


def test_timed_out_explains_itself(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_timed_out.json"))

    status = executor.status(JOB)

    assert status.error is not None
    assert "TIMED_OUT" in status.error


def test_unknown_status_fails_naming_it(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json={"id": JOB, "status": "IN_LIMBO"})

    status = executor.status(JOB)

    assert status.state is JobStatus.FAILED
    assert status.error is not None
    assert "IN_LIMBO" in status.error


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("status_failed_error.json", "Workflow validation failed"),
        (
            "status_failed_output_errors.json",
            "ComfyUI execution error: KSampler: Expected all tensors to be on the same device",
        ),
        ("status_failed_details.json", "Node 3 (KSampler): Value -1 smaller than min of 1: steps"),
        (
            "status_failed_error_and_details.json",
            "Workflow validation failed: Node 3 (KSampler): Value -1 smaller than min of 1: steps",
        ),
        ("status_failed_empty.json", "RunPod job FAILED"),
        ("status_failed_sdk_error.json", "RuntimeError: CUDA out of memory"),
    ],
)
def test_failed_error_text(rsps: responses.RequestsMock, executor: RunPodExecutor, fixture: str, expected: str) -> None:
    rsps.get(STATUS_URL, json=load(fixture))

    status = executor.status(JOB)

    assert status.state is JobStatus.FAILED
    assert status.error == expected


def test_sdk_error_leaves_the_traceback_out(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_failed_sdk_error.json"))

    assert "Traceback" not in (executor.status(JOB).error or "")


def test_completed_with_worker_error_is_failed(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v4_error.json"))
    rsps.get(STATUS_URL, json=load("status_completed_v4_error.json"))

    status = executor.status(JOB)

    assert status.state is JobStatus.FAILED
    assert status.error is not None
    assert "does not exist in the specified output folder" in status.error
    assert executor.outputs(JOB) == []  # the message is an error text, never decoded as an image


def test_completed_warnings_surface_as_message(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v5_warnings.json"))

    status = executor.status(JOB)

    assert status.state is JobStatus.COMPLETED
    assert status.error is None
    assert status.message is not None
    assert "ComfyUI_00002_.png: HTTP 404" in status.message


def test_status_404_is_failed_expired(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, status=404, json={"error": "job not found"})

    status = executor.status(JOB, submitted_at=1.0)

    assert status.state is JobStatus.FAILED
    assert status.error is not None
    assert "expired or unknown" in status.error
    assert JOB in status.error


def test_status_retries_429_once_then_succeeds(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, status=429, headers={"Retry-After": "0"})
    rsps.get(STATUS_URL, json=load("status_in_queue.json"))

    assert executor.status(JOB).state is JobStatus.QUEUED
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("code", [502, 503, 504])
def test_status_5xx_after_retries_is_unavailable(
    rsps: responses.RequestsMock, executor: RunPodExecutor, code: int
) -> None:
    rsps.get(STATUS_URL, status=code)

    with pytest.raises(ExecutorUnavailable, match=f"HTTP {code}"):
        executor.status(JOB)
    assert len(rsps.calls) == RETRIES + 1


def test_status_429_after_retries_is_unavailable(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, status=429)

    with pytest.raises(ExecutorUnavailable, match="rate limited"):
        executor.status(JOB)
    assert len(rsps.calls) == RETRIES + 1


def test_status_connection_error_is_unavailable(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, body=requests.ConnectTimeout("timed out"))

    with pytest.raises(ExecutorUnavailable, match="could not be reached"):
        executor.status(JOB)


def test_status_without_status_field_is_unavailable(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json={"id": JOB})

    with pytest.raises(ExecutorUnavailable, match="without a status"):
        executor.status(JOB)


@pytest.mark.parametrize("bad_id", ["../run", "a/b", "", "x y", "%2e%2e"])
def test_job_ids_are_checked_before_any_call(
    rsps: responses.RequestsMock, executor: RunPodExecutor, bad_id: str
) -> None:
    for call in (executor.status, executor.outputs, executor.cancel):
        with pytest.raises(ExecutorRejected, match="job id"):
            call(bad_id)
    assert len(rsps.calls) == 0


# --------------------------------------------------------------------------- outputs


def test_outputs_v5_base64(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v5_base64.json"))

    [image] = executor.outputs(JOB)

    assert image.data == PNG
    assert image.url is None
    assert (image.filename, image.content_type, image.kind) == ("ComfyUI_00001_.png", "image/png", "image")
    assert (image.node_id, image.output_name) == ("runpod", "images")
    assert len(rsps.calls) == 1  # one status fetch


def test_outputs_v5_s3_url(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    body = load("status_completed_v5_s3_url.json")
    rsps.get(STATUS_URL, json=body)

    [image] = executor.outputs(JOB)

    assert image.data is None
    assert image.url == body["output"]["images"][0]["data"]
    assert (image.filename, image.content_type) == ("ComfyUI_00001_.png", "image/png")


def test_outputs_v5_warnings_do_not_fail(
    rsps: responses.RequestsMock, executor: RunPodExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v5_warnings.json"))

    with caplog.at_level(logging.WARNING, logger="comfyroute.executors.runpod"):
        files = executor.outputs(JOB)

    assert [f.data for f in files] == [PNG]
    assert "ComfyUI_00002_.png" in caplog.text


def test_outputs_v5_no_images_is_empty(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v5_no_images.json"))

    assert executor.outputs(JOB) == []


def test_outputs_v4_data_uri(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v4_data_uri.json"))

    [image] = executor.outputs(JOB)

    assert image.data == PNG
    assert (image.filename, image.content_type) == ("output.png", "image/png")


def test_outputs_v4_bare_base64(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v4_base64.json"))

    [image] = executor.outputs(JOB)

    assert image.data == PNG
    assert (image.filename, image.content_type) == ("output.png", "image/png")


def test_outputs_v4_url(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    body = load("status_completed_v4_s3_url.json")
    rsps.get(STATUS_URL, json=body)

    [image] = executor.outputs(JOB)

    assert image.data is None
    assert image.url == body["output"]["message"]
    assert image.filename == f"{JOB}.png"
    assert image.content_type == "image/png"


def test_outputs_data_uri_type_names_the_file(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    jpeg = b"\xff\xd8\xff\xe0fakejpeg"
    message = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    rsps.get(
        STATUS_URL,
        json={"id": JOB, "status": "COMPLETED", "output": {"status": "success", "message": message}},
    )

    [image] = executor.outputs(JOB)

    assert image.data == jpeg
    assert image.content_type == "image/jpeg"
    assert image.filename == "output.jpg"


def test_outputs_v5_data_uri_prefix_is_stripped(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    data = "data:image/webp;base64," + base64.b64encode(b"RIFFwebp").decode()
    rsps.get(
        STATUS_URL,
        json={
            "id": JOB,
            "status": "COMPLETED",
            "output": {"images": [{"filename": "a.webp", "type": "base64", "data": data}]},
        },
    )

    [image] = executor.outputs(JOB)

    assert image.data == b"RIFFwebp"
    assert image.content_type == "image/webp"


def test_outputs_invalid_base64_names_the_file(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(
        STATUS_URL,
        json={
            "id": JOB,
            "status": "COMPLETED",
            "output": {"images": [{"filename": "ComfyUI_00007_.png", "type": "base64", "data": "not*base64!"}]},
        },
    )

    with pytest.raises(ExecutorRejected, match=r"'ComfyUI_00007_.png' is not valid base64"):
        executor.outputs(JOB)


def test_outputs_respect_the_size_cap(rsps: responses.RequestsMock) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v5_base64.json"))
    executor = make_executor(max_output_bytes=len(PNG) - 1)

    with pytest.raises(ExecutorRejected, match=r"'ComfyUI_00001_.png' is .*bytes; the limit is"):
        executor.outputs(JOB)


def test_outputs_exactly_at_the_cap_pass(rsps: responses.RequestsMock) -> None:
    rsps.get(STATUS_URL, json=load("status_completed_v5_base64.json"))

    [image] = make_executor(max_output_bytes=len(PNG)).outputs(JOB)

    assert image.size == len(PNG)


def test_outputs_filenames_keep_only_the_last_path_part(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    data = base64.b64encode(b"img").decode()
    images = [
        {"filename": "../../etc/passwd.png", "type": "base64", "data": data},
        {"filename": "", "type": "base64", "data": data},
    ]
    rsps.get(STATUS_URL, json={"id": JOB, "status": "COMPLETED", "output": {"images": images}})

    files = executor.outputs(JOB)

    assert [f.filename for f in files] == ["passwd.png", "output_1.png"]


def test_outputs_of_failed_job_are_empty(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_failed_error.json"))

    assert executor.outputs(JOB) == []


def test_outputs_of_running_job_are_refused(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, json=load("status_in_progress.json"))

    with pytest.raises(ExecutorRejected, match="IN_PROGRESS"):
        executor.outputs(JOB)


def test_outputs_of_expired_job_are_refused(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.get(STATUS_URL, status=404)

    with pytest.raises(ExecutorRejected, match="expired or unknown"):
        executor.outputs(JOB)


# --------------------------------------------------------------------------- cancel


def test_cancel_posts_to_cancel(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.post(
        CANCEL_URL,
        json=load("cancel_ok.json"),
        match=[responses.matchers.header_matcher({"Authorization": f"Bearer {API_KEY}"})],
    )

    executor.cancel(JOB)

    assert len(rsps.calls) == 1


def test_cancel_unknown_job_is_a_no_op(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.post(CANCEL_URL, status=404, json={"error": "job not found"})

    executor.cancel(JOB)

    assert len(rsps.calls) == 1


@pytest.mark.parametrize("code", [400, 401])
def test_cancel_refusals_are_logged_not_raised(
    rsps: responses.RequestsMock, executor: RunPodExecutor, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    rsps.post(CANCEL_URL, status=code, json={"error": f"job already completed {API_KEY}"})

    with caplog.at_level(logging.WARNING, logger="comfyroute.executors.runpod"):
        executor.cancel(JOB)

    assert f"HTTP {code}" in caplog.text
    assert_no_key(caplog.text)


def test_cancel_unavailable_propagates(rsps: responses.RequestsMock, executor: RunPodExecutor) -> None:
    rsps.post(CANCEL_URL, status=503)

    with pytest.raises(ExecutorUnavailable):
        executor.cancel(JOB)
    assert len(rsps.calls) == RETRIES + 1


# --------------------------------------------------------------------------- construction, secrets


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "a" * 65, "a b", "ep?x=1", "ep%2F", " ep"])
def test_bad_endpoint_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="endpoint id"):
        RunPodExecutor(API_KEY, bad, base_url=BASE)


def test_longest_endpoint_id_is_accepted() -> None:
    assert RunPodExecutor(API_KEY, "a" * 64, base_url=BASE).endpoint_id == "a" * 64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "ftp://runpod.test"}, "http"),
        ({"base_url": "runpod.test/v2"}, "http"),
        ({"execution_timeout_ms": 1_000}, "execution_timeout_ms"),
        ({"ttl_ms": 0}, "ttl_ms"),
        ({"max_output_bytes": 0}, "max_output_bytes"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RunPodExecutor(API_KEY, ENDPOINT, **kwargs)


def test_empty_api_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="RUNPOD_API_KEY"):
        RunPodExecutor("  ", ENDPOINT)


def test_is_an_executor() -> None:
    executor = RunPodExecutor(API_KEY, ENDPOINT)
    assert isinstance(executor, Executor)
    assert executor.kind is ExecutorKind.RUNPOD


def test_key_is_not_in_repr_or_attributes() -> None:
    executor = RunPodExecutor(API_KEY, ENDPOINT)

    assert_no_key(repr(executor))
    assert_no_key(str(executor))
    assert_no_key(repr(vars(executor)))
    assert "ep_123" in repr(executor)


def test_key_is_in_no_raised_error(rsps: responses.RequestsMock) -> None:
    echo = {"error": f"key {API_KEY} refused"}
    rsps.post(RUN_URL, status=401, json=echo)
    rsps.post(RUN_URL, status=400, json=echo)
    rsps.post(RUN_URL, status=500, json=echo)
    rsps.post(RUN_URL, body=requests.ConnectionError(f"boom {API_KEY}"))
    rsps.post(RUN_URL, json={"detail": API_KEY})
    rsps.get(STATUS_URL, status=500, json=echo)
    rsps.get(STATUS_URL, body=f"<p>{API_KEY}</p>")
    executor = make_executor()

    errors: list[ExecutorError] = []
    for _ in range(5):
        with pytest.raises(ExecutorError) as info:
            executor.submit(PROMPT, "job-1")
        errors.append(info.value)
    for _ in range(2):
        with pytest.raises(ExecutorError) as info:
            executor.status(JOB)
        errors.append(info.value)

    assert len(errors) == 7
    for err in errors:
        assert_no_key(str(err))
        assert_no_key(repr(err))


# --------------------------------------------------------------------------- a real loopback server


class _FakeRunPod(http.server.BaseHTTPRequestHandler):
    """Answers /run with 429 (Retry-After: 0) once, then like CONTRACT.md; records each call."""

    calls: ClassVar[list[tuple[str, str, str | None]]] = []

    def _answer(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.calls.append(("POST", self.path, self.headers.get("Authorization")))
        if sum(1 for c in self.calls if c[0] == "POST") == 1:
            self._answer(429, {"error": "slow down"}, {"Retry-After": "0"})
        else:
            self._answer(200, load("run_ok.json"))

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, self.headers.get("Authorization")))
        self._answer(200, load("status_completed_v4_data_uri.json"))

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_runpod() -> Iterator[str]:
    _FakeRunPod.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeRunPod)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_against_a_loopback_server(fake_runpod: str) -> None:
    executor = make_executor(base_url=fake_runpod)

    job = executor.submit(PROMPT, "job-1")
    [image] = executor.outputs(job)

    assert image.data == PNG
    assert [c[:2] for c in _FakeRunPod.calls] == [
        ("POST", f"/v2/{ENDPOINT}/run"),
        ("POST", f"/v2/{ENDPOINT}/run"),
        ("GET", f"/v2/{ENDPOINT}/status/{JOB}"),
    ]
    assert {c[2] for c in _FakeRunPod.calls} == {f"Bearer {API_KEY}"}
