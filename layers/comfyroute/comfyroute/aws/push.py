"""Posting server messages to WebSocket connections through the Management API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel

from comfyroute.aws import clients as aws
from comfyroute.protocol import MAX_MESSAGE_BYTES, encode

logger = Logger(child=True)

_THROTTLE_CODES = frozenset({"LimitExceededException", "TooManyRequestsException", "ThrottlingException"})


class Throttled(Exception):
    """The Management API throttled us; Step Functions retries the notify task on this name."""


class MessageTooLarge(ValueError):
    pass


class Pusher:
    def __init__(self, endpoint_url: str, client: Any | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.client = client or aws.management_api(endpoint_url)

    def send(self, connection_id: str, message: BaseModel) -> bool:
        """Post one message. False when the connection is gone (the caller records that);
        ``Throttled`` when API Gateway asks us to slow down."""
        frame = encode(message).encode()
        if len(frame) > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"{message.__class__.__name__} is {len(frame)} bytes; limit {MAX_MESSAGE_BYTES}")
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=frame)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if (
                code in ("GoneException", "410")
                or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410
            ):
                logger.info("connection gone", extra={"gone_connection": connection_id})
                return False
            if code in _THROTTLE_CODES:
                raise Throttled(f"Management API throttled: {code}") from None
            raise
        return True

    def send_all(self, connection_id: str, messages: list[BaseModel]) -> bool:
        # all() stops at the first gone connection: nothing more can reach it.
        return all(self.send(connection_id, message) for message in messages)
