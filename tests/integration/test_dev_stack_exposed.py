"""`comfyroute dev --host` beyond loopback: the Management API on the dev port refuses what the
stack did not sign (a forged job_update from the network), while the stack's own handlers —
which sign with its key, as boto3 always does — keep pushing to their clients.

The stack listens on 127.0.0.1 with ``signed_management=True`` (what a non-loopback ``--host``
turns on), so the test opens no port to the network."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from fakes.comfyui_server import FakeComfyUI
from websockets.sync.client import connect

from comfyroute_tools.dev.stack import DevStack, is_loopback

TIMEOUT = 10.0
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "exposed"}},
}


@pytest.fixture(scope="module")
def exposed() -> Iterator[DevStack]:
    with (
        FakeComfyUI(run_seconds=0.05) as comfy,
        DevStack("127.0.0.1", 0, comfyui_addr=comfy.addr, handler_log_level="WARNING", signed_management=True) as stack,
    ):
        yield stack


def local_url(stack: DevStack) -> str:
    return stack.http_url


def management(stack: DevStack, secret: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=local_url(stack),
        region_name="us-east-1",
        aws_access_key_id=stack.management_key.access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_signed_management_calls_are_required_exactly_beyond_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.20")
    assert not is_loopback("devbox.lan")
    # DevStack decides from --host unless told (constructing starts nothing).
    assert DevStack("0.0.0.0", 0).signed_management is True
    assert DevStack("192.168.1.20", 0).signed_management is True
    assert DevStack("127.0.0.1", 0).signed_management is False


def test_forged_and_unsigned_management_calls_are_refused(exposed: DevStack) -> None:
    with connect(f"{exposed.ws_url}/?token={exposed.token}", open_timeout=TIMEOUT) as ws:
        conn_id = next(iter(exposed.gateway.connections))  # type: ignore[union-attr]
        forged = json.dumps({"type": "job_update", "job_id": "j1", "status": "completed"})
        unsigned = requests.post(f"{local_url(exposed)}/@connections/{conn_id}", data=forged, timeout=TIMEOUT)
        assert unsigned.status_code == 403
        assert unsigned.headers["x-amzn-ErrorType"] == "ForbiddenException"
        with pytest.raises(ClientError) as err:
            management(exposed, "guessed-secret").post_to_connection(ConnectionId=conn_id, Data=forged.encode())
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError):
            management(exposed, "guessed-secret").delete_connection(ConnectionId=conn_id)
        assert requests.get(f"{local_url(exposed)}/@connections/{conn_id}", timeout=TIMEOUT).status_code == 403
        # Nothing reached the client, and the socket is still open.
        ws.send(json.dumps({"command": "ping"}))
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "pong"
        # The stack's own key is let through.
        management(exposed, exposed.management_key.secret_key).post_to_connection(
            ConnectionId=conn_id, Data=b'{"type":"pong"}'
        )
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "pong"


def test_the_stacks_own_handlers_still_push_a_whole_job(exposed: DevStack) -> None:
    with connect(f"{exposed.ws_url}/?token={exposed.token}", open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"command": "run_job", "data": {"job_id": "exposed-1", "prompt": PROMPT}}))
        statuses: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "completed" not in statuses:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            if message["type"] == "job_update":
                statuses.append(message["status"])
                assert message["status"] not in {"failed", "timed_out"}, message
        assert statuses[0] == "queued"
        assert statuses[-1] == "completed"
