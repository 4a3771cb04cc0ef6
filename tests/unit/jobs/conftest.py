"""The job rules against in-memory ports (tests/support/memory.py): no AWS, no moto."""

from __future__ import annotations

import pytest
from aws_lambda_powertools import Logger
from support.memory import MemoryPorts, connected_ports

# The rules log through Powertools child loggers, which need the parent the Lambda glue
# creates (awslambda/instrument.py) before they may append keys.
Logger(service="comfyroute")


@pytest.fixture
def ports() -> MemoryPorts:
    return connected_ports()
