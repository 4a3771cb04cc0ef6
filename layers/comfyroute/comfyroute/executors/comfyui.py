"""A ComfyUI server reached over HTTP, usually through a tunnel or a reverse proxy.

ComfyUI's HTTP API: ``POST /prompt`` queues a
prompt, ``GET /queue`` lists running and pending prompts, ``GET /history/{id}`` is ``{}``
until the prompt finished and then holds its outputs and status, ``GET /view`` serves output
files, ``POST /queue {"delete": [...]}`` drops pending prompts and ``POST /interrupt`` stops
the running one. Every method here is one bounded exchange; the Step Functions poll loop
does the waiting.

Progress: HTTP only says queued/running/done. ComfyUI reports the running node and its steps
over ``/ws?clientId=X``, only to the socket whose clientId is the prompt's ``client_id``. Each
prompt is queued with its own client id (``{client_id}-{job_id}``), so while a prompt runs
``status()`` can open that socket for a moment (the "progress peek") and read what ComfyUI
says about it: on connect ComfyUI re-sends the running node to the prompt's client, then
``progress_state`` and ``progress`` as the node reports. The peek is best effort and bounded:
when it fails or hears nothing the status simply carries no progress.

Errors: ``ExecutorUnavailable`` when ComfyUI could not be reached or answered 408/429/5xx
from a gateway (worth another look later), ``ExecutorRejected`` when it answered and the
answer means this request will not work (4xx, validation errors, a 500 from ComfyUI's own
handler, a missing or oversized output file).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

import requests
from aws_lambda_powertools import Logger
from pydantic import Field, ValidationError

from comfyroute.defaults import COMFYUI_ADDR, MAX_OUTPUT_BYTES
from comfyroute.executors.base import (
    ExecutorRejected,
    ExecutorStatus,
    ExecutorUnavailable,
    Lenient,
    NodeOutcome,
    OutputFile,
    OutputKind,
    Progress,
    Prompt,
    guess_content_type,
)
from comfyroute.executors.download import CappedBody
from comfyroute.executors.inputs import (
    InputFile,
    check_unique_names,
    comfyui_reference,
    human_bytes,
    job_input_subfolder,
    rewrite_file_references,
)
from comfyroute.http import make_session
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import NodeProblem
from comfyroute.text import clip, one_line, redact

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from comfyroute.executors.comfyui_stream import SocketTarget

logger = Logger(child=True)

DEFAULT_PORT_HINT = COMFYUI_ADDR
# The Follow task's HTTP timeouts (connect, read): with the socket's 3 s connect this keeps
# "ComfyUI cannot be reached" under 10 s.
FOLLOW_TIMEOUT = (3.0, 10.0)
# One retry after a connection/read error on POST /prompt, and only after /queue and
# /history showed the first POST did not arrive.
SUBMIT_ATTEMPTS = 2
MAX_BODY_SNIPPET = 300
DOWNLOAD_CHUNK = 64 * 1024
# (connect, read): an input file may take a while to go up through a tunnel.
UPLOAD_TIMEOUT = (5.0, 120.0)
# /object_info with many custom nodes is tens of MB, and ComfyUI builds it on every call.
OBJECT_INFO_TIMEOUT = (5.0, 30.0)
OBJECT_INFO_MAX_BYTES = 64 * 1024 * 1024

# The progress peek (see the module docstring). Worst case per poll of a running prompt:
# connect + read window + close, about 1.0 + progress_peek_seconds + 0.25 seconds.
DEFAULT_PEEK_SECONDS = 0.5
PEEK_CONNECT_TIMEOUT = 1.0  # TCP, TLS and the websocket handshake together
PEEK_CLOSE_TIMEOUT = 0.25
# Preview images come as binary frames; a bigger frame ends the peek rather than using memory.
PEEK_MAX_FRAME = 4 * 1024 * 1024
# The websockets library logs handshake headers (tunnel tokens) at DEBUG: give it a logger
# that is outside the logging tree and never enabled, whatever the application configures.
_SILENT_WS_LOGGER = logging.Logger("comfyroute.comfyui.websocket", level=logging.CRITICAL + 1)

# Gateways and tunnels answer these when ComfyUI behind them is down or busy.
UNAVAILABLE_STATUSES = frozenset({408, 429, 502, 503, 504})

# Underscores are not DNS but are common in docker/compose service names.
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PATH_RE = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")

# Output keys whose name fixes the kind, whatever the file's content type says: video
# nodes (VideoHelperSuite) report mp4/webm under "gifs", SaveLatent under "latents".
_KIND_BY_KEY: dict[str, OutputKind] = {
    "gifs": "video",
    "videos": "video",
    "video": "video",
    "audio": "audio",
    "latents": "latent",
}


# --------------------------------------------------------------------------- address


def normalize_address(addr: str) -> str:
    """The base URL for ``host:port`` or ``http(s)://host[:port][/prefix]``, without a
    trailing slash. Raises ``ValueError`` naming what is wrong; the address is echoed only
    when it cannot hold credentials (no userinfo, no query)."""
    if not isinstance(addr, str) or not addr.strip():
        raise ValueError(f"ComfyUI address is empty: give host:port (e.g. {DEFAULT_PORT_HINT}) or a URL")
    raw = addr.strip()
    has_scheme = "://" in raw
    try:
        parts = urlsplit(raw if has_scheme else f"http://{raw}")
        port = parts.port
    except ValueError:
        raise ValueError(f"ComfyUI address {_echo(raw)} is not host:port or http(s)://host[:port][/prefix]") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("ComfyUI address must not carry credentials (user:pass@); put them in COMFYUI_HEADERS")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise ValueError("ComfyUI address must not have a query or fragment; put tokens in COMFYUI_HEADERS")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"ComfyUI address {_echo(raw)} must use http or https, not {scheme[:16]!r}")
    host = parts.hostname or ""
    if not _valid_host(host):
        raise ValueError(f"ComfyUI address {_echo(raw)} has no valid host name")
    if not has_scheme and port is None:
        # A bare name is ambiguous (http on 80? ComfyUI's 8188? a tunnel on https?).
        raise ValueError(
            f"ComfyUI address {_echo(raw)} needs a port (host:port, e.g. {DEFAULT_PORT_HINT}) "
            "or a scheme (https://host)"
        )
    path = parts.path
    if not _PATH_RE.match(path) or "//" in path.strip("/"):
        raise ValueError(f"ComfyUI address {_echo(raw)} has an invalid path prefix")
    prefix = path.rstrip("/")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc.lower()}{prefix}"


def _valid_host(host: str) -> bool:
    if not host:
        return False
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return len(host) <= 253 and bool(_HOST_RE.match(host))


def _echo(raw: str) -> str:
    return repr(clip(raw, 101))


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Header values are secrets: errors name the header, never the value. requests itself
    would raise ``InvalidHeader`` with the value in its message, so check first."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME_RE.match(name):
            raise ValueError(f"ComfyUI header name {str(name)[:64]!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ValueError(f"ComfyUI header {name!r} must have a text value")
        if any(c in value for c in "\r\n\0") or value != value.strip():
            raise ValueError(f"ComfyUI header {name!r} has a value with line breaks or surrounding spaces")
        out[name] = value
    return out


# --------------------------------------------------------------------------- ComfyUI bodies


class _PromptAccepted(Lenient):
    prompt_id: str
    number: float | None = None
    node_errors: dict[str, Any] | list[Any] = Field(default_factory=dict)


class _ErrorItem(Lenient):
    type: str | None = None
    message: str = ""
    details: Any = ""
    extra_info: dict[str, Any] = Field(default_factory=dict)


class _NodeError(Lenient):
    errors: list[_ErrorItem] = Field(default_factory=list)
    class_type: str | None = None


class _Rejection(Lenient):
    # Older servers send ``error`` as a plain string and ``node_errors`` as a list.
    error: _ErrorItem | str | None = None
    node_errors: dict[str, _NodeError] | list[Any] = Field(default_factory=dict)


class _QueueView(Lenient):
    queue_running: list[list[Any]] = Field(default_factory=list)
    queue_pending: list[list[Any]] = Field(default_factory=list)

    def running_ids(self) -> list[str]:
        return [str(item[1]) for item in self.queue_running if len(item) > 1]

    def running_client_id(self, prompt_id: str) -> str | None:
        """The ``client_id`` a running prompt was queued with (its ``extra_data``)."""
        for item in self.queue_running:
            if len(item) > 3 and str(item[1]) == prompt_id and isinstance(item[3], Mapping):
                client_id = item[3].get("client_id")
                return client_id if isinstance(client_id, str) and client_id else None
        return None

    def pending_position(self, prompt_id: str) -> int | None:
        # /queue returns ComfyUI's heap as it lies in memory, not in run order: sort by the
        # queue number (item[0]) to get the real position.
        items = [item for item in self.queue_pending if len(item) > 1]
        if all(isinstance(item[0], int | float) for item in items):
            items.sort(key=lambda item: item[0])
        for position, item in enumerate(items):
            if str(item[1]) == prompt_id:
                return position
        return None


class _HistoryStatus(Lenient):
    status_str: str | None = None
    completed: bool | None = None
    messages: list[Any] = Field(default_factory=list)


class _HistoryEntry(Lenient):
    outputs: dict[str, Any] = Field(default_factory=dict)
    status: _HistoryStatus | None = None
    # [number, prompt_id, prompt, extra_data, outputs_to_execute], as queued.
    prompt: list[Any] = Field(default_factory=list)


class FileRef(NamedTuple):
    """One file a node reported under ``outputs[node][output_name]``."""

    node_id: str
    output_name: str
    filename: str
    subfolder: str
    type: str

    def describe(self) -> str:
        path = f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename
        return f"{path!r} (node {self.node_id}, {self.output_name}, type {self.type})"


class TextRef(NamedTuple):
    node_id: str
    output_name: str
    position: int  # in the node's list of texts
    text: str


# --------------------------------------------------------------------------- pure helpers


def _error_text(item: _ErrorItem) -> str:
    message = one_line(item.message) or (item.type or "error")
    details = one_line(str(item.details)) if item.details not in (None, "") else ""
    return f"{message} ({details})" if details and details != message else message


def describe_rejection(status_code: int, body: Any) -> str:
    """The message for a refused ``POST /prompt``: every node error as
    ``node 1 (EmptyImage): Value 0 smaller than min of 1 (width)``, else ComfyUI's
    top-level error message and details."""
    head = f"ComfyUI rejected the prompt ({status_code})"
    try:
        rejection = _Rejection.model_validate(body)
    except ValidationError:
        return clip(f"{head}: {one_line(str(body))[:MAX_BODY_SNIPPET]}")
    top = ""
    if isinstance(rejection.error, _ErrorItem):
        top = _error_text(rejection.error)
    elif isinstance(rejection.error, str):
        top = one_line(rejection.error)
    node_parts: list[str] = []
    if isinstance(rejection.node_errors, dict):
        for node_id, node in rejection.node_errors.items():
            label = f"node {node_id} ({node.class_type})" if node.class_type else f"node {node_id}"
            errors = node.errors or [_ErrorItem(message="invalid")]
            node_parts.extend(f"{label}: {_error_text(err)}" for err in errors)
    if node_parts:
        # The top-level message only says "Prompt outputs failed validation": keep it as a
        # heading, the node errors are what the user needs.
        heading = rejection.error.message if isinstance(rejection.error, _ErrorItem) else top
        lead = f"{head}: {one_line(heading)}: " if heading else f"{head}: "
        return clip(lead + "; ".join(node_parts))
    return clip(f"{head}: {top}" if top else f"{head}: {one_line(str(body))[:MAX_BODY_SNIPPET]}")


def final_status(prompt_id: str, entry: _HistoryEntry) -> ExecutorStatus:
    """``history_status`` with how each node ended (``node_outcomes``)."""
    status = history_status(prompt_id, entry)
    return status.model_copy(update={"nodes": node_outcomes(entry, status.state)})


def node_outcomes(entry: _HistoryEntry, state: JobStatus) -> dict[str, NodeOutcome]:
    """How each node of a finished prompt ended, from its history entry: ``cached`` for the
    nodes ComfyUI reused (``execution_cached``), ``error`` for the one that failed
    (``execution_error``), ``completed`` for the nodes that left outputs and, when the prompt
    succeeded, every other node of the prompt. Nodes of a failed or interrupted prompt that
    left no trace are not reported."""
    events = _status_events(entry.status)
    cached = {str(n) for n in (events.get("execution_cached", {}).get("nodes") or [])}
    prompt = entry.prompt[2] if len(entry.prompt) > 2 and isinstance(entry.prompt[2], Mapping) else {}
    outcomes: dict[str, NodeOutcome] = {}
    for node_id in [*map(str, prompt), *entry.outputs]:
        if node_id in outcomes:
            continue
        if node_id in cached:
            outcomes[node_id] = "cached"
        elif state is JobStatus.COMPLETED or node_id in entry.outputs:
            outcomes[node_id] = "completed"
    failed = events.get("execution_error", {}).get("node_id")
    if failed is not None:
        outcomes[str(failed)] = "error"
    return outcomes


# ComfyUI names the node of an unknown class only in the top-level error's details.
_NODE_IN_DETAILS = re.compile(r"Node ID '#([^']+)'")
MAX_FIELD_CHARS = 200


def rejection_details(body: Any) -> list[NodeProblem]:
    """A refused ``POST /prompt``'s ``node_errors`` as problems, one per error: the node, its
    class, the input (``extra_info.input_name``) and ComfyUI's message; the top-level error
    when no node has one (an unknown class names its node only there)."""
    try:
        rejection = _Rejection.model_validate(body)
    except ValidationError:
        return []
    problems: list[NodeProblem] = []
    if isinstance(rejection.node_errors, dict):
        for node_id, node in rejection.node_errors.items():
            for err in node.errors or [_ErrorItem(message="invalid")]:
                name = err.extra_info.get("input_name")
                problems.append(
                    NodeProblem(
                        node_id=clip(str(node_id), MAX_FIELD_CHARS),
                        class_type=clip(node.class_type, MAX_FIELD_CHARS) if node.class_type else None,
                        input=clip(name, MAX_FIELD_CHARS) if isinstance(name, str) and name else None,
                        message=clip(_error_text(err), 500),
                    )
                )
    if not problems and isinstance(rejection.error, _ErrorItem) and rejection.error.message:
        found = _NODE_IN_DETAILS.search(str(rejection.error.details or ""))
        problems.append(
            NodeProblem(
                node_id=clip(found.group(1), MAX_FIELD_CHARS) if found else None,
                message=clip(_error_text(rejection.error), 500),
            )
        )
    return problems


def failure_problem(node_id: Any, node_type: Any, what: str) -> NodeProblem:
    """The node a prompt failed at (``execution_error``), as the failed job's problem."""
    return NodeProblem(
        node_id=clip(str(node_id), MAX_FIELD_CHARS) if node_id is not None else None,
        class_type=clip(str(node_type), MAX_FIELD_CHARS) if node_type else None,
        message=clip(what, 500),
    )


