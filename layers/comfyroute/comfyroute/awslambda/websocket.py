"""The handler of the WebSocket message routes: decode the frame, dispatch on its command, reply.

A frame is JSON text, or MessagePack in a binary frame (``frames``: nodetool's client sends
nothing else). A command that reached ``$default`` but belongs to another route (a binary frame
API Gateway could not route) is handed to that route's function (``dispatch``).

A WebSocket handler never lets an exception reach API Gateway: the client always gets an
``error`` message instead, and the route answers 200.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError

from comfyroute import messages
from comfyroute.awslambda import dispatch
from comfyroute.awslambda.events import WebSocketRequest
from comfyroute.awslambda.instrument import Handler, instrument, logger
from comfyroute.awslambda.wiring import Port, get_ports, preload
from comfyroute.frames import FrameError, decode_event_body
from comfyroute.ports import Caller
from comfyroute.protocol.commands import Command, ProtocolError, command_from_frame, command_name, frame_ids

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


def websocket_handler(
    routes: Mapping[str, CommandRoute], *, uses: Iterable[Port] = (), hands_over: bool = False
) -> Handler:
    """A handler serving ``routes`` (command name -> route function), whose routes use the
    ports ``uses`` besides the connections and the pusher every reply needs. With
    ``hands_over`` (``$default``), a command another route owns is passed to its function."""
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
        command: Command | None = None
        name: str | None = None
        frame: dict[str, Any] = {}
        try:
            frame = decode_event_body(event)
            name = command_name(frame)
            owner = dispatch.owner_of(name) if hands_over and name not in routes else None
            if owner is not None and name is not None:
                dispatch.hand_over(event, frame, name, owner)
                logger.info("handed over", extra={"command": name})
                return {"statusCode": 200}
            command = command_from_frame(frame)
            route = routes.get(command.command)
            if route is None:
                raise ProtocolError(
                    f"command '{command.command}' is not served on route {request.route_key}",
                    code="misrouted",
                    command=command.command,
                )
            job_id = getattr(getattr(command, "data", None), "job_id", None)
            if job_id:
                logger.append_keys(job_id=job_id)
            route(ports, caller, command)
        except FrameError as exc:
            logger.info("undecodable frame", extra={"reason": exc.message, "encoding": exc.encoding})
            messages.reply(ports, caller, messages.error(exc.message, exc.code))
        except ProtocolError as exc:
            logger.info("rejected message", extra={"reason": exc.message})
            messages.reply(ports, caller, *messages.refusal(exc))
        except dispatch.HandOverFailed as exc:
            job_id, workflow_id = frame_ids(frame)
            messages.reply(
                ports,
                caller,
                messages.error(str(exc), "too_large", request=name, job_id=job_id, workflow_id=workflow_id),
            )
        except (RecursionError, PydanticSerializationError, UnicodeEncodeError) as exc:
            # Client data no step can carry on with (nested past what parsers and serializers
            # take, text that is not Unicode): the client's input, so a bad_request, not internal.
            logger.info("unprocessable message", extra={"reason": type(exc).__name__})
            job_id, workflow_id = frame_ids(frame)
            refusal = ProtocolError(
                "the message holds values that cannot be processed: nested too deeply, or text "
                "that is not valid Unicode (a lone surrogate)",
                command=command.command if command else name,
                job_id=job_id,
                workflow_id=workflow_id,
            )
            messages.reply(ports, caller, *messages.refusal(refusal))
        except Exception:
            logger.exception("handler failed")
            job_id, workflow_id = frame_ids(frame)
            failed = messages.internal_error(command.command if command else name)
            messages.reply(ports, caller, failed.model_copy(update={"job_id": job_id, "workflow_id": workflow_id}))
        return {"statusCode": 200}

    return instrument(handler)
