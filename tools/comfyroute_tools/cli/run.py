"""``comfyroute run`` and ``comfyroute jobs``: the command-line WebSocket client.

``register(subparsers)`` adds both to the ``comfyroute`` parser. The WebSocket client, its
dependencies (``websockets``) and ``rich`` are imported only when one of these commands runs, so
``comfyroute convert`` keeps working on an install without the ``dev-stack`` extra.

Where to connect: ``--url`` / ``--token``, else ``COMFYROUTE_URL`` / ``COMFYROUTE_TOKEN``, else
the state file ``comfyroute dev`` writes (``$COMFYROUTE_DEV_STATE`` or ``~/.comfyroute/dev.json``:
its ``ws_url``, and a ``token`` if the file has one); the URL defaults to the dev stack's
``ws://127.0.0.1:3001``. A token from that file is only used for the dev stack's own URL, so it is
never sent to another server.

Input files: ``--file PATH`` (repeatable) sends a file with the job under its basename, or
``--file NAME=PATH`` under NAME, the name the workflow uses (LoadImage's ``image``). Small files
ride in the run_job frame, big ones are uploaded first with a progress bar; a workflow over the
128 KB frame is uploaded the same way and run by ``workflow_upload_id``. A ComfyUI editor
workflow (workflow.json as ComfyUI saves it) is sent as it is, as ``workflow``: the server
converts it with its executor's ``/object_info``.

Exit codes: 0 completed; 1 the job failed, timed out or was cancelled, or an output could not be
saved; 2 bad input (the workflow file, an option, or the server refusing the workflow); 3 no
connection or the token was refused; 130 interrupted (Ctrl-C, after asking for a cancel).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from comfyroute.conversion.detect import WorkflowKind as WorkflowKindDetected
from comfyroute.conversion.detect import detect_workflow
from comfyroute.conversion.nodetool import load_workflow
from comfyroute.conversion.problems import GraphError
from comfyroute.protocol import JOB_ID_PATTERN, MAX_MESSAGE_BYTES, ExecutorKind, JobStatus, input_name_problem
from comfyroute.protocol.commands import describe_validation_error
from comfyroute.protocol.server_messages import (
    ErrorMessage,
    JobUpdate,
    JobView,
    NodeProgress,
    NodeUpdate,
    OutputUpdate,
    ServerMessage,
)
from comfyroute.protocol.workflow_commands import EditorWorkflow, ExecutorSettings, RunJob, RunJobData

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from comfyroute_tools.client import ComfyrouteClient, JobResult

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CONNECTION = 3
EXIT_INTERRUPTED = 130

DEFAULT_URL = "ws://127.0.0.1:3001"
URL_ENV = "COMFYROUTE_URL"
TOKEN_ENV = "COMFYROUTE_TOKEN"
DEV_STATE_ENV = "COMFYROUTE_DEV_STATE"
# After Ctrl-C (or --timeout), how long to wait for the server to confirm the cancel.
CANCEL_WAIT_SECONDS = 10.0
# Server error codes that mean "your workflow / request is wrong" rather than "it broke".
BAD_INPUT_CODES = frozenset(
    {
        "bad_request",
        "too_large",
        "invalid_graph",
        "invalid_workflow",
        "not_found",
        "upload_not_allowed",
        "upload_too_large",
        "upload_not_found",
        "upload_expired",
        "upload_forbidden",
        "upload_not_ready",
    }
)
# Files from this size on get a progress bar of their own on a terminal.
BIG_FILE_BYTES = 1024 * 1024

T = TypeVar("T")


class BadInput(Exception):
    """The workflow file or an option is wrong; ``problems`` lists every problem found."""

    def __init__(self, summary: str, problems: list[str] | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.problems = problems or []


class NoCredentials(Exception):
    """No API token could be found; exit code 3 like a refused one."""


# --------------------------------------------------------------------------- where to connect


def dev_info_path() -> Path:
    # The same place (and override) as comfyroute_tools.cli.dev.default_state_file, without importing
    # the dev stack's dependencies into the client.
    return Path(os.environ.get(DEV_STATE_ENV) or Path.home() / ".comfyroute" / "dev.json")


class DevStackInfo(BaseModel):
    """The part of ``comfyroute dev``'s state file (mode 0600) a client needs: where its
    gateway listens (``ws_url``) and the dev user's token."""

    model_config = ConfigDict(extra="ignore")
    url: str = Field(validation_alias=AliasChoices("ws_url", "url"))
    token: SecretStr | None = None


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True)
    url: str
    token: SecretStr  # SecretStr keeps it out of reprs and tracebacks


