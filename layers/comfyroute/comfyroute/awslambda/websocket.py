"""The handler of the WebSocket message routes: parse the frame, dispatch on its command, reply.

A WebSocket handler never lets an exception reach API Gateway: the client always gets an
``error`` message instead, and the route answers 200.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from comfyroute import messages
from comfyroute.awslambda.events import WebSocketRequest
from comfyroute.awslambda.instrument import Handler, instrument, logger
from comfyroute.awslambda.wiring import Port, get_ports, preload
from comfyroute.ports import Caller
from comfyroute.protocol import ClientCommand, ProtocolError, parse_command

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from comfyroute.ports import Ports

CommandRoute = Callable[["Ports", Caller, Any], None]


def _caller(ports: Ports, request: WebSocketRequest) -> Caller | None:
    user_id = request.user_id
    if not user_id:
        # Not every integration passes the authorizer context along; the connection row has it.
        conn = ports.connections.get(request.connection_id)
        user_id = conn.user_id if conn else None
    return Caller(user_id=user_id, connection_id=request.connection_id) if user_id else None


def websocket_handler(routes: Mapping[str, CommandRoute], *, uses: Iterable[Port] = ()) -> Handler:
    """A handler serving ``routes`` (command name -> route function), whose routes use the
    ports ``uses`` besides the connections and the pusher every reply needs."""
    preload(("connections", "pusher", *uses))

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = WebSocketRequest.of(event)
        logger.append_keys(connection_id=request.connection_id, route=request.route_key)
        ports = get_ports()
        ports.begin_invocation(context, endpoint=request.management_endpoint)
        caller = _caller(ports, request)
        if caller is None:
            logger.warning("message from a connection with no user")
            return {"statusCode": 401}
        command: ClientCommand | None = None
        try:
            command = parse_command(request.body)
            route = routes.get(command.command)
            if route is None:
                raise ProtocolError(
                    f"command '{command.command}' is not served on route {request.route_key}",
                    code="misrouted",
                    command=command.command,
                )
            job_id = getattr(command.data, "job_id", None)
            if job_id:
                logger.append_keys(job_id=job_id)
            route(ports, caller, command)
        except ProtocolError as exc:
            logger.info("rejected message", extra={"reason": exc.message})
            messages.reply(ports, caller, messages.rejected(exc))
        except Exception:
            logger.exception("handler failed")
            messages.reply(ports, caller, messages.internal_error(command.command if command else None))
        return {"statusCode": 200}

    return instrument(handler)
