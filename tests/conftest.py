"""Shared fixtures; the helpers they use live in support.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import ROOT, Stack, moto_stack


@pytest.fixture(scope="session")
def plan() -> Any:
    from comfyroute_tools.dev.template import build_plan, load_template

    return build_plan(load_template(ROOT / "template.yaml"), root=ROOT, stack_name="comfyroute-test")


@pytest.fixture
def stack(plan: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with moto_stack(plan, monkeypatch) as s:
        yield s


@pytest.fixture
def lambda_context() -> Any:
    from comfyroute_tools.dev.lambdas import LambdaContext

    return LambdaContext(
        function_name="comfyroute-test", invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:test"
    )
