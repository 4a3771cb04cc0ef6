"""Lambda glue shared by every function: Powertools Logger/Tracer/Metrics, the event models
and the wrappers that turn a service function into a handler.

A WebSocket handler never lets an exception reach API Gateway: the client always gets an
``error`` message instead, and the route answers 200.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponseWebSocket,
)
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from aws_lambda_powertools.utilities.parser.models.apigw_websocket import (
    APIGatewayWebSocketConnectEventRequestContext,
    APIGatewayWebSocketDisconnectEventRequestContext,
    APIGatewayWebSocketMessageEventRequestContext,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from comfyroute import auth, service
from comfyroute.protocol import ClientCommand, ErrorMessage, ProtocolError, parse_command
from comfyroute.service import Caller, Services, get_services

logger = Logger()
tracer = Tracer()
metrics = Metrics()

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


# --------------------------------------------------------------------------- event models


class AuthorizerContext(BaseModel):
    """What our authorizer put in its policy's ``context``, as API Gateway passes it on."""

    model_config = ConfigDict(extra="allow")

    user_id: str | None = None
    principal_id: str | None = Field(default=None, alias="principalId")


class _WithAuthorizer(BaseModel):
    authorizer: AuthorizerContext | None = None


class MessageContext(APIGatewayWebSocketMessageEventRequestContext, _WithAuthorizer):
    pass


class ConnectContext(APIGatewayWebSocketConnectEventRequestContext, _WithAuthorizer):
    pass


class MessageEvent(APIGatewayWebSocketMessageEventModel):
    request_context: MessageContext = Field(alias="requestContext")


class ConnectEvent(APIGatewayWebSocketConnectEventModel):
    request_context: ConnectContext = Field(alias="requestContext")


class DisconnectEvent(APIGatewayWebSocketDisconnectEventModel):
    request_context: APIGatewayWebSocketDisconnectEventRequestContext = Field(alias="requestContext")


class AuthorizerEvent(BaseModel):
    """A WebSocket REQUEST authorizer event: only what we read of it."""

    model_config = ConfigDict(extra="ignore")

    type: str
    method_arn: str = Field(alias="methodArn")
    query_string_parameters: dict[str, str] | None = Field(default=None, alias="queryStringParameters")


class PollEvent(BaseModel):
    job_id: str
    polls: int = 0


class NotifyEvent(BaseModel):
    job_id: str
    final: bool = False
    failure: dict[str, Any] | None = None


# --------------------------------------------------------------------------- wrappers


def _lambda(fn: Handler) -> Handler:
    """Powertools around a handler: structured logs with the Lambda context, X-Ray, metrics."""
    return metrics.log_metrics(tracer.capture_lambda_handler(logger.inject_lambda_context(clear_state=True)(fn)))


def _caller(svc: Services, ctx: MessageContext) -> Caller | None:
    user_id = ctx.authorizer.user_id if ctx.authorizer else None
    if not user_id:
        # Not every integration passes the authorizer context along; the connection row has it.
        conn = svc.connections.get(ctx.connection_id)
        user_id = conn.user_id if conn else None
    return Caller(user_id=user_id, connection_id=ctx.connection_id) if user_id else None


CommandRoute = Callable[[Services, Caller, Any], None]


def websocket_handler(routes: dict[str, CommandRoute]) -> Handler:
    """A handler for message routes: parse the frame, dispatch on its command, reply."""

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ev = parse(event=event, model=MessageEvent)
        ctx = ev.request_context
        logger.append_keys(connection_id=ctx.connection_id, route=ctx.route_key)
        svc = get_services()
        svc.pusher(fallback_endpoint=f"https://{ctx.domain_name}/{ctx.stage}")
        # Lets Idempotency expire an in-progress record when this invocation times out.
        svc.idempotency.register_lambda_context(context)
        caller = _caller(svc, ctx)
        if caller is None:
            logger.warning("message from a connection with no user")
            return {"statusCode": 401}
        command: ClientCommand | None = None
        try:
            command = parse_command(ev.body if isinstance(ev.body, str) else None)
            route = routes.get(command.command)
            if route is None:
                raise ProtocolError(
                    f"command '{command.command}' is not served on route {ctx.route_key}",
                    code="misrouted",
                    command=command.command,
                )
            job_id = getattr(command.data, "job_id", None)
            if job_id:
                logger.append_keys(job_id=job_id)
            route(svc, caller, command)
        except ProtocolError as exc:
            logger.info("rejected message", extra={"reason": exc.message})
            service.reject(svc, caller, exc)
        except Exception:
            logger.exception("handler failed")
            name = command.command if command else None
            svc.reply(
                caller,
                ErrorMessage(message="internal error; the request was not completed", code="internal", request=name),
            )
        return {"statusCode": 200}

    return _lambda(handler)


def authorizer_handler() -> Handler:
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ev = parse(event=event, model=AuthorizerEvent)
        token = (ev.query_string_parameters or {}).get("token")
        if not token:
            # API Gateway answers 401 for this exact message.
            raise Exception("Unauthorized")
        user_id = auth.authenticate(get_services().api_keys, token)
        policy = APIGatewayAuthorizerResponseWebSocket.from_route_arn(
            ev.method_arn, principal_id=user_id or "anonymous", context={"user_id": user_id} if user_id else None
        )
        if user_id is None:
            logger.info("token refused")
            policy.deny_all_routes()
        else:
            logger.info("token accepted", extra={"user_id": user_id})
            policy.allow_all_routes()
        return policy.asdict()

    return _lambda(handler)


def connect_handler() -> Handler:
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ev = parse(event=event, model=ConnectEvent)
        ctx = ev.request_context
        user_id = ctx.authorizer.user_id if ctx.authorizer else None
        if not user_id:
            return {"statusCode": 401}
        logger.append_keys(connection_id=ctx.connection_id)
        get_services().connections.put(ctx.connection_id, user_id)
        logger.info("connected", extra={"user_id": user_id})
        return {"statusCode": 200}

    return _lambda(handler)


def disconnect_handler() -> Handler:
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ev = parse(event=event, model=DisconnectEvent)
        get_services().connections.delete(ev.request_context.connection_id)
        return {"statusCode": 200}

    return _lambda(handler)


def poll_handler() -> Handler:
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ev = PollEvent.model_validate(event)
        logger.append_keys(job_id=ev.job_id)
        return service.poll_job(get_services(), ev.job_id, ev.polls).model_dump(mode="json")

    return _lambda(handler)


def notify_handler() -> Handler:
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ev = NotifyEvent.model_validate(event)
        logger.append_keys(job_id=ev.job_id)
        result = service.notify_job(get_services(), ev.job_id, final=ev.final, failure=ev.failure)
        return result.model_dump(mode="json")

    return _lambda(handler)
