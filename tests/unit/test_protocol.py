"""The wire protocol: every command parses, every rejection names what is wrong."""

import json
from typing import Literal

import pytest

from comfyroute.protocol import JobStatus, commands, protocol_json_schema, workflow_commands
from comfyroute.protocol.commands import (
    COMMANDS,
    CancelJob,
    GetJob,
    Limits,
    ListJobs,
    Ping,
    ProtocolError,
    command_model,
    parse_command,
)
from comfyroute.protocol.server_messages import (
    ErrorMessage,
    JobUpdate,
    OutputUpdate,
    OutputValue,
    encode,
    parse_server_message,
)
from comfyroute.protocol.workflow_commands import RunJob, SaveWorkflow

GRAPH = {"nodes": [{"id": 1, "type": "comfy.EmptyImage", "data": {"width": 8}}], "edges": []}


def body(command, **data):
    return json.dumps({"command": command, "data": data})


def test_every_command_parses_to_its_model():
    assert isinstance(parse_command(body("run_job", graph=GRAPH)), RunJob)
    assert isinstance(parse_command(body("cancel_job", job_id="j1")), CancelJob)
    assert isinstance(parse_command(body("get_job", job_id="j1")), GetJob)
    assert parse_command(json.dumps({"command": "list_jobs"})) == ListJobs(command="list_jobs")
    assert isinstance(parse_command(body("save_workflow", workflow_id="wf", graph=GRAPH)), SaveWorkflow)
    assert isinstance(parse_command(b'{"command": "ping"}'), Ping)


def test_run_job_fields_and_int_ids_become_strings():
    cmd = parse_command(
        body(
            "run_job",
            job_id="job-1",
            workflow_id="wf",
            graph=GRAPH,
            params={"1": {"width": 16}},
            settings={"comfy_executor": "runpod", "runpod_endpoint_id": " ep_1 ", "theme": "dark"},
        )
    )
    assert cmd.data.graph.nodes[0].id == "1"
    assert cmd.data.settings.comfy_executor == "runpod"
    assert cmd.data.settings.runpod_endpoint_id == "ep_1"
    assert cmd.data.settings.model_extra == {"theme": "dark"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "empty message"),
        ("{not json", "message is not JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ('{"data": {}}', "'command' is missing; known commands: run_job"),
        ('{"command": "fly"}', "unknown command 'fly'; known commands: " + ", ".join(COMMANDS)),
        (body("run_job"), "data: needs 'graph', 'prompt', 'workflow'"),
        (
            body("run_job", graph=GRAPH, prompt={}),
            "give only one of 'graph', 'prompt', 'workflow' or 'workflow_upload_id'",
        ),
        (body("run_job", graph={"nodes": [{"id": "1"}]}), "data.graph.nodes[0].type: Field required"),
        (body("run_job", graph=GRAPH, job_id="a b"), "data.job_id: String should match pattern"),
        (body("cancel_job"), "data.job_id: Field required"),
        (body("list_jobs", limit=1000), "data.limit: Input should be less than or equal to 100"),
        (body("ping", extra=1), "data.extra: Extra inputs are not permitted"),
        (
            body("run_job", graph=GRAPH, settings={"comfy_executor": "runpod", "runpod_endpoint_id": "../x"}),
            "data.settings.runpod_endpoint_id: String should match pattern",
        ),
        (
            body("run_job", graph=GRAPH, settings={"comfy_executor": "cloud"}),
            "data.settings.comfy_executor: Input should be 'local' or 'runpod'",
        ),
    ],
)
def test_rejections_name_the_field(raw, expected):
    with pytest.raises(ProtocolError) as err:
        parse_command(raw)
    assert expected in str(err.value)


def test_unknown_command_has_its_own_code():
    with pytest.raises(ProtocolError) as err:
        parse_command('{"command": "fly"}')
    assert err.value.code == "unknown_command"


def test_limits_on_body_nodes_and_edges():
    limits = Limits(max_nodes=2, max_edges=1, max_body_bytes=10_000)
    nodes = [{"id": str(i), "type": "comfy.X"} for i in range(3)]
    with pytest.raises(ProtocolError, match="data.graph.nodes: 3 nodes; the limit is 2"):
        parse_command(body("run_job", graph={"nodes": nodes}), limits)
    edges = [{"source": "0", "target": "1"}] * 2
    with pytest.raises(ProtocolError, match="data.graph.edges: 2 edges; the limit is 1"):
        parse_command(body("run_job", graph={"nodes": nodes[:2], "edges": edges}), limits)
    prompt = {str(i): {"class_type": "X", "inputs": {}} for i in range(3)}
    with pytest.raises(ProtocolError, match="data.prompt: 3 nodes"):
        parse_command(body("run_job", prompt=prompt), limits)
    with pytest.raises(ProtocolError, match="the limit is 10000 bytes") as err:
        parse_command("x" * 10_001, limits)
    assert err.value.code == "too_large"


def test_default_body_limit_is_api_gateways_128kb():
    big = json.dumps({"command": "ping", "pad": "x" * (128 * 1024)})
    with pytest.raises(ProtocolError, match="limit is 131072 bytes"):
        parse_command(big)


def test_server_messages_round_trip_without_nulls():
    update = JobUpdate(job_id="j", status=JobStatus.COMPLETED, duration=1.5)
    wire = encode(update)
    assert json.loads(wire) == {"type": "job_update", "job_id": "j", "status": "completed", "duration": 1.5}
    assert parse_server_message(wire) == update
    out = OutputUpdate(
        job_id="j",
        node_id="3",
        node_name="SaveImage",
        output_name="images",
        output_type="image",
        value=OutputValue(uri="https://x/y.png", filename="y.png", content_type="image/png", size=3),
    )
    assert parse_server_message(encode(out)) == out
    err = ErrorMessage(message="bad", request="run_job")
    assert parse_server_message(encode(err)).request == "run_job"


