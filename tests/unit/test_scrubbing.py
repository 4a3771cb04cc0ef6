"""Secrets scrubbed by value from every outbound text: what an executor echoes (a ComfyUI
execution_error quoting the tunnel header, a RunPod FAILED error quoting the bearer key), the
log lines, and the messages the pusher sends; the default secret's ComfyUI stays unnamed."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import responses

from comfyroute.awslambda.instrument import ScrubbingFormatter
from comfyroute.config import Config
from comfyroute.credentials import Credentials
from comfyroute.executors.base import ExecutorRejected, ExecutorStatus, ExecutorUnavailable
from comfyroute.executors.factory import build_executor
from comfyroute.executors.scrubbed import ScrubbedExecutor
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.text import REDACTED, remember_secrets, scrub

TUNNEL = "cf-tunnel-token-5b8e1d2a"
KEY = "rpa_LIVE_KEY_71c0ffee42"
COMFY = "http://127.0.0.1:8188"
RUNPOD = "https://api.runpod.ai/v2"


def user_credentials(**extra: Any) -> Credentials:
    return Credentials.model_validate(
        {"COMFYUI_ADDR": COMFY, "COMFYUI_HEADERS": {"X-Tunnel-Token": TUNNEL}, "RUNPOD_API_KEY": KEY, **extra}
    )


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_a_comfyui_execution_error_echoing_the_tunnel_header_reaches_no_one(rsps) -> None:
    executor = build_executor(ExecutorKind.LOCAL, user_credentials(), None, Config())
    rsps.get(f"{COMFY}/queue", json={"queue_running": [], "queue_pending": []})
    entry = {
        "outputs": {},
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [
                [
                    "execution_error",
                    {
                        "node_id": "4",
                        "node_type": "LoadImageURL",
                        "exception_type": "HTTPError",
                        "exception_message": f"403 for request with headers {{'X-Tunnel-Token': '{TUNNEL}'}}",
                    },
                ]
            ],
        },
    }
    rsps.get(f"{COMFY}/history/p1", json={"p1": entry})
    status = executor.status("p1")
    assert status.state is JobStatus.FAILED
    assert TUNNEL not in (status.error or "")
    assert REDACTED in (status.error or "")
    assert "LoadImageURL" in (status.error or "")


def test_a_runpod_failed_error_echoing_the_bearer_key_reaches_no_one(rsps) -> None:
    executor = build_executor(ExecutorKind.RUNPOD, user_credentials(), "ep_1", Config())
    echoed = f"worker crashed: request had Authorization: Bearer {KEY}"
    rsps.get(f"{RUNPOD}/ep_1/status/rp-1", json={"id": "rp-1", "status": "FAILED", "error": echoed})
    status = executor.status("rp-1")
    assert status.state is JobStatus.FAILED
    assert KEY not in (status.error or "")
    assert "Authorization: Bearer [redacted]" in (status.error or "")


class Echoing:
    """An executor that quotes the secret back in everything it says."""

    kind = ExecutorKind.LOCAL

    def submit(self, prompt: dict[str, Any], job_id: str) -> str:
        raise ExecutorRejected(f"bad request with header {TUNNEL}")

    def status(self, executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        return ExecutorStatus(state=JobStatus.RUNNING, message=f"running with {TUNNEL}")

    def outputs(self, executor_job_id: str) -> list[Any]:
        return []

    def cancel(self, executor_job_id: str) -> None:
        raise ExecutorRejected(f"cannot cancel {TUNNEL}")


def test_every_text_an_executor_hands_over_is_scrubbed_and_exceptions_keep_their_class() -> None:
    executor = ScrubbedExecutor(Echoing(), [TUNNEL])
    with pytest.raises(ExecutorRejected) as caught:
        executor.submit({}, "j1")
    assert str(caught.value) == "bad request with header [redacted]"
    assert caught.value.__cause__ is None
    assert executor.status("x").message == "running with [redacted]"
    with pytest.raises(ExecutorRejected, match=r"\[redacted\]$"):
        executor.cancel("x")


def test_log_lines_are_scrubbed_of_every_secret_seen_also_json_escaped() -> None:
    tricky = 'pa"ss\\word-1234'
    remember_secrets([TUNNEL, tricky])
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed: %s", (f"{TUNNEL} and {tricky}",), None)
    line = ScrubbingFormatter().format(record)
    assert TUNNEL not in line
    assert json.dumps(tricky)[1:-1] not in line
    assert json.loads(line)["message"] == "failed: [redacted] and [redacted]"
    assert scrub(f'{{"error": "{TUNNEL}"}}') == '{"error": "[redacted]"}'


def test_the_default_secrets_comfyui_is_the_shared_comfyui_and_its_address_is_scrubbed(rsps) -> None:
    shared = Credentials.model_validate({"COMFYUI_ADDR": "https://gpu.internal.example/secret-path"}).model_copy(
        update={"shared": True}
    )
    executor = build_executor(ExecutorKind.LOCAL, shared, None, Config())
    rsps.get(
        "https://gpu.internal.example/secret-path/queue",
        status=502,
        body="bad gateway at https://gpu.internal.example/secret-path",
    )
    with pytest.raises(ExecutorUnavailable) as caught:
        executor.status("p1")
    text = str(caught.value)
    assert text.startswith("the shared ComfyUI")
    assert "gpu.internal.example" not in text
    assert "secret-path" not in text