def history_status(prompt_id: str, entry: _HistoryEntry) -> ExecutorStatus:
    """The final state of a prompt that reached /history."""
    status = entry.status
    events = _status_events(status)
    if "execution_interrupted" in events:
        info = events["execution_interrupted"]
        where = _node_label(info)
        return ExecutorStatus(
            state=JobStatus.CANCELLED,
            message=f"ComfyUI interrupted prompt {prompt_id}" + (f" at {where}" if where else ""),
        )
    if "execution_error" in events:
        info = events["execution_error"]
        where = _node_label(info) or "an unknown node"
        exc_type = str(info.get("exception_type") or "").strip()
        exc_msg = one_line(str(info.get("exception_message") or "")) or "no message"
        what = f"{exc_type}: {exc_msg}" if exc_type else exc_msg
        problem = failure_problem(info.get("node_id"), info.get("node_type"), what)
        return ExecutorStatus(state=JobStatus.FAILED, error=clip(f"ComfyUI {where} failed: {what}"), errors=[problem])
    if status is None:
        # Servers from before history carried a status wrote the entry only when a prompt
        # finished; with outputs that can only be success.
        if entry.outputs:
            return ExecutorStatus(state=JobStatus.COMPLETED)
        return ExecutorStatus(
            state=JobStatus.FAILED, error=f"ComfyUI lists prompt {prompt_id} with neither status nor outputs"
        )
    if status.status_str == "success":
        return ExecutorStatus(state=JobStatus.COMPLETED)
    return ExecutorStatus(
        state=JobStatus.FAILED,
        error=f"ComfyUI finished prompt {prompt_id} with status {str(status.status_str)[:64]!r}",
    )


