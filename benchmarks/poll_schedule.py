"""What the poll loop costs: state transitions and Lambda invocations for jobs of 10 s, 60 s and
10 minutes, with comfyroute's growing wait (1, 2, 4, ... capped at 30 s) beside fixed 2-second
polling.

It runs the real statemachine/job.asl.json under moto (tests/sfn_harness.py) with a Poll task
that keeps a virtual clock: each Wait adds the seconds the previous Poll asked for, so nothing
sleeps and the counts are exact. Not a test; prints a table.

    .venv/bin/python benchmarks/poll_schedule.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(key, "testing")

from moto import mock_aws  # noqa: E402
from support.sfn_harness import SFN_MOCK_CONFIG, StateMachineHarness  # noqa: E402

from comfyroute.jobs.schedule import next_wait  # noqa: E402

START, CAP = 1, 30


def run(duration: float, schedule: str) -> dict[str, Any]:
    clock = {"t": 0.0, "last_wait": START}

    def wait_for(polls: int) -> int:
        return next_wait(polls, START, CAP) if schedule == "growing" else 2

    def poll(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        clock["t"] += clock["last_wait"]
        polls = event["polls"]
        wait = wait_for(polls)
        clock["last_wait"] = wait
        done = clock["t"] >= duration
        # The first look sees queued -> running: one progress notification, as with ComfyUI.
        return {
            "job_id": event["job_id"],
            "polls": polls + 1,
            "done": done,
            "status": "completed" if done else "running",
            "wait_seconds": wait,
            "notify": polls == 0 and not done,
        }

    def notify(event: dict[str, Any], _ctx: Any) -> dict[str, Any]:
        return {"job_id": event["job_id"], "delivered": True}

    with (
        mock_aws(config=SFN_MOCK_CONFIG),
        StateMachineHarness(tasks={"PollFunctionArn": poll, "NotifyFunctionArn": notify}) as sfn,
    ):
        first_wait = START if schedule == "growing" else 2
        clock["last_wait"] = first_wait
        arn = sfn.start({"job_id": "bench", "polls": 0, "wait_seconds": first_wait})
        desc = sfn.wait(arn, timeout=300)
        history = sfn.history(arn)
        entered = sum(1 for e in history if e["type"].endswith("StateEntered"))
        calls = sfn.sequence()
    return {
        "status": desc["status"],
        "transitions": entered,
        "polls": sum(1 for c in calls if c.startswith("Poll")),
        "lambda": len(calls),
        "seen_at": clock["t"],
    }


def main() -> None:
    print(f"growing wait: start {START} s, doubling, cap {CAP} s  |  fixed: every 2 s")
    print(
        f"{'job':>8} | {'schedule':>8} | {'states entered':>14} | {'polls':>5} | "
        f"{'Lambda invocations':>18} | {'done seen at':>12} | {'late by':>7}"
    )
    for duration in (10, 60, 600):
        for schedule in ("growing", "fixed"):
            r = run(duration, schedule)
            assert r["status"] == "SUCCEEDED", r
            print(
                f"{duration:>7}s | {schedule:>8} | {r['transitions']:>14} | {r['polls']:>5} | "
                f"{r['lambda']:>18} | {r['seen_at']:>11.0f}s | {r['seen_at'] - duration:>6.0f}s"
            )


if __name__ == "__main__":
    main()
