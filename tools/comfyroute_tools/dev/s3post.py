"""S3's browser-based POST uploads as S3 checks them, in front of the dev stack's moto.

moto (5.2.5) stores whatever a presigned POST carries: it ignores the policy's
``content-length-range`` (an oversized file is stored with 204, where S3 answers 400
``EntityTooLarge``), its conditions, its expiry and its signature. The dev stack must refuse what
S3 refuses, or limits tested against it mean nothing. ``S3PostPolicy`` is a WSGI middleware that
wraps moto's app on moto's own port, so the ``url`` a client gets in ``upload_ready`` works
unchanged; it looks only at ``POST /{bucket}`` with a ``multipart/form-data`` body and passes
everything else (every SDK call) straight through.

What it checks, in S3's order and with S3's error codes and HTTP statuses
(https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html):

- a multipart body with a Content-Length (411 ``MissingContentLength``), a ``key`` field and
  exactly one ``file`` (400 ``InvalidArgument``); fields after ``file`` are ignored, as S3 does;
- no ``policy``: an anonymous POST, which the private bucket refuses (403 ``AccessDenied``);
- the signature over the policy (SigV4 ``x-amz-signature``, or SigV2 ``signature``) with the
  stack's credentials (403 ``InvalidAccessKeyId`` / ``SignatureDoesNotMatch``), so a client that
  edits the policy is caught like on S3;
- the policy document (400 ``InvalidPolicyDocument``) and its ``expiration``
  (403 ``AccessDenied`` "Policy expired");
- every condition: exact matches (``{"field": v}``, ``["eq", "$field", v]``), ``starts-with``,
  the ``bucket`` (403 ``AccessDenied`` "Policy Condition failed: ...");
- every form field is named by a condition, except ``policy``, ``x-amz-signature``,
  ``signature``, ``AWSAccessKeyId``, ``file`` and ``x-ignore-*`` (403 ``AccessDenied`` "Extra
  input fields: ...");
- ``content-length-range`` against the file's size (400 ``EntityTooSmall`` / ``EntityTooLarge``
  with ``ProposedSize`` and ``MinSizeAllowed`` / ``MaxSizeAllowed``).

Only path-style URLs (``http://127.0.0.1:PORT/bucket``) are handled: that is what boto3 makes
for the dev stack's IP endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.serving import BaseWSGIServer, make_server

# Field names S3 does not require the policy to name.
_EXEMPT_FIELDS = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})
_BUCKET_PATH = re.compile(r"^/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/?$")
DEFAULT_MAX_BODY_BYTES = 512 * 1024 * 1024  # the dev stack holds one POST in memory at a time
_READ_CHUNK = 1024 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PostRefused(Exception):
    """What S3 answers instead of storing the file."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def xml(self, request_id: str) -> bytes:
        parts = [f"<Code>{escape(self.code)}</Code>", f"<Message>{escape(self.message)}</Message>"]
        parts += [f"<{name}>{escape(str(value))}</{name}>" for name, value in self.extra.items()]
        parts += [f"<RequestId>{request_id}</RequestId>", f"<HostId>{request_id}</HostId>"]
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>").encode()


def _denied(reason: str) -> PostRefused:
    return PostRefused(403, "AccessDenied", f"Invalid according to Policy: {reason}")


# --------------------------------------------------------------------------- the form


@dataclass
class PostForm:
    """A POST upload's form: fields before ``file`` (lower-cased names, first value wins), and the file."""

    fields: dict[str, str] = field(default_factory=dict)
    file_seen: bool = False
    file_size: int = 0


def parse_post_form(content_type: str, body: bytes) -> PostForm:
    """The form of a multipart body, as S3 reads it: names are case-insensitive, and whatever
    follows the file is ignored."""
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary")
    if mimetype != "multipart/form-data" or not boundary:
        raise PostRefused(400, "InvalidArgument", "Bucket POST must be of the enclosure-type multipart/form-data")
    decoder = MultipartDecoder(boundary.encode("latin-1"))
    decoder.receive_data(body)
    decoder.receive_data(None)
    form = PostForm()
    current: str | None = None  # the field being read, "file" for the file, None to skip
    value = bytearray()
    while True:
        try:
            event = decoder.next_event()
        except ValueError as exc:
            raise PostRefused(
                400, "MalformedPOSTRequest", f"The body of your POST request is not well-formed: {exc}"
            ) from None
        if isinstance(event, NeedData | Epilogue):
            break
        if isinstance(event, Field | File):
            if form.file_seen:
                current = None  # S3 ignores whatever follows the file
            elif event.name == "file":
                form.file_seen, current = True, "file"
            else:
                current = event.name.lower()
                value.clear()
        elif isinstance(event, Data) and current == "file":
            form.file_size += len(event.data)
        elif isinstance(event, Data) and current is not None:
            value += event.data
            if not event.more_data:
                form.fields.setdefault(current, value.decode("utf-8", errors="replace"))
                current = None
    if not form.file_seen:
        raise PostRefused(400, "InvalidArgument", "POST requires exactly one file upload per request.")
    return form


