"""``comfyroute run`` and ``comfyroute jobs``: the command-line WebSocket client.

``register(subparsers)`` adds both to the ``comfyroute`` parser. The WebSocket client, its
dependencies (``websockets``) and ``rich`` are imported only when one of these commands runs, so
``comfyroute convert`` keeps working on an install without the ``dev-stack`` extra.

Where to connect: ``--url`` / ``--token``, else ``COMFYROUTE_URL`` / ``COMFYROUTE_TOKEN``, else
the state file ``comfyroute dev`` writes (``$COMFYROUTE_DEV_STATE`` or ``~/.comfyroute/dev.json``:
its ``ws_url``, and a ``token`` if the file has one); the URL defaults to the dev stack's
``ws://127.0.0.1:3001``. A token from that file is only used for the dev stack's own URL, so it is
never sent to another server.

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

from comfyroute.conversion.nodetool import GraphError, load_workflow
from comfyroute.protocol import (
    JOB_ID_PATTERN,
    MAX_MESSAGE_BYTES,
    ErrorMessage,
    ExecutorKind,
    ExecutorSettings,
    JobStatus,
    JobUpdate,
    JobView,
    NodeProgress,
    OutputUpdate,
    RunJob,
    RunJobData,
    ServerMessage,
    describe_validation_error,
)

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
BAD_INPUT_CODES = frozenset({"bad_request", "too_large", "invalid_graph", "invalid_workflow", "not_found"})

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
    """The part of ``comfyroute dev``'s state file a client needs: where its gateway listens
    (``ws_url``) and, if the file carries one, a token (the dev stack itself does not write it)."""

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


@dataclass(frozen=True)
class WorkflowFile:
    """A workflow file as ``run_job`` will send it."""

    kind: Literal["graph", "prompt"]
    body: dict[str, Any]
    settings: dict[str, Any]  # the executor settings a saved nodetool workflow carries
    node_count: int  # nodes in the converted prompt


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BadInput(f"cannot read {path}: {reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not JSON: {exc}") from None


def _unwrap(obj: Mapping[str, Any]) -> tuple[Literal["graph", "prompt"], dict[str, Any], dict[str, Any]]:
    # The same shapes comfyroute.conversion.nodetool.load_workflow accepts, so what is checked is what is sent.
    graph, prompt = obj.get("graph"), obj.get("prompt")
    if isinstance(graph, Mapping) and "nodes" in graph:
        settings = obj.get("settings")
        return "graph", dict(graph), dict(settings) if isinstance(settings, Mapping) else {}
    body = dict(prompt) if isinstance(prompt, Mapping) and "class_type" not in prompt else dict(obj)
    return ("graph" if isinstance(body.get("nodes"), list) else "prompt"), body, {}


def load_workflow_file(path: str) -> WorkflowFile:
    """Read and check a workflow file the way the server will, listing every problem."""
    obj = _read_json(path)
    try:
        prompt = load_workflow(obj)
    except GraphError as exc:
        raise BadInput(f"{path} is not a runnable workflow", exc.problems) from None
    assert isinstance(obj, Mapping)  # load_workflow refuses anything else
    kind, body, settings = _unwrap(obj)
    return WorkflowFile(kind=kind, body=body, settings=settings, node_count=len(prompt))


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


def check_run_request(workflow: WorkflowFile, job_id: str | None, settings: dict[str, Any]) -> None:
    """Fail before connecting on anything the server would refuse for its form or size."""
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
    size = len(RunJob(command="run_job", data=data).model_dump_json(exclude_none=True).encode())
    if size > MAX_MESSAGE_BYTES:
        raise BadInput(
            f"the workflow makes a {size}-byte run_job message; the WebSocket limit is {MAX_MESSAGE_BYTES} bytes"
        )


# --------------------------------------------------------------------------- live progress


class Reporter(Protocol):
    def start(self, job_id: str) -> None: ...
    def on_message(self, msg: ServerMessage) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


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

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", file=self.stream, flush=True)

    def start(self, job_id: str) -> None:
        self._line(f"job {job_id} sent")

    def on_message(self, msg: ServerMessage) -> None:
        if isinstance(msg, JobUpdate):
            text = _status_text(msg)
            if text != self._status:
                self._status = text
                self._line(text)
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

    def _describe(self) -> str:
        from rich.markup import escape

        return escape(f"{self.status}{f' · node {self.node}' if self.node else ''}")

    def start(self, job_id: str) -> None:
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
        elif isinstance(msg, NodeProgress):
            self.node = msg.node_id
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
    args: argparse.Namespace, workflow: WorkflowFile, settings: dict[str, Any], endpoint: Endpoint, reporter: Reporter
) -> int:
    from comfyroute_tools.client import ComfyrouteClient, FollowTimeout

    interrupted = asyncio.Event()
    async with ComfyrouteClient(endpoint.url, endpoint.token.get_secret_value()) as client:
        with _sigint_sets(interrupted):
            job_id = await client.run_job(
                graph=workflow.body if workflow.kind == "graph" else None,
                prompt=workflow.body if workflow.kind == "prompt" else None,
                job_id=args.job_id,
                settings=settings or None,
            )
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
    if isinstance(exc, NoCredentials | ConnectError | ConnectionLost | RequestTimeout):
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
        check_run_request(workflow, args.job_id, settings)
        if args.timeout is not None and args.timeout <= 0:
            raise BadInput(f"--timeout must be positive, not {args.timeout:g}")
        endpoint = resolve_endpoint(args.url, args.token)
    except (BadInput, NoCredentials) as exc:
        return _report_failure("run", exc)
    reporter = make_reporter(sys.stderr)
    try:
        return _guarded("run", lambda: _run(args, workflow, settings, endpoint, reporter))
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
    rows.append(("outputs", str(view.output_count)))
    lines = [f"{label:<9} {value}" for label, value in rows]
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
        help="nodetool graph, saved nodetool workflow or ComfyUI API prompt; '-' reads stdin",
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
