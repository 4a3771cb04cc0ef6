"""Powertools around every handler: structured logs with the Lambda context, and metrics;
X-Ray subsegments through Powertools' Tracer where ``XRAY_SDK_TRACING`` asks for them.

Why the Tracer is opt-in: creating it imports the X-Ray SDK, which builds a botocore session
and two X-Ray clients at import time, more than ``import boto3`` itself costs. Lambda's own
active tracing (``Tracing: Active``) records every invocation without it; the SDK adds a
subsegment per AWS and HTTP call. The connection routes (authorizer, connect, disconnect) never
load it: they run on every new connection and make one DynamoDB call each.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from comfyroute.metrics import metrics
from comfyroute.text import scrub

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


class ScrubbingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON log lines with every known secret value removed (``text.scrub``):
    whatever an executor echoed into an exception or an extra field never reaches the log."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


logger = Logger(logger_formatter=ScrubbingFormatter())

Handler = Callable[[dict[str, Any], "LambdaContext"], Any]


def sdk_tracing() -> bool:
    return os.environ.get("XRAY_SDK_TRACING", "").lower() in ("1", "true")


def instrument(fn: Handler, *, trace: bool = True) -> Handler:
    """``fn`` with the Lambda context in its logs and its metrics published; traced with the
    X-Ray SDK when ``trace`` and ``XRAY_SDK_TRACING`` both say so."""
    wrapped = logger.inject_lambda_context(clear_state=True)(fn)
    if trace and sdk_tracing():
        from aws_lambda_powertools import Tracer  # the X-Ray SDK: see the module docstring

        wrapped = Tracer().capture_lambda_handler(wrapped)
    logged: Handler = metrics.log_metrics(wrapped)
    return logged
