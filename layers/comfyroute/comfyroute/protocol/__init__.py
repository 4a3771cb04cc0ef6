"""The WebSocket wire protocol, one module per direction: ``commands`` (what clients send, and
the one way a frame becomes a typed command), ``workflow_commands`` (run_job and save_workflow,
with the workflow shapes they carry) and ``server_messages`` (what the server sends), on the
bases in ``base``.

This module is the vocabulary both directions share, without pydantic, so that any module may
name a job status or an id pattern without loading the models: ids and their patterns, job
statuses, executor kinds, input file names.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

# Re-exported: clients check their frames against it too.
from comfyroute.defaults import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES

# A job id doubles as the Step Functions execution name (1-80 chars, no spaces or
# wildcards), the ComfyUI prompt_id and an S3 key prefix: keep it to a safe alphabet.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
# RunPod endpoint ids are pasted into a URL path: never accept anything else.
ENDPOINT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"

# An input file's name is what the workflow spells (LoadImage's ``image: "input.png"``) and what
# every executor stores as one plain file name: no folders, no leading dot or space, no trailing
# dot or space (Windows drops those).
INPUT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9 ._()+,=@-]{0,127}$"
# Upload ids go into an S3 key: a safe alphabet only. Which ids exist is the upload store's to
# say, so an id of the right alphabet that was never issued is "unknown", not malformed.
UPLOAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
UPLOAD_REF_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class ExecutorKind(StrEnum):
    LOCAL = "local"
    RUNPOD = "runpod"


_INPUT_NAME = re.compile(INPUT_NAME_PATTERN)


def input_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an input file, or None when it can."""
    if isinstance(name, str) and _INPUT_NAME.match(name) and not name.endswith((" ", ".")):
        return None
    shown = repr(name[:80]) if isinstance(name, str) else type(name).__name__
    return (
        f"input file name {shown} is not allowed: use 1-128 letters, digits, spaces and . _ ( ) + , = @ -, "
        "starting with a letter, digit or _ (no folders), as the workflow spells it (e.g. input.png)"
    )


def protocol_json_schema() -> dict[str, Any]:
    """JSON Schema of every client command and server message, for client authors."""
    from comfyroute.protocol.commands import command_json_schema
    from comfyroute.protocol.server_messages import server_message_adapter

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "comfyroute WebSocket protocol",
        "client_command": command_json_schema(),
        "server_message": server_message_adapter().json_schema(),
    }
