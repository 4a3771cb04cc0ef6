"""The dev gateway's Management API check: a request signed by botocore with the stack's key
passes; unsigned, other-key, tampered or stale ones do not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from comfyroute_tools.dev.sigv4 import SigningKey, verify

KEY = SigningKey("testing", "the-stacks-secret", "us-east-1")
PATH = "/@connections/L0SM9cOFvHcCIhw%3D"


def signed(key: SigningKey = KEY, body: bytes = b'{"type":"pong"}', token: str | None = "testing") -> dict[str, str]:
    request = AWSRequest(method="POST", url=f"http://0.0.0.0:3001{PATH}", data=body)
    SigV4Auth(Credentials(key.access_key, key.secret_key, token), "execute-api", key.region).add_auth(request)
    return {"Host": "0.0.0.0:3001", **dict(request.headers.items())}


def test_a_request_signed_with_the_stacks_key_passes() -> None:
    assert verify(KEY, "POST", PATH, signed(), b'{"type":"pong"}') is None


# Signed when the test runs, not when it is collected: a parameter signed at collection would be
# older than the allowed skew by the time a long suite reaches it.
@pytest.mark.parametrize(
    ("make_headers", "body", "reason"),
    [
        (lambda: {"Host": "0.0.0.0:3001"}, b"x", "no SigV4 Authorization header"),
        (
            lambda: signed(SigningKey("testing", "another-secret", "us-east-1")),
            b'{"type":"pong"}',
            "signature does not match",
        ),
        (
            lambda: signed(SigningKey("AKIAOTHER", "the-stacks-secret", "us-east-1")),
            b'{"type":"pong"}',
            "another access key",
        ),
        (lambda: signed(SigningKey("testing", "the-stacks-secret", "eu-west-1")), b'{"type":"pong"}', "another region"),
        # A forged job_update under a valid signature of something else.
        (lambda: signed(), b'{"type":"job_update","status":"completed"}', "signature does not match"),
    ],
    ids=["unsigned", "other-secret", "other-key", "other-region", "other-body"],
)
def test_other_requests_are_refused_with_a_reason(
    make_headers: Callable[[], dict[str, str]], body: bytes, reason: str
) -> None:
    result = verify(KEY, "POST", PATH, make_headers(), body)
    assert result is not None
    assert reason in result
    assert KEY.secret_key not in result


def test_a_tampered_path_or_method_is_refused() -> None:
    headers = signed()
    assert verify(KEY, "POST", "/@connections/OTHER%3D", headers, b'{"type":"pong"}') == "signature does not match"
    assert verify(KEY, "DELETE", PATH, headers, b'{"type":"pong"}') == "signature does not match"


def test_a_replayed_old_signature_is_refused() -> None:
    headers = signed()
    later = datetime.now(UTC) + timedelta(minutes=6)
    assert (
        verify(KEY, "POST", PATH, headers, b'{"type":"pong"}', now=later) == "signature is too old or from the future"
    )


def test_the_key_never_shows_its_secret() -> None:
    assert "the-stacks-secret" not in repr(KEY)
