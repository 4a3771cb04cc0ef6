"""The workflows table keeps a workflow's settings as JSON text: the keys and numbers are the
client's, and DynamoDB refuses some of both in a map (numbers past 38 digits or 1e125)."""

from __future__ import annotations

import time
from typing import Any

import boto3
from moto import mock_aws

from comfyroute.workflows import WorkflowRecord


def test_settings_dynamodb_could_not_store_as_a_map_are_saved_and_read_back(plan: Any) -> None:
    from comfyroute.aws import clients
    from comfyroute.aws.workflows import DynamoWorkflows

    settings = {"comfy_executor": "local", "huge": 1e308, "long": 10**40, "nested": {"a.b": [1, 2]}}
    with mock_aws():
        clients.reset_clients()
        table = plan.table("WorkflowsTable")
        boto3.client("dynamodb", region_name="us-east-1").create_table(**table.create_args)
        store = DynamoWorkflows(table.name)
        store.put(WorkflowRecord(user_id="alice", workflow_id="wf", settings=settings, updated_at=time.time()))
        saved = store.get("alice", "wf")
        clients.reset_clients()
    assert saved is not None
    assert saved.settings == settings