def _status_events(status: _HistoryStatus | None) -> dict[str, dict[str, Any]]:
    events: dict[str, dict[str, Any]] = {}
    for message in status.messages if status else []:
        if isinstance(message, list | tuple) and len(message) == 2 and isinstance(message[1], dict):
            events[str(message[0])] = message[1]
    return events


def _node_label(info: Mapping[str, Any]) -> str:
    node_id, node_type = info.get("node_id"), info.get("node_type")
    if node_id is None and not node_type:
        return ""
    if node_id is None:
        return f"node ({node_type})"
    return f"node {node_id} ({node_type})" if node_type else f"node {node_id}"


def collect_refs(outputs: Mapping[str, Any]) -> list[FileRef | TextRef]:
    """Every output of a finished prompt in a fixed order (node order as in history, then
    list order). ``temp`` files (PreviewImage and friends) are kept only when the prompt
    produced no other file: next to saved outputs they are noise."""
    refs: list[FileRef | TextRef] = []
    for node_id, node_out in outputs.items():
        if not isinstance(node_out, Mapping):
            continue
        for output_name, items in node_out.items():
            refs.extend(_node_refs(str(node_id), str(output_name), items))
    if any(isinstance(r, FileRef) and r.type != "temp" for r in refs):
        refs = [r for r in refs if not (isinstance(r, FileRef) and r.type == "temp")]
    return refs