def read_dev_info(path: Path | None = None) -> DevStackInfo | None:
    path = path or dev_info_path()
    try:
        return DevStackInfo.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"comfyroute: ignoring {path}: {reason}", file=sys.stderr)
        return None


def _same_endpoint(a: str, b: str) -> bool:
    def norm(u: str) -> str:
        return u.rstrip("/").lower()

    return norm(a) == norm(b)


def resolve_endpoint(url: str | None, token: str | None, env: Mapping[str, str] | None = None) -> Endpoint:
    """Flags, then environment, then the dev stack's file, then the dev stack's default URL.

    A token may also ride in the URL's query. The dev stack's token only goes with its own URL."""
    from comfyroute_tools.client import split_token

    env = os.environ if env is None else env
    url = url or env.get(URL_ENV) or None
    token = token or env.get(TOKEN_ENV) or None
    if url:
        url, in_url = split_token(url)
        token = token or in_url
    if url is None or token is None:
        dev = read_dev_info()
        if dev is not None:
            dev_url, dev_in_url = split_token(dev.url)
            url = url or dev_url
            if token is None and _same_endpoint(url, dev_url):
                token = dev.token.get_secret_value() if dev.token else dev_in_url
    url = url or DEFAULT_URL
    if not token:
        raise NoCredentials(
            f"no API token for {url}: pass --token or set {TOKEN_ENV} (`comfyroute dev` prints one "
            f"when it starts; `comfyroute keys create --user USER` issues more)"
        )
    return Endpoint(url=url, token=SecretStr(token))


# --------------------------------------------------------------------------- the workflow file


WorkflowKind = Literal["graph", "prompt", "workflow"]


@dataclass(frozen=True)
class WorkflowFile:
    """A workflow file as ``run_job`` will send it: ``kind`` is the run_job field it goes in."""

    kind: WorkflowKind
    body: dict[str, Any]
    settings: dict[str, Any]  # the executor settings a saved nodetool workflow carries
    node_count: int  # nodes in the converted prompt (in the file, for an editor workflow)


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"cannot read {path}: {reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not JSON: {exc}") from None


_KINDS: dict[WorkflowKindDetected, WorkflowKind] = {
    WorkflowKindDetected.GRAPH: "graph",
    WorkflowKindDetected.SAVED_WORKFLOW: "graph",
    WorkflowKindDetected.PROMPT: "prompt",
    WorkflowKindDetected.EDITOR: "workflow",
}


def load_workflow_file(path: str) -> WorkflowFile:
    """Read and check a workflow file the way the server will, listing every problem.

    The kind is told by shape, as the server tells an uploaded workflow's (``conversion.detect``).
    A nodetool graph or an API prompt is converted here as the server would; an editor workflow
    only has its outline checked: turning it into a prompt needs the ``/object_info`` of the
    ComfyUI that runs it (custom nodes and all), which the server has and this machine may not."""
    obj = _read_json(path)
    try:
        detected = detect_workflow(obj)
    except GraphError as exc:
        raise BadInput(f"{path} is not a runnable workflow", exc.problems) from None
    kind, body, settings = _KINDS[detected.kind], dict(detected.body), dict(detected.settings)
    if kind == "workflow":
        try:
            editor = EditorWorkflow.model_validate(body)
        except ValidationError as exc:
            problems = describe_validation_error(exc, prefix=("workflow",)).split("; ")
            raise BadInput(f"{path} is not a runnable ComfyUI workflow", problems) from None
        if not editor.nodes:
            raise BadInput(f"{path} is a ComfyUI workflow without nodes")
        return WorkflowFile(kind=kind, body=body, settings=settings, node_count=editor.counts()[0])
    try:
        prompt = load_workflow(obj)
    except GraphError as exc:
        raise BadInput(f"{path} is not a runnable workflow", exc.problems) from None
    return WorkflowFile(kind=kind, body=body, settings=settings, node_count=len(prompt))


@dataclass(frozen=True)
class InputFileArg:
    """One ``--file``: the name the workflow uses and the file on disk."""

    name: str
    path: Path
    size: int


