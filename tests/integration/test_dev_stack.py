"""`comfyroute dev` builds the backend from template.yaml and statemachine/job.asl.json and
runs the real handlers: resources match the template, Step Functions runs the real
definition with in-process Lambda tasks, and a job over a real WebSocket completes against
the fake ComfyUI."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfn_flip import load_yaml
from fakes import FakeComfyUI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from comfyroute_tools.cli.dev import register
from comfyroute_tools.dev.lambdas import InProcessFunction
from comfyroute_tools.dev.stack import DevStack, DevStackError, JobEvent, parse_job_event

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
FIXED_TOKEN = "dev-token-kept-across-restarts"
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 16711680}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "dev"}},
}


class ExecutorUnavailable(Exception):
    pass


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded = load_yaml((ROOT / "template.yaml").read_text())
    return json.loads(json.dumps(loaded))


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(run_seconds=0.1) as server:
        yield server


@pytest.fixture(scope="module")
def job_events() -> list[JobEvent]:
    return []


@pytest.fixture(scope="module")
def stack(
    comfy: FakeComfyUI, job_events: list[JobEvent], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    state_file = tmp_path_factory.mktemp("dev") / "dev.json"
    with DevStack(
        "127.0.0.1",
        0,
        comfyui_addr=comfy.addr,
        runpod_api_key="rp-secret-key",
        token=FIXED_TOKEN,
        handler_log_level="WARNING",
        state_file=state_file,
        on_job_event=job_events.append,
    ) as s:
        yield s


def open_ws(stack: DevStack, token: str) -> ClientConnection:
    return connect(f"{stack.ws_url}/?token={token}", open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def receive_until(ws: ClientConnection, done: Any, limit: float = 30.0) -> list[dict[str, Any]]:
    """Messages until ``done(message)`` is true; bounded by ``limit`` seconds."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        messages.append(message)
        if done(message):
            return messages
    raise AssertionError(f"no final message within {limit}s; got {messages}")


