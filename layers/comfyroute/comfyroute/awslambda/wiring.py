"""The ports wired to AWS, once per process (one Lambda container).

Each port is built on first use, from an adapter module that ``preload`` imports when the
handler is created: a function's init loads the adapters and libraries of the ports its route
uses and no others (the authorizer: the API keys table; run_job: also Idempotency, the
executor factory and Step Functions), and builds no client before the environment is in place.
An executor's module (and requests) is imported by the first job that runs on it. The
tests and ``comfyroute dev`` replace single ports by assigning the attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from comfyroute.config import Config

if TYPE_CHECKING:
    from comfyroute.aws.apikeys import DynamoApiKeys
    from comfyroute.aws.attach import DynamoJobAttach
    from comfyroute.aws.connections import DynamoConnections
    from comfyroute.aws.idempotency import IdempotentStart
    from comfyroute.aws.jobs import DynamoJobs
    from comfyroute.aws.messagelog import DynamoMessageLog
    from comfyroute.aws.object_info import S3SchemaStore
    from comfyroute.aws.outputs import S3Outputs
    from comfyroute.aws.push import ManagementApiPusher
    from comfyroute.aws.secrets import SecretsManagerCredentials
    from comfyroute.aws.states import StepFunctionsLoop
    from comfyroute.aws.uploads import UploadStore
    from comfyroute.aws.workflows import DynamoWorkflows
    from comfyroute.executors.base import Executor
    from comfyroute.ports import (
        ApiKeyStore,
        ConnectionStore,
        CredentialSource,
        ExecutorFactory,
        JobAttach,
        JobStore,
        MessageLog,
        OutputStore,
        Pusher,
        SchemaSource,
        StartOnce,
        StateMachine,
        Uploads,
        WorkflowStore,
    )
    from comfyroute.protocol import ExecutorKind
    from comfyroute.schemas import ObjectInfoSource

Port = Literal[
    "jobs",
    "connections",
    "workflows",
    "api_keys",
    "outputs",
    "uploads",
    "state_machine",
    "pusher",
    "credentials",
    "executors",
    "start_once",
    "message_log",
    "job_attach",
    "object_info",
]


# --------------------------------------------------------------------------- the adapters, imported on demand


def _jobs() -> type[DynamoJobs]:
    from comfyroute.aws.jobs import DynamoJobs

    return DynamoJobs


def _connections() -> type[DynamoConnections]:
    from comfyroute.aws.connections import DynamoConnections

    return DynamoConnections


def _workflows() -> type[DynamoWorkflows]:
    from comfyroute.aws.workflows import DynamoWorkflows

    return DynamoWorkflows


def _api_keys() -> type[DynamoApiKeys]:
    from comfyroute.aws.apikeys import DynamoApiKeys

    return DynamoApiKeys


def _outputs() -> type[S3Outputs]:
    from comfyroute.aws.outputs import S3Outputs

    return S3Outputs


def _uploads() -> type[UploadStore]:
    from comfyroute.aws.uploads import UploadStore

    return UploadStore


def _state_machine() -> type[StepFunctionsLoop]:
    from comfyroute.aws.states import StepFunctionsLoop

    return StepFunctionsLoop


def _pusher() -> type[ManagementApiPusher]:
    from comfyroute.aws.push import ManagementApiPusher

    return ManagementApiPusher


def _credentials() -> type[SecretsManagerCredentials]:
    from comfyroute.aws.secrets import SecretsManagerCredentials

    return SecretsManagerCredentials


def _executors() -> Callable[..., Executor]:
    # Neither executor module: which one a job needs is known only when it runs, and
    # build_executor imports that one (and requests) then.
    from comfyroute.executors.factory import build_executor

    _credentials()
    return build_executor


def _start_once() -> type[IdempotentStart]:
    from comfyroute.aws.idempotency import IdempotentStart

    return IdempotentStart


def _message_log() -> type[DynamoMessageLog]:
    from comfyroute.aws.messagelog import DynamoMessageLog

    return DynamoMessageLog


def _job_attach() -> type[DynamoJobAttach]:
    from comfyroute.aws.attach import DynamoJobAttach

    return DynamoJobAttach


def _object_info() -> tuple[type[ObjectInfoSource], type[S3SchemaStore]]:
    from comfyroute.aws.object_info import S3SchemaStore
    from comfyroute.schemas import ObjectInfoSource

    return ObjectInfoSource, S3SchemaStore


_ADAPTERS: dict[Port, Callable[[], Any]] = {
    "jobs": _jobs,
    "connections": _connections,
    "workflows": _workflows,
    "api_keys": _api_keys,
    "outputs": _outputs,
    "uploads": _uploads,
    "state_machine": _state_machine,
    "pusher": _pusher,
    "credentials": _credentials,
    "executors": _executors,
    "start_once": _start_once,
    "message_log": _message_log,
    "job_attach": _job_attach,
    "object_info": _object_info,
}


def preload(ports: Iterable[Port]) -> None:
    """Import the adapters of ``ports`` (at a function's init, where Lambda gives the most CPU)."""
    for port in ports:
        _ADAPTERS[port]()


# --------------------------------------------------------------------------- the ports


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
        return _jobs()(self.config.jobs_table)

    @cached_property
    def connections(self) -> ConnectionStore:
        return _connections()(self.config.connections_table)

    @cached_property
    def workflows(self) -> WorkflowStore:
        return _workflows()(self.config.workflows_table)

    @cached_property
    def api_keys(self) -> ApiKeyStore:
        return _api_keys()(self.config.api_keys_table)

    @cached_property
    def outputs(self) -> OutputStore:
        return _outputs()(self.config.outputs_bucket)

    @cached_property
    def uploads(self) -> Uploads:
        return _uploads().from_config(self.config)

    @cached_property
    def state_machine(self) -> StateMachine:
        return _state_machine()(self.config.state_machine_arn)

    @cached_property
    def pusher(self) -> Pusher:
        endpoint = self.config.websocket_endpoint or self.fallback_endpoint
        if not endpoint:
            raise RuntimeError("WEBSOCKET_ENDPOINT is not set and the event names no endpoint")
        return _pusher()(endpoint)

    @cached_property
    def credentials(self) -> CredentialSource:
        return _credentials()(self.config.secrets_prefix)

    @cached_property
    def executors(self) -> ExecutorFactory:
        build: Callable[..., Executor] = _executors()

        def executor_for(kind: ExecutorKind, user_id: str, endpoint_id: str | None) -> Executor:
            return build(kind, self.credentials.load(user_id), endpoint_id, self.config)

        return executor_for

    @cached_property
    def object_info(self) -> SchemaSource:
        source, store = _object_info()
        return source(
            store(self.config.outputs_bucket), self.executors, ttl_seconds=self.config.object_info_ttl_seconds
        )

    @cached_property
    def start_once(self) -> StartOnce:
        return _start_once()(
            self.config.idempotency_table,
            expires_after_seconds=self.config.job_ttl_days * 86400,
            lambda_context=lambda: self.lambda_context,
        )

    @cached_property
    def message_log(self) -> MessageLog:
        return _message_log()(self.config.job_messages_table)

    @cached_property
    def job_attach(self) -> JobAttach:
        return _job_attach()(self.config.jobs_table)


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


if TYPE_CHECKING:
    from comfyroute.ports import Ports

    # mypy holds the wiring (and through it each adapter) to the ports' interfaces.
    def _is_ports(ports: LambdaPorts) -> Ports:
        return ports
