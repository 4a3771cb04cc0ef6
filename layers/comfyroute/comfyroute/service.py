"""What the handlers do. Each public function is one route or state-machine task.

The functions take a ``Services`` (tables, bucket, pusher, executor factory) so tests and
`comfyroute dev` wire the same code to moto; handlers stay a few lines each.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from botocore.exceptions import ClientError
from pydantic import BaseModel

from comfyroute import jobstate
from comfyroute.aws import clients as aws
from comfyroute.aws.outputs import OutputStore
from comfyroute.aws.push import Pusher
from comfyroute.aws.secrets import CredentialsError, load_credentials
from comfyroute.aws.tables import (
    ApiKeys,
    Connections,
    JobExists,
    JobRecord,
    Jobs,
    StoredOutput,
    WorkflowRecord,
    Workflows,
)
from comfyroute.config import Config
from comfyroute.conversion.nodetool import GraphError, apply_params, convert_graph, validate_prompt
from comfyroute.executors.base import Executor, ExecutorError, ExecutorUnavailable
from comfyroute.executors.factory import build_executor
from comfyroute.protocol import (
    MAX_MESSAGE_BYTES,
    ErrorMessage,
    ExecutorKind,
    ExecutorSettings,
    Graph,
    JobList,
    JobMessage,
    JobOutput,
    JobStatus,
    OutputUpdate,
    OutputValue,
    Pong,
    ProtocolError,
    RunJobData,
    SaveWorkflowData,
    WorkflowSaved,
    encode,
)

logger = Logger(child=True)
metrics = Metrics()


class JobNotFound(Exception):
    """Poll was asked about a job that has no record (its Catch marks nothing and fails)."""


@dataclass(frozen=True)
class Caller:
    user_id: str
    connection_id: str


ExecutorFactory = Callable[[ExecutorKind, str, str | None], Executor]


@dataclass
class Services:
    config: Config
    connections: Connections
    jobs: Jobs
    workflows: Workflows
    api_keys: ApiKeys
    outputs: OutputStore
    executor_for: ExecutorFactory
    _pusher: Pusher | None = field(default=None, repr=False)
    _start_job: Callable[..., dict[str, Any]] | None = field(default=None, repr=False)
    idempotency: IdempotencyConfig = field(default_factory=lambda: IdempotencyConfig(), repr=False)

    @classmethod
    def from_config(cls, config: Config) -> Services:
        def executor_for(kind: ExecutorKind, user_id: str, endpoint_id: str | None) -> Executor:
            creds = load_credentials(user_id, config.secrets_prefix)
            return build_executor(kind, creds, endpoint_id, config)

        return cls(
            config=config,
            idempotency=IdempotencyConfig(
                event_key_jmespath="[user_id, job_id]",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=config.job_ttl_days * 86400,
            ),
            connections=Connections(config.connections_table),
            jobs=Jobs(config.jobs_table),
            workflows=Workflows(config.workflows_table),
            api_keys=ApiKeys(config.api_keys_table),
            outputs=OutputStore(config.outputs_bucket),
            executor_for=executor_for,
        )

    def pusher(self, fallback_endpoint: str | None = None) -> Pusher:
        if self._pusher is None:
            endpoint = self.config.websocket_endpoint or fallback_endpoint
            if not endpoint:
                raise RuntimeError("WEBSOCKET_ENDPOINT is not set and the event names no endpoint")
            self._pusher = Pusher(endpoint)
        return self._pusher

    def reply(self, caller: Caller, *messages: BaseModel) -> bool:
        delivered = self.pusher().send_all(caller.connection_id, list(messages))
        if not delivered:
            self.connections.mark_gone(caller.connection_id)
        return delivered

    @property
    def start_job(self) -> Callable[..., dict[str, Any]]:
        # Built on first use, not at import: the persistence layer's boto3 client must be
        # created under whatever endpoint (moto in tests and dev) is in force by then.
        if self._start_job is None:
            persistence = DynamoDBPersistenceLayer(table_name=self.config.idempotency_table)
            self._start_job = idempotent_function(
                data_keyword_argument="request", persistence_store=persistence, config=self.idempotency
            )(lambda request: {"connection_id": request["connection_id"], **_start_job(self, request)})
        return self._start_job


@cache
def get_services() -> Services:
    """Services for this process, from the environment (one per Lambda container)."""
    return Services.from_config(Config.from_env())


# --------------------------------------------------------------------------- run_job


class PreparedJob(BaseModel):
    job_id: str
    workflow_id: str | None
    executor: ExecutorKind
    endpoint_id: str | None
    prompt: dict[str, Any] | None = None
    node_classes: dict[str, str] = {}
    error: str | None = None


def prepare_job(svc: Services, caller: Caller, data: RunJobData) -> PreparedJob:
    """Resolve the graph and settings and convert; a bad request becomes ``error``, so the job
    is still recorded (failed) and ``get_job`` can explain it later."""
    job_id = data.job_id or str(uuid.uuid4())
    graph: Graph | None = data.graph
    prompt = data.prompt
    settings = ExecutorSettings()
    if data.workflow_id:
        saved = svc.workflows.get(caller.user_id, data.workflow_id)
        if saved is not None:
            settings = ExecutorSettings.model_validate(saved.settings)
            if graph is None and prompt is None:
                if saved.graph_json:
                    graph = Graph.model_validate_json(saved.graph_json)
                elif saved.prompt_json:
                    prompt = json.loads(saved.prompt_json)
        if graph is None and prompt is None:
            return _prepared_error(job_id, data, settings, f"workflow '{data.workflow_id}' not found")
    if data.settings is not None:
        # The request wins, key by key, over the saved workflow's settings.
        settings = settings.model_copy(update=data.settings.model_dump(exclude_unset=True))
    kind = settings.comfy_executor or ExecutorKind.LOCAL
    endpoint_id = settings.runpod_endpoint_id if kind is ExecutorKind.RUNPOD else None
    base = {"job_id": job_id, "workflow_id": data.workflow_id, "executor": kind, "endpoint_id": endpoint_id}
    if kind is ExecutorKind.RUNPOD and not endpoint_id:
        return PreparedJob(**base, error="runpod_endpoint_id is required when comfy_executor is 'runpod'")
    try:
        # A graph that is not all comfy.* nodes is refused by convert_graph, naming them.
        converted = convert_graph(graph) if graph is not None else validate_prompt(prompt or {})
        if data.params:
            converted = apply_params(converted, data.params)
    except GraphError as exc:
        return PreparedJob(**base, error=f"invalid workflow: {exc}")
    classes = {nid: str(node.get("class_type", "")) for nid, node in converted.items()}
    return PreparedJob(**base, prompt=converted, node_classes=classes)


def _prepared_error(job_id: str, data: RunJobData, settings: ExecutorSettings, error: str) -> PreparedJob:
    return PreparedJob(
        job_id=job_id,
        workflow_id=data.workflow_id,
        executor=settings.comfy_executor or ExecutorKind.LOCAL,
        endpoint_id=settings.runpod_endpoint_id,
        error=error,
    )


def run_job(svc: Services, caller: Caller, data: RunJobData) -> None:
    prepared = prepare_job(svc, caller, data)
    logger.append_keys(job_id=prepared.job_id)
    request = {"user_id": caller.user_id, "connection_id": caller.connection_id, **prepared.model_dump(mode="json")}
    try:
        started = svc.start_job(request=request)
    except IdempotencyAlreadyInProgressError:
        svc.reply(
            caller,
            ErrorMessage(
                message=f"job {prepared.job_id} is already being submitted",
                code="in_progress",
                request="run_job",
                job_id=prepared.job_id,
            ),
        )
        return
    except JobOwnedByAnother:
        svc.reply(
            caller,
            ErrorMessage(
                message=f"job_id {prepared.job_id} is already in use; choose another",
                code="conflict",
                request="run_job",
                job_id=prepared.job_id,
            ),
        )
        return
    except Exception:
        # Unexpected (an AWS outage, a bug): never leave an accepted job queued with no loop.
        _fail_if_stranded(svc, prepared.job_id, "the job could not be started (internal error); run it again")
        raise
    job = svc.jobs.get(prepared.job_id)
    if job is None:  # pragma: no cover - start_job always records the job
        raise RuntimeError(f"job {prepared.job_id} was not recorded")
    # ``started`` names the connection whose run_job started the job (a replay returns the first
    # answer). Only a resend from another connection (client reconnected) moves the job's pushes
    # here; the starting request must not take them back from a connection that has since
    # asked for the job with get_job while this request was still submitting.
    resent = started["connection_id"] != caller.connection_id
    if resent and job.connection_id != caller.connection_id and not job.status.terminal:
        svc.jobs.update(job.job_id, connection_id=caller.connection_id, only_if_active=True)
    messages: list[BaseModel] = [jobstate.job_update(job)]
    if job.status is JobStatus.FAILED and job.error:
        messages.append(
            ErrorMessage(
                message=job.error, code="job_failed", request="run_job", job_id=job.job_id, workflow_id=job.workflow_id
            )
        )
    svc.reply(caller, *messages)


class JobOwnedByAnother(Exception):
    pass


def _start_job(svc: Services, request: dict[str, Any]) -> dict[str, Any]:
    """Record the job, submit it to its executor and start its poll loop. Idempotent on
    (user, job id) through Powertools; every failure ends in a recorded ``failed`` job."""
    prepared = PreparedJob.model_validate(request)
    user_id = request["user_id"]
    now = time.time()
    cfg = svc.config
    record = JobRecord(
        job_id=prepared.job_id,
        user_id=user_id,
        connection_id=request["connection_id"],
        workflow_id=prepared.workflow_id,
        executor=prepared.executor,
        endpoint_id=prepared.endpoint_id,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        deadline=now + cfg.job_timeout_seconds,
        node_classes=prepared.node_classes,
        ttl=int(now + cfg.job_ttl_days * 86400),
    )
    try:
        svc.jobs.create(record)
    except JobExists as exc:
        if exc.record.user_id != user_id:
            raise JobOwnedByAnother(prepared.job_id) from None
        # A resend after the first attempt died half-way (its idempotency record expired):
        # finish what it started, so the job still reaches a terminal state.
        if not exc.record.status.terminal and exc.record.execution_arn is None:
            if exc.record.executor_job_id:
                svc.jobs.update(prepared.job_id, execution_arn=_start_execution(svc, prepared.job_id))
            else:
                _fail_if_stranded(svc, prepared.job_id, "the submission was interrupted; run it again")
        return _started(svc.jobs.get(prepared.job_id) or exc.record)
    _count("JobsSubmitted", executor=prepared.executor.value)
    if prepared.error or prepared.prompt is None:
        return _fail(svc, record, prepared.error or "nothing to run")
    try:
        executor = svc.executor_for(prepared.executor, user_id, prepared.endpoint_id)
        executor_job_id = executor.submit(prepared.prompt, prepared.job_id)
    except (ExecutorError, CredentialsError, ValueError) as exc:
        return _fail(svc, record, f"{prepared.executor.value} executor refused the job: {exc}")
    if not svc.jobs.update(
        prepared.job_id,
        executor_job_id=executor_job_id,
        message=f"submitted to the {prepared.executor.value} executor",
        only_if_active=True,
    ):
        # Cancelled while the executor was accepting it: that cancel had no executor id to stop,
        # so stop the executor's copy here rather than leave it running with nobody watching.
        _cancel_quietly(executor, executor_job_id)
        return _started(record, _current_status(svc, record))
    try:
        arn = _start_execution(svc, prepared.job_id)
    except ClientError as exc:
        _cancel_quietly(executor, executor_job_id)
        code = exc.response.get("Error", {}).get("Code", "error")
        return _fail(svc, record, f"could not start the job's poll loop ({code})")
    svc.jobs.update(prepared.job_id, execution_arn=arn)
    return _started(record, JobStatus.QUEUED)


def _started(job: JobRecord, status: JobStatus | None = None) -> dict[str, Any]:
    """start_job's answer, which Idempotency stores and replays: with the connection the job
    reports to, so run_job can tell a resend from another connection from the first request."""
    return {"job_id": job.job_id, "status": (status or job.status).value, "connection_id": job.connection_id}


def _fail_if_stranded(svc: Services, job_id: str, error: str) -> None:
    """Mark a job failed when it is active but has no poll loop (best effort: this runs
    while something else already went wrong)."""
    try:
        job = svc.jobs.get(job_id)
        if job is not None and not job.status.terminal and job.execution_arn is None:
            _fail(svc, job, error)
    except Exception:
        logger.exception("could not mark a stranded job failed")


def _start_execution(svc: Services, job_id: str) -> str:
    cfg = svc.config
    payload = {"job_id": job_id, "polls": 0, "wait_seconds": cfg.poll_interval_start_seconds}
    try:
        resp = aws.stepfunctions().start_execution(
            stateMachineArn=cfg.state_machine_arn, name=job_id, input=json.dumps(payload)
        )
        return resp["executionArn"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        # The loop for this job is already running: same name, same job.
        return cfg.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{job_id}"


def _fail(svc: Services, record: JobRecord, error: str) -> dict[str, Any]:
    _finish(svc, record, JobStatus.FAILED, error=jobstate.truncate(error))
    return _started(record, JobStatus.FAILED)


def _finish(
    svc: Services,
    job: JobRecord,
    status: JobStatus,
    *,
    error: str | None = None,
    message: str | None = None,
    outputs: list[StoredOutput] | None = None,
    polls: int | None = None,
) -> bool:
    fields: dict[str, Any] = {"status": status.value, "finished_at": time.time()}
    remove = ["progress", "queue_position"]
    if error:
        fields["error"] = error
    # A message describes the current state only; an old one ("submitted to ...") must go.
    if message:
        fields["message"] = message
    else:
        remove.append("message")
    if outputs is not None:
        fields["outputs"] = outputs
    done = svc.jobs.update(job.job_id, only_if_active=True, remove=tuple(remove), **fields)
    if done:
        _count("JobsFinished", executor=job.executor.value, status=status.value)
        if polls is not None:
            metrics.add_metric(name="PollsPerJob", unit=MetricUnit.Count, value=polls)
        logger.info("job finished", extra={"job_id": job.job_id, "status": status.value})
    return done


def _count(name: str, **dimensions: str) -> None:
    # One metric with its own dimensions (executor, status). single_metric flushes at once and,
    # unlike Metrics, does not read POWERTOOLS_METRICS_DISABLED, so honour it here (dev sets it).
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("1", "true"):
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as m:
        for key, value in dimensions.items():
            m.add_dimension(name=key, value=value)


def _cancel_quietly(executor: Executor, executor_job_id: str | None) -> None:
    if not executor_job_id:
        return
    try:
        executor.cancel(executor_job_id)
    except ExecutorError as exc:
        logger.warning("executor cancel failed", extra={"error": str(exc)})


# --------------------------------------------------------------------------- cancel / get / list / save


def _owned_job(svc: Services, caller: Caller, job_id: str, request: str) -> JobRecord | None:
    job = svc.jobs.get(job_id)
    if job is None or job.user_id != caller.user_id:
        # Someone else's job looks exactly like a missing one.
        svc.reply(
            caller, ErrorMessage(message=f"job {job_id} not found", code="not_found", request=request, job_id=job_id)
        )
        return None
    return job


def cancel_job(svc: Services, caller: Caller, job_id: str) -> None:
    job = _owned_job(svc, caller, job_id, "cancel_job")
    if job is None:
        return
    # Record the cancel first: a poll that looks while the executor is dropping the prompt
    # would otherwise see it vanish and record the job as lost instead of cancelled.
    if not job.status.terminal and _finish(svc, job, JobStatus.CANCELLED, message="cancelled by the user"):
        # Read again: run_job may have recorded the executor's id since we looked (a cancel sent
        # right after run_job); an id recorded after _finish is stopped by _start_job itself.
        job = svc.jobs.get(job_id) or job
        if job.executor_job_id:
            try:
                executor = svc.executor_for(job.executor, job.user_id, job.endpoint_id)
                _cancel_quietly(executor, job.executor_job_id)
            except (CredentialsError, ExecutorError, ValueError) as exc:
                logger.warning("could not build executor to cancel", extra={"error": str(exc)})
        if job.execution_arn:
            try:
                aws.stepfunctions().stop_execution(executionArn=job.execution_arn, cause="cancelled by the user")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                    raise
    job = svc.jobs.get(job_id) or job
    svc.reply(caller, jobstate.job_update(job))


def job_output(svc: Services, stored: StoredOutput) -> JobOutput:
    return JobOutput(
        node_id=stored.node_id,
        node_name=stored.node_name,
        output_name=stored.output_name,
        output_type=stored.output_type,
        value=OutputValue(
            uri=svc.outputs.presign(stored, svc.config.presign_seconds),
            filename=stored.filename,
            content_type=stored.content_type,
            size=stored.size,
        ),
    )


def get_job(svc: Services, caller: Caller, job_id: str) -> None:
    job = _owned_job(svc, caller, job_id, "get_job")
    if job is None:
        return
    if job.connection_id != caller.connection_id and not job.status.terminal:
        # The client came back on a new connection: send the rest of this job there.
        svc.jobs.update(job.job_id, connection_id=caller.connection_id, only_if_active=True)
    svc.reply(caller, JobMessage(job=jobstate.job_view(job, [job_output(svc, o) for o in job.outputs])))


def list_jobs(svc: Services, caller: Caller, limit: int) -> None:
    jobs = svc.jobs.list_by_user(caller.user_id, limit)
    # The list stays small: no presigned URLs here (get_job gives those), only the count.
    svc.reply(caller, JobList(jobs=[jobstate.job_view(j) for j in jobs]))


def save_workflow(svc: Services, caller: Caller, data: SaveWorkflowData) -> None:
    existing = svc.workflows.get(caller.user_id, data.workflow_id)
    settings = dict(existing.settings) if existing else {}
    if data.settings is not None:
        settings.update(data.settings.model_dump(mode="json", exclude_unset=True))
    graph_json = data.graph.model_dump_json() if data.graph is not None else None
    prompt_json = json.dumps(data.prompt) if data.prompt is not None else None
    if graph_json is None and prompt_json is None and existing is not None:
        graph_json, prompt_json = existing.graph_json, existing.prompt_json
    record = WorkflowRecord(
        user_id=caller.user_id,
        workflow_id=data.workflow_id,
        name=data.name or (existing.name if existing else None),
        graph_json=graph_json,
        prompt_json=prompt_json,
        settings=settings,
        updated_at=time.time(),
    )
    svc.workflows.put(record)
    svc.reply(caller, WorkflowSaved(workflow_id=data.workflow_id, settings=settings))


def ping(svc: Services, caller: Caller) -> None:
    svc.reply(caller, Pong())


def reject(svc: Services, caller: Caller, error: ProtocolError) -> None:
    svc.reply(caller, ErrorMessage(message=error.message, code=error.code, request=error.command))


# --------------------------------------------------------------------------- poll (state machine task)


class PollResult(BaseModel):
    job_id: str
    polls: int
    done: bool
    status: JobStatus
    wait_seconds: int
    notify: bool


def poll_job(svc: Services, job_id: str, polls: int) -> PollResult:
    """One look at the job on its executor; see docs/architecture.md for the contract."""
    job = svc.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} has no record")
    cfg = svc.config
    wait = jobstate.next_wait(polls, cfg.poll_interval_start_seconds, cfg.poll_interval_cap_seconds)

    def result(status: JobStatus, *, done: bool, notify: bool) -> PollResult:
        return PollResult(job_id=job_id, polls=polls + 1, done=done, status=status, wait_seconds=wait, notify=notify)

    if job.status.terminal:
        return result(job.status, done=True, notify=False)
    executor = svc.executor_for(job.executor, job.user_id, job.endpoint_id)
    if not job.executor_job_id:
        _fail(svc, job, "the job has no executor id (its submit did not finish)")
        return result(JobStatus.FAILED, done=True, notify=False)
    if time.time() >= job.deadline:
        _cancel_quietly(executor, job.executor_job_id)
        _finish(
            svc,
            job,
            JobStatus.TIMED_OUT,
            error=f"the job ran longer than its {cfg.job_timeout_seconds} s limit and was cancelled",
            polls=polls + 1,
        )
        return result(_current_status(svc, job), done=True, notify=False)

    status = executor.status(job.executor_job_id, submitted_at=job.created_at)
    if status.state.terminal:
        outputs: list[StoredOutput] | None = None
        state, error = status.state, status.error
        if state is JobStatus.COMPLETED:
            try:
                files = executor.outputs(job.executor_job_id)
            except ExecutorUnavailable:
                raise  # Step Functions retries the poll
            except (ExecutorError, ValueError) as exc:
                state, error = JobStatus.FAILED, f"the job finished but its outputs could not be fetched: {exc}"
            else:
                outputs = [
                    svc.outputs.put(job.job_id, i, f, job.node_classes.get(f.node_id, f.node_id))
                    for i, f in enumerate(files)
                ]
        message = status.message
        if outputs == [] and not message:
            message = jobstate.NO_OUTPUTS_MESSAGE
        _finish(svc, job, state, error=error, message=message, outputs=outputs, polls=polls + 1)
        return result(_current_status(svc, job), done=True, notify=False)

    notify = jobstate.changed(job, status)
    if notify:
        fields: dict[str, Any] = {"status": status.state.value}
        remove = []
        message = jobstate.status_message(status, job.executor)
        if message:
            fields["message"] = message
        else:
            remove.append("message")
        if status.state is JobStatus.RUNNING and job.started_at is None:
            fields["started_at"] = time.time()
        progress = jobstate.progress_of(status)
        if progress is not None:
            fields["progress"] = progress
        else:
            remove.append("progress")
        if status.queue_position is not None:
            fields["queue_position"] = status.queue_position
        else:
            remove.append("queue_position")
        if not svc.jobs.update(job.job_id, only_if_active=True, remove=tuple(remove), **fields):
            # Finished (e.g. cancelled) while we looked: report that instead.
            return result(_current_status(svc, job), done=True, notify=False)
    return result(status.state, done=False, notify=notify)


def _current_status(svc: Services, job: JobRecord) -> JobStatus:
    fresh = svc.jobs.get(job.job_id)
    return fresh.status if fresh else job.status


# --------------------------------------------------------------------------- notify (state machine task)


class NotifyResult(BaseModel):
    job_id: str
    delivered: bool
    sent: int = 0
    reason: str | None = None


def notify_job(svc: Services, job_id: str, *, final: bool, failure: dict[str, Any] | None = None) -> NotifyResult:
    job = svc.jobs.get(job_id)
    if job is None:
        return NotifyResult(job_id=job_id, delivered=False, reason="no such job")
    if failure is not None and not job.status.terminal:
        _fail(svc, job, jobstate.describe_failure(failure))
        job = svc.jobs.get(job_id) or job
    if not job.connection_id:
        return NotifyResult(job_id=job_id, delivered=False, reason="no connection")
    conn = svc.connections.get(job.connection_id)
    if conn is None or conn.gone:
        # The client left; it catches up with get_job after reconnecting.
        return NotifyResult(job_id=job_id, delivered=False, reason="connection gone")
    messages: list[BaseModel] = [jobstate.job_update(job)]
    if final or job.status.terminal:
        messages.extend(output_updates(svc, job))
    else:
        progress = jobstate.node_progress(job)
        if progress is not None:
            messages.append(progress)
    if not svc.pusher().send_all(job.connection_id, messages):
        svc.connections.mark_gone(job.connection_id)
        metrics.add_metric(name="GoneConnections", unit=MetricUnit.Count, value=1)
        return NotifyResult(job_id=job_id, delivered=False, reason="connection gone")
    return NotifyResult(job_id=job_id, delivered=True, sent=len(messages))


def output_updates(svc: Services, job: JobRecord) -> list[OutputUpdate]:
    """One ``output_update`` per output: a presigned URL always, the bytes inline (base64)
    only when the whole message still fits in one WebSocket frame."""
    updates = []
    for stored in job.outputs:
        out = job_output(svc, stored)
        update = OutputUpdate(job_id=job.job_id, workflow_id=job.workflow_id, **out.model_dump())
        head = len(encode(update).encode())
        # base64 grows by 4/3; 16 bytes more for the `"data":"",` key.
        if stored.key and stored.size and head + (stored.size + 2) // 3 * 4 + 16 <= MAX_MESSAGE_BYTES:
            data = svc.outputs.read(stored)
            if data is not None:
                value = out.value.model_copy(update={"data": base64.b64encode(data).decode()})
                update = update.model_copy(update={"value": value})
        updates.append(update)
    return updates