def parse_file_args(values: list[str] | None) -> list[InputFileArg]:
    """``--file PATH`` (named by its basename) and ``--file NAME=PATH``, every problem listed.

    A value that is an existing file is a path even if it contains ``=``."""
    files: list[InputFileArg] = []
    problems: list[str] = []
    seen: set[str] = set()
    for value in values or []:
        name, sep, rest = value.partition("=")
        if sep and name and not Path(value).is_file():
            path = Path(rest)
        else:
            name, path = Path(value).name, Path(value)
        problem = input_name_problem(name)
        if problem:
            hint = "" if sep else f" (name it: --file NAME={value})"
            problems.append(f"--file {value}: {problem}{hint}")
            continue
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise IsADirectoryError(21, "not a file")
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"--file {value}: cannot read {path}: {exc.strerror or exc}")
            continue
        if name in seen:
            problems.append(f"--file {value}: the name {name!r} is given twice; each name must be unique")
            continue
        seen.add(name)
        files.append(InputFileArg(name=name, path=path, size=size))
    if problems:
        raise BadInput("bad --file", problems)
    return files


def build_settings(base: Mapping[str, Any], executor: str | None, endpoint_id: str | None) -> dict[str, Any]:
    """The file's settings with the command-line flags on top, checked like the server does."""
    merged = dict(base)
    if executor:
        merged["comfy_executor"] = executor
    if endpoint_id:
        merged["runpod_endpoint_id"] = endpoint_id
    if not merged:
        return {}
    try:
        settings = ExecutorSettings.model_validate(merged)
    except ValidationError as exc:
        raise BadInput("bad executor settings", describe_validation_error(exc).split("; ")) from None
    if settings.comfy_executor is ExecutorKind.RUNPOD and not settings.runpod_endpoint_id:
        raise BadInput(
            "the runpod executor needs an endpoint: pass --endpoint-id "
            "(or set runpod_endpoint_id in the workflow's settings)"
        )
    return settings.model_dump(mode="json", exclude_none=True)


def check_run_request(workflow: WorkflowFile, job_id: str | None, settings: dict[str, Any]) -> int:
    """Fail before connecting on anything the server would refuse for its form; return the size
    of the run_job frame with the workflow inline (over ``MAX_MESSAGE_BYTES`` it goes by upload)."""
    fields: dict[str, Any] = {workflow.kind: workflow.body}
    if job_id:
        fields["job_id"] = job_id
    if settings:
        fields["settings"] = settings
    try:
        data = RunJobData.model_validate(fields)
    except ValidationError as exc:
        raise BadInput(
            "the run_job request is invalid", describe_validation_error(exc, prefix=("data",)).split("; ")
        ) from None
    return len(RunJob(command="run_job", data=data).model_dump_json(exclude_none=True).encode())


# --------------------------------------------------------------------------- live progress


class Reporter(Protocol):
    def upload(self, name: str, sent: int, total: int) -> None: ...
    def start(self, job_id: str) -> None: ...
    def on_message(self, msg: ServerMessage) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _status_text(update: JobUpdate) -> str:
    text = update.status.value
    if update.executor:
        text += f" on {update.executor.value}"
    if update.error:
        text += f": {update.error}"
    elif update.message and not update.status.terminal:
        # A record keeps its last message; once the job is over it is news no more.
        text += f": {update.message}"
    return text


def _output_text(out: OutputUpdate) -> str:
    return f"output {out.node_id}.{out.output_name}: {out.value.filename} ({out.value.size} bytes)"


