"""comfyroute_tools.dev.asl_cache: executions of one definition share one parsed program, and
still keep their own state (retry counts, inputs) as separate parses did."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from support.sfn_harness import SFN_MOCK_CONFIG, StateMachineHarness

POLL = "PollFunctionArn"
NOTIFY = "NotifyFunctionArn"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(config=SFN_MOCK_CONFIG):
        yield


def test_executions_share_one_parse_and_keep_their_own_retry_counts(aws: None) -> None:
    slow_down = ClientError({"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "PutObject")
    # Per job: two throttled polls, then done. The Retry on ClientError allows 3 attempts per
    # execution: a retry count shared between executions would exhaust it in the second one.
    scripts: dict[str, list[Any]] = {job: [slow_down, slow_down, {"done": True}] for job in ("a", "b", "c")}

    def poll(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        step = scripts[event["job_id"]].pop(0)
        if isinstance(step, Exception):
            raise step
        return {
            "job_id": event["job_id"],
            "polls": event["polls"] + 1,
            "status": "completed",
            "wait_seconds": 0,
            **step,
        }

    parse = mock.patch.object(AmazonStateLanguageParser, "parse", wraps=AmazonStateLanguageParser.parse)
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: lambda e, c: {"sent": 1}}) as sfn, parse as parsed:
        arns = {job: sfn.start({"job_id": job, "polls": 0, "wait_seconds": 0}) for job in scripts}
        for job, arn in arns.items():
            assert sfn.wait(arn)["status"] == "SUCCEEDED", job
        # Parsed once, for the first execution (CreateStateMachine's check ran before the patch).
        assert parsed.call_count == 1
        for job, arn in arns.items():
            assert sfn.states_entered(arn) == ["Route", "Wait", "Poll", "Next", "NotifyFinal", "Succeeded"]
            failed = [e for e in sfn.history(arn) if e["type"] == "TaskFailed"]
            assert len(failed) == 2, job
        assert all(not steps for steps in scripts.values())
