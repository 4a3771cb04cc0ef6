"""The ports wired to AWS, once per process (one Lambda container).

Each port is built on first use and imports its adapter only then: a handler loads the AWS
clients and libraries its own route touches and no others (the authorizer: the API keys
table; run_job: also Idempotency, the executors and Step Functions). The tests and
``comfyroute dev`` replace single ports by assigning the attribute.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from comfyroute.config import Config

if TYPE_CHECKING:
    from comfyroute.executors.base import Executor
    from comfyroute.ports import (
        ApiKeyStore,
        ConnectionStore,
        CredentialSource,
        ExecutorFactory,
        JobStore,
        OutputStore,
        Pusher,
        StartOnce,
        StateMachine,
        WorkflowStore,
    )
    from comfyroute.protocol import ExecutorKind


class LambdaPorts:
    """``ports.Ports`` on DynamoDB, S3, Step Functions, the Management API and Secrets Manager."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # Set per invocation by the WebSocket handlers.
        self.lambda_context: Any = None
        self.fallback_endpoint: str | None = None

    def begin_invocation(self, context: Any, *, endpoint: str | None = None) -> None:
        """The invocation's Lambda context (Idempotency expires an in-progress start when the
        invocation times out) and the Management API endpoint of the API that called, used
        when ``WEBSOCKET_ENDPOINT`` is not set."""
        self.lambda_context = context
        if endpoint:
            self.fallback_endpoint = endpoint

    @cached_property
    def jobs(self) -> JobStore:
        from comfyroute.aws.jobs import DynamoJobs

        return DynamoJobs(self.config.jobs_table)

    @cached_property
    def connections(self) -> ConnectionStore:
        from comfyroute.aws.connections import DynamoConnections

        return DynamoConnections(self.config.connections_table)

    @cached_property
    def workflows(self) -> WorkflowStore:
        from comfyroute.aws.workflows import DynamoWorkflows

        return DynamoWorkflows(self.config.workflows_table)

    @cached_property
    def api_keys(self) -> ApiKeyStore:
        from comfyroute.aws.apikeys import DynamoApiKeys

        return DynamoApiKeys(self.config.api_keys_table)

    @cached_property
    def outputs(self) -> OutputStore:
        from comfyroute.aws.outputs import S3Outputs

        return S3Outputs(self.config.outputs_bucket)

    @cached_property
    def state_machine(self) -> StateMachine:
        from comfyroute.aws.states import StepFunctionsLoop

        return StepFunctionsLoop(self.config.state_machine_arn)

    @cached_property
    def pusher(self) -> Pusher:
        from comfyroute.aws.push import ManagementApiPusher

        endpoint = self.config.websocket_endpoint or self.fallback_endpoint
        if not endpoint:
            raise RuntimeError("WEBSOCKET_ENDPOINT is not set and the event names no endpoint")
        return ManagementApiPusher(endpoint)

    @cached_property
    def credentials(self) -> CredentialSource:
        from comfyroute.aws.secrets import SecretsManagerCredentials

        return SecretsManagerCredentials(self.config.secrets_prefix)

    @cached_property
    def executors(self) -> ExecutorFactory:
        def executor_for(kind: ExecutorKind, user_id: str, endpoint_id: str | None) -> Executor:
            from comfyroute.executors.factory import build_executor

            return build_executor(kind, self.credentials.load(user_id), endpoint_id, self.config)

        return executor_for

    @cached_property
    def start_once(self) -> StartOnce:
        from comfyroute.aws.idempotency import IdempotentStart

        return IdempotentStart(
            self.config.idempotency_table,
            expires_after_seconds=self.config.job_ttl_days * 86400,
            lambda_context=lambda: self.lambda_context,
        )


_ports: LambdaPorts | None = None


def get_ports() -> LambdaPorts:
    """The ports of this process, from the environment."""
    global _ports
    if _ports is None:
        _ports = LambdaPorts(Config.from_env())
    return _ports


def reset() -> None:
    """Forget the process's ports and AWS clients (tests and the dev stack change the
    environment and the AWS endpoint between stacks)."""
    global _ports
    _ports = None
    from comfyroute.aws import clients

    clients.reset_clients()