# --------------------------------------------------------------------------- signature and policy


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sigv4_policy_signature(secret_key: str, date: str, region: str, policy_b64: str) -> str:
    """SigV4 for a POST policy: the signing key of (date, region, s3) over the base64 policy."""
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, policy_b64.encode("ascii"), hashlib.sha256).hexdigest()


def check_signature(fields: Mapping[str, str], credentials: Mapping[str, str]) -> None:
    policy_b64 = fields["policy"]
    if "x-amz-signature" in fields:
        credential = fields.get("x-amz-credential", "")
        parts = credential.split("/")
        if (
            fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256"
            or len(parts) != 5
            or parts[3:] != ["s3", "aws4_request"]
        ):
            raise PostRefused(400, "InvalidArgument", "Invalid argument: x-amz-credential or x-amz-algorithm")
        access_key, date, region = parts[0], parts[1], parts[2]
        secret = credentials.get(access_key)
        if secret is None:
            raise PostRefused(
                403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
            )
        expected = sigv4_policy_signature(secret, date, region, policy_b64)
        given = fields["x-amz-signature"]
    elif "signature" in fields:
        access_key = fields.get("awsaccesskeyid", "")
        secret = credentials.get(access_key)
        if secret is None:
            raise PostRefused(
                403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
            )
        expected = base64.b64encode(
            hmac.new(secret.encode(), policy_b64.encode("ascii"), hashlib.sha1).digest()
        ).decode()
        given = fields["signature"]
    else:
        raise PostRefused(403, "AccessDenied", "Access Denied")
    if not hmac.compare_digest(expected, given):
        raise PostRefused(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )


