"""template.yaml, samconfig.toml and statemachine/job.asl.json against docs/architecture.md:
routes and their functions, function settings, tables, bucket, IAM scoping and the state
machine definition. cfn-lint / sam validate / sam build run in .ci/tools.sh."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from comfyroute_tools.dev.asl import (
    REQUIRED_SUBSTITUTIONS,
    DefinitionError,
    load_definition,
    load_definition_dict,
    placeholders,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
ASL_PATH = ROOT / "statemachine" / "job.asl.json"
LAYER_MAKEFILE = ROOT / "layers" / "comfyroute" / "Makefile"

FUNCTIONS = {
    "AuthorizerFunction": "authorizer",
    "ConnectFunction": "connect",
    "DisconnectFunction": "disconnect",
    "DefaultFunction": "default",
    "RunJobFunction": "run_job",
    "CancelJobFunction": "cancel_job",
    "JobQueriesFunction": "job_queries",
    "SaveWorkflowFunction": "save_workflow",
    "RequestUploadFunction": "request_upload",
    "PollFunction": "poll",
    "FollowFunction": "follow",
    "RunPodCallbackFunction": "runpod_callback",
    "NotifyFunction": "notify",
}
ROUTES = {
    "$connect": "ConnectFunction",
    "$disconnect": "DisconnectFunction",
    "$default": "DefaultFunction",
    "run_job": "RunJobFunction",
    "cancel_job": "CancelJobFunction",
    "get_job": "JobQueriesFunction",
    "list_jobs": "JobQueriesFunction",
    "reconnect_job": "JobQueriesFunction",
    "save_workflow": "SaveWorkflowFunction",
    "request_upload": "RequestUploadFunction",
}
PUSHERS = {
    "RunJobFunction",
    "CancelJobFunction",
    "JobQueriesFunction",
    "SaveWorkflowFunction",
    "RequestUploadFunction",
    "DefaultFunction",
    "NotifyFunction",
    "FollowFunction",
    "PollFunction",  # Arm pushes RunPod's progress while it waits for the webhook
}
SECRET_READERS = {"RunJobFunction", "CancelJobFunction", "PollFunction", "FollowFunction"}
MANAGE_CONNECTIONS_ARN = (
    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${Stage}/POST/@connections/*"
)
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
TEST_SUBSTITUTIONS = {
    "PollFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:poll",
    "NotifyFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:notify",
    "FollowFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:follow",
}
SECRETS_PREFIX_VALUE = {"Fn::If": ["SecretsPrefixFromStackName", {"Ref": "AWS::StackName"}, {"Ref": "SecretsPrefix"}]}


# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    tpl, errors = decode(str(TEMPLATE_PATH))
    assert not errors, [str(e) for e in errors]
    assert tpl is not None
    return json.loads(json.dumps(tpl))  # plain dicts/lists, no cfn-lint node classes


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return load_definition_dict(TEST_SUBSTITUTIONS, ASL_PATH)


def of_type(resources: Mapping[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == rtype}


def sub_text(value: Any) -> str:
    assert isinstance(value, dict), f"expected a !Sub, got {value!r}"
    assert "Fn::Sub" in value, f"expected a !Sub, got {value!r}"
    text = value["Fn::Sub"]
    assert isinstance(text, str)
    return text


def sub_refs(value: Any) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z0-9:.]+)\}", sub_text(value)))


def function_of_lambda_uri(uri: Any) -> str:
    """The logical id of the function an API Gateway Lambda URI points at."""
    refs = {r.removesuffix(".Arn") for r in sub_refs(uri) if r.endswith(".Arn")}
    assert len(refs) == 1, uri
    assert sub_text(uri).endswith("/invocations")
    return refs.pop()


def effective_function(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties as SAM sees them after merging Globals (maps merged, lists
    appended, scalars overridden)."""
    merged: dict[str, Any] = json.loads(json.dumps(template.get("Globals", {}).get("Function", {})))
    for key, value in template["Resources"][logical_id]["Properties"].items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def policy_statements(props: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in props.get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            yield from policy["Statement"]


def actions(statement: Mapping[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def statements_with(resources: Mapping[str, Any], logical_id: str, action_prefix: str) -> list[dict[str, Any]]:
    """The inline statements of a function's policies granting an action that starts with ``action_prefix``."""
    return [
        s
        for s in policy_statements(resources[logical_id]["Properties"])
        if any(a.startswith(action_prefix) for a in actions(s))
    ]


def docs_section(title: str) -> str:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}.*?$(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/architecture.md has no '## {title}' section"
    return match.group(1)


# ------------------------------------------------------------------------------ WebSocket API


def test_is_a_sam_template(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


def test_websocket_api_routes_on_the_command_field(resources: dict[str, Any]) -> None:
    (api,) = of_type(resources, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.command"


def test_every_route_reaches_its_function_through_a_proxy_integration(resources: dict[str, Any]) -> None:
    routes = of_type(resources, "AWS::ApiGatewayV2::Route")
    integrations = of_type(resources, "AWS::ApiGatewayV2::Integration")
    found: dict[str, str] = {}
    for route in routes.values():
        props = route["Properties"]
        assert props["ApiId"] == {"Ref": "WebSocketApi"}
        (integration_id,) = sub_refs(props["Target"])
        assert sub_text(props["Target"]) == f"integrations/${{{integration_id}}}"
        integration = integrations[integration_id]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["ApiId"] == {"Ref": "WebSocketApi"}
        found[props["RouteKey"]] = function_of_lambda_uri(integration["IntegrationUri"])
    assert found == ROUTES


def test_default_hands_commands_to_their_routes_functions_and_may_invoke_only_those(
    resources: dict[str, Any],
) -> None:
    props = resources["DefaultFunction"]["Properties"]
    mapping = props["Environment"]["Variables"]["ROUTE_FUNCTIONS"]
    text = sub_text(mapping)
    owners = {k: v.strip("${}") for k, v in json.loads(text).items()}
    assert owners == {k: v for k, v in ROUTES.items() if not k.startswith("$")}
    invokable = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in props["Policies"] if "LambdaInvokePolicy" in p}
    assert invokable == set(owners.values())
    # ...and nothing of theirs: no table but the connections, no state machine, no secrets.
    assert not statements_with(resources, "DefaultFunction", "states:")
    assert not statements_with(resources, "DefaultFunction", "secretsmanager:")


def test_only_connect_is_authorized_by_the_token_authorizer(resources: dict[str, Any]) -> None:
    (auth_id, authorizer), *_ = of_type(resources, "AWS::ApiGatewayV2::Authorizer").items()
    props = authorizer["Properties"]
    assert props["AuthorizerType"] == "REQUEST"
    # No identity source: the token may come as ?api_key=, ?token= or Authorization: Bearer,
    # and API Gateway refuses (401) before the authorizer whatever listed source is missing.
    assert "IdentitySource" not in props
    assert "AuthorizerResultTtlInSeconds" not in props
    assert function_of_lambda_uri(props["AuthorizerUri"]) == "AuthorizerFunction"
    for route in of_type(resources, "AWS::ApiGatewayV2::Route").values():
        rprops = route["Properties"]
        if rprops["RouteKey"] == "$connect":
            assert rprops["AuthorizationType"] == "CUSTOM"
            assert rprops["AuthorizerId"] == {"Ref": auth_id}
        else:
            assert rprops.get("AuthorizationType", "NONE") == "NONE"


def test_api_gateway_may_invoke_each_websocket_function_from_this_api_only(resources: dict[str, Any]) -> None:
    permissions = of_type(resources, "AWS::Lambda::Permission").values()
    allowed = {}
    for perm in permissions:
        props = perm["Properties"]
        assert props["Principal"] == "apigateway.amazonaws.com"
        assert props["Action"] == "lambda:InvokeFunction"
        assert sub_text(props["SourceArn"]).startswith(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/"
        )
        allowed[props["FunctionName"]["Ref"]] = props
    assert set(allowed) == set(ROUTES.values()) | {"AuthorizerFunction"}


def test_deployment_waits_for_every_route(resources: dict[str, Any]) -> None:
    (deployment,) = of_type(resources, "AWS::ApiGatewayV2::Deployment").values()
    assert set(deployment["DependsOn"]) == set(of_type(resources, "AWS::ApiGatewayV2::Route"))


def test_stage_throttles_and_writes_json_access_logs(resources: dict[str, Any]) -> None:
    (stage,) = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == {"Ref": "Stage"}
    assert props["DeploymentId"] == {"Ref": "Deployment"}
    settings = props["DefaultRouteSettings"]
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ThrottlingBurstLimit"}
    assert settings["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
    assert settings["DataTraceEnabled"] is False  # message bodies carry prompts and settings
    log_group = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    fmt = json.loads(props["AccessLogSettings"]["Format"])
    assert {"requestId", "connectionId", "routeKey", "status", "error"} <= set(fmt)
    assert fmt["connectionId"] == "$context.connectionId"


# ------------------------------------------------------------------------------ functions


def test_functions_are_exactly_the_documented_ones(resources: dict[str, Any]) -> None:
    assert set(of_type(resources, "AWS::Serverless::Function")) == set(FUNCTIONS)
    documented = set(re.findall(r"^\| `(\w+)` \|", docs_section("Functions"), re.M))
    assert documented == set(FUNCTIONS.values())


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_runtime_architecture_layer_and_code(template: dict[str, Any], logical_id: str) -> None:
    props = effective_function(template, logical_id)
    name = FUNCTIONS[logical_id]
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "app.handler"
    assert props["Tracing"] == "Active"
    assert props["Layers"] == [{"Ref": "ComfyrouteLayer"}]
    assert props["CodeUri"] == f"functions/{name}/"
    assert (ROOT / "functions" / name / "app.py").is_file(), f"functions/{name}/app.py is missing"
    # Well under API Gateway's and Step Functions' limits, and long enough to do something.
    assert 3 <= props["Timeout"] <= 900
    assert 128 <= props["MemorySize"] <= 10240


def test_poll_and_submit_get_more_time_than_the_quick_handlers(template: dict[str, Any]) -> None:
    timeout = {lid: effective_function(template, lid)["Timeout"] for lid in FUNCTIONS}
    quick = max(timeout[f] for f in ("AuthorizerFunction", "ConnectFunction", "DisconnectFunction", "DefaultFunction"))
    assert timeout["PollFunction"] > timeout["RunJobFunction"] > quick


def test_layer_is_built_from_the_library_with_its_requirements(resources: dict[str, Any]) -> None:
    layer = resources["ComfyrouteLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/comfyroute/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    # Built by layers/comfyroute/Makefile (compiled bytecode, no second botocore), not SAM's pip builder.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == "arm64"
    assert LAYER_MAKEFILE.is_file()
    requirements = (ROOT / "layers" / "comfyroute" / "requirements.txt").read_text()
    assert "pydantic" in requirements
    assert (ROOT / "layers" / "comfyroute" / "comfyroute" / "__init__.py").is_file()


def layer_build_commands(**variables: str) -> list[str]:
    """What `sam build` would run for the layer: make's dry run of the target SAM calls, one
    shell command per item (backslash continuations joined, quotes dropped)."""
    assert shutil.which("make"), "make is needed to build the layer"
    args = [f"{k}={v}" for k, v in {"ARTIFACTS_DIR": "/tmp/layer-artifacts", **variables}.items()]
    # Not the flags of a `make test` this runs under: they would add "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}}
    done = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "-f", str(LAYER_MAKEFILE), "build-ComfyrouteLayer", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    joined = re.sub(r"\\\n\s*", " ", done.stdout).replace('"', "")
    return [line for line in joined.splitlines() if line.strip()]


def command_with(commands: list[str], needle: str) -> str:
    found = [c for c in commands if needle in c]
    assert len(found) == 1, (needle, commands)
    return found[0]


def test_layer_makefile_installs_lambda_wheels_drops_the_runtime_sdk_and_compiles() -> None:
    commands = layer_build_commands()
    pip = command_with(commands, " -m pip install ")
    for flag in (
        "--platform manylinux2014_aarch64",
        "--only-binary=:all:",
        "--python-version 3.12",
        "--implementation cp",
        "--target /tmp/layer-artifacts/python",
        "--no-compile",
    ):
        assert flag in pip, flag
    assert pip.endswith("layers/comfyroute/requirements.txt")
    # What the python3.12 runtime ships goes after pip pulls it in (aws-xray-sdk -> botocore).
    removal = command_with(commands, "for name in")
    removed = set(removal.split("for name in", 1)[1].split(";", 1)[0].split())
    assert {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3"} <= removed
    assert not removed & {"pydantic", "pydantic_core", "aws_lambda_powertools", "requests", "websockets", "comfyroute"}
    # Only the library goes in, never the tools; then everything is compiled for a read-only mount.
    copy = command_with(commands, "cp -R ")
    assert copy.endswith("layers/comfyroute/comfyroute /tmp/layer-artifacts/python/comfyroute")
    assert not any("comfyroute_tools" in c for c in commands)
    compile_ = command_with(commands, " -m compileall ")
    assert "--invalidation-mode unchecked-hash" in compile_
    assert compile_.endswith(" /tmp/layer-artifacts/python")
    assert commands.index(compile_) == len(commands) - 1, "compileall must run after everything is in place"


def test_layer_platform_can_be_the_hosts_for_local_builds() -> None:
    pip = command_with(layer_build_commands(LAYER_PLATFORM="manylinux2014_x86_64"), " -m pip install ")
    assert "--platform manylinux2014_x86_64" in pip
    assert "aarch64" not in pip


def test_globals_set_every_documented_environment_variable(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", docs_section("Environment variables")))
    assert len(documented) >= 20
    assert documented <= set(env), sorted(documented - set(env))
    assert env["SECRETS_PREFIX"] == SECRETS_PREFIX_VALUE
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert env["JOB_TIMEOUT_SECONDS"] == {"Ref": "JobTimeoutSeconds"}
    assert env["POLL_INTERVAL_CAP_SECONDS"] == {"Ref": "PollIntervalCapSeconds"}
    assert env["OUTPUT_RETENTION_DAYS"] == {"Ref": "OutputRetentionDays"}
    assert env["RUNPOD_API_BASE"] == {"Ref": "RunPodApiBase"}
    assert sub_text(env["WEBSOCKET_ENDPOINT"]) == (
        "https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"
    )


def test_state_machine_arn_env_names_the_state_machine_without_a_cycle(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    name = sub_text(resources["JobStateMachine"]["Properties"]["Name"])
    assert sub_text(env["STATE_MACHINE_ARN"]) == (
        f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:{name}"
    )
    # poll/notify carry this variable and the state machine references them: no !Ref allowed.
    assert "JobStateMachine" not in json.dumps(env)


# ------------------------------------------------------------------------------ IAM


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_manage_connections_only_for_pushers_and_scoped_to_the_stage(
    resources: dict[str, Any], logical_id: str
) -> None:
    statements = statements_with(resources, logical_id, "execute-api:ManageConnections")
    if logical_id in PUSHERS:
        assert statements, f"{logical_id} pushes messages but may not"
    else:
        assert not statements, f"{logical_id} does not push but may"
    for s in statements:
        assert actions(s) == {"execute-api:ManageConnections"}
        assert sub_text(s["Resource"]) == MANAGE_CONNECTIONS_ARN


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_secrets_only_for_executor_users_and_only_under_the_prefix(resources: dict[str, Any], logical_id: str) -> None:
    statements = statements_with(resources, logical_id, "secretsmanager:")
    assert bool(statements) == (logical_id in SECRET_READERS)
    for s in statements:
        assert actions(s) == {"secretsmanager:GetSecretValue"}
        # The same prefix the functions are told (SECRETS_PREFIX), so another stack's
        # {its prefix}/users/... secrets are out of reach.
        text, variables = s["Resource"]["Fn::Sub"]
        assert text == "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Prefix}/*"
        assert variables == {"Prefix": SECRETS_PREFIX_VALUE}


def test_two_stacks_in_one_account_cannot_read_each_others_user_secrets(template: dict[str, Any]) -> None:
    from fnmatch import fnmatchcase

    from comfyroute_tools.dev.template import Resolver

    def stack(name: str, **parameters: str) -> tuple[str, list[str]]:
        res = Resolver(template, stack_name=name, account_id="123456789012", parameters=parameters)
        prefix = res.resolve(template["Globals"]["Function"]["Environment"]["Variables"]["SECRETS_PREFIX"])
        granted = [
            res.resolve(st["Resource"])
            for lid in SECRET_READERS
            for st in statements_with(template["Resources"], lid, "secretsmanager:")
        ]
        return prefix, granted

    def secret_arn(name: str) -> str:
        # Secrets Manager appends a random suffix to every secret's ARN.
        return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"

    # "comfyroute-b" starts with "comfyroute": the slash after the prefix keeps them apart.
    stacks = {
        "comfyroute": stack("comfyroute"),
        "comfyroute-b": stack("comfyroute-b"),
        "x": stack("x", SecretsPrefix="team/x"),
    }
    assert {name: prefix for name, (prefix, _) in stacks.items()} == {
        "comfyroute": "comfyroute",
        "comfyroute-b": "comfyroute-b",
        "x": "team/x",
    }
    for name, (_, granted) in stacks.items():
        assert len(granted) == len(SECRET_READERS)
        for other, (other_prefix, _) in stacks.items():
            for secret in (f"{other_prefix}/users/alice", f"{other_prefix}/default"):
                readable = all(fnmatchcase(secret_arn(secret), arn) for arn in granted)
                assert readable == (other == name), (name, secret)


def test_secrets_prefix_defaults_to_the_stack_name(template: dict[str, Any]) -> None:
    param = template["Parameters"]["SecretsPrefix"]
    assert param["Default"] == ""
    assert template["Conditions"]["SecretsPrefixFromStackName"] == {"Fn::Equals": [{"Ref": "SecretsPrefix"}, ""]}
    pattern = re.compile(param["AllowedPattern"])
    for good in ("", "comfyroute", "team-a/comfy", "a.b_c+d=e@f"):
        assert pattern.fullmatch(good), good
    # A trailing or doubled slash would make {prefix}/* reach further than the stack's own names.
    for bad in ("comfyroute/", "/x", "a//b", "a*", "a b"):
        assert not pattern.fullmatch(bad), bad


RESERVED = {
    "RunJobFunction": ("ReserveRunJob", "RunJobReservedConcurrency"),
    "PollFunction": ("ReservePoll", "PollReservedConcurrency"),
    "NotifyFunction": ("ReserveNotify", "NotifyReservedConcurrency"),
}


@pytest.mark.parametrize("logical_id", sorted(RESERVED))
def test_reserved_concurrency_is_an_optional_parameter(template: dict[str, Any], logical_id: str) -> None:
    condition, parameter = RESERVED[logical_id]
    props = template["Resources"][logical_id]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}
    param = template["Parameters"][parameter]
    # 0 would throttle the function to nothing, so it stands for "not reserved".
    assert param["Type"] == "Number"
    assert param["Default"] == 0
    assert param["MinValue"] == 0
    assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, 0]}]}


def test_no_other_function_reserves_concurrency(resources: dict[str, Any]) -> None:
    for lid in set(FUNCTIONS) - set(RESERVED):
        assert "ReservedConcurrentExecutions" not in resources[lid]["Properties"], lid


def test_outputs_access_logging_is_optional_and_goes_to_a_private_log_bucket(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    assert template["Parameters"]["OutputsAccessLogging"]["Default"] == "false"
    assert template["Conditions"]["LogOutputsAccess"] == {"Fn::Equals": [{"Ref": "OutputsAccessLogging"}, "true"]}
    logging_config = resources["OutputsBucket"]["Properties"]["LoggingConfiguration"]
    assert logging_config == {
        "Fn::If": [
            "LogOutputsAccess",
            {"DestinationBucketName": {"Ref": "AccessLogsBucket"}, "LogFilePrefix": "outputs/"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    logs = resources["AccessLogsBucket"]
    assert logs["Condition"] == "LogOutputsAccess"
    props = logs["Properties"]
    assert (
        props["PublicAccessBlockConfiguration"]
        == resources["OutputsBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    )
    assert props["BucketEncryption"] == resources["OutputsBucket"]["Properties"]["BucketEncryption"]
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (expiry,) = props["LifecycleConfiguration"]["Rules"]
    assert expiry["ExpirationInDays"] == {"Ref": "AccessLogRetentionDays"}

    policy = resources["AccessLogsBucketPolicy"]
    assert policy["Condition"] == "LogOutputsAccess"
    assert policy["Properties"]["Bucket"] == {"Ref": "AccessLogsBucket"}
    statements = {st["Sid"]: st for st in policy["Properties"]["PolicyDocument"]["Statement"]}
    delivery = statements["S3ServerAccessLogsFromTheOutputsBucket"]
    assert delivery["Effect"] == "Allow"
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert sub_text(delivery["Resource"]) == "${AccessLogsBucket.Arn}/outputs/*"
    # Only this stack's outputs bucket, in this account, may write logs here.
    assert delivery["Condition"]["ArnLike"] == {"aws:SourceArn": {"Fn::GetAtt": ["OutputsBucket", "Arn"]}}
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert template["Outputs"]["AccessLogsBucketName"]["Condition"] == "LogOutputsAccess"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_no_function_statement_has_a_wildcard_resource(resources: dict[str, Any], logical_id: str) -> None:
    for s in policy_statements(resources[logical_id]["Properties"]):
        assert s["Resource"] != "*", f"{logical_id}: {s}"
        assert "*" not in actions(s)


def test_submit_starts_and_cancel_stops_only_this_state_machine(resources: dict[str, Any]) -> None:
    submit = statements_with(resources, "RunJobFunction", "states:StartExecution")
    assert [s["Resource"] for s in submit] == [{"Ref": "JobStateMachine"}]
    cancel = statements_with(resources, "CancelJobFunction", "states:StopExecution")
    name = sub_text(resources["JobStateMachine"]["Properties"]["Name"])
    assert [sub_text(s["Resource"]) for s in cancel] == [
        f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:{name}:*"
    ]
    # The webhook's wait: the callback and Arm (in Poll) may end it, on this state machine only.
    machine = f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:{name}"
    for lid in ("PollFunction", "RunPodCallbackFunction"):
        wake = statements_with(resources, lid, "states:")
        assert [actions(s) for s in wake] == [{"states:SendTaskSuccess"}], lid
        assert [sub_text(s["Resource"]) for s in wake] == [machine], lid
    others = set(FUNCTIONS) - {"RunJobFunction", "CancelJobFunction", "PollFunction", "RunPodCallbackFunction"}
    for lid in others:
        assert not statements_with(resources, lid, "states:"), lid


def test_table_access_follows_what_each_function_does(resources: dict[str, Any]) -> None:
    def tables(lid: str, template_name: str) -> set[str]:
        return {
            p[template_name]["TableName"]["Ref"]
            for p in resources[lid]["Properties"].get("Policies", [])
            if isinstance(p, dict) and template_name in p
        }

    assert tables("AuthorizerFunction", "DynamoDBReadPolicy") == {"ApiKeysTable"}
    assert tables("AuthorizerFunction", "DynamoDBCrudPolicy") == set()
    assert tables("JobQueriesFunction", "DynamoDBReadPolicy") == {"JobsTable", "JobMessagesTable"}
    # The job's message stream is written by the functions that push job messages, and only them.
    writers = {lid for lid in FUNCTIONS if "JobMessagesTable" in tables(lid, "DynamoDBCrudPolicy")}
    assert writers == {"RunJobFunction", "CancelJobFunction", "NotifyFunction"}
    # ...plus UpdateItem alone, to move a running job to the client's new connection.
    jobs_statements = [
        st
        for p in resources["JobQueriesFunction"]["Properties"]["Policies"]
        if isinstance(p, dict) and "Statement" in p
        for st in p["Statement"]
        if st.get("Sid") == "FollowJobOnNewConnection"
    ]
    assert [(st["Action"], st["Resource"]) for st in jobs_statements] == [
        ("dynamodb:UpdateItem", {"Fn::GetAtt": ["JobsTable", "Arn"]})
    ]
    assert tables("RunJobFunction", "DynamoDBCrudPolicy") >= {"JobsTable", "IdempotencyTable"}
    assert tables("RunJobFunction", "DynamoDBReadPolicy") == {"WorkflowsTable"}
    assert tables("SaveWorkflowFunction", "DynamoDBCrudPolicy") >= {"WorkflowsTable"}
    assert "ApiKeysTable" not in {
        t
        for lid in FUNCTIONS
        if lid != "AuthorizerFunction"
        for t in tables(lid, "DynamoDBReadPolicy") | tables(lid, "DynamoDBCrudPolicy")
    }


# ------------------------------------------------------------------------------ state


EXPECTED_TABLES = {
    # env var: (hash key, range key, TTL attribute, point-in-time recovery) — docs/architecture.md
    "CONNECTIONS_TABLE": (("connection_id", "S"), None, "ttl", False),
    "JOBS_TABLE": (("job_id", "S"), None, "ttl", True),
    "WORKFLOWS_TABLE": (("user_id", "S"), ("workflow_id", "S"), None, True),
    "IDEMPOTENCY_TABLE": (("id", "S"), None, "expiration", False),
    "API_KEYS_TABLE": (("key_hash", "S"), None, None, True),
    "JOB_MESSAGES_TABLE": (("job_id", "S"), ("job_seq", "N"), "ttl", False),
}


@pytest.mark.parametrize("env_name", sorted(EXPECTED_TABLES))
def test_table_keys_ttl_and_protection(template: dict[str, Any], env_name: str) -> None:
    logical_id = template["Globals"]["Function"]["Environment"]["Variables"][env_name]["Ref"]
    table = template["Resources"][logical_id]
    assert table["Type"] == "AWS::DynamoDB::Table"
    props = table["Properties"]
    hash_key, range_key, ttl, pitr = EXPECTED_TABLES[env_name]
    attr_types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    schema = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}
    assert (schema["HASH"], attr_types[schema["HASH"]]) == hash_key
    if range_key:
        assert (schema["RANGE"], attr_types[schema["RANGE"]]) == range_key
    else:
        assert "RANGE" not in schema
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    if ttl:
        assert props["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in props
    assert props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False) is pitr


def test_jobs_table_has_the_by_user_index(resources: dict[str, Any]) -> None:
    props = resources["JobsTable"]["Properties"]
    attr_types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_user"
    keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
    assert keys == {"HASH": "user_id", "RANGE": "created_at"}
    assert attr_types["user_id"] == "S"
    assert attr_types["created_at"] == "N"
    assert index["Projection"] == {"ProjectionType": "ALL"}


def test_connections_table_has_the_by_key_index(resources: dict[str, Any]) -> None:
    # `comfyroute keys revoke` finds the open connections of a key through it.
    props = resources["ConnectionsTable"]["Properties"]
    attr_types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_key"
    assert index["KeySchema"] == [{"AttributeName": "key_id", "KeyType": "HASH"}]
    assert attr_types["key_id"] == "S"
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_outputs_bucket_is_private_encrypted_and_expires_job_outputs(resources: dict[str, Any]) -> None:
    props = resources["OutputsBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    expiring = [r for r in props["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expiring == [
        {
            "Id": "expire-job-outputs",
            "Status": "Enabled",
            "Prefix": "jobs/",
            "ExpirationInDays": {"Ref": "OutputRetentionDays"},
        },
        {
            "Id": "expire-uploads",
            "Status": "Enabled",
            "Prefix": "uploads/",
            "ExpirationInDays": {"Ref": "UploadRetentionDays"},
        },
        # Cached /object_info only: the RunPod snapshots users push (object-info/runpod/) stay.
        {
            "Id": "expire-cached-object-info",
            "Status": "Enabled",
            "Prefix": "object-info/comfyui/",
            "ExpirationInDays": 30,
        },
    ]


def test_run_job_reads_and_writes_node_schemas_only_under_object_info(resources: dict[str, Any]) -> None:
    props = resources["RunJobFunction"]["Properties"]
    statements = [st for policy in props["Policies"] if "Statement" in policy for st in policy["Statement"]]
    [schemas] = [st for st in statements if st.get("Sid") == "NodeSchemas"]
    assert sorted(schemas["Action"]) == ["s3:GetObject", "s3:PutObject"]
    assert schemas["Resource"] == {"Fn::Sub": "${OutputsBucket.Arn}/object-info/*"}
    # A live /object_info fetch through the tunnel fits the function's time and memory.
    assert props["Timeout"] >= 60
    assert props["MemorySize"] >= 1024


def test_outputs_bucket_refuses_plain_http(resources: dict[str, Any]) -> None:
    (policy,) = [
        p
        for p in of_type(resources, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "OutputsBucket"}
    ]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::GetAtt": ["OutputsBucket", "Arn"]} in statement["Resource"]


# ------------------------------------------------------------------------------ state machine


def test_state_machine_resource_fills_every_placeholder(resources: dict[str, Any]) -> None:
    sm = resources["JobStateMachine"]
    assert sm["Type"] == "AWS::Serverless::StateMachine"
    props = sm["Properties"]
    assert props["Type"] == "STANDARD"
    assert (ROOT / props["DefinitionUri"]).resolve() == ASL_PATH
    subs = props["DefinitionSubstitutions"]
    assert set(subs) == placeholders(ASL_PATH.read_text()) == REQUIRED_SUBSTITUTIONS
    assert subs["PollFunctionArn"] == {"Fn::GetAtt": ["PollFunction", "Arn"]}
    assert subs["NotifyFunctionArn"] == {"Fn::GetAtt": ["NotifyFunction", "Arn"]}
    assert subs["FollowFunctionArn"] == {"Fn::GetAtt": ["FollowFunction", "Arn"]}
    # No numeric placeholder: the ASL file is valid JSON as it stands (TimeoutSeconds literal).
    assert "ExecutionTimeoutSeconds" not in subs
    assert props["Logging"]["IncludeExecutionData"] is False
    assert props["Logging"]["Level"] in {"ERROR", "ALL"}
    assert props["Tracing"] == {"Enabled": True}
    invokes = [p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in props["Policies"] if "LambdaInvokePolicy" in p]
    assert sorted(invokes) == ["FollowFunction", "NotifyFunction", "PollFunction"]
    assert not any("lambda:" in a for s in policy_statements(props) for a in actions(s))


def test_execution_timeout_leaves_poll_room_to_time_the_job_out(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    job_timeouts = params["JobTimeoutSeconds"]["AllowedValues"]
    assert params["JobTimeoutSeconds"]["Default"] in job_timeouts
    longest_wait = params["PollIntervalCapSeconds"]["MaxValue"]
    poll_timeout = effective_function(template, "PollFunction")["Timeout"]
    notify_timeout = effective_function(template, "NotifyFunction")["Timeout"]
    mapping = template["Mappings"]["JobTimeouts"]
    # run_job gets the execution timeout of the configured job timeout (for max_polls).
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["EXECUTION_TIMEOUT_SECONDS"] == {
        "Fn::FindInMap": ["JobTimeouts", {"Ref": "JobTimeoutSeconds"}, "ExecutionTimeoutSeconds"]
    }
    for job in job_timeouts:
        execution = int(mapping[str(job)]["ExecutionTimeoutSeconds"])
        # After the deadline passes Poll may still be waiting (up to the cap) and then needs its
        # own run time to cancel and record timed_out, and NotifyFinal must still get to run,
        # before the execution itself times out.
        assert execution > int(job) + longest_wait + poll_timeout + notify_timeout, job


def test_template_parameters_and_outputs(template: dict[str, Any]) -> None:
    assert {
        "Stage",
        "JobTimeoutSeconds",
        "PollIntervalCapSeconds",
        "OutputRetentionDays",
        "RunPodApiBase",
        "LogLevel",
        "ThrottlingBurstLimit",
        "ThrottlingRateLimit",
        "SecretsPrefix",
        "RunJobReservedConcurrency",
        "PollReservedConcurrency",
        "NotifyReservedConcurrency",
        "OutputsAccessLogging",
    } <= set(template["Parameters"])
    outputs = template["Outputs"]
    assert sub_text(outputs["WebSocketUrl"]["Value"]).startswith("wss://${WebSocketApi}.execute-api.")
    assert sub_text(outputs["ManagementApiUrl"]["Value"]).startswith("https://${WebSocketApi}.execute-api.")
    assert outputs["OutputsBucketName"]["Value"] == {"Ref": "OutputsBucket"}
    assert outputs["StateMachineArn"]["Value"] == {"Ref": "JobStateMachine"}
    for table in ("ConnectionsTable", "JobsTable", "WorkflowsTable", "IdempotencyTable", "ApiKeysTable"):
        assert outputs[f"{table}Name"]["Value"] == {"Ref": table}
    # `comfyroute keys` and operators creating secrets read where the credentials go.
    assert outputs["SecretsPrefix"]["Value"] == SECRETS_PREFIX_VALUE


# ------------------------------------------------------------------------------ ASL


def targets(state: Mapping[str, Any]) -> set[str]:
    found = {state[k] for k in ("Next", "Default") if k in state}
    found |= {c["Next"] for c in state.get("Choices", [])}
    found |= {c["Next"] for c in state.get("Catch", [])}
    return found


def test_definition_parses_and_every_transition_exists(asl: dict[str, Any]) -> None:
    states = asl["States"]
    assert asl["StartAt"] in states
    for name, state in states.items():
        missing = targets(state) - set(states)
        assert not missing, f"{name} goes to unknown states {missing}"
        terminal = state["Type"] in {"Succeed", "Fail"} or state.get("End") is True
        assert terminal or targets(state), f"{name} has nowhere to go"
    # Every state is reachable from StartAt.
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(targets(states[name]))
    assert seen == set(states)


def test_definition_file_is_valid_json_as_it_stands() -> None:
    # CloudFormation documents DefinitionSubstitutions for strings, and a DefinitionUri file is
    # read from S3 as it is: no unquoted ${...} number may stand in it.
    raw = json.loads(ASL_PATH.read_text(encoding="utf-8"))
    found: set[str] = set()

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)

    for text in strings(raw):
        found |= placeholders(text)
    assert found == placeholders(ASL_PATH.read_text(encoding="utf-8")) == REQUIRED_SUBSTITUTIONS


def test_execution_ceiling_is_the_longest_execution_timeout_the_template_allows(
    template: dict[str, Any], asl: dict[str, Any]
) -> None:
    mapping = template["Mappings"]["JobTimeouts"]
    assert asl["TimeoutSeconds"] == max(int(v["ExecutionTimeoutSeconds"]) for v in mapping.values())
    assert set(mapping) == {str(v) for v in template["Parameters"]["JobTimeoutSeconds"]["AllowedValues"]}


def test_the_loop_stops_at_the_inputs_max_polls(asl: dict[str, Any]) -> None:
    s = asl["States"]
    # Poll's answer laid over the execution input: max_polls (and anything else run_job puts
    # there) survives every loop, while Poll's own fields win.
    for task in ("Poll", "Follow"):
        assert s[task]["ResultSelector"] == {"state.$": "States.JsonMerge($$.Execution.Input, $.Payload, false)"}
        assert s[task]["OutputPath"] == "$.state"
    # Arm keeps the state it was given (ResultPath), so max_polls is still there for Poll.
    assert s["Arm"]["ResultPath"] == "$.woken"
    assert s["Poll"]["Next"] == s["Follow"]["Next"] == "Next"
    rule = next(c for c in s["Next"]["Choices"] if c["Next"] == "PollBudgetSpent")
    assert {"Variable": "$.polls", "NumericGreaterThanEqualsPath": "$.max_polls"} in rule["And"]
    # Guards first: a Choice on a missing or non-numeric field would fail outside every Catch.
    assert rule["And"][:4] == [
        {"Variable": "$.max_polls", "IsPresent": True},
        {"Variable": "$.max_polls", "IsNumeric": True},
        {"Variable": "$.polls", "IsPresent": True},
        {"Variable": "$.polls", "IsNumeric": True},
    ]
    spent = s["PollBudgetSpent"]
    assert spent["Type"] == "Pass"
    assert spent["ResultPath"] == "$.error"
    # A Fail state may not report a States.* name; this one reads well in the job's error.
    assert spent["Result"]["Error"] == "ExecutionTimedOut"
    # MarkFailed records the job failed and tells the client: it never stays running.
    assert spent["Next"] == "MarkFailed"


def test_definition_is_the_documented_loop(asl: dict[str, Any]) -> None:
    s = asl["States"]
    route = s[asl["StartAt"]]
    assert route["Type"] == "Choice"
    assert [c["Next"] for c in route["Choices"]] == ["Follow", "Arm"]
    assert route["Default"] == "Wait"
    assert s["Wait"] == {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "Poll"}
    merged = {"state.$": "States.JsonMerge($$.Execution.Input, $.Payload, false)"}
    for task, fn, payload in (
        ("Poll", "PollFunctionArn", {"job_id.$": "$.job_id", "polls.$": "$.polls"}),
        ("Follow", "FollowFunctionArn", {"job_id.$": "$.job_id", "follows.$": "$.follows"}),
    ):
        assert s[task]["Resource"] == "arn:aws:states:::lambda:invoke"
        assert s[task]["Parameters"] == {"FunctionName": TEST_SUBSTITUTIONS[fn], "Payload": payload}
        # The answer is laid over the execution input, so executor / arm_seconds / max_polls ride along.
        assert (s[task]["ResultSelector"], s[task]["OutputPath"]) == (merged, "$.state")
        assert s[task]["Next"] == "Next"
    arm = s["Arm"]
    assert arm["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert arm["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert arm["TimeoutSecondsPath"] == "$.arm_seconds"
    assert arm["Catch"][0] == {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.woken", "Next": "Rearm"}
    assert s["Rearm"] == {**s["Rearm"], "Type": "Pass", "Next": "Arm"}
    assert arm["Next"] == "Poll"
    choice = s["Next"]
    assert choice["Default"] == "Wait"
    assert [c["Next"] for c in choice["Choices"]] == [
        "Succeeded",
        "NotifyFinal",
        "PollBudgetSpent",
        "NotifyProgress",
        "Follow",
        "Arm",
    ]
    assert s["NotifyProgress"]["Next"] == "Wait"
    assert s[s["NotifyFinal"]["Next"]]["Type"] == "Succeed"
    assert s[s["MarkFailed"]["Next"]]["Type"] == "Fail"
    for notify, final in (("NotifyProgress", False), ("NotifyFinal", True)):
        assert s[notify]["Parameters"] == {
            "FunctionName": TEST_SUBSTITUTIONS["NotifyFunctionArn"],
            "Payload": {"job_id.$": "$.job_id", "final": final},
        }
        # Notify's answer is dropped so the loop state (job_id, polls, wait_seconds) carries on.
        assert s[notify]["ResultPath"] is None
    assert s["MarkFailed"]["Parameters"]["Payload"] == {"job_id.$": "$.job_id", "final": True, "failure.$": "$.error"}


def test_tasks_retry_lambda_faults_and_their_own_named_errors(asl: dict[str, Any]) -> None:
    s = asl["States"]
    for name in ("Follow", "Arm", "Poll", "NotifyProgress", "NotifyFinal", "MarkFailed"):
        retries = s[name]["Retry"]
        assert LAMBDA_SERVICE_ERRORS in [set(r["ErrorEquals"]) for r in retries], name
        for r in retries:
            assert r["MaxAttempts"] >= 2, (name, r)
            assert r["BackoffRate"] > 1, (name, r)
        # An unreachable executor is the tasks' to report and retry, not a silent Retry.
        assert not any("ExecutorUnavailable" in r["ErrorEquals"] for r in retries), name
    for name in ("NotifyProgress", "NotifyFinal", "MarkFailed"):
        assert {"Throttled"} in [set(r["ErrorEquals"]) for r in s[name]["Retry"]], name
    # Poll and Follow store outputs idempotently, so they also retry AWS SDK errors boto3 gave up on.
    for name in ("Poll", "Follow"):
        assert any("ClientError" in r["ErrorEquals"] for r in s[name]["Retry"]), name
    for name in ("NotifyProgress", "NotifyFinal", "MarkFailed"):
        assert not any("ClientError" in r["ErrorEquals"] for r in s[name]["Retry"]), name


def test_every_task_but_mark_failed_is_caught_into_mark_failed(asl: dict[str, Any]) -> None:
    s = asl["States"]
    caught = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkFailed"}
    for name in ("Follow", "Poll", "NotifyProgress", "NotifyFinal"):
        # ResultPath keeps the state (and so job_id) and adds the error beside it.
        assert s[name]["Catch"] == [caught]
    assert s["Arm"]["Catch"][-1] == caught
    (catch,) = s["MarkFailed"]["Catch"]
    assert s[catch["Next"]]["Type"] == "Fail"
    assert catch["ResultPath"] != "$.error"  # the original failure is what the execution reports


def test_error_names_match_the_library_exception_classes() -> None:
    # Lambda reports an unhandled exception's class name as the error the ASL matches on.
    from comfyroute.aws.push import Throttled

    assert f'"{Throttled.__name__}"' in ASL_PATH.read_text()


def test_load_definition_names_missing_substitutions() -> None:
    with pytest.raises(DefinitionError, match="NotifyFunctionArn"):
        load_definition({k: v for k, v in TEST_SUBSTITUTIONS.items() if k != "NotifyFunctionArn"}, ASL_PATH)


def test_load_definition_rejects_a_numeric_placeholder(tmp_path: Path) -> None:
    # What the definition used to do: JSON only once filled in, which CloudFormation does not promise.
    broken = tmp_path / "numeric.asl.json"
    broken.write_text('{"StartAt": "S", "TimeoutSeconds": ${T}, "States": {"S": {"Type": "Succeed"}}}')
    with pytest.raises(DefinitionError, match="before substitution"):
        load_definition({"T": "1"}, broken)


def test_load_definition_rejects_a_result_that_is_not_json(tmp_path: Path) -> None:
    broken = tmp_path / "broken.asl.json"
    broken.write_text('{"Comment": "${T}"}')
    with pytest.raises(DefinitionError, match="after substitution"):
        load_definition({"T": 'a"b'}, broken)


# ------------------------------------------------------------------------------ samconfig


def test_samconfig_deploys_this_template(template: dict[str, Any]) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    assert config["default"]["global"]["parameters"]["stack_name"] == "comfyroute"
    assert config["default"]["validate"]["parameters"]["lint"] is True
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    overrides = dict(re.findall(r'(\w+)="([^"]*)"', deploy["parameter_overrides"]))
    assert overrides
    for name, value in overrides.items():
        param = template["Parameters"][name]
        if "AllowedValues" in param:
            assert value in [str(v) for v in param["AllowedValues"]], name
