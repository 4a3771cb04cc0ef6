"""Every event in events/ through its handler, under moto, with executors faked by `responses`
from the recordings of a real ComfyUI and the RunPod contract."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import boto3
import pytest
import responses
from support import Stack, load_event
from support.recordings import FIXTURES, body, load_bytes, load_recording

from comfyroute import auth
from comfyroute.aws.connections import DynamoConnections
from comfyroute.awslambda.wiring import get_ports
from comfyroute.jobs.record import job_key

CONN = "Yf3kGdLhIAMCJMw="
COMFY = "http://127.0.0.1:8188"
RUNPOD = "https://api.runpod.ai/v2/ep_123"
# alice's job-replay-1 as the backend keys it (the task events in events/ carry this key).
KEY1 = job_key("alice", "job-replay-1")
TOKEN = load_event("authorizer")["queryStringParameters"]["token"]
PNG = load_bytes("view_ok.png")
# The recorded ComfyUI's whole /object_info (tests/fixtures/graph/object_info.json).
OBJECT_INFO = (FIXTURES / "graph" / "object_info.json").read_bytes()


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def history_for(job_id: str, recording: str = "history_ok") -> dict[str, Any]:
    """A recorded /history answer, re-keyed to our prompt id."""
    (entry,) = body(recording).values()
    return {job_id: entry}


def fake_comfy(http: responses.RequestsMock, job_id: str, *, history: str | None = None) -> None:
    """ComfyUI answering for alice's job ``job_id``, whose prompt id is the job's key."""
    job_id = job_key("alice", job_id)
    ok = load_recording("post_prompt_custom_id")["resp"]["body"]
    http.post(f"{COMFY}/prompt", json={**ok, "prompt_id": job_id})
    # The graph names output handles ("IMAGE") without slot metadata: run_job reads the schemas.
    http.get(f"{COMFY}/object_info", body=OBJECT_INFO)
    http.get(f"{COMFY}/queue", json=body("queue_idle"))
    http.get(f"{COMFY}/history/{job_id}", json=history_for(job_id, history) if history else {})
    http.get(re.compile(rf"{re.escape(COMFY)}/view\?.*"), body=PNG, content_type="image/png")


def connect(stack: Stack, user: str = "alice", connection_id: str = CONN) -> None:
    get_ports().connections.put(connection_id, user)


def invoke(stack: Stack, function: str, event: dict[str, Any] | str, ctx: Any) -> Any:
    if isinstance(event, str):
        event = load_event(event)
    return stack.handler(function)(event, ctx)


def pushed(stack: Stack, type_: str | None = None, connection_id: str = CONN) -> list[dict[str, Any]]:
    return stack.management.messages(connection_id, type_)


# --------------------------------------------------------------------------- connection routes


def test_authorizer_allows_a_known_token_with_the_user_in_context(stack, lambda_context):
    auth.issue_token(get_ports().api_keys, "alice", token=TOKEN)
    policy = invoke(stack, "AuthorizerFunction", "authorizer", lambda_context)
    assert policy["principalId"] == "alice"
    # key_id: $connect records which key a connection uses, for `comfyroute keys revoke`.
    assert policy["context"] == {"user_id": "alice", "key_id": auth.hash_token(TOKEN)}
    (statement,) = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*"]


def test_authorizer_denies_unknown_and_revoked_tokens(stack, lambda_context):
    policy = invoke(stack, "AuthorizerFunction", "authorizer_bad_token", lambda_context)
    assert [s["Effect"] for s in policy["policyDocument"]["Statement"]] == ["Deny"]
    assert "context" not in policy
    keys = get_ports().api_keys
    auth.issue_token(keys, "alice", token=TOKEN)
    keys.revoke(auth.hash_token(TOKEN))
    policy = invoke(stack, "AuthorizerFunction", "authorizer", lambda_context)
    assert [s["Effect"] for s in policy["policyDocument"]["Statement"]] == ["Deny"]


def test_authorizer_without_token_is_unauthorized_and_never_logs_tokens(stack, lambda_context, capsys):
    with pytest.raises(Exception, match="^Unauthorized$"):
        invoke(stack, "AuthorizerFunction", "authorizer_no_token", lambda_context)
    auth.issue_token(get_ports().api_keys, "alice", token=TOKEN)
    invoke(stack, "AuthorizerFunction", "authorizer", lambda_context)
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_tokens_are_stored_hashed(stack):
    auth.issue_token(get_ports().api_keys, "alice", token=TOKEN)
    items = stack.table("ApiKeysTable").scan()["Items"]
    assert [i["key_hash"] for i in items] == [auth.hash_token(TOKEN)]
    assert TOKEN not in json.dumps(items, default=str)


def test_connect_and_disconnect_keep_the_connection_table(stack, lambda_context):
    assert invoke(stack, "ConnectFunction", "connect", lambda_context) == {"statusCode": 200}
    row = stack.table("ConnectionsTable").get_item(Key={"connection_id": CONN})["Item"]
    assert row["user_id"] == "alice"
    assert row["ttl"] > row["connected_at"]
    assert invoke(stack, "DisconnectFunction", "disconnect", lambda_context) == {"statusCode": 200}
    assert "Item" not in stack.table("ConnectionsTable").get_item(Key={"connection_id": CONN})


def test_connect_records_the_key_from_the_authorizer_context(stack, lambda_context):
    event = load_event("connect")
    event["requestContext"]["authorizer"]["key_id"] = auth.hash_token(TOKEN)
    assert invoke(stack, "ConnectFunction", event, lambda_context) == {"statusCode": 200}
    row = stack.table("ConnectionsTable").get_item(Key={"connection_id": CONN})["Item"]
    assert row["key_id"] == auth.hash_token(TOKEN)
    connections = DynamoConnections(stack.env["CONNECTIONS_TABLE"])
    assert connections.list_by_key(auth.hash_token(TOKEN)) == [CONN]
    assert connections.list_by_key("another-key") == []


def test_connect_without_authorizer_context_is_refused(stack, lambda_context):
    event = load_event("connect")
    del event["requestContext"]["authorizer"]
    assert invoke(stack, "ConnectFunction", event, lambda_context) == {"statusCode": 401}


def test_default_route_answers_ping_and_names_known_commands(stack, lambda_context):
    connect(stack)
    assert invoke(stack, "DefaultFunction", "default_ping", lambda_context) == {"statusCode": 200}
    (pong,) = pushed(stack)
    assert pong["type"] == "pong"
    assert isinstance(pong["ts"], float)
    invoke(stack, "DefaultFunction", "default_unknown", lambda_context)
    (error,) = pushed(stack, "error")
    assert error["code"] == "unknown_command"
    assert "launch_rockets" in error["message"]
    for name in ("run_job", "cancel_job", "get_job", "list_jobs", "save_workflow", "ping"):
        assert name in error["message"]


def test_non_json_body_gets_an_error_not_an_exception(stack, lambda_context):
    connect(stack)
    event = load_event("default_ping")
    event["body"] = "not json at all"
    assert invoke(stack, "DefaultFunction", event, lambda_context) == {"statusCode": 200}
    (error,) = pushed(stack, "error")
    assert error["message"].startswith("message is not JSON")


def test_a_frame_nested_past_what_the_parser_takes_is_a_bad_request_not_internal(stack, lambda_context):
    connect(stack)
    event = load_event("run_job")
    deep = "[" * 3000 + "]" * 3000
    event["body"] = '{"command": "run_job", "data": {"job_id": "deep-1", "prompt": {"1": ' + deep + "}}}"
    assert invoke(stack, "RunJobFunction", event, lambda_context) == {"statusCode": 200}
    (answer,) = pushed(stack)
    assert answer.get("code") != "internal"
    assert answer["type"] in ("error", "job_update")


# --------------------------------------------------------------------------- run_job


_STACK: Stack | None = None


@pytest.fixture(autouse=True)
def _current_stack(request):
    global _STACK
    _STACK = request.getfixturevalue("stack") if "stack" in request.fixturenames else None


def _job(job_id: str, user_id: str = "alice") -> dict[str, Any]:
    """The jobs table's row of the user's job (keyed by ``job_key``)."""
    assert _STACK is not None
    return _STACK.table("JobsTable").get_item(Key={"job_id": job_key(user_id, job_id)}).get("Item", {})


def test_run_job_submits_to_comfyui_records_and_starts_the_loop(stack, lambda_context, http):
    connect(stack)
    fake_comfy(http, "job-replay-1")
    assert invoke(stack, "RunJobFunction", "run_job", lambda_context) == {"statusCode": 200}
    [post] = [c for c in http.calls if c.request.method == "POST"]
    sent = json.loads(post.request.body)
    assert sent["prompt_id"] == KEY1
    assert sent["prompt"] == {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "replay", "images": ["2", 0]}},
    }
    job = _job("job-replay-1")
    assert (job["status"], job["executor"], job["executor_job_id"], job["user_id"]) == (
        "queued",
        "local",
        KEY1,
        "alice",
    )
    assert job["execution_arn"].endswith(f":{KEY1}")
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    execution = sfn.describe_execution(executionArn=job["execution_arn"])
    assert json.loads(execution["input"]) == {
        "job_id": KEY1,
        "polls": 0,
        "follows": 0,
        "wait_seconds": 0,
        "executor": "comfyui",
    }
    (update,) = pushed(stack, "job_update")
    assert (update["job_id"], update["status"], update["executor"], update["workflow_id"]) == (
        "job-replay-1",
        "queued",
        "local",
        "wf-invert",
    )


def test_run_job_twice_with_the_same_id_starts_one_job(stack, lambda_context, http):
    connect(stack)
    fake_comfy(http, "job-replay-1")
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    posts = [c for c in http.calls if c.request.method == "POST" and c.request.url.endswith("/prompt")]
    assert len(posts) == 1
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1
    assert [m["status"] for m in pushed(stack, "job_update")] == ["queued", "queued"]


def test_run_job_with_someone_elses_job_id_runs_a_job_of_ones_own(stack, lambda_context, http):
    connect(stack)
    fake_comfy(http, "job-replay-1")
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    connect(stack, "bob", "bob-conn")
    bobs = job_key("bob", "job-replay-1")
    ok = load_recording("post_prompt_custom_id")["resp"]["body"]
    http.post(f"{COMFY}/prompt", json={**ok, "prompt_id": bobs})
    event = load_event("run_job")
    event["requestContext"].update(connectionId="bob-conn", authorizer={"user_id": "bob", "principalId": "bob"})
    invoke(stack, "RunJobFunction", event, lambda_context)
    # Neither revealed nor blocked: bob's job of the same id is his own, apart from alice's.
    (update,) = pushed(stack, "job_update", "bob-conn")
    assert (update["job_id"], update["status"]) == ("job-replay-1", "queued")
    assert _job("job-replay-1")["user_id"] == "alice"
    assert _job("job-replay-1", "bob")["user_id"] == "bob"
    assert _job("job-replay-1", "bob")["executor_job_id"] == bobs
    assert not pushed(stack, "error", "bob-conn")


def test_run_job_with_a_used_job_id_and_another_request_is_refused(stack, lambda_context, http):
    connect(stack)
    fake_comfy(http, "job-replay-1")
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    event = load_event("run_job")
    body = json.loads(event["body"])
    body["data"]["params"] = {"1": {"width": 128}}
    event["body"] = json.dumps(body)
    invoke(stack, "RunJobFunction", event, lambda_context)
    _first, second = pushed(stack, "job_update")
    assert (second["status"], second["job_id"], second["request"]) == ("failed", "job-replay-1", "run_job")
    assert "different request" in second["error"]
    assert _job("job-replay-1")["status"] == "queued"  # the first job is untouched
    posts = [c for c in http.calls if c.request.method == "POST" and c.request.url.endswith("/prompt")]
    assert len(posts) == 1


def test_invalid_graph_is_recorded_failed_and_explained(stack, lambda_context):
    connect(stack)
    invoke(stack, "RunJobFunction", "run_job_invalid", lambda_context)
    job = _job("job-replay-3")
    assert job["status"] == "failed"
    assert "4" in job["error"]
    assert "e3" in job["error"]
    # One refusal, one message: the job_update failed naming the request, the job and the error.
    (update,) = pushed(stack)
    assert (update["type"], update["status"], update["request"], update["job_id"]) == (
        "job_update",
        "failed",
        "run_job",
        "job-replay-3",
    )
    assert update["error"] == job["error"]


def test_executor_validation_error_fails_the_job_with_node_errors(stack, lambda_context, http):
    connect(stack)
    rejected = load_recording("err_out_of_range")
    http.post(f"{COMFY}/prompt", status=400, json=rejected["body"])
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    job = _job("job-replay-1")
    assert job["status"] == "failed"
    assert "EmptyImage" in job["error"]
    assert "smaller than min" in job["error"]
    assert "execution_arn" not in job
    assert pushed(stack, "job_update")[-1]["status"] == "failed"


def test_comfyui_500_on_submit_fails_the_job_mentioning_500(stack, lambda_context, http):
    connect(stack)
    http.post(f"{COMFY}/prompt", status=500, body="500 Internal Server Error\n\nServer got itself in trouble")
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    job = _job("job-replay-1")
    assert job["status"] == "failed"
    assert "500" in job["error"]


def _put_secret(name: str, value: dict[str, str]) -> None:
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name=name, SecretString=json.dumps(value))


def test_runpod_job_uses_the_users_secret_and_never_leaks_it(stack, lambda_context, http):
    connect(stack)
    _put_secret(f"{stack.env['SECRETS_PREFIX']}/users/alice", {"RUNPOD_API_KEY": "rpa_SECRET_KEY_123"})
    http.post(f"{RUNPOD}/run", json={"id": "rp-1", "status": "IN_QUEUE"})
    invoke(stack, "RunJobFunction", "run_job_runpod", lambda_context)
    assert http.calls[0].request.headers["Authorization"] == "Bearer rpa_SECRET_KEY_123"
    job = _job("job-replay-2")
    assert (job["status"], job["executor"], job["executor_job_id"], job["endpoint_id"]) == (
        "queued",
        "runpod",
        "rp-1",
        "ep_123",
    )
    assert "SECRET" not in json.dumps(stack.management.sent)


def test_runpod_key_refused_fails_without_echoing_the_key(stack, lambda_context, http, capsys):
    connect(stack)
    _put_secret(f"{stack.env['SECRETS_PREFIX']}/default", {"RUNPOD_API_KEY": "rpa_SECRET_KEY_123"})
    http.post(f"{RUNPOD}/run", status=401, json={"error": "bad key rpa_SECRET_KEY_123"})
    invoke(stack, "RunJobFunction", "run_job_runpod", lambda_context)
    job = _job("job-replay-2")
    assert job["status"] == "failed"
    assert "refused" in job["error"].lower()
    everything = json.dumps(stack.management.sent) + json.dumps(job, default=str)
    out = capsys.readouterr()
    assert "rpa_SECRET_KEY_123" not in everything + out.out + out.err


def test_runpod_without_key_fails_clearly(stack, lambda_context):
    connect(stack)
    invoke(stack, "RunJobFunction", "run_job_runpod", lambda_context)
    assert "RUNPOD_API_KEY" in _job("job-replay-2")["error"]


# --------------------------------------------------------------------------- saved workflows


def test_saved_workflow_settings_are_used_and_the_request_wins(stack, lambda_context, http):
    connect(stack)
    invoke(stack, "SaveWorkflowFunction", "save_workflow", lambda_context)
    (saved,) = pushed(stack, "workflow_saved")
    assert saved["settings"] == {"comfy_executor": "runpod", "runpod_endpoint_id": "ep_123"}
    _put_secret(f"{stack.env['SECRETS_PREFIX']}/users/alice", {"RUNPOD_API_KEY": "k"})
    http.post(f"{RUNPOD}/run", json={"id": "rp-9", "status": "IN_QUEUE"})
    by_id = load_event("run_job")
    by_id["body"] = json.dumps({"command": "run_job", "data": {"job_id": "from-saved", "workflow_id": "wf-invert"}})
    invoke(stack, "RunJobFunction", by_id, lambda_context)
    assert _job("from-saved")["executor"] == "runpod"
    # The request's settings win over the saved ones.
    fake_comfy(http, "local-wins")
    by_id["body"] = json.dumps(
        {
            "command": "run_job",
            "data": {"job_id": "local-wins", "workflow_id": "wf-invert", "settings": {"comfy_executor": "local"}},
        }
    )
    invoke(stack, "RunJobFunction", by_id, lambda_context)
    assert _job("local-wins")["executor"] == "local"


def test_unknown_saved_workflow_fails_the_job_naming_it(stack, lambda_context):
    connect(stack)
    event = load_event("run_job")
    event["body"] = json.dumps({"command": "run_job", "data": {"job_id": "nowf", "workflow_id": "missing"}})
    invoke(stack, "RunJobFunction", event, lambda_context)
    assert _job("nowf")["error"] == "workflow 'missing' not found"


# --------------------------------------------------------------------------- poll / notify / get / cancel


def _submitted(stack: Stack, ctx: Any, http: responses.RequestsMock, history: str | None) -> None:
    connect(stack)
    fake_comfy(http, "job-replay-1", history=history)
    invoke(stack, "RunJobFunction", "run_job", ctx)


def test_poll_while_queued_then_completed_stores_outputs_once(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history=None)
    http.replace(
        responses.GET,
        f"{COMFY}/queue",
        json={"queue_running": [], "queue_pending": [[3, KEY1, {}, {}, ["3"]]]},
    )
    first = invoke(stack, "PollFunction", "poll", lambda_context)
    assert _job("job-replay-1")["message"] == "waiting in the local executor's queue (position 1)"
    assert first == {
        "job_id": KEY1,
        "polls": 1,
        "done": False,
        "status": "queued",
        "wait_seconds": 0,
        "notify": True,
        "next": "follow",  # the job goes back to its websocket
    }
    http.replace(responses.GET, f"{COMFY}/queue", json=body("queue_idle"))
    http.replace(responses.GET, f"{COMFY}/history/{KEY1}", json=history_for(KEY1))
    done = invoke(stack, "PollFunction", {"job_id": KEY1, "polls": 1}, lambda_context)
    assert (done["done"], done["status"], done["notify"]) == (True, "completed", False)
    job = _job("job-replay-1")
    (output,) = job["outputs"]
    assert (output["node_id"], output["node_name"], output["filename"], output["size"]) == (
        "3",
        "SaveImage",
        "probe_cc93ae_00001_.png",
        len(PNG),
    )
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = stack.plan.buckets[0].name
    assert s3.get_object(Bucket=bucket, Key=output["key"])["Body"].read() == PNG
    # A retried poll (Step Functions Retry) neither duplicates outputs nor reopens the job.
    # "submitted to ..." described the queued job; a finished one carries no stale message.
    assert "message" not in job
    again = invoke(stack, "PollFunction", {"job_id": KEY1, "polls": 2}, lambda_context)
    assert again["done"] is True
    assert len(_job("job-replay-1")["outputs"]) == 1
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix=f"jobs/{KEY1}/")["Contents"]) == 1


def test_notify_final_sends_status_and_inline_outputs(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history="history_ok")
    invoke(stack, "PollFunction", "poll", lambda_context)
    result = invoke(stack, "NotifyFunction", "notify_final", lambda_context)
    assert result["delivered"] is True
    nodes = pushed(stack, "node_update")
    assert result["sent"] == 2 + len(nodes)
    assert ("3", "completed", "comfy.SaveImage") in {(n["node_id"], n["status"], n["node_type"]) for n in nodes}
    # The outputs come first: a client that stops reading at "completed" has them all.
    *_, before, update = pushed(stack)
    assert (before["type"], update["type"]) == ("output_update", "job_update")
    assert (update["status"], update["output_count"]) == ("completed", 1)
    assert update["duration"] >= 0
    (out,) = pushed(stack, "output_update")
    assert (out["node_id"], out["node_name"], out["output_name"], out["output_type"]) == (
        "3",
        "SaveImage",
        "images",
        "image",
    )
    assert base64.b64decode(out["value"]["data"]) == PNG
    assert out["value"]["uri"].startswith("https://")
    assert f"jobs/{KEY1}/" in out["value"]["uri"]


def test_notify_sends_only_a_url_for_outputs_too_big_to_inline(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history="history_ok")
    big = b"\x89PNG" + b"\0" * 200_000
    http.replace(responses.GET, re.compile(rf"{re.escape(COMFY)}/view\?.*"), body=big, content_type="image/png")
    invoke(stack, "PollFunction", "poll", lambda_context)
    invoke(stack, "NotifyFunction", "notify_final", lambda_context)
    (out,) = pushed(stack, "output_update")
    assert "data" not in out["value"]
    assert out["value"]["size"] == len(big)


def test_notify_failure_marks_the_job_failed_with_a_readable_error(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history=None)
    invoke(stack, "NotifyFunction", "notify_failure", lambda_context)
    job = _job("job-replay-1")
    assert job["status"] == "failed"
    assert job["error"] == "ExecutorUnavailable: ComfyUI at 127.0.0.1:8188 is unreachable"
    assert pushed(stack, "job_update")[-1]["error"] == job["error"]


def test_notify_to_a_gone_client_keeps_the_job_and_get_job_catches_up(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history="history_ok")
    stack.management.gone.add(CONN)
    invoke(stack, "PollFunction", "poll", lambda_context)
    result = invoke(stack, "NotifyFunction", "notify_final", lambda_context)
    assert result == {"job_id": KEY1, "delivered": False, "sent": 0, "reason": "connection gone"}
    assert stack.table("ConnectionsTable").get_item(Key={"connection_id": CONN})["Item"]["gone"] is True
    assert _job("job-replay-1")["status"] == "completed"
    # The client reconnects on a new connection and asks.
    connect(stack, "alice", "new-conn")
    event = load_event("get_job")
    event["requestContext"]["connectionId"] = "new-conn"
    invoke(stack, "JobQueriesFunction", event, lambda_context)
    (msg,) = pushed(stack, "job", "new-conn")
    assert msg["job"]["status"] == "completed"
    (output,) = msg["job"]["outputs"]
    assert output["value"]["filename"] == "probe_cc93ae_00001_.png"
    assert output["value"]["uri"].startswith("https://")


def test_notify_throttled_raises_for_step_functions_to_retry(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history=None)
    stack.management.throttle_next = 1
    from comfyroute.aws.push import Throttled

    with pytest.raises(Throttled):
        invoke(stack, "NotifyFunction", "notify_progress", lambda_context)


def test_get_job_and_list_jobs_show_only_the_callers_jobs(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history=None)
    invoke(stack, "JobQueriesFunction", "list_jobs", lambda_context)
    (listing,) = pushed(stack, "job_list")
    assert [j["job_id"] for j in listing["jobs"]] == ["job-replay-1"]
    connect(stack, "bob", "bob-conn")
    for name in ("get_job", "list_jobs"):
        event = load_event(name)
        event["requestContext"].update(connectionId="bob-conn", authorizer={"user_id": "bob"})
        invoke(stack, "JobQueriesFunction", event, lambda_context)
    (error,) = pushed(stack, "error", "bob-conn")
    assert error == {
        "type": "error",
        "message": "job job-replay-1 not found",
        "code": "not_found",
        "request": "get_job",
        "job_id": "job-replay-1",
    }
    (bob_list,) = pushed(stack, "job_list", "bob-conn")
    assert bob_list["jobs"] == []


def test_cancel_removes_a_pending_prompt_stops_the_loop_and_reports(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history=None)
    http.replace(
        responses.GET,
        f"{COMFY}/queue",
        json={"queue_running": [], "queue_pending": [[3, KEY1, {}, {}, ["3"]]]},
    )
    http.post(f"{COMFY}/queue", body="")
    invoke(stack, "CancelJobFunction", "cancel_job", lambda_context)
    deletes = [json.loads(c.request.body) for c in http.calls if c.request.url == f"{COMFY}/queue" and c.request.body]
    assert deletes == [{"delete": [KEY1]}]
    job = _job("job-replay-1")
    assert job["status"] == "cancelled"
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    assert sfn.describe_execution(executionArn=job["execution_arn"])["status"] == "ABORTED"
    assert pushed(stack, "job_update")[-1]["status"] == "cancelled"
    # A poll that was already under way cannot reopen it.
    assert invoke(stack, "PollFunction", "poll", lambda_context)["status"] == "cancelled"


def test_cancel_of_someone_elses_job_is_not_found(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history=None)
    connect(stack, "bob", "bob-conn")
    event = load_event("cancel_job")
    event["requestContext"].update(connectionId="bob-conn", authorizer={"user_id": "bob"})
    invoke(stack, "CancelJobFunction", event, lambda_context)
    assert pushed(stack, "error", "bob-conn")[0]["code"] == "not_found"
    assert _job("job-replay-1")["status"] == "queued"


def test_a_command_on_the_wrong_route_is_refused(stack, lambda_context):
    connect(stack)
    event = load_event("get_job")  # routed to the jobs function
    invoke(stack, "RunJobFunction", event, lambda_context)
    (error,) = pushed(stack, "error")
    assert error["code"] == "misrouted"


# --------------------------------------------------------------------------- nothing is lost


def _stranded(job_id: str, **fields: Any) -> None:
    """A job record as a submit that died half-way leaves it: queued, no poll loop."""
    from comfyroute.jobs.record import JobRecord
    from comfyroute.protocol import ExecutorKind

    get_ports().jobs.insert(
        JobRecord(
            job_id=job_key("alice", job_id),
            client_job_id=job_id,
            user_id="alice",
            connection_id=CONN,
            executor=ExecutorKind.LOCAL,
            created_at=1.0,
            updated_at=1.0,
            deadline=10**10,
            **fields,
        )
    )


def test_resend_of_a_job_whose_submit_died_after_the_executor_took_it_starts_its_loop(stack, lambda_context):
    connect(stack)
    _stranded("job-replay-1", executor_job_id=KEY1)
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    job = _job("job-replay-1")
    assert job["status"] == "queued"
    assert job["execution_arn"].endswith(f":{KEY1}")
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    assert sfn.describe_execution(executionArn=job["execution_arn"])["status"] == "RUNNING"


def test_resend_of_a_job_whose_submit_died_before_the_executor_fails_it(stack, lambda_context):
    connect(stack)
    _stranded("job-replay-1")
    invoke(stack, "RunJobFunction", "run_job", lambda_context)
    job = _job("job-replay-1")
    assert job["status"] == "failed"
    assert "interrupted" in job["error"]
    assert pushed(stack, "job_update")[-1]["status"] == "failed"


def test_an_unexpected_error_in_submit_fails_the_job_and_tells_the_client(stack, lambda_context, monkeypatch):
    connect(stack)

    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(get_ports(), "executors", broken)
    assert invoke(stack, "RunJobFunction", "run_job", lambda_context) == {"statusCode": 200}
    job = _job("job-replay-1")
    assert job["status"] == "failed"
    assert "internal error" in job["error"]
    # One answer: the job_update of the failed job (no internal error, no second message).
    (update,) = pushed(stack)
    assert (update["type"], update["status"], update["request"], update["job_id"]) == (
        "job_update",
        "failed",
        "run_job",
        "job-replay-1",
    )
    assert "bug" not in update["error"]


# --------------------------------------------------------------------------- nodetool


def test_authorizer_reads_nodetools_api_key(stack, lambda_context):
    auth.issue_token(get_ports().api_keys, "alice", token=TOKEN)
    policy = invoke(stack, "AuthorizerFunction", "authorizer_api_key", lambda_context)
    assert policy["context"] == {"user_id": "alice", "key_id": auth.hash_token(TOKEN)}
    event = load_event("authorizer_no_token")
    event["headers"] = {**(event.get("headers") or {}), "Authorization": f"Bearer {TOKEN}"}
    assert invoke(stack, "AuthorizerFunction", event, lambda_context)["context"] == policy["context"]


def test_anonymous_connections_are_the_dev_user_only_from_loopback_and_only_when_configured(stack, lambda_context):
    event = load_event("authorizer_no_token")
    event["requestContext"]["identity"] = {"sourceIp": "127.0.0.1"}
    with pytest.raises(Exception, match="^Unauthorized$"):
        invoke(stack, "AuthorizerFunction", event, lambda_context)
    ports = get_ports()
    ports.config = ports.config._replace(dev_anonymous_user="dev")
    assert invoke(stack, "AuthorizerFunction", event, lambda_context)["context"] == {"user_id": "dev"}
    event["requestContext"]["identity"] = {"sourceIp": "203.0.113.10"}
    with pytest.raises(Exception, match="^Unauthorized$"):
        invoke(stack, "AuthorizerFunction", event, lambda_context)


def _active_job(stack: Stack, job_id: str, user: str) -> None:
    stack.table("JobsTable").put_item(
        Item={
            "job_id": job_key(user, job_id),
            "client_job_id": job_id,
            "user_id": user,
            "connection_id": "old-connection",
            "executor": "local",
            "status": "running",
            "created_at": 1,
            "updated_at": 1,
            "deadline": 9_999_999_999,
        }
    )


def test_connect_with_resume_job_moves_the_users_job_to_the_new_connection(stack, lambda_context):
    _active_job(stack, "job-replay-1", "alice")
    assert invoke(stack, "ConnectFunction", "connect_resume_job", lambda_context) == {"statusCode": 200}
    assert _job("job-replay-1")["connection_id"] == CONN


def test_connect_with_resume_job_leaves_someone_elses_job_alone(stack, lambda_context):
    _active_job(stack, "job-replay-1", "bob")
    assert invoke(stack, "ConnectFunction", "connect_resume_job", lambda_context) == {"statusCode": 200}
    assert _job("job-replay-1", "bob")["connection_id"] == "old-connection"


def test_default_answers_nodetools_heartbeat_with_a_pong(stack, lambda_context):
    connect(stack)
    invoke(stack, "DefaultFunction", "default_nodetool_ping", lambda_context)
    (pong,) = pushed(stack)
    assert pong["type"] == "pong"
    assert isinstance(pong["ts"], float)


def test_default_hands_a_msgpack_run_job_to_the_run_job_function(stack, lambda_context, http, monkeypatch):
    from comfyroute.aws import clients
    from comfyroute.awslambda import dispatch
    from comfyroute.frames import decode_event_body

    connect(stack)
    event = load_event("default_msgpack_run_job")
    frame = decode_event_body(event)
    invoked: list[dict[str, Any]] = []

    class RecordingLambda:
        def invoke(self, **call: Any) -> dict[str, Any]:
            invoked.append(call)
            return {"StatusCode": 202}

    recording = RecordingLambda()

    def lambda_client() -> RecordingLambda:
        return recording

    lambda_client.cache_clear = lambda: None  # type: ignore[attr-defined]  # reset_clients calls it
    monkeypatch.setattr(clients, "lambda_client", lambda_client)
    monkeypatch.setenv("ROUTE_FUNCTIONS", json.dumps({"run_job": "stack-RunJobFunction"}))
    dispatch.route_functions.cache_clear()
    try:
        assert invoke(stack, "DefaultFunction", event, lambda_context) == {"statusCode": 200}
    finally:
        dispatch.route_functions.cache_clear()
    assert pushed(stack) == []  # $default answers nothing itself: the owner does
    (call,) = invoked
    assert (call["FunctionName"], call["InvocationType"]) == ("stack-RunJobFunction", "Event")
    routed = json.loads(call["Payload"])
    assert routed["requestContext"]["routeKey"] == "run_job"
    assert routed["requestContext"]["authorizer"] == event["requestContext"]["authorizer"]
    assert routed["isBase64Encoded"] is False
    sent = {**frame, "data": {k: v for k, v in frame["data"].items() if k != "auth_token"}}
    assert json.loads(routed["body"]) == sent  # nodetool's auth_token never leaves $default
    # The owner runs it as if API Gateway had routed a JSON frame to it.
    job_id = frame["data"]["job_id"]
    fake_comfy(http, job_id)
    invoke(stack, "RunJobFunction", routed, lambda_context)
    (update,) = pushed(stack, "job_update")
    assert (update["job_id"], update["workflow_id"], update["job_seq"]) == (job_id, "wf-nodetool-import", 1)
    assert update["status"] in ("queued", "running")
    assert _job(job_id)["user_id"] == "alice"  # the token's user, never data.user_id ("1")


def test_reconnect_job_replays_after_last_seq_from_the_log(stack, lambda_context, http):
    _submitted(stack, lambda_context, http, history="history_ok")
    invoke(stack, "PollFunction", "poll", lambda_context)
    invoke(stack, "NotifyFunction", "notify_final", lambda_context)
    sent = [m for m in pushed(stack) if m.get("job_id") == "job-replay-1"]
    assert [m["job_seq"] for m in sent] == list(range(1, len(sent) + 1))
    event = load_event("reconnect_job")
    event["requestContext"]["connectionId"] = "new-connection"
    connect(stack, connection_id="new-connection")
    invoke(stack, "JobQueriesFunction", event, lambda_context)
    resumed, *replay = pushed(stack, connection_id="new-connection")
    assert (resumed["type"], resumed["status"], resumed["last_seq"]) == ("job_resumed", "finished", len(sent))
    assert [m["job_seq"] for m in replay] == list(range(2, len(sent) + 1))
    (out,) = [m for m in replay if m["type"] == "output_update"]
    assert out["value"]["uri"].startswith("https://")  # signed anew
    assert out["metadata"]["content_type"] == "image/png"
