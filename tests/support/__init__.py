"""Test support shared by several test files: a moto AWS built from template.yaml itself, handlers
loaded from functions/, and a Management API double that records what each connection was sent.

Kept out of conftest.py so tests can import it by name (tests/browser has a conftest of its own)."""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"

# Before anything imports boto3 clients or Powertools: no real AWS, no X-Ray, a metrics namespace.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "comfyroute",
        "POWERTOOLS_METRICS_NAMESPACE": "comfyroute",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
for leaked in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(leaked, None)


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class FakeManagementApi:
    """The API Gateway Management API as notify sees it: records frames per connection and
    answers GoneException for connections that went away, as the real one does."""

    sent: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    gone: set[str] = field(default_factory=set)
    throttle_next: int = 0

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        if self.throttle_next:
            self.throttle_next -= 1
            raise ClientError({"Error": {"Code": "LimitExceededException", "Message": "slow down"}}, "PostToConnection")
        if ConnectionId in self.gone:
            raise ClientError(
                {"Error": {"Code": "GoneException", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 410}},
                "PostToConnection",
            )
        assert len(Data) <= 128 * 1024, f"frame of {len(Data)} bytes exceeds API Gateway's limit"
        self.sent[ConnectionId].append(json.loads(Data))
        return {}

    def messages(self, connection_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.sent[connection_id] if type_ is None or m["type"] == type_]


@dataclass
class Stack:
    plan: Any
    env: dict[str, str]
    management: FakeManagementApi
    region: str = "us-east-1"

    def table(self, logical_id: str) -> Any:
        return boto3.resource("dynamodb", region_name=self.region).Table(self.plan.table(logical_id).name)

    def handler(self, function: str) -> Any:
        from comfyroute_tools.dev.lambdas import load_handler

        spec = self.plan.functions[function]
        return load_handler(spec.code_dir, spec.handler, module_name=f"fn_{function}_{uuid.uuid4().hex[:6]}")


def reset_process_caches() -> None:
    """Forget clients and cached secrets/services between tests (each has its own moto)."""
    from aws_lambda_powertools.utilities import parameters

    from comfyroute.awslambda import wiring

    wiring.reset()
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()


@contextmanager
def moto_stack(plan: Any, monkeypatch: pytest.MonkeyPatch, *, execute_state_machine: bool = False) -> Iterator[Stack]:
    """moto with every table, bucket and state machine of template.yaml, and the handlers'
    environment as the template sets it (Management API replaced by a recorder)."""
    from moto import mock_aws

    from comfyroute.aws.push import ManagementApiPusher
    from comfyroute.awslambda.wiring import get_ports
    from comfyroute_tools.dev.asl import load_definition

    with mock_aws(config={"stepfunctions": {"execute_state_machine": execute_state_machine}}):
        env = dict(plan.functions["RunJobFunction"].environment)
        env["POLL_INTERVAL_START_SECONDS"] = "0"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        for table in plan.tables:
            ddb.create_table(**table.create_args)
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in plan.buckets:
            s3.create_bucket(Bucket=bucket.name)
        if not execute_state_machine:
            # With execution on, the harness creates the machine with its own task ARNs.
            sfn = boto3.client("stepfunctions", region_name="us-east-1")
            for machine in plan.state_machines:
                sfn.create_state_machine(
                    name=machine.name,
                    definition=load_definition(machine.substitutions),
                    roleArn="arn:aws:iam::123456789012:role/comfyroute-test-states",
                )
        reset_process_caches()
        management = FakeManagementApi()
        get_ports().pusher = ManagementApiPusher(env["WEBSOCKET_ENDPOINT"], client=management)
        try:
            yield Stack(plan=plan, env=env, management=management)
        finally:
            reset_process_caches()
