"""Powertools around every handler: structured logs with the Lambda context, X-Ray, metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Tracer

from comfyroute.metrics import metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()

Handler = Callable[[dict[str, Any], "LambdaContext"], Any]


def instrument(fn: Handler) -> Handler:
    logged = logger.inject_lambda_context(clear_state=True)(fn)
    wrapped: Handler = metrics.log_metrics(tracer.capture_lambda_handler(logged))
    return wrapped
