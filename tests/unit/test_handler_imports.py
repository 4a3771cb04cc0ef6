"""Each handler, imported in a fresh interpreter as Lambda imports it, loads what its route needs
and no more (the cold-start rule), and creates no AWS client before its first invocation."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import pytest
from support import ROOT

CONNECTION_ROUTES = ("authorizer", "connect", "disconnect")
ALL = (
    *CONNECTION_ROUTES,
    "default",
    "run_job",
    "cancel_job",
    "job_queries",
    "save_workflow",
    "request_upload",
    "poll",
    "notify",
    "follow",
    "runpod_callback",
)

# Never in any handler: the tools, the X-Ray SDK (opt-in, see awslambda/instrument.py) and
# Powertools' pydantic models of whole events.
NEVER = ("comfyroute_tools", "aws_xray_sdk", "aws_lambda_powertools.utilities.parser")
# Only the routes that start jobs, follow them or stop them.
JOB_ONLY = ("comfyroute.conversion", "comfyroute.executors.comfyui", "comfyroute.executors.runpod", "requests")
NOT_IN_CONNECTION_ROUTES = ("pydantic", "comfyroute.protocol", "comfyroute.jobs", *JOB_ONLY)

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import app
from comfyroute.aws import clients
print(json.dumps({
    "modules": sorted(sys.modules),
    "clients": sum(f.cache_info().currsize for f in (clients.dynamodb, clients.s3, clients.stepfunctions)),
}))
"""


@cache
def loaded(function: str) -> tuple[frozenset[str], int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "functions" / function)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},  # no AWS settings: as a benchmark or a build would import it
        timeout=60,
        check=True,
    )
    answer = json.loads(out.stdout)
    return frozenset(answer["modules"]), answer["clients"]


def under(modules: frozenset[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("function", ALL)
def test_no_handler_loads_the_tools_or_the_xray_sdk_or_builds_a_client_at_import(function: str) -> None:
    modules, clients = loaded(function)
    assert under(modules, NEVER) == []
    assert clients == 0
    assert "app" in modules


@pytest.mark.parametrize("function", CONNECTION_ROUTES)
def test_connection_routes_load_no_pydantic_and_nothing_of_the_job_routes(function: str) -> None:
    modules, _ = loaded(function)
    assert under(modules, NOT_IN_CONNECTION_ROUTES) == []
    assert "boto3" in modules  # their table's adapter is loaded at init, not on first use


@pytest.mark.parametrize("function", ["default", "job_queries", "save_workflow", "request_upload", "notify"])
def test_routes_that_run_no_executor_load_none_and_no_idempotency(function: str) -> None:
    modules, _ = loaded(function)
    assert under(modules, (*JOB_ONLY, "aws_lambda_powertools.utilities.idempotency")) == []


def test_run_job_loads_conversion_and_idempotency_at_init_and_editor_workflows_on_first_use() -> None:
    modules, _ = loaded("run_job")
    for needed in ("comfyroute.conversion.nodetool", "aws_lambda_powertools.utilities.idempotency"):
        assert needed in modules
    assert "comfyroute.conversion.editor" not in modules


@pytest.mark.parametrize("function", ["run_job", "cancel_job", "poll"])
def test_routes_that_run_executors_load_neither_before_a_job_names_one(function: str) -> None:
    modules, _ = loaded(function)
    assert under(modules, ("comfyroute.executors.comfyui", "comfyroute.executors.runpod", "requests")) == []
    assert "comfyroute.executors.factory" in modules


BUILD = """
import json, sys
from comfyroute.config import Config
from comfyroute.credentials import Credentials
from comfyroute.executors.factory import build_executor
from comfyroute.protocol import ExecutorKind
kind = ExecutorKind(sys.argv[1])
creds = Credentials.model_validate({"COMFYUI_ADDR": "127.0.0.1:18500", "RUNPOD_API_KEY": "rp-key"})
build_executor(kind, creds, "endpoint-1", Config.from_env())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("comfyroute.executors."))))
"""


@pytest.mark.parametrize(("kind", "other"), [("local", "runpod"), ("runpod", "comfyui")])
def test_building_an_executor_loads_that_one_only(kind: str, other: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", BUILD, kind], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    modules = json.loads(out.stdout)
    assert f"comfyroute.executors.{'comfyui' if kind == 'local' else 'runpod'}" in modules
    assert f"comfyroute.executors.{other}" not in modules


@pytest.mark.parametrize("function", ["default", "cancel_job", "job_queries", "request_upload", "poll", "notify"])
def test_routes_that_take_no_workflow_define_no_workflow_command_models(function: str) -> None:
    modules, _ = loaded(function)
    assert "comfyroute.protocol.workflow_commands" not in modules


@pytest.mark.parametrize("function", ["poll", "notify"])
def test_tasks_load_no_client_command_models(function: str) -> None:
    modules, _ = loaded(function)
    assert "comfyroute.protocol.commands" not in modules
