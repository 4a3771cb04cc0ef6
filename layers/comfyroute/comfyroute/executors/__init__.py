"""Executors: where a ComfyUI prompt actually runs."""

from comfyroute.executors.base import (
    Executor,
    ExecutorError,
    ExecutorRejected,
    ExecutorStatus,
    ExecutorUnavailable,
    OutputFile,
    Progress,
    Prompt,
)

__all__ = [
    "Executor",
    "ExecutorError",
    "ExecutorRejected",
    "ExecutorStatus",
    "ExecutorUnavailable",
    "OutputFile",
    "Progress",
    "Prompt",
]
