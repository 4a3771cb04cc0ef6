"""The Step Functions executions of a job run through a dev stack."""

from __future__ import annotations

from typing import Any

from comfyroute_tools.dev.stack import DevStack


def executions_of(stack: DevStack, job_id: str) -> list[dict[str, Any]]:
    """The executions of the client's ``job_id``: each is named after the job's per-user key
    (``jobkeys.job_key``), which starts with the client's id."""
    sfn = stack.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    return [e for e in listed if e["name"] == job_id or e["name"].startswith(f"{job_id[:47]}-")]
