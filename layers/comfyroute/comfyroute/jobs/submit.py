"""run_job: resolve and convert the workflow, record the job, submit it to its executor and
start its follow loop, once per (user, job id)."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from aws_lambda_powertools import Logger
from pydantic import BaseModel, Field

from comfyroute import messages
from comfyroute.aws.uploads import UploadError
from comfyroute.conversion.nodetool import COMFY_PREFIX, apply_params, convert_graph, validate_prompt
from comfyroute.conversion.object_info import bundled_object_info
from comfyroute.conversion.problems import ConversionProblem, GraphError
from comfyroute.credentials import CredentialsError
from comfyroute.executors.base import ExecutorError, ExecutorUnavailable
from comfyroute.executors.runpod_webhook import callback_url, new_secret, secret_digest
from comfyroute.executors.scrubbed import errors_scrubbed, unwrap
from comfyroute.jobs import lifecycle, schedule, stream
from comfyroute.jobs.cancel import stop_on_executor
from comfyroute.jobs.inputs import InputRefused, UploadedWorkflow, keep_inputs, load_uploaded_workflow, resolve_files
from comfyroute.jobs.record import InputRecord, JobNotFound, JobRecord, Outcome, job_key
from comfyroute.jobs.webhook import arm_seconds
from comfyroute.ports import DifferentRequest, LoopStartFailed, StartInProgress
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import NodeProblem
from comfyroute.protocol.workflow_commands import ExecutorSettings, Graph, RunJobData
from comfyroute.schemas import ObjectInfoUnavailable, editor_classes

if TYPE_CHECKING:
    from comfyroute.conversion.object_info import ObjectInfo
    from comfyroute.ports import Caller, Ports

logger = Logger(child=True)


class PreparedJob(BaseModel):
    """A run_job request made ready to start: who asks, where it runs and the converted
    prompt, or the ``error`` that fails it (a bad request is still recorded, failed, so
    ``get_job`` can explain it later). It is also what makes a start idempotent: Powertools
    keys on its ``[user_id, job_id]`` and refuses the key with another ``request_hash``."""

    user_id: str
    connection_id: str
    job_id: str  # the client's
    key: str  # the backend's (jobs.record.job_key)
    # SHA-256 of the request as the client sent it, less its job_id: a resend matches it.
    request_hash: str = ""
    workflow_id: str | None = None
    executor: ExecutorKind
    endpoint_id: str | None = None
    prompt: dict[str, Any] | None = None
    node_classes: dict[str, str] = Field(default_factory=dict)
    # The job's input files, checked (metadata only: inline bytes travel beside, see run_job).
    inputs: list[InputRecord] = Field(default_factory=list)
    error: str | None = None
    errors: list[NodeProblem] = Field(default_factory=list)  # the error's problems per node


class StartAnswer(BaseModel):
    """What a start answers, stored and replayed for a repeated run_job: with the connection
    whose run_job started the job, so run_job can tell a resend from another connection."""

    job_id: str
    status: JobStatus
    connection_id: str | None = None


class Started(NamedTuple):
    job: JobRecord  # the record the start left
    by: str | None  # the connection of the run_job that started the job

    def answer(self) -> StartAnswer:
        return StartAnswer(job_id=self.job.job_id, status=self.job.status, connection_id=self.by)


class JobOwnedByAnother(Exception):
    pass


def prepare_job(ports: Ports, caller: Caller, data: RunJobData) -> PreparedJob:
    """Resolve the saved or uploaded workflow, the settings and the input files, and convert
    the workflow (with the node schemas of the executor it runs on, where it needs them).
    ``InputRefused`` for an upload or input file that cannot be used (no job is recorded then)."""
    return _prepare(ports, caller, data)[0]


def _prepare(ports: Ports, caller: Caller, data: RunJobData) -> tuple[PreparedJob, dict[str, bytes]]:
    """``prepare_job``, and the bytes of the inline input files."""
    job_id = data.job_id or str(uuid.uuid4())
    uploaded = (
        load_uploaded_workflow(ports, caller, data.workflow_upload_id)
        if data.workflow_upload_id
        else UploadedWorkflow()
    )
    # Inputs are kept under the job KEY's prefix (per user), as its outputs are.
    key = job_key(caller.user_id, job_id)
    inputs, inline = resolve_files(ports, caller, key, data.files) if data.files else ([], {})
    graph: Graph | None = data.graph if data.graph is not None else uploaded.graph
    prompt = data.prompt if data.prompt is not None else uploaded.prompt
    editor: dict[str, Any] | None = data.workflow.model_dump() if data.workflow is not None else uploaded.editor
    settings = ExecutorSettings()
    missing: str | None = None
    if data.workflow_id:
        saved = ports.workflows.get(caller.user_id, data.workflow_id)
        given = graph is not None or prompt is not None or editor is not None
        if saved is not None:
            settings = saved.executor_settings
            if not given:
                if saved.graph_json:
                    graph = Graph.model_validate_json(saved.graph_json)
                elif saved.prompt_json:
                    prompt = json.loads(saved.prompt_json)
                elif saved.workflow_json:
                    editor = json.loads(saved.workflow_json)
        if graph is None and prompt is None and editor is None:
            missing = f"workflow '{data.workflow_id}' not found"
    # An uploaded saved workflow's settings sit between the stored workflow's and the request's.
    settings = settings.merged(uploaded.settings).merged(data.settings)
    kind = settings.comfy_executor or ExecutorKind.LOCAL
    endpoint_id = settings.runpod_endpoint_id if kind is ExecutorKind.RUNPOD else None

    def prepared(**outcome: Any) -> PreparedJob:
        return PreparedJob(
            user_id=caller.user_id,
            connection_id=caller.connection_id,
            job_id=job_id,
            key=key,
            request_hash=request_hash(data),
            workflow_id=data.workflow_id,
            executor=kind,
            endpoint_id=endpoint_id,
            inputs=inputs,
            **outcome,
        )

    if missing:
        return prepared(error=missing), inline
    if kind is ExecutorKind.RUNPOD and not endpoint_id:
        return prepared(error="runpod_endpoint_id is required when comfy_executor is 'runpod'"), inline

    def schemas(classes: set[str]) -> ObjectInfo:
        try:
            return ports.object_info.get(kind, caller.user_id, endpoint_id, classes)
        except ObjectInfoUnavailable:
            raise
        except Exception:
            # A bug or an outage behind the port: the job is still recorded, failed, and explained.
            logger.exception("could not read the node schemas")
            raise ObjectInfoUnavailable("the node schemas could not be read (internal error)") from None

    try:
        if editor is not None:
            # Imported for editor workflows only: graphs and prompts do without the widget rules.
            from comfyroute.conversion.editor import convert_editor_workflow

            converted = validate_prompt(convert_editor_workflow(editor, schemas(editor_classes(editor))))
        elif graph is not None:
            # A graph that is not all comfy.* nodes is refused by convert_graph, naming them. The
            # executor's schemas where the graph needs them, else the bundled core ones, map an
            # imported node's positional _comfy_widgets to input names (nodetool's importer keeps
            # ComfyUI's widgets_values so); unknown classes keep their graph's own names.
            converted = convert_graph(graph, _graph_schemas(graph, schemas) or bundled_object_info())
        else:
            converted = validate_prompt(prompt or {})
        if data.params:
            converted = apply_params(converted, data.params)
    except ObjectInfoUnavailable as exc:
        return prepared(error=f"cannot convert the editor workflow: {exc}"), inline
    except GraphError as exc:
        return prepared(error=f"invalid workflow: {exc}", errors=_node_problems(exc.details)), inline
    classes = {nid: str(node.get("class_type", "")) for nid, node in converted.items()}
    return prepared(prompt=converted, node_classes=classes), inline


def _node_problems(details: list[ConversionProblem]) -> list[NodeProblem]:
    return [NodeProblem.model_validate(p.model_dump()) for p in details]


def _graph_schemas(graph: Graph, schemas: Callable[[set[str]], ObjectInfo]) -> ObjectInfo | None:
    """The schemas a nodetool graph is converted with, when it needs them (``_comfy_widgets``,
    output handles by name without ``_comfy_metadata``). A graph converts by what it says itself
    too, so schemas that cannot be had are no error here."""
    if not _needs_schemas(graph):
        return None
    classes = {node.type.removeprefix(COMFY_PREFIX) for node in graph.nodes}
    try:
        return schemas(classes)
    except ObjectInfoUnavailable as exc:
        logger.info("converting the graph without node schemas", extra={"reason": str(exc)})
        return None


_SLOT_HANDLE = re.compile(r"^(output|input)_\d+$")


def _needs_schemas(graph: Graph) -> bool:
    described = set()
    for node in graph.nodes:
        props = node.props
        if "_comfy_widgets" in props:
            return True
        meta = props.get("_comfy_metadata")
        if isinstance(meta, dict) and meta.get("outputs") and meta.get("inputs") is not None:
            described.add(node.id)
    for edge in graph.edges:
        named_source = edge.sourceHandle and not _SLOT_HANDLE.match(edge.sourceHandle)
        slot_target = edge.targetHandle and _SLOT_HANDLE.match(edge.targetHandle)
        if (named_source and edge.source not in described) or (slot_target and edge.target not in described):
            return True
    return False


def request_hash(data: RunJobData) -> str:
    """What makes two run_job requests the same request: everything but the job id."""
    body = data.model_dump(mode="json", exclude={"job_id"}, exclude_none=True)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


# How long a run_job for a job that another connection is starting waits for its record.
JOIN_ATTEMPTS = 10
JOIN_PAUSE_SECONDS = 0.2


def run_job(ports: Ports, caller: Caller, data: RunJobData) -> None:
    """Start the job once and answer with one ``job_update``: its state, or ``failed`` with the
    reason when nothing was started. An input file or upload that cannot be used is refused
    before any job exists, with one ``error`` naming its code."""
    try:
        prepared, inline = _prepare(ports, caller, data)
    except InputRefused as exc:
        messages.reply(ports, caller, messages.error(exc.message, exc.code, request="run_job", job_id=data.job_id))
        return
    logger.append_keys(job_id=prepared.job_id)
    started: list[JobRecord] = []

    def start(request: PreparedJob) -> StartAnswer:
        # The inline files' bytes stay out of the idempotency payload: this request has them.
        result = start_job(ports, request, inline)
        started.append(result.job)
        return result.answer()

    def refuse(reason: str) -> None:
        messages.reply(ports, caller, messages.refused_run(prepared.job_id, prepared.workflow_id, reason))

    try:
        answer = ports.start_once(prepared, start)
    except StartInProgress:
        # The same user's other connection is starting this job right now: follow it from here.
        _join(ports, caller, prepared)
        return
    except DifferentRequest:
        refuse(
            f"job_id {prepared.job_id} was already used for a different request; "
            "send this one with a new job_id (or resend the original request unchanged)"
        )
        return
    except JobOwnedByAnother:
        refuse(f"job_id {prepared.job_id} cannot be used; choose another")
        return
    except Exception:
        # Unexpected (an AWS outage, a bug): never leave an accepted job queued with no loop,
        # and answer with the job as it now stands rather than an internal error.
        logger.exception("run_job failed")
        _fail_if_stranded(ports, prepared.key, "the job could not be started (internal error); run it again")
        failed = _get_quietly(ports, prepared.key)
        if failed is not None:
            messages.reply(ports, caller, messages.job_update(failed, request="run_job"))
        else:
            refuse("the job could not be started (internal error); run it again")
        return
    # A start that ran here answered with the record it left; a repeated run_job gets the
    # stored answer, and the job may have moved on since: look at it.
    job = started[-1] if started else ports.jobs.get(prepared.key)
    if job is None:  # pragma: no cover - a start always records the job
        raise RuntimeError(f"job {prepared.job_id} was not recorded")
    # ``answer`` names the connection whose run_job started the job. Only a resend from another
    # connection (client reconnected) moves the job's pushes here; the starting request must
    # not take them back from a connection that has since asked for the job with get_job while
    # this request was still submitting.
    resent = answer.connection_id != caller.connection_id
    if resent and job.connection_id != caller.connection_id and not job.status.terminal:
        job = lifecycle.attach(ports.jobs, job.job_id, caller.connection_id).job
    # The job's first message of its stream (job_seq 1 for a new job), to the caller: the one answer.
    stream.publish(ports, job, [messages.job_update(job, request="run_job")], to=caller.connection_id)


def _join(ports: Ports, caller: Caller, prepared: PreparedJob) -> None:
    """Subscribe the caller's connection to a job another of the user's connections is starting."""
    job = None
    for attempt in range(JOIN_ATTEMPTS):
        job = ports.jobs.get(prepared.key)
        if job is not None:
            break
        if attempt + 1 < JOIN_ATTEMPTS:
            time.sleep(JOIN_PAUSE_SECONDS)
    if job is None:
        refusal = messages.error(
            f"job {prepared.job_id} is being started from another connection; ask get_job for it in a moment",
            "in_progress",
            request="run_job",
            job_id=prepared.job_id,
            workflow_id=prepared.workflow_id,
        )
        messages.reply(ports, caller, refusal)
        return
    if job.connection_id != caller.connection_id and not job.status.terminal:
        job = lifecycle.attach(ports.jobs, job.job_id, caller.connection_id).job
    stream.publish(ports, job, [messages.job_update(job, request="run_job")], to=caller.connection_id)


def _get_quietly(ports: Ports, key: str) -> JobRecord | None:
    try:
        return ports.jobs.get(key)
    except Exception:
        logger.exception("could not read the job back")
        return None


def start_job(ports: Ports, prepared: PreparedJob, inline: Mapping[str, bytes] | None = None) -> Started:
    """Record the job, submit it to its executor and start its follow loop. Every failure ends
    in a recorded ``failed`` job. ``inline``: the bytes of the inline input files by name."""
    # RunPod with a callback route: a per-job webhook secret, whose digest only is recorded.
    webhook = prepared.executor is ExecutorKind.RUNPOD and bool(ports.config.runpod_callback_base_url)
    secret = new_secret() if webhook else None
    created = _create(ports, prepared, secret)
    if not created.applied:
        return Started(_resume(ports, prepared, created.job), created.job.connection_id)
    return Started(_run(ports, prepared, inline or {}, secret), prepared.connection_id)


def _create(ports: Ports, prepared: PreparedJob, secret: str | None) -> Outcome:
    now = time.time()
    cfg = ports.config
    record = JobRecord(
        job_id=prepared.key,
        client_job_id=prepared.job_id,
        user_id=prepared.user_id,
        connection_id=prepared.connection_id,
        workflow_id=prepared.workflow_id,
        executor=prepared.executor,
        endpoint_id=prepared.endpoint_id,
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        deadline=now + cfg.job_timeout_seconds,
        node_classes=prepared.node_classes,
        inputs=prepared.inputs,
        ttl=int(now + cfg.job_ttl_days * 86400),
        callback_digest=secret_digest(secret) if secret else None,
    )
    return lifecycle.create(ports.jobs, record)


def _run(ports: Ports, prepared: PreparedJob, inline: Mapping[str, bytes], secret: str | None) -> JobRecord:
    """Submit a newly recorded job and start its loop; the record that leaves."""
    job_id = prepared.key
    if prepared.error or prepared.prompt is None:
        return lifecycle.fail(ports.jobs, job_id, prepared.error or "nothing to run", errors=prepared.errors).job
    kind = prepared.executor
    try:
        executor = ports.executors(kind, prepared.user_id, prepared.endpoint_id)
        files = None
        if prepared.inputs:
            try:
                files = keep_inputs(ports, prepared.user_id, job_id, prepared.inputs, inline)
            except UploadError as exc:
                return lifecycle.fail(ports.jobs, job_id, f"the job's input files could not be kept: {exc}").job
        runpod = unwrap(executor)
        if secret is not None:
            # Only a RunPod job has a secret; other jobs never load the RunPod executor.
            from comfyroute.executors.runpod import RunPodExecutor
        if secret is not None and isinstance(runpod, RunPodExecutor):
            webhook = callback_url(ports.config.runpod_callback_base_url, job_id, secret)
            with errors_scrubbed(executor):
                executor_job_id = runpod.submit_with_files(prepared.prompt, job_id, files or [], webhook=webhook)
        elif files is not None:
            executor_job_id = executor.submit_with_files(prepared.prompt, job_id, files)
        else:
            executor_job_id = executor.submit(prepared.prompt, job_id)
    except ExecutorUnavailable as exc:
        # Its own sentence says it ("ComfyUI at host:port is not reachable: connection refused").
        return lifecycle.fail(ports.jobs, job_id, f"{exc}; the job was not started").job
    except ExecutorError as exc:
        error = f"{kind.value} executor refused the job: {exc}"
        return lifecycle.fail(ports.jobs, job_id, error, errors=exc.details).job
    except (CredentialsError, ValueError) as exc:
        return lifecycle.fail(ports.jobs, job_id, f"{kind.value} executor refused the job: {exc}").job
    submitted = lifecycle.submitted(ports.jobs, job_id, kind, executor_job_id)
    if not submitted.applied:
        # Cancelled while the executor was accepting it: that cancel had no executor id to stop,
        # so stop the executor's copy here rather than leave it running with nobody watching.
        stop_on_executor(executor, executor_job_id)
        return submitted.job
    try:
        arn = _start_loop(ports, submitted.job)
    except LoopStartFailed as exc:
        stop_on_executor(executor, executor_job_id)
        return lifecycle.fail(ports.jobs, job_id, f"could not start the job's poll loop ({exc.code})").job
    return lifecycle.loop_started(ports.jobs, job_id, arn).job


def _resume(ports: Ports, prepared: PreparedJob, existing: JobRecord) -> JobRecord:
    """The job id is taken: by another user (a conflict), or by this job, resent after the
    first attempt died half-way once its idempotency record expired. Finish what that attempt
    started, so the job still reaches a terminal state."""
    if existing.user_id != prepared.user_id:
        raise JobOwnedByAnother(prepared.key)
    if existing.status.terminal or existing.execution_arn is not None:
        return existing
    if existing.executor_job_id:
        return lifecycle.loop_started(ports.jobs, existing.job_id, _start_loop(ports, existing)).job
    return lifecycle.fail_stranded(ports.jobs, existing.job_id, "the submission was interrupted; run it again").job


def _start_loop(ports: Ports, job: JobRecord) -> str:
    """Start the job's loop; its input says how the job is followed (the state machine's
    Route): ComfyUI on its websocket, RunPod by its webhook, else by polling."""
    cfg = ports.config
    payload: dict[str, Any] = {
        "job_id": job.job_id,
        "polls": 0,
        "follows": 0,
        "wait_seconds": cfg.poll_interval_start_seconds,
    }
    if job.executor is ExecutorKind.LOCAL:
        payload["executor"] = "comfyui"
    elif job.callback_digest:
        payload["executor"] = "runpod_webhook"
        payload["arm_seconds"] = arm_seconds(ports, job.deadline)
    else:
        payload["executor"] = "runpod_poll"
    # The state machine's own safety net (statemachine/job.asl.json, Next): it fails the job
    # once Poll's polls count reaches this, whatever Poll answers. A count, not seconds: it is
    # counted with Poll's own schedule (the fallback waits, capped as poll_job caps them), and
    # every other way the loop spends time (Follow windows, which answer polls 0; Arm's slow
    # poll; an unreachable executor's longer waits) is bounded by the job's deadline, which
    # Follow and Poll enforce themselves; so max_polls never fails a job before its time.
    max_polls = schedule.poll_budget(
        cfg.execution_budget_seconds,
        cfg.poll_interval_start_seconds,
        min(cfg.poll_fallback_cap_seconds, cfg.poll_interval_cap_seconds),
    )
    if max_polls is not None:
        payload["max_polls"] = max_polls
    return ports.state_machine.start(job.job_id, payload)


def _fail_if_stranded(ports: Ports, job_id: str, error: str) -> None:
    """Best effort: this runs while something else already went wrong."""
    try:
        lifecycle.fail_stranded(ports.jobs, job_id, error)
    except JobNotFound:
        pass
    except Exception:
        logger.exception("could not mark a stranded job failed")
