"""Input files on the executors (comfyroute.executors.inputs and the executors' submit_with_files):
the pure rules, then ComfyUI's /upload/image and RunPod's input.images against `responses`."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import HTTP
from typing import Any

import pytest
import requests
import responses
from pydantic import ValidationError
from support.recordings import body as recorded_body

from comfyroute.executors.base import ExecutorRejected, ExecutorUnavailable
from comfyroute.executors.comfyui import ComfyUIExecutor
from comfyroute.executors.inputs import (
    InputFile,
    check_input_name,
    describe_sizes,
    human_bytes,
    job_input_subfolder,
    rewrite_file_references,
    runpod_images,
)
from comfyroute.executors.runpod import MAX_RUN_PAYLOAD_BYTES, RunPodExecutor
from comfyroute.http import make_session

BASE = "http://127.0.0.1:8188"
SECRET = "cf-secret-7d1e9b0c"
HEADERS = {"CF-Access-Client-Secret": SECRET}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01\x02" * 50
JOB = "job-1"
PROMPT: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "input.png"}},
}
RUNPOD_BASE = "https://runpod.test/v2"
RUNPOD_KEY = "rpa_SECRET_input_files"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def sent(call: Any) -> bytes:
    body = call.request.body
    assert isinstance(body, bytes)
    return body


def multipart_fields(call: Any) -> dict[str, tuple[str | None, bytes]]:
    ctype = call.request.headers["Content-Type"]
    message = message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + sent(call), policy=HTTP)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        fields[str(part.get_param("name", header="content-disposition"))] = (part.get_filename(), payload)
    return fields


# --------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize("name", ["input.png", "my photo (1).jpg", "_mask.png", "a+b=c@d,e.wav", "x" * 128])
def test_plain_file_names_are_accepted(name: str) -> None:
    assert check_input_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".hidden.png", "../etc/passwd", "sub/input.png", "a\\b.png", "trailing.", "x" * 129, " lead", 7]
)
def test_names_with_paths_or_odd_characters_are_refused(name: Any) -> None:
    with pytest.raises(ValueError, match="is not allowed"):
        check_input_name(name)
    if isinstance(name, str):
        with pytest.raises(ValidationError):
            InputFile(name=name, data=b"x")


def test_input_file_keeps_bytes_out_of_its_repr() -> None:
    file = InputFile(name="input.png", data=b"secret-pixels", content_type="image/png")
    assert file.size == 13
    assert "secret-pixels" not in repr(file)


def test_references_to_a_name_are_rewritten_and_nothing_else() -> None:
    prompt = copy.deepcopy(PROMPT)
    prompt["4"] = {"class_type": "LoadImage", "inputs": {"image": "input.png [input]"}}
    prompt["5"] = {"class_type": "LoadImage", "inputs": {"image": "input.png [output]"}}
    prompt["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo like input.png"}}
    original = copy.deepcopy(prompt)
    rewritten, unused = rewrite_file_references(prompt, {"input.png": "comfyroute/job-1/input.png", "mask.png": "m"})
    assert rewritten["1"]["inputs"]["image"] == "comfyroute/job-1/input.png"
    assert rewritten["4"]["inputs"]["image"] == "comfyroute/job-1/input.png [input]"
    assert rewritten["5"]["inputs"]["image"] == "input.png [output]"  # another folder
    assert rewritten["6"]["inputs"]["text"] == "a photo like input.png"
    assert rewritten["2"]["inputs"]["image"] == ["1", 0]
    # Any input that is exactly the name is a reference, whatever the node (here a prefix).
    assert rewritten["3"]["inputs"]["filename_prefix"] == "comfyroute/job-1/input.png"
    assert rewritten["3"]["class_type"] == "SaveImage"
    assert unused == ["mask.png"]
    assert prompt == original


def test_two_jobs_get_their_own_subfolders() -> None:
    one, _ = rewrite_file_references(PROMPT, {"input.png": f"{job_input_subfolder('job-a')}/input.png"})
    two, _ = rewrite_file_references(PROMPT, {"input.png": f"{job_input_subfolder('job-b')}/input.png"})
    assert one["1"]["inputs"]["image"] == "comfyroute/job-a/input.png"
    assert two["1"]["inputs"]["image"] == "comfyroute/job-b/input.png"
    with pytest.raises(ValueError, match="cannot name an input folder"):
        job_input_subfolder("../up")


def test_runpod_images_are_bare_base64_under_their_names() -> None:
    images = runpod_images([InputFile(name="a.png", data=PNG), InputFile(name="b.wav", data=b"RIFF")])
    assert images == [
        {"name": "a.png", "image": base64.b64encode(PNG).decode()},
        {"name": "b.wav", "image": base64.b64encode(b"RIFF").decode()},
    ]
    with pytest.raises(ValueError, match="given more than once: a.png"):
        runpod_images([InputFile(name="a.png", data=b"1"), InputFile(name="a.png", data=b"2")])


def test_sizes_read_like_runpods_limit() -> None:
    assert human_bytes(512) == "512 bytes"
    assert human_bytes(10 * 1024 * 1024) == "10.0 MB"
    assert describe_sizes([InputFile(name="a.png", data=b"x" * 2048)]) == "a.png (2.0 KB)"


# --------------------------------------------------------------------------- ComfyUI


def comfy() -> ComfyUIExecutor:
    return ComfyUIExecutor(BASE, HEADERS, session=make_session(retries=0))


def test_upload_inputs_posts_each_file_into_the_jobs_subfolder(rsps: responses.RequestsMock) -> None:
    def stored(request: Any) -> tuple[int, dict[str, str], str]:
        fields = multipart_fields(type("Call", (), {"request": request}))
        name = fields["image"][0]
        return 200, {}, json.dumps({"name": name, "subfolder": fields["subfolder"][1].decode(), "type": "input"})

    rsps.add_callback(responses.POST, f"{BASE}/upload/image", callback=stored)
    refs = comfy().upload_inputs(
        [InputFile(name="input.png", data=PNG, content_type="image/png"), InputFile(name="mask.png", data=b"m")],
        JOB,
    )
    assert refs == {"input.png": "comfyroute/job-1/input.png", "mask.png": "comfyroute/job-1/mask.png"}
    first = rsps.calls[0]
    fields = multipart_fields(first)
    assert fields["image"] == ("input.png", PNG)
    assert fields["subfolder"][1] == b"comfyroute/job-1"
    assert fields["type"][1] == b"input"
    assert fields["overwrite"][1] == b"true"
    assert first.request.headers["CF-Access-Client-Secret"] == SECRET
    assert 'filename="input.png"' in sent(first).decode("latin-1")
    assert "Content-Type: image/png" in sent(first).decode("latin-1")


def test_the_stored_name_comfyui_answers_is_the_one_the_prompt_uses(rsps: responses.RequestsMock) -> None:
    # As recorded (upload_image.json): ComfyUI may store under another name, or at the top level.
    rsps.add(responses.POST, f"{BASE}/upload/image", json=recorded_body("upload_image"))
    refs = comfy().upload_inputs([InputFile(name="input.png", data=PNG)], JOB)
    assert refs == {"input.png": "probe_upload.png"}


def test_submit_with_files_rewrites_the_prompt_it_queues(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST,
        f"{BASE}/upload/image",
        json={"name": "input.png", "subfolder": "comfyroute/job-1", "type": "input"},
    )
    rsps.add(responses.POST, f"{BASE}/prompt", json={"prompt_id": JOB, "number": 1, "node_errors": {}})
    assert comfy().submit_with_files(PROMPT, JOB, [InputFile(name="input.png", data=PNG)]) == JOB
    queued = json.loads(sent(rsps.calls[1]))
    assert queued["prompt"]["1"]["inputs"]["image"] == "comfyroute/job-1/input.png"
    assert queued["prompt_id"] == JOB
    assert PROMPT["1"]["inputs"]["image"] == "input.png"


def test_submit_with_no_files_is_a_plain_submit(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{BASE}/prompt", json={"prompt_id": JOB, "number": 1, "node_errors": {}})
    assert comfy().submit_with_files(PROMPT, JOB, []) == JOB
    assert json.loads(sent(rsps.calls[0]))["prompt"] == PROMPT


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (400, ExecutorRejected, "answered 400 to POST /upload/image for input file 'input.png'"),
        (413, ExecutorRejected, "refused input file 'input.png' (100 bytes) as too large"),
        (401, ExecutorRejected, "answered 401 to POST /upload/image for input file 'input.png'"),
        (502, ExecutorUnavailable, "answered 502 to POST /upload/image for input file 'input.png'"),
    ],
)
def test_a_refused_upload_names_the_file_and_nothing_is_queued(
    rsps: responses.RequestsMock, status: int, kind: type[Exception], words: str
) -> None:
    rsps.add(responses.POST, f"{BASE}/upload/image", status=status, body=f"no {SECRET}")
    with pytest.raises(kind) as err:
        comfy().submit_with_files(PROMPT, JOB, [InputFile(name="input.png", data=PNG[:100].ljust(100, b"."))])
    assert words in str(err.value)
    assert SECRET not in str(err.value)
    assert [c.request.url for c in rsps.calls] == [f"{BASE}/upload/image"]


def test_an_unreachable_comfyui_is_unavailable_naming_the_file(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{BASE}/upload/image", body=requests.ConnectionError("refused"))
    with pytest.raises(ExecutorUnavailable, match=r"/upload/image \(input file 'input.png'\)"):
        comfy().upload_inputs([InputFile(name="input.png", data=PNG)], JOB)


def test_an_answer_without_a_stored_name_is_refused(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{BASE}/upload/image", json={"subfolder": "x"})
    with pytest.raises(ExecutorRejected, match="without the name it stored the file as"):
        comfy().upload_inputs([InputFile(name="input.png", data=PNG)], JOB)


def test_duplicate_names_are_refused_before_any_upload(rsps: responses.RequestsMock) -> None:
    with pytest.raises(ValueError, match="more than once"):
        comfy().upload_inputs([InputFile(name="a.png", data=b"1"), InputFile(name="a.png", data=b"2")], JOB)


# --------------------------------------------------------------------------- RunPod


def runpod() -> RunPodExecutor:
    return RunPodExecutor(RUNPOD_KEY, "ep_1", base_url=RUNPOD_BASE, session=make_session(retry_post=True, retries=0))


def test_runpod_sends_the_files_as_worker_comfyui_images(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{RUNPOD_BASE}/ep_1/run", json={"id": "rp-job-1", "status": "IN_QUEUE"})
    files = [InputFile(name="input.png", data=PNG, content_type="image/png")]
    assert runpod().submit_with_files(PROMPT, JOB, files) == "rp-job-1"
    run = json.loads(sent(rsps.calls[0]))
    assert run["input"]["workflow"] == PROMPT  # worker-comfyui puts images under their names
    assert run["input"]["images"] == [{"name": "input.png", "image": base64.b64encode(PNG).decode()}]
    assert run["policy"]["executionTimeout"] == 600_000


def test_runpod_files_and_a_webhook_go_in_one_run_body(rsps: responses.RequestsMock) -> None:
    # A RunPod job with input files is followed by its webhook like any other (issue 10 + 13).
    rsps.add(responses.POST, f"{RUNPOD_BASE}/ep_1/run", json={"id": "rp-job-1", "status": "IN_QUEUE"})
    hook = "https://callback.test/runpod/callback/j1/s3cr3t"
    files = [InputFile(name="input.png", data=PNG, content_type="image/png")]
    assert runpod().submit_with_files(PROMPT, JOB, files, webhook=hook) == "rp-job-1"
    run = json.loads(sent(rsps.calls[0]))
    assert run["webhook"] == hook
    assert run["input"]["images"] == [{"name": "input.png", "image": base64.b64encode(PNG).decode()}]
    assert runpod().submit_with_files(PROMPT, JOB, [], webhook=hook) == "rp-job-1"
    assert json.loads(sent(rsps.calls[1]))["webhook"] == hook


def test_runpod_refuses_a_body_over_its_limit_before_sending(rsps: responses.RequestsMock) -> None:
    # 8.0 MB of files is 10.7 MB in base64: over RunPod's 10 MB (10,485,760 bytes) /run limit.
    files = [InputFile(name="big.png", data=b"\0" * 5_500_000), InputFile(name="mask.png", data=b"\0" * 2_500_000)]
    with pytest.raises(ExecutorRejected) as err:
        runpod().submit_with_files(PROMPT, JOB, files)
    message = str(err.value)
    assert "big.png (5.2 MB), mask.png (2.4 MB)" in message
    assert f"at most {MAX_RUN_PAYLOAD_BYTES} bytes (10 MB)" in message
    assert len(rsps.calls) == 0


def test_runpod_takes_a_body_just_under_its_limit(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{RUNPOD_BASE}/ep_1/run", json={"id": "rp-job-2", "status": "IN_QUEUE"})
    executor = runpod()
    overhead = len(json.dumps(executor.run_body_with_files(PROMPT, [InputFile(name="a.png", data=b"")])))
    room = (MAX_RUN_PAYLOAD_BYTES - overhead) // 4 * 3
    assert executor.submit_with_files(PROMPT, JOB, [InputFile(name="a.png", data=b"\0" * room)]) == "rp-job-2"
    assert len(sent(rsps.calls[0])) <= MAX_RUN_PAYLOAD_BYTES