def decode_policy(policy_b64: str) -> dict[str, Any]:
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError):
        raise PostRefused(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
    if not isinstance(policy, dict) or not isinstance(policy.get("conditions"), list):
        raise PostRefused(400, "InvalidPolicyDocument", "Invalid Policy: Policy missing conditions.")
    if not isinstance(policy.get("expiration"), str):
        raise PostRefused(400, "InvalidPolicyDocument", "Invalid Policy: Policy missing expiration.")
    return policy


def _expiration(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PostRefused(
            400, "InvalidPolicyDocument", f"Invalid Policy: Invalid 'expiration' value: '{text}'"
        ) from None


def _condition_text(op: str, name: str, value: object) -> str:
    return json.dumps([op, f"${name}", value])


def check_policy(policy: Mapping[str, Any], bucket: str, form: PostForm, now: datetime) -> None:
    """The policy's expiry and conditions against the form (``PostRefused`` as S3 answers)."""
    expires = _expiration(policy["expiration"])
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if now >= expires:
        raise _denied("Policy expired.")
    values = {**form.fields, "bucket": bucket}
    named: set[str] = set()
    size_range: tuple[int, int] | None = None
    for condition in policy["conditions"]:
        if isinstance(condition, dict) and len(condition) == 1:
            ((shown, expected),) = condition.items()
            op, shown = "eq", str(shown)
        elif isinstance(condition, list) and len(condition) == 3 and isinstance(condition[0], str):
            op = condition[0].lower()
            if op == "content-length-range":
                try:
                    size_range = (int(condition[1]), int(condition[2]))
                except (TypeError, ValueError):
                    raise PostRefused(
                        400, "InvalidPolicyDocument", f"Invalid Policy: Invalid content-length-range: {condition}"
                    ) from None
                continue
            if op not in ("eq", "starts-with") or not isinstance(condition[1], str):
                raise PostRefused(400, "InvalidPolicyDocument", f"Invalid Policy: Invalid Condition: {condition}")
            shown, expected = condition[1].removeprefix("$"), condition[2]
        else:
            raise PostRefused(400, "InvalidPolicyDocument", f"Invalid Policy: Invalid Simple-Condition: {condition}")
        name = shown.lower()
        named.add(name)
        got = values.get(name)
        ok = got is not None and (got == str(expected) if op == "eq" else got.startswith(str(expected)))
        if not ok:
            raise _denied(f"Policy Condition failed: {_condition_text(op, shown, expected)}")
    extra = sorted(
        n for n in form.fields if n not in named and n not in _EXEMPT_FIELDS and not n.startswith("x-ignore-")
    )
    if extra:
        raise _denied(f"Extra input fields: {', '.join(extra)}")
    if size_range is not None:
        low, high = size_range
        if form.file_size < low:
            raise PostRefused(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
                ProposedSize=form.file_size,
                MinSizeAllowed=low,
            )
        if form.file_size > high:
            raise PostRefused(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=form.file_size,
                MaxSizeAllowed=high,
            )


def check_post(
    bucket: str,
    content_type: str,
    body: bytes,
    credentials: Mapping[str, str],
    now: datetime | None = None,
) -> PostForm:
    """Everything S3 checks before it stores a POST upload; ``PostRefused`` otherwise."""
    form = parse_post_form(content_type, body)
    if "key" not in form.fields:
        raise PostRefused(
            400,
            "InvalidArgument",
            "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.",
        )
    if "policy" not in form.fields:
        raise PostRefused(403, "AccessDenied", "Access Denied")  # anonymous, and the bucket is private
    check_signature(form.fields, credentials)
    check_policy(decode_policy(form.fields["policy"]), bucket, form, now or datetime.now(UTC))
    return form


# --------------------------------------------------------------------------- WSGI


class S3PostPolicy:
    """WSGI middleware: POST uploads to a bucket are checked as S3 would, then passed on."""

    def __init__(
        self,
        app: WSGIApp,
        credentials: Mapping[str, str],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.app = app
        self.credentials = dict(credentials)
        self.max_body_bytes = max_body_bytes
        self._clock = clock or (lambda: datetime.now(UTC))
        self.refused: list[PostRefused] = []  # for tests and the dev console

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _BUCKET_PATH.match(environ.get("PATH_INFO", ""))
        content_type = environ.get("CONTENT_TYPE", "")
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or match is None
            or environ.get("QUERY_STRING")
            or not content_type.lower().startswith("multipart/form-data")
        ):
            return self.app(environ, start_response)
        try:
            body = self._read_body(environ)
            check_post(match["bucket"], content_type, body, self.credentials, self._clock())
        except PostRefused as refused:
            self.refused.append(refused)
            return self._refuse(refused, environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        raw_length = environ.get("CONTENT_LENGTH") or ""
        if not raw_length.isdigit():
            raise PostRefused(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        length = int(raw_length)
        stream = environ["wsgi.input"]
        if length > self.max_body_bytes:
            # Read it all anyway: a client still sending would see a reset instead of the answer.
            remaining = length
            while remaining > 0 and (chunk := stream.read(min(_READ_CHUNK, remaining))):
                remaining -= len(chunk)
            raise PostRefused(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=length,
                MaxSizeAllowed=self.max_body_bytes,
            )
        return bytes(stream.read(length))

    @staticmethod
    def _refuse(
        refused: PostRefused, environ: Mapping[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request_id = uuid.uuid4().hex[:16].upper()
        body = refused.xml(request_id)
        headers = [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(body))),
            ("x-amz-request-id", request_id),
        ]
        if environ.get("HTTP_ORIGIN"):
            # As S3 with a CORS rule for POST: a browser can read why its upload was refused.
            headers.append(("Access-Control-Allow-Origin", "*"))
        reasons = {400: "Bad Request", 403: "Forbidden", 411: "Length Required"}
        start_response(f"{refused.status} {reasons.get(refused.status, 'Error')}", headers)
        return [body]


class PolicyEnforcingMotoServer:
    """moto's server (all services, like ``moto.server.ThreadedMotoServer``) with S3 POST uploads
    checked by :class:`S3PostPolicy` on the same port."""

    def __init__(
        self,
        ip_address: str = "127.0.0.1",
        port: int = 0,
        *,
        credentials: Mapping[str, str],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._ip_address = ip_address
        self._port = port
        self.credentials = dict(credentials)
        self.max_body_bytes = max_body_bytes
        self.policy: S3PostPolicy | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        self.policy = S3PostPolicy(
            DomainDispatcherApplication(create_backend_app), self.credentials, max_body_bytes=self.max_body_bytes
        )
        self._server = make_server(
            self._ip_address, self._port, self.policy, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "call start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
