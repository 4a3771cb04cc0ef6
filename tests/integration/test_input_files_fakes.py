"""Input files through the executors against the loopback fakes: an uploaded PNG goes through
LoadImage -> ImageInvert -> SaveImage and exactly its inverted pixels come back, on the fake
ComfyUI (per-job subfolder) and on the fake RunPod worker-comfyui (input.images)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fakes import FakeComfyUI, FakeRunPod
from support.png import decode_rgb, encode_rgb, gradient, inverted

from comfyroute.executors.base import ExecutorRejected, ExecutorStatus
from comfyroute.executors.comfyui import ComfyUIExecutor
from comfyroute.executors.inputs import InputFile
from comfyroute.executors.runpod import RunPodExecutor
from comfyroute.http import make_session
from comfyroute.protocol import JobStatus

W, H = 16, 12
PROMPT: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inverted"}},
}


def png_input(seed: int, name: str = "input.png") -> tuple[InputFile, bytes]:
    rgb = gradient(W, H, seed)
    return InputFile(name=name, data=encode_rgb(W, H, rgb), content_type="image/png"), rgb


def wait(executor: Any, executor_job_id: str, timeout: float = 10.0) -> ExecutorStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: ExecutorStatus = executor.status(executor_job_id, submitted_at=time.time())
        if status.state.terminal:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {executor_job_id} did not finish in {timeout} s")


def output_pixels(executor: Any, executor_job_id: str) -> bytes:
    (image,) = executor.outputs(executor_job_id)
    assert image.content_type == "image/png"
    assert image.data is not None
    width, height, rgb = decode_rgb(image.data)
    assert (width, height) == (W, H)
    return rgb


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(run_seconds=0.05) as server:
        yield server


@pytest.fixture
def comfy_executor(comfy: FakeComfyUI) -> ComfyUIExecutor:
    return ComfyUIExecutor(comfy.addr, progress_peek_seconds=0)


def test_comfyui_returns_exactly_the_inverted_pixels_of_the_uploaded_png(
    comfy: FakeComfyUI, comfy_executor: ComfyUIExecutor
) -> None:
    file, rgb = png_input(seed=1)
    prompt_id = comfy_executor.submit_with_files(PROMPT, "pixels-1", [file])
    assert wait(comfy_executor, prompt_id).state is JobStatus.COMPLETED
    assert output_pixels(comfy_executor, prompt_id) == inverted(rgb)
    # The file sits in the job's own subfolder, and the queued prompt names it there.
    assert comfy.file_bytes("input.png", "comfyroute/pixels-1", folder="input") == file.data
    assert comfy.submitted[-1]["1"]["inputs"]["image"] == "comfyroute/pixels-1/input.png"


def test_two_jobs_sending_the_same_name_each_get_their_own_file_back(
    comfy: FakeComfyUI, comfy_executor: ComfyUIExecutor
) -> None:
    jobs = {f"same-name-{i}": png_input(seed=10 + i) for i in range(3)}

    def run(job_id: str) -> bytes:
        file, _ = jobs[job_id]
        prompt_id = comfy_executor.submit_with_files(PROMPT, job_id, [file])
        assert wait(comfy_executor, prompt_id).state is JobStatus.COMPLETED
        return output_pixels(comfy_executor, prompt_id)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(jobs, pool.map(run, jobs), strict=True))
    for job_id, (_, rgb) in jobs.items():
        assert results[job_id] == inverted(rgb), job_id
    assert len({bytes(r) for r in results.values()}) == 3


def test_comfyui_behind_a_gate_refuses_the_upload_naming_the_file() -> None:
    with FakeComfyUI(required_headers={"CF-Access-Client-Secret": "gate-secret"}) as gated:
        executor = ComfyUIExecutor(gated.addr, progress_peek_seconds=0)
        file, _ = png_input(seed=2, name="photo.png")
        with pytest.raises(ExecutorRejected, match="401 to POST /upload/image for input file 'photo.png'"):
            executor.submit_with_files(PROMPT, "gated-1", [file])
        assert gated.submitted == []


@pytest.fixture(scope="module")
def runpod(comfy: FakeComfyUI) -> Iterator[FakeRunPod]:
    with FakeRunPod(comfy=comfy, queue_seconds=0.02, run_seconds=0.05) as server:
        yield server


@pytest.fixture
def runpod_executor(runpod: FakeRunPod) -> RunPodExecutor:
    return RunPodExecutor("test-key", "ep-inputs", base_url=runpod.url, session=make_session(retry_post=True))


def test_runpod_returns_exactly_the_inverted_pixels_of_the_sent_png(
    runpod: FakeRunPod, runpod_executor: RunPodExecutor
) -> None:
    prompt = {**PROMPT, "1": {"class_type": "LoadImage", "inputs": {"image": "rp_input.png"}}}
    file, rgb = png_input(seed=3, name="rp_input.png")
    job = runpod_executor.submit_with_files(prompt, "rp-pixels-1", [file])
    assert wait(runpod_executor, job).state is JobStatus.COMPLETED
    assert output_pixels(runpod_executor, job) == inverted(rgb)
    assert runpod.runs[-1]["input"]["images"][0]["name"] == "rp_input.png"


def test_runpod_on_its_own_worker_engine_inverts_too() -> None:
    with FakeRunPod(queue_seconds=0.02, run_seconds=0.05) as alone:
        executor = RunPodExecutor("test-key", "ep-alone", base_url=alone.url)
        file, rgb = png_input(seed=4)
        job = executor.submit_with_files(PROMPT, "rp-alone-1", [file])
        assert wait(executor, job).state is JobStatus.COMPLETED
        assert output_pixels(executor, job) == inverted(rgb)


def test_runpod_over_the_run_limit_is_refused_before_anything_is_sent(
    runpod: FakeRunPod, runpod_executor: RunPodExecutor
) -> None:
    before = len(runpod.runs)
    big = InputFile(name="huge.png", data=b"\0" * (8 * 1024 * 1024), content_type="image/png")
    with pytest.raises(ExecutorRejected, match=r"huge.png \(8.0 MB\).*RunPod accepts at most 10485760 bytes"):
        runpod_executor.submit_with_files(PROMPT, "rp-big-1", [big])
    assert len(runpod.runs) == before
