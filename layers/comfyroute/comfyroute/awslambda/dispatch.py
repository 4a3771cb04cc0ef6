"""Handing a command that reached ``$default`` to the function that owns its route.

API Gateway selects a route by ``$request.body.command``, which it can read in a JSON text
frame only. A frame it cannot read (nodetool's MessagePack, passed on by the dev gateway's
``binary_frames="default_route"`` or a binary-capable front) lands on ``$default``, which
decodes it. ``$default`` does not run the command itself: that would give it every other
route's permissions. It invokes the owning function asynchronously with the event API Gateway
would have sent had the frame been JSON: the same request context (connection, authorizer's
user), ``routeKey`` set to the command and the frame re-encoded as JSON text. The owner replies
through the Management API as always. ``$default``'s role may invoke those functions only.

``ROUTE_FUNCTIONS`` (set by template.yaml on the default function) maps each command to its
function's name: ``{"run_job": "stack-RunJobFunction-...", ...}``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from functools import cache
from typing import Any

from comfyroute.defaults import MAX_MESSAGE_BYTES

ROUTE_FUNCTIONS_ENV = "ROUTE_FUNCTIONS"
# Lambda's limit on an asynchronous invocation's payload; the event around the frame is small.
MAX_EVENT_BYTES = 256 * 1024


class HandOverFailed(Exception):
    """The owning function could not be invoked (``str()`` is safe to send to the client)."""


@cache
def route_functions() -> dict[str, str]:
    """Command -> function name, from ``ROUTE_FUNCTIONS`` (empty when unset or unreadable)."""
    raw = os.environ.get(ROUTE_FUNCTIONS_ENV, "")
    try:
        mapping = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        return {}
    if not isinstance(mapping, dict):
        return {}
    return {str(k): str(v) for k, v in mapping.items() if isinstance(v, str) and v}


def owner_of(command: str | None) -> str | None:
    return route_functions().get(command) if command else None


def routed_event(event: Mapping[str, Any], frame: Mapping[str, Any], command: str) -> dict[str, Any]:
    """The MESSAGE event the owning route would have received for this frame sent as JSON text."""
    routed = copy.deepcopy(dict(event))
    context = dict(routed.get("requestContext") or {})
    context["routeKey"] = command
    routed["requestContext"] = context
    routed["body"] = json.dumps(_without_secrets(frame), separators=(",", ":"), ensure_ascii=False)
    routed["isBase64Encoded"] = False
    return routed


def _without_secrets(frame: Mapping[str, Any]) -> dict[str, Any]:
    """The frame minus nodetool's ``data.auth_token`` (its Supabase session): the owner would
    drop it at parse anyway, and it need not travel through Lambda's event queue."""
    data = frame.get("data")
    if isinstance(data, Mapping) and "auth_token" in data:
        return {**frame, "data": {k: v for k, v in data.items() if k != "auth_token"}}
    return dict(frame)


def hand_over(event: Mapping[str, Any], frame: Mapping[str, Any], command: str, function_name: str) -> None:
    """Invoke ``function_name`` asynchronously with the routed event."""
    routed = routed_event(event, frame, command)
    payload = json.dumps(routed, separators=(",", ":")).encode()
    if len(routed["body"].encode()) > MAX_MESSAGE_BYTES or len(payload) > MAX_EVENT_BYTES:
        raise HandOverFailed(f"message is too large to hand to the {command} route ({len(payload)} bytes)")
    from comfyroute.aws import clients as aws

    aws.lambda_client().invoke(FunctionName=function_name, InvocationType="Event", Payload=payload)
