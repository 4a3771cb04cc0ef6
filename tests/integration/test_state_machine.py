"""The real statemachine/job.asl.json, executed by moto, its Poll and Notify tasks dispatched to
our handlers in-process, against a loopback ComfyUI that behaves like the recordings."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from fakes import FakeComfyUI
from support import Stack, load_event, moto_stack
from support.sfn_harness import StateMachineHarness

from comfyroute.aws.outputs import S3Outputs
from comfyroute.awslambda.wiring import get_ports
from comfyroute.executors.base import ExecutorUnavailable
from comfyroute.executors.comfyui import ComfyUIExecutor
from comfyroute.jobs.record import job_key

CONN = "Yf3kGdLhIAMCJMw="
USER = "alice"
EMPTY_INVERT_SAVE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 255}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sfn"}},
}


@dataclasses.dataclass
class Loop:
    stack: Stack
    sfn: StateMachineHarness
    comfy: FakeComfyUI
    ctx: Any

    def submit(self, job_id: str, prompt: dict[str, Any], connection_id: str = CONN) -> str:
        event = load_event("run_job")
        event["requestContext"]["connectionId"] = connection_id
        event["body"] = json.dumps({"command": "run_job", "data": {"job_id": job_id, "prompt": prompt}})
        self.stack.handler("RunJobFunction")(event, self.ctx)
        return job_id

    def send(self, function: str, command: str, job_id: str, connection_id: str = CONN) -> None:
        event = load_event(command)
        event["requestContext"]["connectionId"] = connection_id
        event["body"] = json.dumps({"command": command, "data": {"job_id": job_id}})
        self.stack.handler(function)(event, self.ctx)

    def job(self, job_id: str, user_id: str = USER) -> dict[str, Any]:
        return self.stack.table("JobsTable").get_item(Key={"job_id": job_key(user_id, job_id)})["Item"]

    def finish(self, job_id: str) -> dict[str, Any]:
        return self.sfn.wait(self.job(job_id)["execution_arn"], timeout=60)

    def pushed(self, type_: str | None = None, connection_id: str = CONN) -> list[dict[str, Any]]:
        return self.stack.management.messages(connection_id, type_)

    def stored_keys(self, job_id: str) -> list[str]:
        s3 = boto3.client("s3", region_name="us-east-1")
        listing = s3.list_objects_v2(Bucket=self.stack.plan.buckets[0].name, Prefix=f"jobs/{job_key(USER, job_id)}/")
        return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture
def loop(plan, monkeypatch, lambda_context) -> Iterator[Loop]:
    with (
        FakeComfyUI(run_seconds=0.05) as comfy,
        moto_stack(plan, monkeypatch, execute_state_machine=True) as stack,
    ):
        tasks = {
            "PollFunctionArn": stack.handler("PollFunction"),
            "FollowFunctionArn": stack.handler("FollowFunction"),
            "NotifyFunctionArn": stack.handler("NotifyFunction"),
        }
        with StateMachineHarness(tasks=tasks) as sfn:
            ports = get_ports()
            ports.config = ports.config._replace(state_machine_arn=sfn.state_machine_arn)
            boto3.client("secretsmanager", region_name="us-east-1").create_secret(
                Name=f"{stack.env['SECRETS_PREFIX']}/default", SecretString=json.dumps({"COMFYUI_ADDR": comfy.addr})
            )
            ports.connections.put(CONN, "alice")
            yield Loop(stack=stack, sfn=sfn, comfy=comfy, ctx=lambda_context)


def test_completed_job_delivers_status_and_the_executors_bytes(loop):
    loop.submit("ok-1", EMPTY_INVERT_SAVE)
    assert loop.finish("ok-1")["status"] == "SUCCEEDED"
    job = loop.job("ok-1")
    assert job["status"] == "completed"
    # Followed on ComfyUI's websocket: Follow itself sent the terminal update.
    assert loop.sfn.states_entered(job["execution_arn"]) == ["Route", "Follow", "Next", "Succeeded"]
    assert loop.pushed()[-1]["type"] == "job_update"
    assert loop.pushed("job_update")[-1]["output_count"] == 2
    statuses = [m["status"] for m in loop.pushed("job_update")]
    assert statuses[0] == "queued"
    assert statuses[-1] == "completed"
    outputs = loop.pushed("output_update")
    assert len(outputs) == 2  # batch_size 2
    for out in outputs:
        assert out["node_id"] == "3"
        assert out["node_name"] == "SaveImage"
        served = loop.comfy.file_bytes(out["value"]["filename"])
        assert served is not None
        assert base64.b64decode(out["value"]["data"]) == served
    assert len(loop.stored_keys("ok-1")) == 2


def test_executor_validation_failure_never_starts_a_loop(loop):
    bad = {
        **EMPTY_INVERT_SAVE,
        "1": {**EMPTY_INVERT_SAVE["1"], "inputs": {**EMPTY_INVERT_SAVE["1"]["inputs"], "width": 0}},
    }
    loop.submit("invalid-1", bad)
    job = loop.job("invalid-1")
    assert job["status"] == "failed"
    assert "node 1 (EmptyImage)" in job["error"]
    assert "smaller than min" in job["error"]
    assert "execution_arn" not in job
    assert loop.sfn.calls() == []
    (refusal,) = loop.pushed()
    assert (refusal["type"], refusal["status"], refusal["job_id"]) == ("job_update", "failed", "invalid-1")


def test_runtime_error_ends_the_job_failed_naming_the_node(loop):
    runtime = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "rterr"}},
    }
    loop.submit("rt-1", runtime)
    assert loop.finish("rt-1")["status"] == "SUCCEEDED"  # the loop ended as designed
    job = loop.job("rt-1")
    assert job["status"] == "failed"
    assert "ImageBlur" in job["error"]
    assert "Padding size" in job["error"]
    assert loop.pushed("job_update")[-1]["status"] == "failed"
    assert loop.pushed("output_update") == []


def test_job_past_its_deadline_is_cancelled_on_the_executor_and_timed_out(loop, monkeypatch):
    ports = get_ports()
    ports.config = ports.config._replace(job_timeout_seconds=0)
    loop.comfy.pause()  # the prompt stays pending, as on a busy server
    loop.submit("slow-1", EMPTY_INVERT_SAVE)
    assert loop.finish("slow-1")["status"] == "SUCCEEDED"
    job = loop.job("slow-1")
    assert job["status"] == "timed_out"
    assert "limit" in job["error"]
    assert job_key(USER, "slow-1") in loop.comfy.deletes
    assert loop.pushed("job_update")[-1]["status"] == "timed_out"


def test_cancel_stops_the_loop_and_removes_the_prompt(loop):
    loop.comfy.pause()
    loop.submit("cancel-1", EMPTY_INVERT_SAVE)
    loop.send("CancelJobFunction", "cancel_job", "cancel-1")
    # Either StopExecution lands first (ABORTED) or a poll already under way sees the job
    # cancelled and ends the loop itself (SUCCEEDED): both stop following the job. Rarely
    # (about 1 run in 30) moto itself fails a task that was mid-flight when StopExecution
    # landed, with States.Runtime "'dict' object has no attribute 'region'" - an artifact of
    # moto's interpreter, not of the definition; the job's own record is what matters here.
    desc = loop.finish("cancel-1")
    moto_stop_race = desc["status"] == "FAILED" and desc.get("error") == "States.Runtime"
    assert desc["status"] in {"ABORTED", "SUCCEEDED"} or moto_stop_race, desc
    assert loop.job("cancel-1")["status"] == "cancelled"
    assert job_key(USER, "cancel-1") in loop.comfy.deletes
    loop.comfy.resume()
    assert loop.comfy.wait_idle()
    assert loop.pushed("job_update")[-1]["status"] == "cancelled"
    assert loop.stored_keys("cancel-1") == []


def test_client_gone_mid_job_then_get_job_returns_everything(loop):
    loop.stack.management.gone.add(CONN)
    loop.submit("gone-1", EMPTY_INVERT_SAVE)
    assert loop.finish("gone-1")["status"] == "SUCCEEDED"
    assert loop.job("gone-1")["status"] == "completed"
    assert loop.stack.table("ConnectionsTable").get_item(Key={"connection_id": CONN})["Item"]["gone"] is True
    get_ports().connections.put("back-again", "alice")
    loop.send("JobQueriesFunction", "get_job", "gone-1", connection_id="back-again")
    (snapshot,) = loop.pushed("job", "back-again")
    assert snapshot["job"]["status"] == "completed"
    assert len(snapshot["job"]["outputs"]) == 2
    assert all(o["value"]["uri"].startswith("https://") for o in snapshot["job"]["outputs"])


def test_an_unreachable_executor_is_told_at_once_then_the_job_goes_on(loop, monkeypatch):
    real_status = ComfyUIExecutor.status
    failures = {"left": 2}

    def flaky(self, executor_job_id, **kw):
        if failures["left"]:
            failures["left"] -= 1
            raise ExecutorUnavailable("ComfyUI at 127.0.0.1 is unreachable (tunnel restarting)")
        return real_status(self, executor_job_id, **kw)

    monkeypatch.setattr(ComfyUIExecutor, "status", flaky)
    loop.submit("flaky-1", EMPTY_INVERT_SAVE)
    assert loop.finish("flaky-1")["status"] == "SUCCEEDED"
    assert loop.job("flaky-1")["status"] == "completed"
    # No Step Functions Retry of ExecutorUnavailable: Follow records it and the client is told
    # at once, Poll looks again after a wait (5 s), and once ComfyUI answers the job goes back
    # to its websocket.
    sequence = loop.sfn.sequence()
    assert sequence[:2] == ["FollowFunctionArn", "PollFunctionArn"]
    assert not any("!ExecutorUnavailable" in s for s in sequence)
    assert loop.sfn.waits[:1] == [5]
    messages = [m.get("message") or "" for m in loop.pushed("job_update")]
    told = [m for m in messages if m.endswith("cannot be reached; retrying")]
    assert len(told) == 1
    assert loop.pushed("job_update")[-1]["status"] == "completed"


def test_poll_retried_after_storing_half_the_outputs_stores_each_once(loop, monkeypatch):
    # Follow streams files (put_stream), Poll puts them whole (put): the second store fails.
    calls = {"n": 0}

    def then_fail(real):
        def store(self, job_id, index, file, *body):
            calls["n"] += 1
            if calls["n"] == 2:  # the second of two files, on the first attempt
                raise ClientError(
                    {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "PutObject"
                )
            return real(self, job_id, index, file, *body)

        return store

    monkeypatch.setattr(S3Outputs, "put", then_fail(S3Outputs.put))
    monkeypatch.setattr(S3Outputs, "put_stream", then_fail(S3Outputs.put_stream))
    loop.submit("half-1", EMPTY_INVERT_SAVE)
    assert loop.finish("half-1")["status"] == "SUCCEEDED"
    job = loop.job("half-1")
    assert job["status"] == "completed"
    assert len(job["outputs"]) == 2
    assert len(loop.stored_keys("half-1")) == 2
    assert "FollowFunctionArn!ClientError" in loop.sfn.sequence()
    assert len(loop.pushed("output_update")) == 2


def test_a_poll_that_keeps_failing_is_caught_marked_failed_and_reported(loop, monkeypatch):
    def broken(self, executor_job_id, **kw):
        raise RuntimeError("unexpected bug in poll")

    monkeypatch.setattr(ComfyUIExecutor, "status", broken)
    loop.submit("bug-1", EMPTY_INVERT_SAVE)
    assert loop.finish("bug-1")["status"] == "FAILED"
    job = loop.job("bug-1")
    assert job["status"] == "failed"
    assert job["error"] == "RuntimeError: unexpected bug in poll"
    assert loop.sfn.states_entered(job["execution_arn"])[-2:] == ["MarkFailed", "Failed"]
    assert loop.pushed("job_update")[-1]["status"] == "failed"


def test_a_job_poll_never_finishes_is_stopped_by_the_state_machine_and_marked_failed(loop, monkeypatch):
    # Poll's own deadline is an hour away, and the executor says "running" forever: on the
    # poll path (a ComfyUI without websockets) the state machine's max_polls (from run_job's
    # execution input, counted with the fallback schedule capped at 1 s) still ends the job.
    from comfyroute.executors.base import ExecutorStatus
    from comfyroute.protocol import JobStatus

    ports = get_ports()
    ports.config = ports.config._replace(
        poll_interval_start_seconds=1,
        poll_interval_cap_seconds=1,
        poll_fallback_cap_seconds=1,
        execution_timeout_seconds=4,
    )
    loop.comfy.websocket = False
    monkeypatch.setattr(ComfyUIExecutor, "status", lambda self, job_id, **kw: ExecutorStatus(state=JobStatus.RUNNING))
    loop.submit("endless-1", EMPTY_INVERT_SAVE)
    assert loop.finish("endless-1")["status"] == "FAILED"
    job = loop.job("endless-1")
    assert job["status"] == "failed"
    assert job["error"].startswith("ExecutionTimedOut: ")
    history = loop.sfn.history(job["execution_arn"])
    execution_input = json.loads(history[0]["executionStartedEventDetails"]["input"])
    assert execution_input["max_polls"] == 4
    assert sum(1 for s in loop.sfn.sequence() if s == "PollFunctionArn") == 4
    assert loop.pushed("job_update")[-1]["status"] == "failed"


def test_follow_windows_do_not_spend_the_poll_budget(loop):
    # max_polls counts Wait+Poll looks only (a Follow answer carries polls 0): a job followed
    # on its websocket window after window past max_polls is ended by its own deadline, which
    # Follow enforces (timed_out, cancelled on the executor), not by PollBudgetSpent.
    ports = get_ports()
    ports.config = ports.config._replace(
        poll_interval_start_seconds=1,
        poll_interval_cap_seconds=1,
        poll_fallback_cap_seconds=1,
        execution_timeout_seconds=2,
        follow_window_seconds=0.3,
        job_timeout_seconds=3,
    )
    loop.comfy.pause()  # the prompt stays pending: every window ends without news
    loop.submit("windows-1", EMPTY_INVERT_SAVE)
    assert loop.finish("windows-1")["status"] == "SUCCEEDED"
    job = loop.job("windows-1")
    assert job["status"] == "timed_out"
    states = loop.sfn.states_entered(job["execution_arn"])
    history = loop.sfn.history(job["execution_arn"])
    max_polls = json.loads(history[0]["executionStartedEventDetails"]["input"])["max_polls"]
    assert max_polls == 2
    assert states.count("Follow") > max_polls
    assert "PollBudgetSpent" not in states
    assert job_key(USER, "windows-1") in loop.comfy.deletes


def test_a_job_without_output_files_says_why(loop):
    websocket_only = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    loop.submit("ws-1", websocket_only)
    assert loop.finish("ws-1")["status"] == "SUCCEEDED"
    job = loop.job("ws-1")
    assert job["status"] == "completed"
    assert job["outputs"] == []
    assert "SaveImageWebsocket" in job["message"]
    assert "SaveImageWebsocket" in loop.pushed("job_update")[-1]["message"]


def test_a_slow_local_job_streams_node_updates_and_every_step_to_the_client(loop):
    # Three nodes of 0.3 s with sampler-like steps: Follow holds the prompt's websocket and
    # pushes each node's states and steps as ComfyUI sends them, the output as soon as its
    # node ran, and the terminal update after all of it.
    loop.comfy.engine.node_seconds = 0.5
    loop.comfy.engine.progress_steps = 3
    loop.submit("progress-1", EMPTY_INVERT_SAVE)
    assert loop.finish("progress-1")["status"] == "SUCCEEDED"
    assert loop.job("progress-1")["status"] == "completed"
    assert f"comfyroute-{job_key(USER, 'progress-1')}" in loop.comfy.ws_clients
    pushed = loop.pushed()
    nodes = [(m["node_id"], m["status"]) for m in pushed if m["type"] == "node_update"]
    # The loop starts a moment after the prompt: the first node may have run before the socket
    # was open. From there on every state of every node, once.
    assert nodes[-2:] == [("3", "running"), ("3", "completed")]
    assert len(nodes) == len(set(nodes))
    for node in {n for n, _ in nodes}:
        steps = [m["progress"] for m in pushed if m["type"] == "node_progress" and m["node_id"] == node]
        assert steps
        assert steps[-1] == 3
    types = [m["type"] for m in pushed]
    assert types.index("output_update") < len(types) - 1
    assert pushed[-1]["type"] == "job_update"
    assert pushed[-1]["status"] == "completed"
    assert pushed[-1]["output_count"] == 2


def test_a_comfyui_without_websockets_is_polled_to_the_end(loop):
    loop.comfy.websocket = False
    loop.comfy.engine.node_seconds = 0.5
    loop.submit("nows-1", EMPTY_INVERT_SAVE)
    assert loop.finish("nows-1")["status"] == "SUCCEEDED"
    job = loop.job("nows-1")
    assert (job["status"], job["follow_by"]) == ("completed", "poll")
    states = loop.sfn.states_entered(job["execution_arn"])
    assert states[:4] == ["Route", "Follow", "Next", "Wait"]
    assert states[-2:] == ["NotifyFinal", "Succeeded"]
    assert states.count("Follow") == 1
    types = [m["type"] for m in loop.pushed()]
    assert types[-1] == "job_update"
    assert types.count("output_update") == 2
