"""Limits and defaults that more than one module relies on, each defined once.

Standard library only: every handler imports this, the authorizer included.
"""

from __future__ import annotations

# API Gateway WebSocket frames (and so every server message and client command) are at most 128 KB.
MAX_MESSAGE_BYTES = 128 * 1024

# Text that ends up in a job record or a message (errors, executor messages) stays readable
# and leaves room in a frame.
MAX_TEXT_CHARS = 2_000

# The largest output file a job may produce, as downloaded from its executor.
MAX_OUTPUT_BYTES = 100 * 1024 * 1024

RUNPOD_API_BASE = "https://api.runpod.ai/v2"

# Where a user's ComfyUI is when their secret names no address (ComfyUI's own default).
COMFYUI_ADDR = "127.0.0.1:8188"

# Input files and workflows uploaded with presigned POSTs under uploads/ (docs/uploads.md).
UPLOAD_MAX_BYTES = 50 * 1024 * 1024
UPLOAD_MAX_WORKFLOW_BYTES = 8 * 1024 * 1024
# All input files of one job together: run_job holds them in memory on their way to the executor.
UPLOAD_MAX_JOB_BYTES = 100 * 1024 * 1024
UPLOAD_PRESIGN_SECONDS = 900
# Must match the uploads/ lifecycle rule of the outputs bucket (template.yaml).
UPLOAD_RETENTION_DAYS = 1