def test_json_schema_covers_commands_and_messages():
    schema = protocol_json_schema()
    text = json.dumps(schema)
    for name in (*COMMANDS, "job_update", "node_progress", "output_update", "job_list", "pong"):
        assert f'"{name}"' in text


# --------------------------------------------------------------------------- hostile frames (issue 9)
# Each of these once escaped parse_command as something other than a ProtocolError, or was
# accepted and broke a handler or DynamoDB later.


def _rejection(frame):
    with pytest.raises(ProtocolError) as info:
        parse_command(frame)
    # Always sendable back to the client.
    encode(ErrorMessage(message=info.value.message)).encode("utf-8")
    return info.value.message


def test_integers_past_pythons_parsing_limit_are_refused():
    assert _rejection('{"command":"ping","data":{"n":' + "9" * 5000 + "}}") == (
        "message is not acceptable JSON: a number is too long"
    )


def test_json_nested_past_the_recursion_limit_is_refused():
    assert _rejection('{"command":"ping","data":' + "[" * 2000 + "]" * 2000 + "}") in (
        "message is nested too deeply to read",
        # Python versions differ in where json.loads gives up.
        "data" + "[0]" * 63 + ": nested more than 64 levels deep",
    )


def test_prompt_inputs_nested_a_few_hundred_deep_are_refused_with_their_path():
    nested = "[" * 300 + "1" + "]" * 300
    message = _rejection(
        '{"command":"run_job","data":{"prompt":{"1":{"class_type":"X","inputs":{"v":' + nested + "}}}}}"
    )
    assert message.startswith("data.prompt.1.inputs.v[0][0]")
    assert message.endswith(": nested more than 64 levels deep")


@pytest.mark.parametrize("escaped", [True, False])
def test_lone_surrogates_are_refused_naming_the_field(escaped):
    s = "\\ud800" if escaped else "\ud800"
    message = _rejection('{"command":"run_job","data":{"prompt":{"1":{"class_type":"X","inputs":{"t":"a' + s + '"}}}}}')
    assert message == "data.prompt.1.inputs.t: contains the lone surrogate \\ud800, which is not Unicode text"
    assert (
        _rejection('{"command":"r\\udc00"}')
        == "command: contains the lone surrogate \\udc00, which is not Unicode text"
    )


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("1e308", "numbers must lie between 1e-130 and 1e126 in magnitude (or be 0)"),
        ("1e-200", "numbers must lie between 1e-130 and 1e126 in magnitude (or be 0)"),
        ("1" + "0" * 38, "integers may have at most 38 digits"),
        ("-" + "9" * 39, "integers may have at most 38 digits"),
    ],
)
def test_numbers_dynamodb_cannot_store_are_refused(number, problem):
    frame = '{"command":"save_workflow","data":{"workflow_id":"wf","settings":{"seed":' + number + "}}}"
    assert _rejection(frame) == f"data.settings.seed: {problem}"


def test_numbers_dynamodb_can_store_pass():
    frame = (
        '{"command":"save_workflow","data":{"workflow_id":"wf","settings":{"a":' + "9" * 38 + ',"b":9.9e125,"c":0.0}}}'
    )
    assert parse_command(frame).data.settings.model_extra == {"a": int("9" * 38), "b": 9.9e125, "c": 0.0}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    assert _rejection('{"command":"ping","data":{"x":' + constant + "}}") == (
        f"message is not acceptable JSON: {constant} is not a JSON number"
    )


def test_empty_node_ids_and_settings_keys_are_refused():
    assert _rejection(body("run_job", prompt={"": {"class_type": "X", "inputs": {}}})) == (
        'data.prompt: keys must not be empty (found "")'
    )
    assert _rejection(body("run_job", graph={"nodes": [{"id": "", "type": "comfy.X"}]})) == (
        "data.graph.nodes[0].id: must not be empty"
    )
    assert _rejection(body("save_workflow", workflow_id="wf", settings={"": 1})) == (
        'data.settings: keys must not be empty (found "")'
    )
    edge = {"source": " ", "target": "1"}
    assert _rejection(body("run_job", graph={"nodes": [{"id": 1, "type": "comfy.X"}], "edges": [edge]})) == (
        "data.graph.edges[0].source: must not be empty"
    )


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("x", 'data.prompt.1: must be an object {"class_type": ..., "inputs": {...}}'),
        ({"inputs": {}}, "data.prompt.1.class_type: must be a non-empty string"),
        ({"class_type": ["X"]}, "data.prompt.1.class_type: must be a non-empty string"),
        ({"class_type": "X", "inputs": "y"}, "data.prompt.1.inputs: must be an object"),
    ],
)
def test_mis_shaped_prompt_nodes_are_refused(node, message):
    assert _rejection(body("run_job", prompt={"1": node})) == message


def test_odd_keys_are_quoted_in_paths_and_control_characters_escaped():
    assert _rejection(json.dumps({"command": "ping", "a b": 1})) == 'body["a b"]: Extra inputs are not permitted'
    assert _rejection(json.dumps({"command": "x\ny"})).startswith("unknown command 'x\\ny'")


def test_bytes_that_are_not_utf8_say_so():
    assert _rejection(b'{"command": "\xff"}').startswith("message is not UTF-8 text: invalid start byte at byte")


def test_every_command_has_a_model_named_by_it_and_every_model_is_a_command() -> None:
    for name in COMMANDS:
        model = command_model(name)
        assert model.model_fields["command"].annotation == Literal[name]
    assert sorted([*commands._MODELS, *workflow_commands.MODELS]) == sorted(COMMANDS)
