"""The connection routes: the ``$connect`` authorizer, ``$connect`` and ``$disconnect``.

They run on every connection, so they load neither pydantic nor anything of the job routes:
events are read as dicts, the policy is built by hand, and the only port each builds is the
table it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comfyroute import auth
from comfyroute.awslambda.events import AuthorizerRequest, WebSocketRequest
from comfyroute.awslambda.instrument import Handler, instrument, logger
from comfyroute.awslambda.wiring import get_ports, preload

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def authorizer_handler() -> Handler:
    """The ``token`` query parameter -> Allow with ``context.user_id`` and ``context.key_id``
    (the token's SHA-256, so $connect can record which key a connection uses and
    ``comfyroute keys revoke`` can close it), else Deny."""
    preload(["api_keys"])

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = AuthorizerRequest.of(event)
        if not request.token:
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
    preload(["connections"])

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = WebSocketRequest.of(event)
        if not request.user_id:
            return {"statusCode": 401}
        logger.append_keys(connection_id=request.connection_id)
        if request.key_id:
            get_ports().connections.put_for_key(request.connection_id, request.user_id, request.key_id)
        else:
            get_ports().connections.put(request.connection_id, request.user_id)
        logger.info("connected", extra={"user_id": request.user_id})
        return {"statusCode": 200}

    return instrument(handler, trace=False)


def disconnect_handler() -> Handler:
    preload(["connections"])

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = WebSocketRequest.of(event)
        get_ports().connections.delete(request.connection_id)
        return {"statusCode": 200}

    return instrument(handler, trace=False)