def _node_refs(node_id: str, output_name: str, items: Any) -> Iterator[FileRef | TextRef]:
    if output_name == "text":
        texts = items if isinstance(items, list) else [items]
        for index, text in enumerate(texts):
            if text is not None:
                yield TextRef(node_id, output_name, index, text if isinstance(text, str) else str(text))
        return
    if not isinstance(items, list):
        return  # flags such as "animated": [true] come as lists of bools, skipped below
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("filename"), str) and item["filename"]:
            yield FileRef(
                node_id=node_id,
                output_name=output_name,
                filename=item["filename"],
                subfolder=str(item.get("subfolder") or ""),
                type=str(item.get("type") or "output"),
            )


def output_kind(output_name: str, content_type: str) -> OutputKind:
    if output_name in _KIND_BY_KEY:
        return _KIND_BY_KEY[output_name]
    major = content_type.split("/", 1)[0]
    if major in ("image", "video", "audio"):
        return major  # type: ignore[return-value]
    if output_name == "images":
        return "image"
    if major == "text":
        return "text"
    return "file"


def _content_type(header: str | None, filename: str) -> str:
    media = (header or "").split(";", 1)[0].strip().lower()
    if media and media != "application/octet-stream":
        return media
    return guess_content_type(filename)


def _never_connected(exc: BaseException) -> bool:
    """The request failed before a connection was made (refused, no such host, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    text = str(exc).lower()
    return isinstance(exc, requests.exceptions.ConnectionError) and (
        "newconnectionerror" in text or "refused" in text or "name resolution" in text or "not known" in text
    )


def unreachable_reason(exc: BaseException) -> str:
    """Why a request did not get an answer, in a few words (requests wraps urllib3 wraps OSError)."""
    text = str(exc).lower()
    if isinstance(exc, requests.exceptions.ConnectTimeout) or "connecttimeout" in text:
        return "the connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout) or "read timed out" in text:
        return "it accepted the connection but did not answer in time"
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "its host name does not resolve"
    if isinstance(exc, requests.exceptions.SSLError) or "ssl" in text or "certificate" in text:
        return "the TLS handshake failed"
    if "reset" in text or "aborted" in text or "remotedisconnected" in text:
        return "the connection was dropped"
    return f"the request failed ({type(exc).__name__})"


def _ids(value: str) -> str:
    # Prompt ids go into a URL path: never let one change the path.
    return quote(value, safe="")


# --------------------------------------------------------------------------- progress messages


class _WsMessage(Lenient):
    type: str
    data: dict[str, Any] = Field(default_factory=dict)


NodeRef = str | int


class _ExecutingData(Lenient):
    node: NodeRef | None = None
    display_node: NodeRef | None = None
    prompt_id: str | None = None


class _ProgressData(Lenient):
    value: float
    max: float
    node: NodeRef | None = None
    prompt_id: str | None = None


class _NodeState(Lenient):
    value: float
    max: float
    state: str
    display_node_id: NodeRef | None = None


class _ProgressStateData(Lenient):
    prompt_id: str | None = None
    nodes: dict[str, _NodeState] = Field(default_factory=dict)


# After these (or ``executing`` with node null) the prompt runs no node any more.
_PROMPT_ENDED = frozenset({"execution_success", "execution_error", "execution_interrupted"})


@dataclass
class ProgressTracker:
    """Folds the messages of a prompt's websocket, oldest first, into the running node's
    progress. The newest message wins: ``progress`` gives value/max of a node, ``progress_state``
    the value/max of the node it lists as running, ``executing {node}`` a node that started
    (0 of 1). A newer ``executing`` or ``progress_state`` about the node we already have does not
    reset its value (ComfyUI sends them before the node's first ``progress``, and re-sends
    ``executing`` on connect), and ``executing`` for another node makes an older ``progress``
    stale. Messages naming another prompt are ignored; ones naming none (the ``executing`` ComfyUI
    re-sends on connect) are ours, because the socket's client id belongs to this prompt alone.
    Binary frames (preview images) and anything unparseable are skipped.
    """

    prompt_id: str
    progress: Progress | None = None
    ended: bool = False
    # A ``progress`` message is the most ComfyUI says: once one came, reading on adds little.
    settled: bool = False

    def feed(self, frame: str | bytes | Mapping[str, Any]) -> None:
        if self.ended or isinstance(frame, bytes | bytearray | memoryview):
            return
        try:
            raw = json.loads(frame) if isinstance(frame, str) else frame
            message = _WsMessage.model_validate(raw)
        except (ValueError, ValidationError):  # json's and pydantic's errors
            return
        if message.type in _PROMPT_ENDED:
            if self._ours(message.data.get("prompt_id")):
                self._end()
            return
        handler = {
            "executing": self._executing,
            "progress": self._progress,
            "progress_state": self._progress_state,
        }.get(message.type)
        if handler is not None:
            try:
                handler(message.data)
            except ValidationError:
                return

    def _ours(self, prompt_id: Any) -> bool:
        return prompt_id is None or str(prompt_id) == self.prompt_id

    def _end(self) -> None:
        self.progress, self.ended, self.settled = None, True, True

    def _executing(self, data: dict[str, Any]) -> None:
        info = _ExecutingData.model_validate(data)
        if not self._ours(info.prompt_id):
            return
        node = info.display_node if info.display_node is not None else info.node
        if node is None:  # ComfyUI's "nothing runs any more" for this prompt
            self._end()
            return
        if self.progress is None or self.progress.node_id != str(node):
            self.progress = Progress(node_id=str(node), value=0, max=1)

    def _progress(self, data: dict[str, Any]) -> None:
        info = _ProgressData.model_validate(data)
        if not self._ours(info.prompt_id) or info.max <= 0:
            return
        node = str(info.node) if info.node is not None else (self.progress.node_id if self.progress else None)
        self.progress = Progress(node_id=node, value=info.value, max=info.max)
        self.settled = True

    def _progress_state(self, data: dict[str, Any]) -> None:
        info = _ProgressStateData.model_validate(data)
        if not self._ours(info.prompt_id):
            return
        running = {
            str(state.display_node_id if state.display_node_id is not None else key): state
            for key, state in info.nodes.items()
            if state.state == "running" and state.max > 0
        }
        if not running:
            return
        current = self.progress.node_id if self.progress else None
        # Several nodes can run at once (async nodes): stay with the one we follow, else take
        # the one listed last, which started last.
        node = current if current in running else list(running)[-1]
        state = running[node]
        if node == current and self.progress is not None and self.progress.value > state.value:
            return  # never step back within one node
        self.progress = Progress(node_id=node, value=state.value, max=state.max)


def progress_from_messages(frames: Iterable[str | bytes | Mapping[str, Any]], prompt_id: str) -> Progress | None:
    """The running node's progress after these websocket frames (see ``ProgressTracker``);
    ``None`` when they name no running node of this prompt or the prompt has ended."""
    tracker = ProgressTracker(prompt_id)
    for frame in frames:
        tracker.feed(frame)
    return tracker.progress


def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    """The websockets library's sync ``connect``, imported on first use: only a poll of a
    running prompt peeks, and the library would add to every other cold start that builds an
    executor (run_job, cancel_job)."""
    from websockets.sync.client import connect

    return connect(url, **kwargs)


def websocket_url(base_url: str, client_id: str) -> str:
    """``ws(s)://host[:port][/prefix]/ws?clientId=...`` for an ``http(s)://`` base URL."""
    scheme, rest = base_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={quote(client_id, safe='')}"


