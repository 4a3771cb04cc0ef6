"""RunPod's webhook: a per-job callback URL that ends the wait for a RunPod job early.

RunPod POSTs the job's status object to the ``webhook`` given at ``/run`` when the job ends,
retries a non-200 answer twice 10 s apart, and signs nothing
(/work/shared/reference/runpod/CONTRACT.md). So here:

* the URL carries a per-job secret (256 random bits) that only RunPod and this stack know; the
  job record keeps its SHA-256 only, so a leaked record cannot be turned into a callback;
* the secret is checked in constant time, and every mismatch (unknown job, wrong secret,
  malformed path) gets the same 404, so the route tells a prober nothing;
* the body is a hint and nothing more: a right secret wakes the job's state machine, and the step
  after it asks RunPod's ``/status`` before anything is recorded. A forged or stale body can cost
  one extra look, never a wrong result. Only the hint's few top-level fields are read; the body's
  ``output`` (base64 images, megabytes) is never forwarded (Step Functions takes 256 KB).

Everything here is pure; the callback handler and the state machine wiring use it (see
docs/following.md).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, ValidationError

from comfyroute.executors.base import Lenient
from comfyroute.protocol import JOB_ID_PATTERN

CALLBACK_PATH = "/runpod/callback"
SECRET_BYTES = 32
# token_urlsafe(32): 43 characters of the URL-safe base64 alphabet.
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_DIGEST_PREFIX = "sha256:"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
# The dev stack's gateway is plain HTTP on loopback; anything else must be HTTPS, since the URL
# is the credential.
_LOOPBACK_NAMES = frozenset({"localhost"})


# --------------------------------------------------------------------------- the secret


def new_secret() -> str:
    """A fresh per-job callback secret (43 URL-safe characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_digest(secret: str) -> str:
    """What the job record keeps: ``sha256:<hex>`` of the secret."""
    return _DIGEST_PREFIX + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(presented: str | None, stored_digest: str | None) -> bool:
    """Whether ``presented`` is the secret behind ``stored_digest``. Digests of equal length are
    compared with ``hmac.compare_digest``, so the time taken says nothing about how much of a
    guess was right (the presented value's own length is not secret: it is in the URL format)."""
    if not presented or not stored_digest or not stored_digest.startswith(_DIGEST_PREFIX):
        return False
    if len(presented) > 256:
        return False
    return hmac.compare_digest(secret_digest(presented).encode(), stored_digest.encode())


# --------------------------------------------------------------------------- the URL


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def callback_base(base_url: str) -> str:
    """The callback route's base URL, checked: HTTPS (plain HTTP only on loopback, for the dev
    stack), a host, no credentials, query or fragment. Returned without a trailing slash."""
    raw = base_url.strip()
    parts = urlsplit(raw)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("the RunPod callback base URL must be an https:// URL with a host")
    if parts.scheme == "http" and not _loopback(host):
        raise ValueError("the RunPod callback base URL must use https (http only on loopback)")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError("the RunPod callback base URL must not carry credentials, a query or a fragment")
    return raw.rstrip("/")


def callback_url(base_url: str, job_id: str, secret: str) -> str:
    """``{base}/runpod/callback/{job_id}/{secret}``: the ``webhook`` for this job's ``/run``."""
    if not _JOB_ID_RE.match(job_id):
        raise ValueError("job id is not safe in a URL path")
    if not _SECRET_RE.match(secret):
        raise ValueError("callback secret has the wrong form; make it with new_secret()")
    return f"{callback_base(base_url)}{CALLBACK_PATH}/{job_id}/{secret}"


def base_path(base_url: str) -> str:
    """The path the route's base URL adds before ``/runpod/callback`` (a REST API's stage, a
    proxy's prefix), for ``parse_callback_path``."""
    return urlsplit(callback_base(base_url)).path.rstrip("/")


def parse_callback_path(path: str, prefix: str = "") -> tuple[str, str] | None:
    """``(job_id, secret)`` from a request path, or None unless it is exactly
    ``{prefix}/runpod/callback/{job_id}/{secret}`` with a valid job id and secret shape."""
    head = f"{prefix.rstrip('/')}{CALLBACK_PATH}/"
    if not path.startswith(head):
        return None
    rest = path[len(head) :].split("/")
    if len(rest) != 2:
        return None
    job_id, secret = rest
    if not _JOB_ID_RE.match(job_id) or not _SECRET_RE.match(secret):
        return None
    return job_id, secret


def run_body_with_webhook(run_body: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The ``/run`` body with ``webhook`` set; the rest (``input``, ``policy``) is untouched."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook must be an absolute http(s) URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError("webhook must use https (http only on loopback)")
    return {**run_body, "webhook": url}


# --------------------------------------------------------------------------- the body


class CallbackHint(Lenient):
    """The fields of a POSTed status object worth reading; all optional, the rest ignored."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str | None = None
    status: str | None = None
    delayTime: float | None = None  # RunPod's field names, as sent
    executionTime: float | None = None
    workerId: str | None = None

    @property
    def terminal(self) -> bool:
        return (self.status or "").upper() in TERMINAL_STATUSES


def parse_hint(body: bytes | str | None) -> CallbackHint | None:
    """The hint in a callback body, or None when it is not a JSON object with usable fields.
    Wrongly typed fields are dropped one by one rather than discarding the whole hint."""
    if not body:
        return None
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    fields: dict[str, Any] = {}
    for name in CallbackHint.model_fields:
        if name in raw:
            try:
                CallbackHint.model_validate({name: raw[name]})
            except ValidationError:
                continue
            fields[name] = raw[name]
    return CallbackHint.model_validate(fields)


@dataclass(frozen=True)
class RunPodTimings:
    """``delayTime`` (queued until a worker took the job) and ``executionTime``, in ms."""

    delay_ms: int | None = None
    execution_ms: int | None = None


def timings(status_object: Mapping[str, Any]) -> RunPodTimings:
    """RunPod's timings from a status object (``/status`` answer or callback body), for the
    terminal ``job_update``; absent, negative or non-numeric values are None."""

    def ms(key: str) -> int | None:
        value = status_object.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
            return None
        return int(value)

    return RunPodTimings(delay_ms=ms("delayTime"), execution_ms=ms("executionTime"))


# --------------------------------------------------------------------------- the verdict


class Verdict(StrEnum):
    WAKE = "wake"  # send the job's task token back: the next step confirms with /status
    IGNORE = "ignore"  # right secret, nothing to do (another RunPod job, job already over)
    REJECT = "reject"  # not a callback of ours


@dataclass(frozen=True)
class CallbackDecision:
    verdict: Verdict
    http_status: int  # what the route answers: 200 stops RunPod's retries
    reason: str  # for the log line; never the secret, never the body
    hint: CallbackHint | None = None

    def task_output(self) -> dict[str, Any]:
        """What ``SendTaskSuccess`` carries for a WAKE: a few short fields, never the body."""
        hint = self.hint
        return {
            "woken_by": "runpod_webhook",
            "hint_status": (hint.status or "")[:32] if hint else None,
        }


@dataclass(frozen=True)
class JobView:
    """What the handler read from the job record (None when there is no such job)."""

    secret_digest: str | None
    executor_job_id: str | None
    terminal: bool


def judge(method: str, secret: str | None, body: bytes | str | None, job: JobView | None) -> CallbackDecision:
    """The answer to one callback request, after ``parse_callback_path`` gave the secret (None:
    the path was not a callback path) and the job record was read (None: no such job).

    404 for everything that is not provably ours, so job ids cannot be probed; with the right
    secret always 200 (a retry would change nothing), waking the job unless the hint names
    another RunPod job or the job is over. An unreadable body with the right secret still wakes:
    it is RunPod or someone holding the URL, and the confirmation costs one look."""
    if method.upper() != "POST":
        return CallbackDecision(Verdict.REJECT, 405, "method not allowed")
    if secret is None or job is None or not secret_matches(secret, job.secret_digest):
        return CallbackDecision(Verdict.REJECT, 404, "no such callback")
    hint = parse_hint(body)
    if hint is not None and hint.id is not None and job.executor_job_id is not None and hint.id != job.executor_job_id:
        return CallbackDecision(Verdict.IGNORE, 200, "the body names another RunPod job", hint)
    if job.terminal:
        return CallbackDecision(Verdict.IGNORE, 200, "the job is already over", hint)
    if hint is not None and hint.status is not None and not hint.terminal:
        # RunPod calls only at the end; a non-terminal status is odd but harmless to confirm.
        return CallbackDecision(Verdict.WAKE, 200, f"non-terminal hint {hint.status[:32]!r}", hint)
    return CallbackDecision(Verdict.WAKE, 200, "callback", hint)
