"""The job's follow loop on Step Functions (``ports.StateMachine``): one execution per job,
named after it, so Step Functions itself refuses a second loop for the same job."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from comfyroute.aws import clients as aws
from comfyroute.ports import LoopStartFailed


class StepFunctionsLoop:
    def __init__(self, state_machine_arn: str, client: Any | None = None) -> None:
        self.state_machine_arn = state_machine_arn
        self.client = client or aws.stepfunctions()

    def start(self, job_id: str, payload: dict[str, Any]) -> str:
        try:
            resp = self.client.start_execution(
                stateMachineArn=self.state_machine_arn, name=job_id, input=json.dumps(payload)
            )
        except ClientError as exc:
            code = aws.error_code(exc)
            if code != "ExecutionAlreadyExists":
                raise LoopStartFailed(code or "error") from exc
            # The loop for this job is already running: same name, same job.
            return self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{job_id}"
        arn: str = resp["executionArn"]
        return arn

    def stop(self, execution_id: str, cause: str) -> None:
        try:
            self.client.stop_execution(executionArn=execution_id, cause=cause)
        except ClientError as exc:
            if aws.error_code(exc) != "ExecutionDoesNotExist":
                raise

    def wake(self, task_token: str, output: dict[str, Any]) -> bool:
        try:
            self.client.send_task_success(taskToken=task_token, output=json.dumps(output))
        except ClientError as exc:
            # The wait ended already (its timeout fired, or the other side woke it first).
            if aws.error_code(exc) in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
                return False
            raise
        return True
