"""The one place executor output is cleaned of the user's secret values.

Executors echo what they were sent: a ComfyUI ``execution_error`` whose text includes the
request headers (a tunnel token), a RunPod ``FAILED`` error quoting ``Authorization: Bearer …``.
Every text an executor hands the job rules (status errors and messages, exception messages,
output file names) passes through here on its way to the job record, the messages and the logs,
with each secret value replaced by ``[redacted]`` and each file name made safe once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from comfyroute.executors.base import Executor, ExecutorStatus, OutputFile, Prompt
from comfyroute.text import redact, safe_filename


class ScrubbedExecutor:
    """``inner`` with every text it produces scrubbed of ``secrets`` (by value)."""

    def __init__(self, inner: Executor, secrets: Iterable[str]) -> None:
        self.inner = inner
        self.kind = inner.kind
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __repr__(self) -> str:
        return f"ScrubbedExecutor({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        # Whatever else the executor offers (submit_with_files, base_url, ...), its errors scrubbed.
        value = getattr(self.inner, name)
        if not callable(value):
            return value
        call: Callable[..., Any] = value

        def scrubbed(*args: Any, **kwargs: Any) -> Any:
            with self.errors_scrubbed():
                return call(*args, **kwargs)

        return scrubbed

    def clean(self, text: str | None) -> str | None:
        return redact(text, self._secrets) if text else text

    def clean_status(self, status: ExecutorStatus) -> ExecutorStatus:
        update: dict[str, Any] = {"error": self.clean(status.error), "message": self.clean(status.message)}
        if status.errors:
            update["errors"] = [e.model_copy(update={"message": self.clean(e.message)}) for e in status.errors]
        return status.model_copy(update=update)

    @contextmanager
    def errors_scrubbed(self) -> Iterator[None]:
        """Exceptions raised inside come out with their text scrubbed (same class)."""
        try:
            yield
        except Exception as exc:
            text = str(exc)
            cleaned = self.clean(text)
            if cleaned == text:
                raise
            # Same class (Step Functions matches on its name), scrubbed text, no chained cause
            # whose text would carry the secret into a traceback.
            try:
                replacement = type(exc)(cleaned)
            except Exception:
                replacement = RuntimeError(cleaned)
            raise replacement from None

    def submit(self, prompt: Prompt, job_id: str) -> str:
        with self.errors_scrubbed():
            return self.inner.submit(prompt, job_id)

    def status(self, executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        with self.errors_scrubbed():
            status = self.inner.status(executor_job_id, submitted_at=submitted_at)
        return self.clean_status(status)

    def outputs(self, executor_job_id: str) -> list[OutputFile]:
        with self.errors_scrubbed():
            files: Sequence[OutputFile] = self.inner.outputs(executor_job_id)
        return [
            f.model_copy(update={"filename": safe_filename(self.clean(f.filename) or "", default="output")})
            for f in files
        ]

    def cancel(self, executor_job_id: str) -> None:
        with self.errors_scrubbed():
            self.inner.cancel(executor_job_id)


def unwrap(executor: Executor) -> Executor:
    """The executor inside the scrubbing wrapper, for what only one kind offers (ComfyUI's
    socket, RunPod's webhook); texts it produces must then go through ``ScrubbedExecutor.clean``."""
    return executor.inner if isinstance(executor, ScrubbedExecutor) else executor


def errors_scrubbed(executor: Executor) -> AbstractContextManager[None]:
    """``ScrubbedExecutor.errors_scrubbed`` of a wrapped executor (nothing to do otherwise): for
    calls made on ``unwrap(executor)``."""
    return executor.errors_scrubbed() if isinstance(executor, ScrubbedExecutor) else nullcontext()


def clean(executor: Executor, text: str | None) -> str | None:
    """``text`` scrubbed as the wrapped executor scrubs what it says."""
    return executor.clean(text) if isinstance(executor, ScrubbedExecutor) else text


def clean_status(executor: Executor, status: ExecutorStatus) -> ExecutorStatus:
    return executor.clean_status(status) if isinstance(executor, ScrubbedExecutor) else status
