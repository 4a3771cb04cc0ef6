"""What the handlers read of their API Gateway events, read straight from the event dict.

Plain dict access, not Powertools' parser models: those are pydantic models of whole events,
and loading them would be most of a connection handler's cold start. (NamedTuples rather than
dataclasses for the same reason: they are much cheaper to create.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class EventError(ValueError):
    """The event lacks what the handler reads (it did not come from API Gateway as configured)."""


def _field(data: Mapping[str, Any], name: str, where: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise EventError(f"{where}.{name} is missing or not a string")
    return value


def _context(event: Mapping[str, Any]) -> Mapping[str, Any]:
    ctx = event.get("requestContext")
    if not isinstance(ctx, Mapping):
        raise EventError("requestContext is missing")
    return ctx


def _optional(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) and value else None


class WebSocketRequest(NamedTuple):
    """A WebSocket route's event: ``$connect``, ``$disconnect`` or a message."""

    connection_id: str
    route_key: str
    domain_name: str | None = None
    stage: str | None = None
    # What our authorizer put in its policy's context, as API Gateway passes it on.
    user_id: str | None = None
    body: str | None = None
    # $connect only: nodetool's ``?resume_job=<job_id>`` while a run is in flight.
    resume_job: str | None = None
    # The token's SHA-256 (the API keys table's key), also from the authorizer's context.
    key_id: str | None = None

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> WebSocketRequest:
        ctx = _context(event)
        authorizer = ctx.get("authorizer")
        body = event.get("body")
        query = event.get("queryStringParameters")
        return cls(
            connection_id=_field(ctx, "connectionId", "requestContext"),
            route_key=_field(ctx, "routeKey", "requestContext"),
            domain_name=_optional(ctx, "domainName"),
            stage=_optional(ctx, "stage"),
            user_id=_optional(authorizer, "user_id") if isinstance(authorizer, Mapping) else None,
            body=body if isinstance(body, str) else None,
            resume_job=_optional(query, "resume_job") if isinstance(query, Mapping) else None,
            key_id=_optional(authorizer, "key_id") if isinstance(authorizer, Mapping) else None,
        )

    @property
    def management_endpoint(self) -> str | None:
        """The Management API endpoint of the API the event came through."""
        if not self.domain_name or not self.stage:
            return None
        return f"https://{self.domain_name}/{self.stage}"


def token_of(query: Any, headers: Any) -> str | None:
    """The API token a connection presents: ``?api_key=`` (nodetool's name), ``?token=``, or
    ``Authorization: Bearer <token>`` (clients that can set headers), in that order."""
    if isinstance(query, Mapping):
        for name in ("api_key", "token"):
            token = _optional(query, name)
            if token:
                return token
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == "authorization" and isinstance(value, str):
                scheme, _, credentials = value.strip().partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    return credentials.strip()
    return None


class AuthorizerRequest(NamedTuple):
    """A WebSocket REQUEST authorizer's event: the route ARN, the token (``token_of``) and the
    address the connection comes from."""

    method_arn: str
    token: str | None
    source_ip: str | None = None

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> AuthorizerRequest:
        _field(event, "type", "event")
        token = token_of(event.get("queryStringParameters"), event.get("headers"))
        ctx = event.get("requestContext")
        identity = ctx.get("identity") if isinstance(ctx, Mapping) else None
        source_ip = _optional(identity, "sourceIp") if isinstance(identity, Mapping) else None
        return cls(method_arn=_field(event, "methodArn", "event"), token=token, source_ip=source_ip)

    @property
    def from_loopback(self) -> bool:
        import ipaddress

        try:
            return self.source_ip is not None and ipaddress.ip_address(self.source_ip).is_loopback
        except ValueError:
            return False

    def policy(self, principal_id: str, *, allow: bool, context: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The IAM policy an authorizer answers: every route of the stage, allowed or denied."""
        parts = self.method_arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "execute-api" or parts[5].count("/") < 1:
            raise EventError("methodArn is not an execute-api route ARN")
        api_id, stage = parts[5].split("/")[:2]
        resource = ":".join(parts[:5]) + f":{api_id}/{stage}/*"
        answer: dict[str, Any] = {
            "principalId": principal_id,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Action": "execute-api:Invoke", "Effect": "Allow" if allow else "Deny", "Resource": [resource]}
                ],
            },
        }
        if context:
            answer["context"] = dict(context)
        return answer
