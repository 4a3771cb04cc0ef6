"""The errors the client raises that more than one of its modules needs (``client`` re-exports them)."""

from __future__ import annotations


class ComfyrouteError(Exception):
    """Base of every error this client raises; no message ever contains the API token."""


class InvalidRequest(ComfyrouteError, ValueError):
    """A command this client refuses to send (bad field, too large, bad URL, a file it cannot read)."""


class UploadFailed(ComfyrouteError):
    """A file could not be sent to the upload URL (the network, or a URL this client will not use).

    Messages name the file and the upload host, never the URL or its signed fields."""


class UploadRefused(UploadFailed):
    """The upload store answered the POST with an error: S3's ``<Error><Code>`` and ``<Message>``
    (``EntityTooLarge``, ``AccessDenied`` for an expired policy, ...) or just an HTTP status."""

    def __init__(self, message: str, *, status: int, code: str | None, detail: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
