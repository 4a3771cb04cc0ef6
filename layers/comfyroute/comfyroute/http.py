"""HTTP sessions for executors: a timeout on every call and bounded retries with backoff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
RETRY_STATUSES = (429, 502, 503, 504)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A peer's Retry-After is honoured up to this many seconds: a Lambda must not sleep until its
# own timeout because a server asked for a long pause; the poll loop will come back anyway.
MAX_RETRY_AFTER_SECONDS = 10.0


class CappedRetry(Retry):
    """urllib3's Retry with Retry-After bounded by ``MAX_RETRY_AFTER_SECONDS``."""

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, MAX_RETRY_AFTER_SECONDS)


class TimeoutSession(requests.Session):
    """A Session whose every request has a timeout unless the caller gives one."""

    def __init__(self, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def make_session(
    *,
    headers: Mapping[str, str] | None = None,
    retries: int = 3,
    backoff_factor: float = 0.5,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    retry_post: bool = False,
) -> TimeoutSession:
    """A session that retries connect errors on every method, and 429/502/503/504 on
    idempotent methods only, unless ``retry_post`` says the peer's POSTs are safe to repeat
    on those statuses (RunPod answers 429 before taking a job). Bounded by ``retries``;
    read errors are never retried, since the request may have been acted on."""
    methods = IDEMPOTENT_METHODS | {"POST"} if retry_post else IDEMPOTENT_METHODS
    retry = CappedRetry(
        total=retries,
        connect=retries,
        read=0,
        status=retries,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=methods,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = TimeoutSession(timeout)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if headers:
        session.headers.update(headers)
    return session
