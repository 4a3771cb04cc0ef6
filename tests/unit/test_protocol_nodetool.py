"""nodetool's frames as its web client sends them (docs/nodetool.md): its envelope, every field
of its run_job accepted by name, control frames without a command, unsupported commands named
with the job's ids — and everything else still refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from comfyroute import messages
from comfyroute.awslambda.events import AuthorizerRequest, token_of
from comfyroute.protocol import JobStatus
from comfyroute.protocol.commands import (
    ClientPong,
    Ping,
    ProtocolError,
    ReconnectJob,
    ToolsManifest,
    command_from_frame,
)
from comfyroute.protocol.workflow_commands import RunJob

GRAPH = {"nodes": [{"id": "1", "type": "comfy.EmptyImage", "data": {"_comfy_widgets": [8, 8, 1, 0]}}], "edges": []}
SECRET = "eyJhbGciOiJIUzI1NiJ9.supabase-session"


def run_job_frame(**extra: Any) -> dict[str, Any]:
    """WorkflowRunner.run's frame (localhost: user "1"; a signed-in session: its JWT)."""
    data = {
        "type": "run_job_request",
        "api_url": "",
        "user_id": "1",
        "workflow_id": "wf-1",
        "auth_token": SECRET,
        "job_type": "workflow",
        "execution_strategy": "threaded",
        "params": {},
        "explicit_types": False,
        "graph": GRAPH,
        "settings": {"is_comfy_workflow": True, "comfy_executor": "local"},
        "job_id": "3f0c0d5e-7a57-4d8e-9d43-0e0c6f0e7b11",
        **extra,
    }
    return {"type": "run_job", "command": "run_job", "data": data}


def refusal(frame: dict[str, Any]) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        command_from_frame(frame)
    return info.value


def test_nodetools_run_job_is_accepted_with_every_field_it_sets() -> None:
    cmd = command_from_frame(run_job_frame(resource_limits={"max_memory_mb": 1024}, execution_strategy="subprocess"))
    assert isinstance(cmd, RunJob)
    assert cmd.data.workflow_id == "wf-1"
    assert cmd.data.graph is not None
    assert cmd.data.settings is not None
    assert cmd.data.settings.comfy_executor == "local"


def test_user_id_and_auth_token_are_dropped_at_parse_and_never_reach_a_dump_or_repr() -> None:
    cmd = command_from_frame(run_job_frame())
    assert isinstance(cmd, RunJob)
    assert cmd.data.user_id is None
    assert cmd.data.auth_token is None
    assert SECRET not in repr(cmd)
    assert SECRET not in cmd.model_dump_json()
    assert "user_id" not in cmd.data.model_dump()


def test_an_unknown_field_is_still_refused_by_name_with_the_jobs_ids() -> None:
    exc = refusal(run_job_frame(chat_history=[]))
    assert exc.message == "data.chat_history: Extra inputs are not permitted"
    assert (exc.command, exc.job_id, exc.workflow_id) == ("run_job", "3f0c0d5e-7a57-4d8e-9d43-0e0c6f0e7b11", "wf-1")


def test_a_refused_run_job_that_names_its_job_also_ends_it_failed_for_nodetool() -> None:
    # One refusal, one message: the job_update failed naming the request and carrying the error.
    (update,) = (m.model_dump(exclude_none=True) for m in messages.refusal(refusal(run_job_frame(job_type="chat"))))
    assert "data.job_type" in update["error"]
    assert update["request"] == "run_job"
    assert (update["type"], update["status"]) == ("job_update", JobStatus.FAILED)
    assert (update["job_id"], update["workflow_id"]) == ("3f0c0d5e-7a57-4d8e-9d43-0e0c6f0e7b11", "wf-1")


def test_the_envelope_type_must_repeat_the_command() -> None:
    frame = run_job_frame()
    frame["type"] = "cancel_job"
    assert "type 'cancel_job' differs from command 'run_job'" in refusal(frame).message


