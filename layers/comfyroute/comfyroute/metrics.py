"""CloudWatch metrics (Powertools EMF): the process's ``metrics`` and one-off counters."""

from __future__ import annotations

import os

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

metrics = Metrics()


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """One metric with its own dimensions (executor, status), flushed at once."""
    # single_metric, unlike Metrics, does not read POWERTOOLS_METRICS_DISABLED: honour it here
    # (the dev stack and the tests set it).
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("1", "true"):
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace) as m:
        for key, dim in dimensions.items():
            m.add_dimension(name=key, value=dim)


def add(name: str, value: float) -> None:
    """A count added to this invocation's metrics (published when the handler returns)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
