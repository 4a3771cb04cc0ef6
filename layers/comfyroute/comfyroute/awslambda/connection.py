"""The connection routes: the ``$connect`` authorizer, ``$connect`` and ``$disconnect``.

They run on every connection, so they load neither pydantic nor anything of the job routes:
events are read as dicts, the policy is built by hand, and the only port each builds is the
table it uses.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from comfyroute import auth
from comfyroute.awslambda.events import AuthorizerRequest, WebSocketRequest
from comfyroute.awslambda.instrument import Handler, instrument, logger
from comfyroute.awslambda.wiring import get_ports, preload
from comfyroute.jobkeys import job_key

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# protocol.JOB_ID_PATTERN, repeated: importing protocol would load pydantic on every connect.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


def authorizer_handler() -> Handler:
    """The token (``?api_key=``, ``?token=`` or ``Authorization: Bearer``) -> Allow with
    ``context.user_id`` and ``context.key_id`` (the token's SHA-256, so $connect can record which
    key a connection uses and ``comfyroute keys revoke`` can close it), else Deny. The template
    gives the authorizer no identity source (API Gateway would answer 401 itself unless that one
    source is present), so a connection without any token reaches this function and is refused here."""
    preload(["api_keys"])

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = AuthorizerRequest.of(event)
        if not request.token:
            anonymous = get_ports().config.dev_anonymous_user
            if anonymous and request.from_loopback:
                # `comfyroute dev --nodetool`: nodetool's client sends no key on localhost.
                logger.info("anonymous loopback connection", extra={"user_id": anonymous})
                return request.policy(anonymous, allow=True, context={"user_id": anonymous})
            # API Gateway answers 401 for this exact message.
            raise Exception("Unauthorized")
        user_id = auth.authenticate(get_ports().api_keys, request.token)
        if user_id is None:
            logger.info("token refused")
            return request.policy("anonymous", allow=False)
        logger.info("token accepted", extra={"user_id": user_id})
        return request.policy(
            user_id, allow=True, context={"user_id": user_id, "key_id": auth.hash_token(request.token)}
        )

    return instrument(handler, trace=False)


def connect_handler() -> Handler:
    """Remember the connection and its user; with nodetool's ``?resume_job=<job_id>``, the
    user's active job follows this connection from now on (someone else's is left alone)."""
    preload(["connections", "job_attach"])

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = WebSocketRequest.of(event)
        if not request.user_id:
            return {"statusCode": 401}
        logger.append_keys(connection_id=request.connection_id)
        ports = get_ports()
        if request.key_id:
            ports.connections.put_for_key(request.connection_id, request.user_id, request.key_id)
        else:
            ports.connections.put(request.connection_id, request.user_id)
        logger.info("connected", extra={"user_id": request.user_id})
        job_id = request.resume_job
        if job_id and _JOB_ID.match(job_id):
            attached = ports.job_attach.attach(job_key(request.user_id, job_id), request.user_id, request.connection_id)
            logger.info("resume_job", extra={"job_id": job_id, "attached": attached})
        return {"statusCode": 200}

    return instrument(handler, trace=False)


def disconnect_handler() -> Handler:
    preload(["connections"])

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = WebSocketRequest.of(event)
        get_ports().connections.delete(request.connection_id)
        return {"statusCode": 200}

    return instrument(handler, trace=False)