def resources_of(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


# --------------------------------------------------------------------------- start-up failure
# First in the file: it needs no other DevStack running (the module's one starts on first use).


def test_a_busy_port_fails_cleanly_and_restores_the_environment() -> None:
    import os
    import socket

    before = dict(os.environ)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for _ in range(2):
            # The second attempt fails the same way: the first left nothing running behind.
            with pytest.raises(DevStackError, match=f"cannot listen on 127.0.0.1:{port}"):
                DevStack("127.0.0.1", port).start()
    assert dict(os.environ) == before


# --------------------------------------------------------------------------- resources from the template


def test_every_table_exists_with_the_templates_keys(stack: DevStack, template: dict[str, Any]) -> None:
    ddb = stack.client("dynamodb")
    tables = resources_of(template, "AWS::DynamoDB::Table")
    assert tables, "the template declares tables"
    names = ddb.list_tables()["TableNames"]
    assert len(names) == len(tables)
    for logical_id, resource in tables.items():
        props = resource["Properties"]
        name = f"comfyroute-dev-{logical_id}"
        desc = ddb.describe_table(TableName=name)["Table"]
        assert desc["KeySchema"] == props["KeySchema"], logical_id
        assert sorted(desc["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
            props["AttributeDefinitions"], key=lambda a: a["AttributeName"]
        )
        want_gsis = {g["IndexName"]: g["KeySchema"] for g in props.get("GlobalSecondaryIndexes", [])}
        have_gsis = {g["IndexName"]: g["KeySchema"] for g in desc.get("GlobalSecondaryIndexes", [])}
        assert have_gsis == want_gsis, logical_id
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in props:
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"
        # The handlers are pointed at the same table.
        env_names = [v for v in stack.env.values() if v == name]
        assert env_names, f"no handler variable names {name}"


def test_buckets_exist(stack: DevStack, template: dict[str, Any]) -> None:
    buckets = resources_of(template, "AWS::S3::Bucket")
    have = {b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]}
    # The access log bucket exists only with OutputsAccessLogging "true" (default "false").
    assert have == {f"comfyroute-dev-{lid.lower()}" for lid in buckets if lid != "AccessLogsBucket"}
    assert stack.env["OUTPUTS_BUCKET"] in have


def test_state_machine_runs_the_asl_file_with_substitutions(stack: DevStack, template: dict[str, Any]) -> None:
    sfn = stack.client("stepfunctions")
    machine = sfn.describe_state_machine(stateMachineArn=stack.env["STATE_MACHINE_ARN"])
    functions = {f["FunctionName"]: f["FunctionArn"] for f in stack.client("lambda").list_functions()["Functions"]}
    text = (ROOT / "statemachine" / "job.asl.json").read_text()
    expected = (
        text.replace("${PollFunctionArn}", functions["comfyroute-dev-PollFunction"])
        .replace("${NotifyFunctionArn}", functions["comfyroute-dev-NotifyFunction"])
        .replace("${FollowFunctionArn}", functions["comfyroute-dev-FollowFunction"])
    )
    assert json.loads(machine["definition"]) == json.loads(expected)
    assert machine["type"] == "STANDARD"
    # The loop's limit comes from the job timeout through run_job's execution input.
    job_timeout = template["Parameters"]["JobTimeoutSeconds"]["Default"]
    mapped = template["Mappings"]["JobTimeouts"][str(job_timeout)]["ExecutionTimeoutSeconds"]
    assert stack.env["EXECUTION_TIMEOUT_SECONDS"] == mapped


def test_handler_environment_follows_the_template(stack: DevStack, template: dict[str, Any]) -> None:
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(globals_env) <= set(stack.env)
    assert stack.env["WEBSOCKET_ENDPOINT"] == stack.http_url
    # Scoped to the stack (template parameter SecretsPrefix, empty: the stack name).
    assert stack.env["SECRETS_PREFIX"] == "comfyroute-dev"
    assert stack.env["POLL_INTERVAL_START_SECONDS"] == globals_env["POLL_INTERVAL_START_SECONDS"]
    functions = resources_of(template, "AWS::Serverless::Function")
    registered = set(stack.registry.names())
    assert registered == {f"comfyroute-dev-{lid}" for lid in functions}


def test_dev_user_secret_holds_the_executor_settings(stack: DevStack, comfy: FakeComfyUI) -> None:
    expected = {"COMFYUI_ADDR": comfy.addr, "RUNPOD_API_KEY": "rp-secret-key"}
    # The dev user's own secret and the default every other dev-stack user falls back to.
    for name in ("comfyroute-dev/users/dev", "comfyroute-dev/default"):
        secret = stack.client("secretsmanager").get_secret_value(SecretId=name)
        assert json.loads(secret["SecretString"]) == expected


def test_only_the_tokens_hash_is_stored(stack: DevStack) -> None:
    assert stack.token == FIXED_TOKEN
    items = stack.client("dynamodb").scan(TableName=stack.env["API_KEYS_TABLE"])["Items"]
    digest = hashlib.sha256(stack.token.encode()).hexdigest()
    mine = [i for i in items if i["key_hash"]["S"] == digest]
    assert len(mine) == 1
    assert mine[0]["user_id"]["S"] == "dev"
    assert stack.token not in json.dumps(items)


def test_state_file_gives_the_client_url_and_token_and_only_its_owner_may_read_it(
    stack: DevStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from comfyroute_tools.cli.run import resolve_endpoint

    assert stack.state_file is not None
    assert stack.state_file.stat().st_mode & 0o777 == 0o600
    assert stack.state_file.parent.stat().st_mode & 0o077 == 0
    state = json.loads(stack.state_file.read_text())
    assert state["moto_endpoint"] == stack.moto_endpoint
    assert state["api_keys_table"] == stack.env["API_KEYS_TABLE"]
    assert state["ws_url"] == stack.ws_url
    assert state["token"] == stack.token
    assert state["management_secret_key"] == stack.management_key.secret_key
    # What `comfyroute run --help` promises: no --token and no COMFYROUTE_TOKEN -> this file.
    monkeypatch.setenv("COMFYROUTE_DEV_STATE", str(stack.state_file))
    endpoint = resolve_endpoint(None, None, env={})
    assert endpoint.url == stack.ws_url
    assert endpoint.token.get_secret_value() == stack.token
    # ...but never for another server.
    assert (
        resolve_endpoint(
            "ws://elsewhere.example:3001", None, env={"COMFYROUTE_TOKEN": "t" * 20}
        ).token.get_secret_value()
        == "t" * 20
    )


def test_state_file_made_private_even_when_it_existed_world_readable(tmp_path: Path) -> None:
    from comfyroute_tools.dev.stack import write_private

    path = tmp_path / "sub" / "dev.json"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, '{"token": "x"}')
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == '{"token": "x"}'


def test_make_dev_passes_args_to_comfyroute_dev() -> None:
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        ["make", "-n", "dev", "ARGS=--port 3999 --host 0.0.0.0"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert ".venv/bin/comfyroute dev --port 3999 --host 0.0.0.0" in out.splitlines()


# --------------------------------------------------------------------------- Lambda in-process


def test_handler_exception_reaches_lambda_invoke_as_a_function_error(stack: DevStack) -> None:
    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("fail"):
            raise ExecutorUnavailable("comfy is down")
        return {"echo": event, "function": context.function_name, "remaining": context.get_remaining_time_in_millis()}

    lam = stack.client("lambda")
    name = "comfyroute-dev-test-flaky"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=stack.role_arn,
        Handler="app.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        Timeout=5,
    )
    stack.registry.add(InProcessFunction(name=name, handler=flaky, timeout_seconds=5))
    try:
        ok = lam.invoke(FunctionName=name, Payload=json.dumps({"x": 1}))
        assert "FunctionError" not in ok
        body = json.loads(ok["Payload"].read())
        assert body["echo"] == {"x": 1}
        assert body["function"] == name
        assert 0 < body["remaining"] <= 5000

        failed = lam.invoke(FunctionName=name, Payload=json.dumps({"fail": True}))
        assert failed["FunctionError"] == "Unhandled"
        error = json.loads(failed["Payload"].read())
        assert error["errorType"] == "ExecutorUnavailable"
        assert error["errorMessage"] == "comfy is down"
    finally:
        stack.registry.remove(name)


def test_step_functions_retries_and_catches_on_the_exception_class_name(stack: DevStack) -> None:
    calls: list[int] = []

    def unavailable_once(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ExecutorUnavailable("not yet")
        raise KeyError("job")

    name = "comfyroute-dev-test-unavailable"
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    stack.registry.add(InProcessFunction(name=name, handler=unavailable_once, arn=arn))
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn, "Payload": {"n.$": "$.n"}},
                "Retry": [{"ErrorEquals": ["ExecutorUnavailable"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    sfn = stack.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="dev-test-retry", definition=json.dumps(definition), roleArn=stack.role_arn
    )["stateMachineArn"]
    try:
        execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"n": 1}))["executionArn"]
        deadline = time.monotonic() + TIMEOUT
        while (desc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution did not finish"
            time.sleep(0.05)
        assert desc["status"] == "SUCCEEDED"
        output = json.loads(desc["output"])
        # ExecutorUnavailable retried, then a KeyError caught under its own class name.
        assert len(calls) == 2
        assert output["error"]["Error"] == "KeyError"
    finally:
        stack.registry.remove(name)
        sfn.delete_state_machine(stateMachineArn=machine)


def test_a_lambda_task_gets_invokes_answer_from_the_in_process_function(stack: DevStack) -> None:
    # Step Functions' Lambda tasks reach registered functions without moto's server; what the
    # task gets is still Invoke's answer, as through moto (StatusCode, ExecutedVersion, Payload).
    threads: list[str] = []

    def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"got": event, "function": context.function_name}

    name = "comfyroute-dev-test-echo"
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    stack.registry.add(InProcessFunction(name=name, handler=echo, arn=arn))
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn, "Payload": {"n.$": "$.n"}},
                "End": True,
            }
        },
    }
    sfn = stack.client("stepfunctions")
    machine = sfn.create_state_machine(name="dev-test-echo", definition=json.dumps(definition), roleArn=stack.role_arn)[
        "stateMachineArn"
    ]
    try:
        execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"n": 7}))["executionArn"]
        deadline = time.monotonic() + TIMEOUT
        while (desc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution did not finish"
            time.sleep(0.05)
        assert desc["status"] == "SUCCEEDED"
        assert json.loads(desc["output"]) == {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": {"got": {"n": 7}, "function": name},
        }
        # Run on the state's own thread, not on a request thread of moto's server.
        assert len(threads) == 1
        assert "process_request" not in threads[0]
    finally:
        stack.registry.remove(name)
        sfn.delete_state_machine(stateMachineArn=machine)


# --------------------------------------------------------------------------- over a real WebSocket


def test_ping_gets_pong(stack: DevStack) -> None:
    with open_ws(stack, stack.token) as ws:
        ws.send(json.dumps({"command": "ping"}))
        pong = json.loads(ws.recv(timeout=TIMEOUT))
        assert pong["type"] == "pong"
        assert abs(pong["ts"] - time.time()) < 60  # server time, seconds (nodetool's pong has ts)


def test_unknown_token_is_refused(stack: DevStack) -> None:
    with pytest.raises(InvalidStatus) as err:
        open_ws(stack, "crt_not-a-token-anyone-issued")
    assert err.value.response.status_code == 403


def test_run_job_completes_against_comfyui(stack: DevStack, comfy: FakeComfyUI, job_events: list[JobEvent]) -> None:
    job_id = f"dev-job-{int(time.time() * 1000)}"
    with open_ws(stack, stack.token) as ws:
        ws.send(json.dumps({"command": "run_job", "data": {"job_id": job_id, "prompt": PROMPT}}))
        messages = receive_until(ws, lambda m: m.get("type") == "job_update" and m.get("status") in TERMINAL)
    # Nodes and outputs come before the final job_update (a client may stop reading there).
    outputs = [m for m in messages if m.get("type") == "output_update"]
    assert {(m["node_id"], m["status"]) for m in messages if m.get("type") == "node_update"} >= {("2", "completed")}
    seqs = [m["job_seq"] for m in messages if m.get("job_id") == job_id]
    assert seqs == list(range(1, len(seqs) + 1))  # every message of the job, numbered in order
    assert (messages[-1]["status"], messages[-1]["output_count"]) == ("completed", len(outputs))
    statuses = [m["status"] for m in messages if m.get("type") == "job_update"]
    assert statuses[0] == "queued"
    assert statuses[-1] == "completed", messages
    assert outputs[0]["type"] == "output_update"
    assert outputs[0]["node_id"] == "2"
    assert outputs[0]["value"]["content_type"] == "image/png"
    # ComfyUI got the prompt as sent (the job id is its prompt id, so look it up by content).
    assert PROMPT in comfy.submitted
    # The job record and the console log agree.
    # Keyed per user; the client's own id is kept beside the key.
    (job,) = [
        item
        for item in stack.client("dynamodb").scan(TableName=stack.env["JOBS_TABLE"])["Items"]
        if item.get("client_job_id", {}).get("S") == job_id
    ]
    assert job["status"]["S"] == "completed"
    lines = [e.line() for e in job_events if e.job_id == job_id]
    assert lines[0] == f"job {job_id} queued executor=local"
    assert lines[-1] == f"job {job_id} completed executor=local"


def test_keys_create_issues_a_working_token(stack: DevStack, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="comfyroute")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", "create", "--user", "alice", "--state-file", str(stack.state_file)])
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert re.fullmatch(r"crt_[A-Za-z0-9_-]{20,}", token)
    assert token not in err
    with open_ws(stack, token) as ws:
        ws.send(json.dumps({"command": "list_jobs"}))
        reply = json.loads(ws.recv(timeout=TIMEOUT))
    # alice sees her own (empty) job list, not dev's jobs.
    assert reply == {"type": "job_list", "request": "list_jobs", "jobs": []}


def test_keys_create_without_a_dev_stack_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="comfyroute")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", "create", "--user", "bob", "--state-file", str(tmp_path / "none.json")])
    assert args.handler(args) == 2
    assert "comfyroute dev" in capsys.readouterr().err


# --------------------------------------------------------------------------- small pieces


def test_parse_job_event_reads_job_updates_only() -> None:
    update = json.dumps({"type": "job_update", "job_id": "j1", "status": "running", "executor": "runpod"}).encode()
    event = parse_job_event("c1", update)
    assert event == JobEvent(job_id="j1", status="running", executor="runpod", connection_id="c1")
    assert event.line() == "job j1 running executor=runpod"
    assert parse_job_event("c1", b'{"type":"pong"}') is None
    assert parse_job_event("c1", b"\xff") is None


def test_token_length_is_checked() -> None:
    with pytest.raises(ValueError, match="16 to 256"):
        DevStack(port=0, token="short")
