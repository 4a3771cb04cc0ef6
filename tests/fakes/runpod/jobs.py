"""A RunPod serverless job as the status API shows it, and its clock: IN_QUEUE, IN_PROGRESS,
then one of the terminal statuses; cancel and ``policy.executionTimeout`` cut a wait short."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


class Stopped(Exception):
    """The job was cancelled (``"CANCELLED"``) or timed out (``"TIMED_OUT"``) while its worker
    was busy with it."""


@dataclass
class Job:
    id: str
    endpoint_id: str
    input: Any
    webhook: str | None
    execution_timeout: float | None  # seconds, from the start of the run
    ttl: float  # seconds, from submission
    submitted_at: float
    status: str = "IN_QUEUE"
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: str | None = None
    comfy_prompt_id: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def body(self) -> dict[str, Any]:
        """The /status answer (and the webhook's body)."""
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        # delayTime is the wait before a worker picked the job up (so far, while queued).
        waited_until = self.started_at or self.finished_at or time.monotonic()
        out["delayTime"] = int((waited_until - self.submitted_at) * 1000)
        if self.started_at is not None:
            out["workerId"] = "fake-worker-1"
            if self.finished_at is not None:
                out["executionTime"] = int((self.finished_at - self.started_at) * 1000)
        if self.output is not None:
            out["output"] = self.output
        if self.error is not None:
            out["error"] = self.error
        return out

    def expired(self, now: float, retention_seconds: float) -> bool:
        """Past its ttl, or kept longer than ``retention_seconds`` after it ended: status is 404."""
        return now > self.submitted_at + self.ttl or (
            self.finished_at is not None and now > self.finished_at + retention_seconds
        )

    def wait_until(self, when: float) -> None:
        """Wait, but raise Stopped as soon as the job is cancelled or outruns executionTimeout."""
        while True:
            now = time.monotonic()
            limit = when
            if self.started_at is not None and self.execution_timeout is not None:
                if now >= self.started_at + self.execution_timeout:
                    raise Stopped("TIMED_OUT")
                limit = min(when, self.started_at + self.execution_timeout)
            if now >= when:
                return
            if self.stop.wait(max(0.0, limit - now)):
                raise Stopped("CANCELLED")