class PlainReporter:
    """One line per change, for logs and pipes: no cursor movement, no colour."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self._status: str | None = None
        self._step: tuple[str, int] | None = None
        self._uploads: dict[str, int] = {}  # name -> the last quarter reported

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", file=self.stream, flush=True)

    def upload(self, name: str, sent: int, total: int) -> None:
        # Called from the upload's worker thread: one line to start, each quarter, one at the end.
        quarter = 4 * sent // total if total else 4
        last = self._uploads.get(name)
        if last is None:
            self._line(f"uploading {name} ({human_size(total)})")
            self._uploads[name] = 0
            last = 0
        if quarter > last:
            self._uploads[name] = quarter
            self._line(f"uploaded {name}" if quarter >= 4 else f"uploading {name}: {25 * quarter}%")

    def start(self, job_id: str) -> None:
        self._line(f"job {job_id} sent")

    def on_message(self, msg: ServerMessage) -> None:
        if isinstance(msg, JobUpdate):
            text = _status_text(msg)
            if text != self._status:
                self._status = text
                self._line(text)
        elif isinstance(msg, NodeUpdate):
            self._line(_node_text(msg))
        elif isinstance(msg, NodeProgress):
            # A sampler reports every step: print each node's progress in tenths only.
            tenth = int(10 * msg.progress / msg.total) if msg.total > 0 else 0
            if (msg.node_id, tenth) != self._step:
                self._step = (msg.node_id, tenth)
                self._line(f"node {msg.node_id}: {msg.progress:g}/{msg.total:g}")
        elif isinstance(msg, OutputUpdate):
            self._line(_output_text(msg))
        elif isinstance(msg, ErrorMessage):
            self._line(f"error: {msg.message}")

    def note(self, text: str) -> None:
        self._line(text)

    def stop(self) -> None:
        pass


def _node_text(msg: NodeUpdate) -> str:
    name = msg.node_name or msg.node_type
    text = f"node {msg.node_id}{f' ({name})' if name else ''}: {msg.status}"
    return f"{text}: {msg.error}" if msg.error else text


class RichReporter:
    """A live bar on a terminal: status, the running node's progress and the elapsed time."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream, highlight=False)
        self.progress: Progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task: TaskID | None = None
        self.status = "sending"
        self.node = ""
        self.transfers: Progress | None = None  # upload bars, shown before the job's own
        self.transfer_tasks: dict[str, TaskID | None] = {}  # None: a small file, one line only

    def upload(self, name: str, sent: int, total: int) -> None:
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        if name not in self.transfer_tasks:
            if total < BIG_FILE_BYTES:
                self.console.print(escape(f"uploading {name} ({human_size(total)})"))
                self.transfer_tasks[name] = None
                return
            if self.transfers is None:
                self.transfers = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                )
                self.transfers.start()
            self.transfer_tasks[name] = self.transfers.add_task(escape(f"uploading {name}"), total=total)
        task = self.transfer_tasks[name]
        if self.transfers is not None and task is not None:
            self.transfers.update(task, completed=sent)

    def _end_transfers(self) -> None:
        # rich shows one live display at a time: the upload bars end before the job's starts.
        if self.transfers is not None:
            self.transfers.stop()
            self.transfers = None

    def _describe(self) -> str:
        from rich.markup import escape

        return escape(f"{self.status}{f' · node {self.node}' if self.node else ''}")

    def start(self, job_id: str) -> None:
        self._end_transfers()
        self.progress.start()
        self.console.print(f"job {job_id}")
        self.task = self.progress.add_task(self._describe(), total=None)

    def on_message(self, msg: ServerMessage) -> None:
        from rich.markup import escape

        if self.task is None:
            return
        if isinstance(msg, JobUpdate):
            self.status = _status_text(msg)
            if msg.status.terminal:
                self.node = ""
                self.progress.update(self.task, total=1, completed=1 if msg.status is JobStatus.COMPLETED else 0)
            self.progress.update(self.task, description=self._describe())
        elif isinstance(msg, NodeUpdate):
            if msg.status == "running":
                self.node = f"{msg.node_id} {msg.node_name or msg.node_type or ''}".strip()
                self.progress.update(self.task, total=None, completed=0, description=self._describe())
            elif msg.status == "error":
                self.console.print(escape(_node_text(msg)))
        elif isinstance(msg, NodeProgress):
            self.node = msg.node_id if not self.node.startswith(f"{msg.node_id} ") else self.node
            self.progress.update(
                self.task, total=msg.total or None, completed=msg.progress, description=self._describe()
            )
        elif isinstance(msg, OutputUpdate):
            self.console.print(escape(_output_text(msg)))
        elif isinstance(msg, ErrorMessage):
            self.console.print(escape(f"error: {msg.message}"))

    def note(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(escape(text))

    def stop(self) -> None:
        self._end_transfers()
        self.progress.stop()


def make_reporter(stream: TextIO) -> Reporter:
    return RichReporter(stream) if stream.isatty() else PlainReporter(stream)


# --------------------------------------------------------------------------- run


@contextlib.contextmanager
def _sigint_sets(event: asyncio.Event) -> Iterator[None]:
    """Route Ctrl-C to ``event`` while a job runs, so it can be cancelled before exiting."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, event.set)
    except (NotImplementedError, RuntimeError, ValueError):
        # Windows, or not the main thread: Ctrl-C raises KeyboardInterrupt as usual (no cancel).
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)


async def _unless(event: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None (and ``work`` cancelled) if ``event`` is set first."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _cancel_and_wait(
    client: ComfyrouteClient, job_id: str, reporter: Reporter, interrupted: asyncio.Event
) -> JobResult | None:
    from comfyroute_tools.client import ComfyrouteError

    try:
        await client.cancel_job(job_id)
        interrupted.clear()  # a second Ctrl-C stops waiting for the confirmation
        return await _unless(
            interrupted,
            client.follow(job_id, timeout=CANCEL_WAIT_SECONDS, on_message=reporter.on_message, confirm_outputs=False),
        )
    except ComfyrouteError as exc:
        reporter.note(f"could not confirm the cancel of job {job_id}: {exc}")
        return None


async def _download_all(result: JobResult, out_dir: Path, reporter: Reporter) -> int:
    from comfyroute.http import make_session
    from comfyroute_tools.client import DownloadError, download

    failures = 0
    session = make_session()
    try:
        for out in result.outputs:
            try:
                path = await download(out, out_dir, session=session)
            except (DownloadError, OSError) as exc:
                failures += 1
                reporter.note(f"could not save {out.value.filename}: {exc}")
                continue
            print(path, flush=True)
    finally:
        session.close()
    return failures


async def _run(
    args: argparse.Namespace,
    workflow: WorkflowFile,
    settings: dict[str, Any],
    endpoint: Endpoint,
    reporter: Reporter,
    files: list[InputFileArg] | None = None,
) -> int:
    from comfyroute_tools.client import ComfyrouteClient, FollowTimeout

    interrupted = asyncio.Event()
    async with ComfyrouteClient(endpoint.url, endpoint.token.get_secret_value()) as client:
        with _sigint_sets(interrupted):
            body = workflow.body
            sending = client.run_job(
                graph=body if workflow.kind == "graph" else None,
                prompt=body if workflow.kind == "prompt" else None,
                workflow=body if workflow.kind == "workflow" else None,
                job_id=args.job_id,
                settings=settings or None,
                files=[(f.name, f.path) for f in files] if files else None,
                upload_progress=reporter.upload,
            )
            job_id = await _unless(interrupted, sending)
            if job_id is None:
                # Ctrl-C while uploading: no job was started, nothing to cancel.
                reporter.stop()
                print("comfyroute run: interrupted before the job was sent", file=sys.stderr)
                return EXIT_INTERRUPTED
            reporter.start(job_id)
            try:
                result = await _unless(
                    interrupted, client.follow(job_id, timeout=args.timeout, on_message=reporter.on_message)
                )
            except FollowTimeout as exc:
                reporter.note(f"{exc}; cancelling it")
                await _cancel_and_wait(client, job_id, reporter, interrupted)
                reporter.stop()
                print(f"comfyroute run: job {job_id} gave up after --timeout {args.timeout:g}s", file=sys.stderr)
                return EXIT_JOB_FAILED
            if result is None:
                reporter.note(f"interrupted: cancelling job {job_id}")
                final = await _cancel_and_wait(client, job_id, reporter, interrupted)
                reporter.stop()
                state = final.status.value if final else "not confirmed"
                print(f"comfyroute run: interrupted; job {job_id} {state}", file=sys.stderr)
                return EXIT_INTERRUPTED
        reporter.stop()
        if not result.ok:
            why = result.error or result.message or "no reason given"
            print(f"comfyroute run: job {job_id} {result.status.value}: {why}", file=sys.stderr)
            return EXIT_JOB_FAILED
        out_dir = Path(args.out) if args.out else Path("outputs") / job_id
        failures = await _download_all(result, out_dir, reporter)
        took = f" in {result.duration:.1f}s" if result.duration is not None else ""
        print(
            f"comfyroute run: job {job_id} completed{took}; {len(result.outputs) - failures} of "
            f"{len(result.outputs)} outputs saved in {out_dir}",
            file=sys.stderr,
        )
        return EXIT_JOB_FAILED if failures else EXIT_OK


def _report_failure(command: str, exc: BaseException) -> int:
    """Print why a command could not finish and return its exit code."""
    from comfyroute_tools.client import (
        ConnectError,
        ConnectionLost,
        InvalidRequest,
        RequestError,
        RequestTimeout,
        UploadFailed,
        UploadRefused,
    )

    if isinstance(exc, BadInput):
        print(f"comfyroute {command}: {exc.summary}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"comfyroute {command}: {exc}", file=sys.stderr)
    if isinstance(exc, InvalidRequest):
        return EXIT_BAD_INPUT
    if isinstance(exc, RequestError):
        return EXIT_BAD_INPUT if exc.code in BAD_INPUT_CODES else EXIT_JOB_FAILED
    if isinstance(exc, UploadRefused):
        # 4xx: the store took the file for something its policy does not admit.
        return EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_JOB_FAILED
    if isinstance(exc, NoCredentials | ConnectError | ConnectionLost | RequestTimeout | UploadFailed):
        return EXIT_CONNECTION
    return EXIT_JOB_FAILED


def _guarded(command: str, work: Callable[[], Coroutine[Any, Any, int]]) -> int:
    from comfyroute_tools.client import ComfyrouteError

    try:
        return asyncio.run(work())
    except KeyboardInterrupt:
        print(f"comfyroute {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ComfyrouteError, BadInput, NoCredentials) as exc:
        return _report_failure(command, exc)


def cmd_run(args: argparse.Namespace) -> int:
    try:
        workflow = load_workflow_file(args.file)
        settings = build_settings(workflow.settings, args.executor, args.endpoint_id)
        files = parse_file_args(args.files)
        size = check_run_request(workflow, args.job_id, settings)
        if args.timeout is not None and args.timeout <= 0:
            raise BadInput(f"--timeout must be positive, not {args.timeout:g}")
        endpoint = resolve_endpoint(args.url, args.token)
    except (BadInput, NoCredentials) as exc:
        return _report_failure("run", exc)
    reporter = make_reporter(sys.stderr)
    if size > MAX_MESSAGE_BYTES:
        reporter.note(
            f"the workflow makes a {human_size(size)} run_job message, over the {human_size(MAX_MESSAGE_BYTES)} "
            "WebSocket limit: uploading it first"
        )
    try:
        return _guarded("run", lambda: _run(args, workflow, settings, endpoint, reporter, files))
    finally:
        reporter.stop()


# --------------------------------------------------------------------------- jobs


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(view: JobView) -> str:
    return f"{view.duration:.1f}s" if view.duration is not None else "-"


def format_job(view: JobView) -> str:
    """A job as a few aligned lines for a person to read."""
    rows = [
        ("job", view.job_id),
        ("status", view.status.value),
        ("workflow", view.workflow_id or "-"),
        ("executor", view.executor.value if view.executor else "-"),
        ("created", _when(view.created_at)),
        ("updated", _when(view.updated_at)),
        ("duration", _duration(view)),
    ]
    if view.error:
        rows.append(("error", view.error))
    if view.message:
        rows.append(("message", view.message))
    if view.inputs:
        rows.append(("inputs", str(len(view.inputs))))
    rows.append(("outputs", str(view.output_count)))
    lines = [f"{label:<9} {value}" for label, value in rows]
    inputs = [f"  {i.name}  {i.content_type}  {i.size} bytes" for i in view.inputs]
    if inputs:
        at = next(n for n, (label, _) in enumerate(rows) if label == "inputs") + 1
        lines[at:at] = inputs
    lines += [
        f"  {o.node_id}.{o.output_name}  {o.value.filename}  {o.value.content_type}  {o.value.size} bytes"
        for o in view.outputs
    ]
    return "\n".join(lines)


def print_jobs_table(views: list[JobView], stream: TextIO) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("JOB", "STATUS", "EXECUTOR", "WORKFLOW", "CREATED", "DURATION", "OUTPUTS"):
        table.add_column(name, no_wrap=True)
    for v in views:
        table.add_row(
            v.job_id,
            v.status.value,
            v.executor.value if v.executor else "-",
            v.workflow_id or "-",
            _when(v.created_at),
            _duration(v),
            str(v.output_count),
        )
    # Off a terminal nothing should wrap or be cut: scripts read this.
    width = None if stream.isatty() else 1000
    Console(file=stream, width=width, highlight=False).print(table)


async def _with_client(endpoint: Endpoint, work: Callable[[ComfyrouteClient], Awaitable[int]]) -> int:
    from comfyroute_tools.client import ComfyrouteClient

    async with ComfyrouteClient(endpoint.url, endpoint.token.get_secret_value()) as client:
        return await work(client)


def cmd_jobs_get(args: argparse.Namespace) -> int:
    async def work(client: ComfyrouteClient) -> int:
        view = await client.get_job(args.job_id)
        print(view.model_dump_json(indent=2) if args.json else format_job(view))
        return EXIT_OK

    try:
        endpoint = resolve_endpoint(args.url, args.token)
    except NoCredentials as exc:
        return _report_failure("jobs get", exc)
    return _guarded("jobs get", lambda: _with_client(endpoint, work))


def cmd_jobs_list(args: argparse.Namespace) -> int:
    async def work(client: ComfyrouteClient) -> int:
        views = await client.list_jobs(args.limit)
        if args.json:
            print(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        elif views:
            print_jobs_table(views, sys.stdout)
        else:
            print("no jobs")
        return EXIT_OK

    try:
        endpoint = resolve_endpoint(args.url, args.token)
    except NoCredentials as exc:
        return _report_failure("jobs list", exc)
    return _guarded("jobs list", lambda: _with_client(endpoint, work))


# --------------------------------------------------------------------------- argparse


def _job_id(text: str) -> str:
    import re

    if not re.fullmatch(JOB_ID_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a job id: 1-80 of A-Z a-z 0-9 _ . - starting with a letter or digit"
        )
    return text


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help=f"WebSocket URL (default: ${URL_ENV}, then ~/.comfyroute/dev.json, then {DEFAULT_URL})"
    )
    parser.add_argument("--token", help=f"API token (default: ${TOKEN_ENV}, then ~/.comfyroute/dev.json)")


def configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        metavar="GRAPH.json",
        help="nodetool graph, saved nodetool workflow, ComfyUI API prompt or ComfyUI workflow.json "
        "(as ComfyUI saves it); '-' reads stdin",
    )
    parser.add_argument(
        "--file",
        dest="files",
        action="append",
        metavar="[NAME=]PATH",
        help="send a file with the job (repeatable): as its basename, or as NAME, the name the "
        "workflow uses (e.g. LoadImage's image: --file input.png=~/photos/cat.png)",
    )
    _add_connection_args(parser)
    parser.add_argument(
        "--executor",
        choices=[k.value for k in ExecutorKind],
        help="where ComfyUI runs (default: the workflow's setting, else local)",
    )
    parser.add_argument("--endpoint-id", help="RunPod endpoint id (with --executor runpod)")
    parser.add_argument("--job-id", type=_job_id, help="job id / idempotency key (default: a new uuid4)")
    parser.add_argument("--out", metavar="DIR", help="where to save outputs (default: ./outputs/JOB_ID/)")
    parser.add_argument("--timeout", type=float, metavar="S", help="give up (and cancel the job) after S seconds")


def configure_jobs(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    get = sub.add_parser("get", help="show one job", description="show one job")
    get.add_argument("job_id", metavar="ID", type=_job_id)
    get.add_argument("--json", action="store_true", help="print the job as JSON")
    _add_connection_args(get)
    get.set_defaults(handler=cmd_jobs_get)
    lst = sub.add_parser("list", help="list your recent jobs", description="list your recent jobs")
    lst.add_argument(
        "--limit",
        type=int,
        default=20,
        choices=range(1, 101),
        metavar="N",
        help="how many jobs, newest first (1-100, default 20)",
    )
    lst.add_argument("--json", action="store_true", help="print the jobs as JSON")
    _add_connection_args(lst)
    lst.set_defaults(handler=cmd_jobs_list)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` and ``jobs`` to the ``comfyroute`` parser; each sets ``handler(args) -> int``."""
    run = subparsers.add_parser(
        "run",
        help="run a workflow and save its outputs",
        description="run a workflow on comfyroute and save its outputs",
    )
    configure_run(run)
    run.set_defaults(handler=cmd_run)
    jobs = subparsers.add_parser("jobs", help="look at your jobs", description="look at your jobs")
    configure_jobs(jobs)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only these commands, for ``python -m comfyroute_tools.cli.run`` and tests."""
    parser = argparse.ArgumentParser(prog="comfyroute")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