# --------------------------------------------------------------------------- executor


class ComfyUIExecutor:
    """Runs prompts on one ComfyUI server. Header values (tunnel tokens) are sent on every
    call and appear nowhere else: not in logs, messages, exceptions or ``repr``."""

    kind = ExecutorKind.LOCAL

    def __init__(
        self,
        addr: str,
        headers: Mapping[str, str] | None = None,
        *,
        client_id: str = "comfyroute",
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        lost_grace_seconds: float = 15.0,
        progress_peek_seconds: float = DEFAULT_PEEK_SECONDS,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        label: str | None = None,
    ) -> None:
        """``client_id`` is the prefix of each prompt's own client id (``{client_id}-{job_id}``).
        ``progress_peek_seconds`` is how long ``status()`` listens on the websocket of a
        running prompt for its progress; 0 turns the peek off."""
        if max_output_bytes <= 0:
            raise ValueError(f"max_output_bytes must be positive, not {max_output_bytes}")
        if lost_grace_seconds < 0:
            raise ValueError(f"lost_grace_seconds must not be negative, not {lost_grace_seconds}")
        if not progress_peek_seconds >= 0:  # also refuses NaN
            raise ValueError(f"progress_peek_seconds must not be negative, not {progress_peek_seconds}")
        if not client_id:
            raise ValueError("client_id must not be empty: it prefixes each prompt's client id")
        self._base = normalize_address(addr)
        self._headers = _check_headers(headers)
        self._secrets = {v for v in self._headers.values() if len(v) >= 3}
        # How messages name this server: "ComfyUI at host:port" (never the path prefix, which
        # may be a tunnel's secret), or the caller's label ("the shared ComfyUI"), in which case
        # the address itself is scrubbed from everything the server echoes too.
        host = urlsplit(self._base).netloc
        self._label = label or f"ComfyUI at {host}"
        self._given_label = label
        if label:
            self._secrets |= {self._base, host, addr.strip()} - {""}
        self._client_id = client_id
        self._max_output_bytes = max_output_bytes
        self._lost_grace = lost_grace_seconds
        self._peek_seconds = progress_peek_seconds
        # Headers go with each request rather than into the session, so a session passed
        # in by a caller is never changed.
        self._session = session if session is not None else make_session()
        self._clock = clock

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def label(self) -> str:
        """How messages name this server (no path prefix; a shared one not by its address)."""
        return self._label

    def __repr__(self) -> str:
        return f"ComfyUIExecutor(base_url={self._base!r}, headers={sorted(self._headers)!r})"

    def for_following(self) -> ComfyUIExecutor:
        """The same ComfyUI for the Follow task: one session without retries and with short
        timeouts (an unreachable ComfyUI is told to the client within seconds and the state
        machine retries), no websocket peek (Follow holds the socket)."""
        return ComfyUIExecutor(
            self._base,
            self._headers,
            client_id=self._client_id,
            max_output_bytes=self._max_output_bytes,
            lost_grace_seconds=self._lost_grace,
            progress_peek_seconds=0,
            session=make_session(retries=0, timeout=FOLLOW_TIMEOUT),
            clock=self._clock,
            label=self._given_label,
        )

    # ----------------------------------------------------------------- HTTP plumbing

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; connection and read errors come out as requests' own exceptions.
        Redirects are not followed: requests would carry our custom headers (tunnel tokens)
        to whatever host the redirect names."""
        kwargs.setdefault("allow_redirects", False)
        return self._session.request(method, self._base + path, headers=self._headers, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._send(method, path, **kwargs)
        except requests.RequestException as exc:
            raise self._unreachable(method, path, exc) from exc

    def _redacted_details(self, problems: list[NodeProblem]) -> list[NodeProblem]:
        return [p.model_copy(update={"message": self._redact(p.message)}) for p in problems]

    def _unreachable(self, method: str, path: str, exc: BaseException) -> ExecutorUnavailable:
        """One readable sentence for the user; urllib3's detail goes to the log only."""
        detail = self._redact(one_line(str(exc)))[:MAX_BODY_SNIPPET]
        logger.warning(
            "ComfyUI not reachable", extra={"call": f"{method} {path}", "error": f"{type(exc).__name__}: {detail}"}
        )
        # Submit and the status look are the calls every job makes; others say which one failed.
        which = "" if path in ("/prompt", "/queue") or path.startswith("/history") else f" ({method} {path})"
        return ExecutorUnavailable(f"{self._label} is not reachable: {unreachable_reason(exc)}{which}")

    def _check(self, resp: requests.Response, what: str) -> None:
        if 200 <= resp.status_code < 300:
            return
        if 300 <= resp.status_code < 400:
            # The Location may carry a login flow's tokens: name the status only.
            raise ExecutorRejected(
                f"{self._label} answered {what} with a redirect ({resp.status_code}); "
                "give the final address, and headers if the tunnel needs them"
            )
        snippet = self._redact(one_line(resp.text or ""))[:MAX_BODY_SNIPPET]
        message = f"{self._label} answered {resp.status_code} to {what}" + (f": {snippet}" if snippet else "")
        if resp.status_code in UNAVAILABLE_STATUSES:
            raise ExecutorUnavailable(message)
        raise ExecutorRejected(message)

    def _json(self, resp: requests.Response, what: str) -> Any:
        self._check(resp, what)
        try:
            return resp.json()
        except ValueError:
            # A tunnel's login page is the usual cause: say so rather than "bad JSON".
            ctype = resp.headers.get("Content-Type", "no content type")
            raise ExecutorRejected(
                f"{self._label} answered {what} with {ctype[:64]}, not JSON "
                "(is the address right, and does the tunnel need headers?)"
            ) from None

    def _queue(self) -> _QueueView:
        body = self._json(self._call("GET", "/queue"), "GET /queue")
        try:
            return _QueueView.model_validate(body)
        except ValidationError:
            raise ExecutorRejected(f"{self._label} answered GET /queue with an unexpected body") from None

    def _history(self, prompt_id: str) -> _HistoryEntry | None:
        path = f"/history/{_ids(prompt_id)}"
        body = self._json(self._call("GET", path), f"GET {path}")
        raw = body.get(prompt_id) if isinstance(body, dict) else None
        if raw is None:
            return None
        try:
            return _HistoryEntry.model_validate(raw)
        except ValidationError:
            raise ExecutorRejected(f"{self._label} answered GET {path} with an unexpected body") from None

    # ----------------------------------------------------------------- Executor

    def client_id_for(self, job_id: str) -> str:
        """The client id a job's prompt is queued with: ComfyUI sends the prompt's progress to
        the websocket of that client id only, so no other prompt's events reach its peek."""
        return f"{self._client_id}-{job_id}"

    def submit(self, prompt: Prompt, job_id: str) -> str:
        """Queue the prompt under ``job_id`` as its prompt_id (and with its own client id);
        returns the prompt_id."""
        body = {"prompt": prompt, "client_id": self.client_id_for(job_id), "prompt_id": job_id}
        failure: BaseException | None = None
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                resp = self._send("POST", "/prompt", json=body)
            except requests.RequestException as exc:
                failure = exc
                if _never_connected(exc):
                    # Nothing reached ComfyUI: there is nothing to look for, and a server
                    # that refuses connections will refuse the look too.
                    break
                # The POST may have arrived and been queued before the connection broke:
                # look before posting again, so the prompt never runs twice.
                logger.warning(
                    "ComfyUI POST /prompt failed; checking whether it was queued",
                    extra={"job_id": job_id, "attempt": attempt, "error": type(exc).__name__},
                )
                if self._already_submitted(job_id, exc):
                    return job_id
                continue
            return self._accepted(resp, job_id)
        assert failure is not None
        raise self._unreachable("POST", "/prompt", failure) from failure

    def _already_submitted(self, job_id: str, cause: BaseException) -> bool:
        try:
            queue = self._queue()
            if job_id in queue.running_ids() or queue.pending_position(job_id) is not None:
                return True
            return self._history(job_id) is not None
        except ExecutorUnavailable as exc:
            raise ExecutorUnavailable(
                f"{self._label} dropped POST /prompt ({type(cause).__name__}) and could not "
                f"be asked whether prompt {job_id} was queued: {exc}"
            ) from exc

    def _accepted(self, resp: requests.Response, job_id: str) -> str:
        if resp.status_code >= 400:
            try:
                payload: Any = resp.json()
            except ValueError:
                payload = None
            if payload is None:
                snippet = self._redact(one_line(resp.text or ""))[:MAX_BODY_SNIPPET]
                message = f"{self._label} answered {resp.status_code} to POST /prompt" + (
                    f": {snippet}" if snippet else ""
                )
            else:
                message = self._redact(describe_rejection(resp.status_code, payload))
            details = self._redacted_details(rejection_details(payload)) if payload is not None else []
            # A 5xx from ComfyUI itself means its handler raised on this request (the
            # recorded 500 is a malformed body): sending it again gives the same answer.
            # Only gateway statuses say ComfyUI was not reached at all.
            if resp.status_code in UNAVAILABLE_STATUSES:
                raise ExecutorUnavailable(message)
            raise ExecutorRejected(message, details=details)
        try:
            accepted = _PromptAccepted.model_validate(self._json(resp, "POST /prompt"))
        except ValidationError:
            raise ExecutorRejected(f"{self._label} answered POST /prompt without a prompt_id") from None
        if accepted.node_errors:
            # ComfyUI queues a prompt when at least one output is valid and reports the
            # others here; the prompt runs, so this is not a rejection.
            logger.warning(
                "ComfyUI queued the prompt but reported node errors for some outputs",
                extra={"job_id": job_id, "nodes": sorted(map(str, accepted.node_errors))[:20]},
            )
        if accepted.prompt_id != job_id:
            # Servers older than client-chosen prompt ids pick their own.
            logger.info("ComfyUI chose its own prompt_id", extra={"job_id": job_id})
        return accepted.prompt_id

    def status(self, executor_job_id: str, *, submitted_at: float | None = None, peek: bool = True) -> ExecutorStatus:
        """One look: /queue first, then /history. In that order a prompt that finishes
        between the two calls is seen in history instead of looking lost. ``peek=False``
        leaves out the websocket peek (the Follow task holds the socket itself)."""
        queue = self._queue()
        if executor_job_id in queue.running_ids():
            client_id = queue.running_client_id(executor_job_id)
            progress = self._peek_progress(executor_job_id, client_id) if peek else None
            return ExecutorStatus(state=JobStatus.RUNNING, progress=progress)
        position = queue.pending_position(executor_job_id)
        if position is not None:
            return ExecutorStatus(state=JobStatus.QUEUED, queue_position=position)
        entry = self._history(executor_job_id)
        if entry is not None:
            return final_status(executor_job_id, entry)
        return self._unknown(executor_job_id, submitted_at)

    def _peek_progress(self, prompt_id: str, client_id: str | None) -> Progress | None:
        """Listen on the running prompt's websocket for at most ``progress_peek_seconds``.
        Only for client ids this executor made: connecting with another client's id (a
        browser tab's) would take that client's events away from it in ComfyUI."""
        if self._peek_seconds <= 0 or not client_id or not client_id.startswith(f"{self._client_id}-"):
            return None
        tracker = ProgressTracker(prompt_id)
        started = time.monotonic()
        try:
            with ws_connect(
                websocket_url(self._base, client_id),
                additional_headers=self._headers,
                open_timeout=PEEK_CONNECT_TIMEOUT,
                close_timeout=PEEK_CLOSE_TIMEOUT,
                max_size=PEEK_MAX_FRAME,
                compression=None,
                logger=_SILENT_WS_LOGGER,
            ) as ws:
                deadline = time.monotonic() + self._peek_seconds
                while not tracker.settled:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        frame = ws.recv(timeout=remaining)
                    except TimeoutError:
                        break
                    tracker.feed(frame)
        except Exception as exc:
            # Best effort: a refused, failed or cut connection costs the progress only. What
            # complete messages said before the failure still holds. Only the exception's type
            # is logged: its text can carry the address and the server's answer.
            logger.debug(
                "ComfyUI progress peek failed",
                extra={
                    "prompt_id": prompt_id,
                    "error": type(exc).__name__,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
        return tracker.progress

    def _unknown(self, prompt_id: str, submitted_at: float | None) -> ExecutorStatus:
        if submitted_at is not None and self._clock() - submitted_at < self._lost_grace:
            return ExecutorStatus(state=JobStatus.QUEUED, message="waiting for ComfyUI to list the prompt")
        logger.warning("ComfyUI knows nothing of the prompt", extra={"prompt_id": prompt_id})
        return ExecutorStatus(
            state=JobStatus.FAILED,
            error=(
                f"{self._label} lost prompt {prompt_id}: it is neither queued nor in the "
                "history (was ComfyUI restarted or its history cleared?)"
            ),
        )

    def outputs(self, executor_job_id: str) -> list[OutputFile]:
        return [self.output_file(ref) for ref in self.output_refs(executor_job_id)]

    def output_refs(self, executor_job_id: str) -> list[FileRef | TextRef]:
        """What a finished prompt's ``/history`` entry lists as its outputs (``collect_refs``)."""
        entry = self._history(executor_job_id)
        if entry is None:
            raise ExecutorRejected(
                f"{self._label} has no history for prompt {executor_job_id}: it has not finished or was lost"
            )
        return collect_refs(entry.outputs)

    def output_file(self, ref: FileRef | TextRef) -> OutputFile:
        """One output with its bytes: a text as it is, a file fetched from ``/view``."""
        if isinstance(ref, TextRef):
            return OutputFile(
                node_id=ref.node_id,
                output_name=ref.output_name,
                kind="text",
                filename=f"{ref.node_id}-text-{ref.position}.txt",
                content_type="text/plain",
                data=ref.text.encode("utf-8"),
            )
        data, header_type = self._download(ref)
        return self.output_meta(ref, header_type).model_copy(update={"data": data, "size": len(data)})

    def stream_target(self, job_id: str) -> SocketTarget:
        """Where the job's prompt events are: its own client id's ``/ws``, with the tunnel's
        headers (sent on the handshake only)."""
        from comfyroute.executors.comfyui_stream import SocketTarget

        return SocketTarget(websocket_url(self._base, self.client_id_for(job_id)), dict(self._headers))

    def _download(self, ref: FileRef) -> tuple[bytes, str | None]:
        with self.open_output(ref) as (body, content_type):
            return body.read(), content_type

    @contextmanager
    def open_output(self, ref: FileRef) -> Iterator[tuple[CappedBody, str | None]]:
        """``GET /view`` of one output file as a stream (at most ``max_output_bytes``) and the
        Content-Type ComfyUI gave it; the response is closed when the block ends."""
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        cap = self._max_output_bytes
        resp = self._call("GET", "/view", params=params, stream=True)
        with resp:
            if resp.status_code == 404:
                raise ExecutorRejected(f"ComfyUI has no output file {ref.describe()}: /view answered 404")
            self._check(resp, f"GET /view for {ref.describe()}")
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise ExecutorRejected(
                    f"output file {ref.describe()} is {int(declared)} bytes; the limit is {cap} bytes"
                )
            body = CappedBody(
                resp.iter_content(chunk_size=DOWNLOAD_CHUNK),
                cap=cap,
                what=ref.describe(),
                on_error=lambda exc: self._unreachable("GET", "/view", exc),
            )
            yield body, resp.headers.get("Content-Type")

    def output_meta(self, ref: FileRef, content_type: str | None) -> OutputFile:
        """The output file ``open_output`` streams, without its bytes."""
        kind_type = _content_type(content_type, ref.filename)
        return OutputFile(
            node_id=ref.node_id,
            output_name=ref.output_name,
            kind=output_kind(ref.output_name, kind_type),
            filename=ref.filename,
            content_type=kind_type,
        )

    def fetch_object_info(self) -> bytes:
        """``GET /object_info``: the JSON of every node class this ComfyUI has (megabytes with
        custom nodes), as it came, at most ``OBJECT_INFO_MAX_BYTES``."""
        try:
            with self._send("GET", "/object_info", stream=True, timeout=OBJECT_INFO_TIMEOUT) as resp:
                self._check(resp, "GET /object_info")
                data = bytearray()
                for chunk in resp.iter_content(chunk_size=DOWNLOAD_CHUNK):
                    data += chunk
                    if len(data) > OBJECT_INFO_MAX_BYTES:
                        raise ExecutorRejected(
                            f"ComfyUI at {self._base} answered GET /object_info with over {OBJECT_INFO_MAX_BYTES} bytes"
                        )
        except requests.RequestException as exc:
            raise self._unreachable("GET", "/object_info", exc) from exc
        if data.lstrip()[:1] != b"{":
            ctype = resp.headers.get("Content-Type", "no content type")
            raise ExecutorRejected(
                f"ComfyUI at {self._base} answered GET /object_info with {ctype[:64]}, not a JSON object "
                "(is the address right, and does the tunnel need headers?)"
            )
        return bytes(data)

    def cancel(self, executor_job_id: str) -> None:
        """Drop a pending prompt, interrupt a running one; a finished or unknown prompt is
        left alone. /interrupt stops whatever runs, so it is sent only after /queue showed
        ours running; newer servers also check the prompt_id in the body."""
        queue = self._queue()
        if executor_job_id in queue.running_ids():
            self._interrupt(executor_job_id)
            return
        if queue.pending_position(executor_job_id) is None:
            logger.debug("cancel: prompt not queued or running", extra={"prompt_id": executor_job_id})
            return
        self._check(self._call("POST", "/queue", json={"delete": [executor_job_id]}), "POST /queue delete")
        # It may have started between the look and the delete (a delete of a running prompt
        # does nothing): one more look catches that.
        if executor_job_id in self._queue().running_ids():
            self._interrupt(executor_job_id)

    def _interrupt(self, prompt_id: str) -> None:
        self._check(self._call("POST", "/interrupt", json={"prompt_id": prompt_id}), "POST /interrupt")

    # ----------------------------------------------------------------- input files

    def submit_with_files(self, prompt: Prompt, job_id: str, files: Sequence[InputFile]) -> str:
        """``submit`` after uploading the job's input files into its own subfolder and pointing
        the prompt's references to each file's ``name`` there (see ``executors.inputs``)."""
        if not files:
            return self.submit(prompt, job_id)
        references = self.upload_inputs(files, job_id)
        rewritten, unused = rewrite_file_references(prompt, references)
        if unused:
            # Not an error: worker-comfyui accepts unused images too, and a typo in a name shows
            # up as ComfyUI's own "Invalid image file" for the node that names the file.
            logger.warning("input files that no node input names", extra={"job_id": job_id, "names": unused[:20]})
        return self.submit(rewritten, job_id)

    def upload_inputs(self, files: Sequence[InputFile], job_id: str) -> dict[str, str]:
        """``POST /upload/image`` each file into ``comfyroute/{job_id}`` of ComfyUI's input folder
        (multipart ``image``, ``subfolder``, ``type=input``, ``overwrite=true``, as ComfyUI's own
        frontend sends it); returns name -> the value the prompt must use for it."""
        check_unique_names(files)
        subfolder = job_input_subfolder(job_id)
        return {file.name: self._upload_input(file, subfolder) for file in files}

    def _upload_input(self, file: InputFile, subfolder: str) -> str:
        what = f"POST /upload/image for input file {file.name!r} ({human_bytes(file.size)})"
        try:
            # overwrite: the subfolder is the job's own, and a retried submit sends the same bytes.
            resp = self._send(
                "POST",
                "/upload/image",
                data={"subfolder": subfolder, "type": "input", "overwrite": "true"},
                files={"image": (file.name, file.data, file.content_type)},
                timeout=UPLOAD_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise self._unreachable("POST", f"/upload/image (input file {file.name!r})", exc) from exc
        if resp.status_code == 413:
            raise ExecutorRejected(
                f"{self._label} refused input file {file.name!r} ({human_bytes(file.size)}) as too "
                "large (413): its --max-upload-size is smaller"
            )
        stored = self._json(resp, what)
        name = stored.get("name") if isinstance(stored, dict) else None
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise ExecutorRejected(f"{self._label} answered {what} without the name it stored the file as")
        sub = stored.get("subfolder")
        return comfyui_reference(sub if isinstance(sub, str) else subfolder, name)