def test_job_commands_take_nodetools_workflow_id_and_nothing_else() -> None:
    cancel = command_from_frame(
        {"type": "cancel_job", "command": "cancel_job", "data": {"job_id": "j1", "workflow_id": "w"}}
    )
    assert cancel.data.workflow_id == "w"  # type: ignore[union-attr]
    exc = refusal({"command": "cancel_job", "data": {"job_id": "j1", "node_id": "3"}})
    assert exc.message == "data.node_id: Extra inputs are not permitted"


def test_reconnect_job_with_and_without_last_seq() -> None:
    cmd = command_from_frame(
        {
            "type": "reconnect_job",
            "command": "reconnect_job",
            "data": {"job_id": "j1", "workflow_id": "w", "last_seq": 7},
        }
    )
    assert isinstance(cmd, ReconnectJob)
    assert cmd.data.last_seq == 7
    assert command_from_frame({"command": "reconnect_job", "data": {"job_id": "j1"}}).data.last_seq is None  # type: ignore[union-attr]
    assert "last_seq" in refusal({"command": "reconnect_job", "data": {"job_id": "j1", "last_seq": -1}}).message


def test_control_frames_have_only_a_type() -> None:
    ping = command_from_frame({"type": "ping", "ts": 1764582000.5})
    assert isinstance(ping, Ping)
    assert ping.ts == 1764582000.5
    assert isinstance(command_from_frame({"type": "pong", "ts": 1}), ClientPong)
    manifest = command_from_frame({"type": "client_tools_manifest", "tools": [{"name": "ui_add_node"}]})
    assert isinstance(manifest, ToolsManifest)
    # Only those: any other frame without a command is still refused.
    assert "'command' is missing" in refusal({"type": "chat_message", "data": {}}).message


@pytest.mark.parametrize("command", ["pause_job", "resume_job", "stream_input", "end_input_stream"])
def test_nodetool_commands_comfyroute_does_not_serve_are_named_with_the_jobs_ids(command: str) -> None:
    exc = refusal({"type": command, "command": command, "data": {"job_id": "j1", "workflow_id": "wf-1"}})
    assert exc.code == "unsupported"
    assert f"'{command}' is not supported" in exc.message
    error = messages.rejected(exc)
    assert (error.request, error.job_id, error.workflow_id) == (command, "j1", "wf-1")


def test_ids_that_are_not_well_formed_are_not_echoed() -> None:
    exc = refusal({"command": "pause_job", "data": {"job_id": "../x y", "workflow_id": 3}})
    assert (exc.job_id, exc.workflow_id) == (None, None)


def test_pong_carries_the_server_time() -> None:
    assert isinstance(messages.pong().ts, float)


# --------------------------------------------------------------------------- the token


@pytest.mark.parametrize(
    ("query", "headers", "token"),
    [
        ({"api_key": "crt_a"}, {}, "crt_a"),  # nodetool
        ({"token": "crt_b"}, {}, "crt_b"),
        ({"api_key": "crt_a", "token": "crt_b"}, {}, "crt_a"),
        ({}, {"Authorization": "Bearer crt_c"}, "crt_c"),
        ({}, {"authorization": "bearer   crt_d "}, "crt_d"),
        ({}, {"Authorization": "Basic abc"}, None),
        ({"api_key": ""}, {"Authorization": "Bearer "}, None),
        (None, None, None),
    ],
)
def test_the_token_comes_from_api_key_token_or_bearer(query: Any, headers: Any, token: str | None) -> None:
    assert token_of(query, headers) == token


@pytest.mark.parametrize(("ip", "loopback"), [("127.0.0.1", True), ("::1", True), ("10.0.0.1", False), ("x", False)])
def test_loopback_is_told_by_the_source_address(ip: str, loopback: bool) -> None:
    event = {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:a1/prod/$connect",
        "requestContext": {"identity": {"sourceIp": ip}},
    }
    assert AuthorizerRequest.of(event).from_loopback is loopback
