"""Posting server messages to WebSocket connections through the Management API (``ports.Pusher``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from comfyroute.aws import clients as aws
from comfyroute.defaults import MAX_MESSAGE_BYTES
from comfyroute.text import scrub

if TYPE_CHECKING:
    from pydantic import BaseModel

logger = Logger(child=True)

_THROTTLE_CODES = frozenset({"LimitExceededException", "TooManyRequestsException", "ThrottlingException"})


class Throttled(Exception):
    """The Management API throttled us; Step Functions retries the notify task on this class name: keep it."""


class MessageTooLarge(ValueError):
    pass


class ManagementApiPusher:
    def __init__(self, endpoint_url: str, client: Any | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.client = client or aws.management_api(endpoint_url)

    def send(self, connection_id: str, message: BaseModel) -> bool:
        """Post one message. False when the connection is gone (the caller records that);
        ``Throttled`` when API Gateway asks us to slow down."""
        # The one place every message leaves: scrubbed of every secret value this process knows.
        frame = scrub(message.model_dump_json(exclude_none=True)).encode()
        if len(frame) > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"{message.__class__.__name__} is {len(frame)} bytes; limit {MAX_MESSAGE_BYTES}")
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=frame)
        except ClientError as exc:
            code = aws.error_code(exc)
            if code in ("GoneException", "410") or aws.http_status(exc) == 410:
                logger.info("connection gone", extra={"gone_connection": connection_id})
                return False
            if code in _THROTTLE_CODES:
                raise Throttled(f"Management API throttled: {code}") from None
            raise
        return True

    def send_all(self, connection_id: str, messages: Sequence[BaseModel]) -> bool:
        # all() stops at the first gone connection: nothing more can reach it.
        return all(self.send(connection_id, message) for message in messages)
