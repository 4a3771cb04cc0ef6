"""Checking AWS Signature Version 4 on requests to the dev gateway's Management API.

API Gateway's Management API (``POST/GET/DELETE /@connections/{id}``) only answers requests
signed by an IAM principal allowed ``execute-api:ManageConnections``. When ``comfyroute dev``
listens beyond loopback, its gateway asks the same: a SigV4 signature made with the stack's
own secret key, which the dev stack gives its handlers (through the process's AWS credentials)
and writes into its 0600 state file for ``comfyroute keys revoke``. boto3 signs every request
already, so neither needs to know about this check.

The signature is recomputed with botocore's own signer from the parts the client said it signed.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICE = "execute-api"
# How far a request's X-Amz-Date may be from now (AWS allows 15 minutes; a replay window
# smaller than that costs nothing locally).
MAX_SKEW_SECONDS = 300

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;._-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class SigningKey:
    """Who may call the Management API: an access key id and its secret, in one region."""

    access_key: str
    secret_key: str
    region: str

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"SigningKey(access_key={self.access_key!r}, region={self.region!r})"


def verify(
    key: SigningKey,
    method: str,
    path_and_query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
) -> str | None:
    """None when the request carries a valid signature by ``key``; else why not (for the log,
    never the secret)."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTHORIZATION.match(lower.get("authorization", "").strip())
    if match is None:
        return "no SigV4 Authorization header"
    if match["key"] != key.access_key:
        return "signed with another access key"
    if match["region"] != key.region or match["service"] != SERVICE:
        return "signed for another region or service"
    stamp = lower.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return "no valid X-Amz-Date"
    if stamp[:8] != match["date"]:
        return "X-Amz-Date does not match the credential scope"
    if abs(((now or datetime.now(UTC)) - signed_at).total_seconds()) > MAX_SKEW_SECONDS:
        return "signature is too old or from the future"
    names = match["headers"].split(";")
    if "host" not in names or any(n not in lower for n in names):
        return "a signed header is missing"
    signed = {n: lower[n] for n in names}
    request = AWSRequest(method=method, url=f"http://{lower['host']}{path_and_query}", headers=signed, data=body)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key.access_key, key.secret_key), SERVICE, key.region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return "signature does not match"
    return None
