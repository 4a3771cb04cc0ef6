"""What following a job costs and how late its end reaches the client, per path and job length.

Paths (issue 10, docs/following.md):

* ``today``           the ASL before issue 10, growing wait 1, 2, 4 ... 30 s, each running poll peeking 0.5 s at /ws
* ``fixed-2s``        the ASL before issue 10, a poll every 2 s without a peek (the baseline)
* ``comfy-stream``    statemachine/job.asl.json, a Follow task holding ComfyUI's /ws, one window after another
* ``comfy-fallback``  job.asl.json, Follow finds no socket, then Wait/Poll with the fallback schedule
* ``runpod-webhook``  job.asl.json, Arm's task token re-armed every slow-poll interval, woken by the webhook
* ``runpod-poll``     job.asl.json, no callback route: Wait/Poll with the fallback schedule

How it counts. Each path is first simulated on a virtual clock (a pure script of which task runs
when, for how long, and what it answers). The script is then replayed through the real ASL on moto
(tests/support/sfn_harness.py): the poll-only ASL of before issue 10 (from git, commit
``PREVIOUS_COMMIT``) for today and fixed-2s, ``statemachine/job.asl.json`` as deployed for the
others. The ASL decides where to go; each Lambda
task pops the next scripted step and checks it is the task the ASL invoked, so a script that the
definition would not follow fails loudly. State transitions are *measured* (moto's history);
Lambda durations, webhook delivery and the like are *modelled* (the constants below, each marked
measured-by-the-issue or assumed). The webhook's task-token timeouts really fire on moto, shortened
to 3 s of wall time each and counted as the modelled slow-poll interval.

Lateness (end of the job on the executor -> terminal job_update sent) is computed by the same
simulation over 400 job lengths drawn uniformly from 0.75..1.25 x the nominal length.

    .venv/bin/python benchmarks/follow_cost.py            # the table
    .venv/bin/python benchmarks/follow_cost.py --quick    # 10 s and 60 s jobs only
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(key, "testing")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from support.sfn_harness import DEFAULT_DEFINITION, SFN_MOCK_CONFIG, StateMachineHarness  # noqa: E402

from comfyroute.jobs.schedule import fallback_wait as schedule_fallback_wait  # noqa: E402

# "today" and "fixed-2s" run the poll-only ASL of before issue 10, read from git history.
PREVIOUS_COMMIT = "aa236b0"


def previous_definition() -> Path:
    """The state machine before issue 10 (Wait/Poll/Notify only), written to a temp file from
    git (``PREVIOUS_COMMIT``), its numeric placeholder replaced by the dev default."""
    import subprocess
    import tempfile

    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{PREVIOUS_COMMIT}:statemachine/job.asl.json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.replace("${ExecutionTimeoutSeconds}", "87300")
    path = Path(tempfile.gettempdir()) / f"comfyroute-job-asl-{PREVIOUS_COMMIT}.json"
    path.write_text(text)
    return path


# moto logs every IsPresent test of an absent path as an error (the current ASL does the same):
# noise here, since the Choice rules guard each comparison with IsPresent as AWS requires.
logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)

# --------------------------------------------------------------------------- prices (list, us-east-1)
# AWS list prices for us-east-1 as published in 2025 (free tiers and volume tiers ignored):
# Step Functions Standard $0.025 per 1,000 state transitions; Lambda arm64 $0.0000133334 per
# GB-second and $0.20 per million requests; API Gateway WebSocket $1.00 per million messages
# (32 KB units); Lambda function URLs cost nothing beyond the invocation.
PRICE_TRANSITION = 0.025 / 1000
PRICE_GB_SECOND = 0.0000133334
PRICE_REQUEST = 0.20 / 1_000_000
PRICE_WS_MESSAGE = 1.00 / 1_000_000

# --------------------------------------------------------------------------- the model
def _memory_from_template() -> dict[str, int]:
    """Each task's MemorySize as template.yaml deploys it (Arm runs the Poll function)."""
    from comfyroute_tools.dev.template import load_template

    template = load_template(ROOT / "template.yaml")
    default = int(template.get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    resources = template["Resources"]

    def size(logical_id: str) -> int:
        return int(resources[logical_id]["Properties"].get("MemorySize", default))

    return {
        "poll": size("PollFunction"),
        "notify": size("NotifyFunction"),
        "follow": size("FollowFunction"),
        "arm": size("PollFunction"),
        "callback": size("RunPodCallbackFunction"),
    }


MEMORY_MB = _memory_from_template()
POLL_PEEK_S = 0.515  # measured by the issue: a running poll with the 0.5 s peek, 1,024 MB
POLL_RUNNING_S = 0.012  # measured by the issue: the same poll without the peek
POLL_FINAL_S = 0.300  # assumed: /history (or /status), one small output to S3, the job record
NOTIFY_S = 0.050  # assumed: read the job, one to three PostToConnection calls
FOLLOW_OPEN_S = 0.050  # assumed: ws handshake through a tunnel, then one /queue + /history look
FOLLOW_REFUSED_S = 0.100  # assumed: the tunnel refuses the upgrade, then the one look
FOLLOW_FINISH_S = 0.300  # assumed: confirm in /history, store what was not streamed, final push
FOLLOW_WINDOW_S = 240.0  # FOLLOW_WINDOW_SECONDS in template.yaml (Lambda timeout 300 s)
RUNPOD_LOOK_S = 0.080  # assumed: one /status over HTTPS
ARM_S = 0.080 + 0.010  # assumed: the /status look and storing the task token
CALLBACK_S = 0.030  # assumed: GetItem, digest check, SendTaskSuccess
WEBHOOK_DELAY_S = 0.200  # assumed: RunPod's end -> its POST reaching the route (not recorded)
SLOW_POLL_S = 180  # RUNPOD_SLOW_POLL_SECONDS: Arm's task-token timeout, one RunPod look every 3 minutes
# On moto the token timeout really elapses: this many seconds of wall time stand for SLOW_POLL_S.
# It also bounds the Lambda invocation itself (as on AWS), so it cannot be tiny on a busy machine.
ARM_WALL_S = 3
TODAY_START, TODAY_CAP = 1, 30


def _old_wait(polls: int) -> int:
    """The wait before poll ``polls + 1`` of the loop before issue 10: 1, 2, 4 ... 30 s."""
    return int(min(TODAY_CAP, TODAY_START * 2 ** min(polls, 30)))
FALLBACK_START, FALLBACK_GROWTH, FALLBACK_CAP = 1, 1.5, 15
# WebSocket messages a job sends (assumed workload: 7 nodes, a sampler for 80% of the job at four
# steps a second, one output): the stream sends each node twice and steps at the coalescing rate.
NODES, SAMPLER_SHARE, STEPS_PER_S, COALESCED_PER_S = 7, 0.8, 4.0, 2.0


def fallback_wait(polls: int) -> int:
    """The poll loop's schedule (jobs.schedule.fallback_wait): 1, 2, 3, 4, 6, 8, 12, 15, 15 ... seconds."""
    return schedule_fallback_wait(polls, FALLBACK_CAP)


@dataclass
class Step:
    task: str  # the harness task key, e.g. "PollFunctionArn"
    billed_s: float
    answer: dict[str, Any] | None = None  # what the Lambda returns (None for waitForTaskToken tasks)
    wake: str | None = None  # Arm only: "self" (job over), "callback" (the webhook), "timeout"


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    extra: list[tuple[str, float]] = field(default_factory=list)  # invocations outside the ASL (callback)
    seen_at: float = 0.0  # when the terminal job_update went out
    ws_messages: int = 0


def _stream_messages(duration: float) -> int:
    steps = SAMPLER_SHARE * duration * min(STEPS_PER_S, COALESCED_PER_S)
    return 2 * NODES + math.ceil(steps) + 1 + 2  # node updates, steps, the output, running + final


def _poll_messages(polls: int) -> int:
    return polls + 1 + 1  # a progress message per look at most, the output, the final update


def simulate(path: str, duration: float) -> Script:
    """The path's timeline for a job that ends ``duration`` seconds after the execution starts."""
    return {
        "today": lambda d: _polling(d, schedule="today"),
        "fixed-2s": lambda d: _polling(d, schedule="fixed"),
        "comfy-stream": _stream,
        "comfy-stream-128": _stream,
        "comfy-fallback": _comfy_fallback,
        "runpod-webhook": _webhook,
        "runpod-poll": lambda d: _polling(d, schedule="fallback", look_s=RUNPOD_LOOK_S),
    }[path](duration)


def _polling(duration: float, *, schedule: str, look_s: float | None = None) -> Script:
    """Wait -> Poll -> IsDone/Next loops; the execution's input carries the first wait."""
    script = Script()
    waits: dict[str, Callable[[int], int]] = {
        "today": _old_wait,
        "fixed": lambda n: 2,
        "fallback": fallback_wait,
    }
    wait_for = waits[schedule]
    running_s = look_s if look_s is not None else (POLL_PEEK_S if schedule == "today" else POLL_RUNNING_S)
    t, polls, wait = 0.0, 0, wait_for(0) if schedule != "today" else TODAY_START
    while True:
        t += wait
        done = t >= duration
        billed = POLL_FINAL_S if done else running_s
        t += billed
        next_wait_s = wait_for(polls + 1) if schedule == "fallback" else wait_for(polls)
        # The first look sees queued -> running: one progress notification.
        notify = polls == 0 and not done
        answer = {
            "job_id": "bench",
            "polls": polls + 1,
            "done": done,
            "notify": notify,
            "wait_seconds": next_wait_s,
            "executor": "x",
        }
        script.steps.append(Step("PollFunctionArn", billed, answer))
        if done:
            t += NOTIFY_S
            script.steps.append(Step("NotifyFunctionArn", NOTIFY_S, {}))
            script.seen_at = t
            script.ws_messages = _poll_messages(polls + 1)
            return script
        if notify:
            t += NOTIFY_S
            script.steps.append(Step("NotifyFunctionArn", NOTIFY_S, {}))
        polls, wait = polls + 1, next_wait_s


def _stream(duration: float) -> Script:
    script, t, follows = Script(), 0.0, 0
    while True:
        start = t
        t += FOLLOW_OPEN_S
        ends_in_window = duration <= start + FOLLOW_WINDOW_S
        if ends_in_window:
            t = max(t, duration) + FOLLOW_FINISH_S
            answer = {"job_id": "bench", "follows": follows + 1, "done": True, "notified": True}
            script.steps.append(Step("FollowFunctionArn", t - start, answer))
            script.seen_at = t
            script.ws_messages = _stream_messages(duration)
            return script
        t = start + FOLLOW_WINDOW_S
        answer = {"job_id": "bench", "follows": follows + 1, "next": "follow"}
        script.steps.append(Step("FollowFunctionArn", t - start, answer))
        follows += 1


def _comfy_fallback(duration: float) -> Script:
    script = Script()
    t = FOLLOW_REFUSED_S
    if duration <= t:  # over before the look: Follow finishes it
        t += FOLLOW_FINISH_S
        over = {"job_id": "bench", "follows": 1, "done": True, "notified": True}
        script.steps.append(Step("FollowFunctionArn", t, over))
        script.seen_at, script.ws_messages = t, _poll_messages(0)
        return script
    # Follow pushed "running" itself; polling goes on from the fallback schedule's first wait.
    first = {"job_id": "bench", "follows": 1, "polls": 0, "next": "wait", "wait_seconds": fallback_wait(0)}
    script.steps.append(Step("FollowFunctionArn", FOLLOW_REFUSED_S, first))
    polls, wait = 0, fallback_wait(0)
    while True:
        t += wait
        done = t >= duration
        t += POLL_FINAL_S if done else POLL_RUNNING_S
        answer = {"job_id": "bench", "polls": polls + 1, "done": done, "wait_seconds": fallback_wait(polls + 1)}
        script.steps.append(Step("PollFunctionArn", POLL_FINAL_S if done else POLL_RUNNING_S, answer))
        if done:
            t += NOTIFY_S
            script.steps.append(Step("NotifyFunctionArn", NOTIFY_S, {}))
            script.seen_at, script.ws_messages = t, _poll_messages(polls + 1)
            return script
        polls, wait = polls + 1, fallback_wait(polls + 1)


def _webhook(duration: float) -> Script:
    script, t, arms = Script(), 0.0, 0
    while True:
        armed_at = t
        t += ARM_S
        arms += 1
        if duration <= t:
            script.steps.append(Step("ArmFunctionArn", ARM_S, wake="self"))
            break
        if duration < armed_at + SLOW_POLL_S:
            script.steps.append(Step("ArmFunctionArn", ARM_S, wake="callback"))
            t = duration + WEBHOOK_DELAY_S + CALLBACK_S
            script.extra.append(("callback", CALLBACK_S))
            break
        script.steps.append(Step("ArmFunctionArn", ARM_S, wake="timeout"))
        t = armed_at + SLOW_POLL_S  # the token's timeout; Rearm (a Pass) takes no time
    t += POLL_FINAL_S  # the confirming /status look, outputs to S3
    script.steps.append(Step("PollFunctionArn", POLL_FINAL_S, {"job_id": "bench", "polls": 1, "done": True}))
    t += NOTIFY_S
    script.steps.append(Step("NotifyFunctionArn", NOTIFY_S, {}))
    script.seen_at = t
    # Arm pushes RunPod's IN_PROGRESS output when it changes: at most one message per look.
    script.ws_messages = _poll_messages(arms)
    return script


# --------------------------------------------------------------------------- the replay on moto

# The stream at the smallest Lambda size, to show how much of its cost is the idle socket.
MEMORY_OVERRIDES: dict[str, dict[str, int]] = {"comfy-stream-128": {"follow": 128}}
TASK_MEMORY = {
    "PollFunctionArn": "poll",
    "NotifyFunctionArn": "notify",
    "FollowFunctionArn": "follow",
    "ArmFunctionArn": "arm",
}


@dataclass
class Run:
    path: str
    duration: float
    transitions: int
    invocations: int
    gb_seconds: float
    seen_at: float
    ws_messages: int
    measured: str  # what the transition count comes from

    @property
    def dollars(self) -> float:
        return (
            self.transitions * PRICE_TRANSITION + self.invocations * PRICE_REQUEST + self.gb_seconds * PRICE_GB_SECOND
        )

    @property
    def dollars_with_ws(self) -> float:
        return self.dollars + self.ws_messages * PRICE_WS_MESSAGE


def replay(path: str, duration: float) -> Run:
    script = simulate(path, duration)
    pending = list(script.steps)
    lock = threading.Lock()
    current = path not in ("today", "fixed-2s")
    sfn_client: list[Any] = []

    def next_step(task: str) -> Step:
        with lock:
            if not pending:
                raise AssertionError(f"{path}: the ASL invoked {task} after the script ended")
            step = pending.pop(0)
        if step.task != task:
            raise AssertionError(f"{path}: the ASL invoked {task} where the model expected {step.task}")
        return step

    def handler(task: str) -> Callable[[dict[str, Any], Any], Any]:
        def run(event: dict[str, Any], _ctx: Any) -> Any:
            # The real ASL's Arm invokes the Poll function with the state's task token.
            step = next_step("ArmFunctionArn" if "task_token" in event else task)
            if step.task != "ArmFunctionArn":
                assert step.answer is not None
                # The real ASL lays each answer over the execution input; the old one does not.
                carried = {k: event[k] for k in ("executor", "arm_seconds") if k in event}
                return {**carried, **step.answer}
            if step.wake in ("self", "callback"):
                token = event["task_token"]
                # As the Arm Lambda (job over) or the webhook's handler (callback) will.
                output = json.dumps({"woken_by": "runpod_webhook" if step.wake == "callback" else "arm"})
                threading.Timer(0.02, lambda: sfn_client[0].send_task_success(taskToken=token, output=output)).start()
            return {"armed": True}

        return run

    tasks = {"PollFunctionArn": handler("PollFunctionArn"), "NotifyFunctionArn": handler("NotifyFunctionArn")}
    if current:
        tasks |= {"FollowFunctionArn": handler("FollowFunctionArn")}
    start: dict[str, Any] = {"job_id": "bench", "polls": 0, "follows": 0}
    if path == "today":
        start["wait_seconds"] = TODAY_START
    elif path == "fixed-2s":
        start["wait_seconds"] = 2
    elif path == "runpod-webhook":
        start |= {"executor": "runpod_webhook", "arm_seconds": ARM_WALL_S}
    elif path == "runpod-poll":
        start |= {"executor": "runpod_poll", "wait_seconds": fallback_wait(0)}
    else:
        start["executor"] = "comfyui"
    definition = DEFAULT_DEFINITION if current else previous_definition()
    with mock_aws(config=cast(Any, SFN_MOCK_CONFIG)), StateMachineHarness(definition, tasks=tasks) as sfn:
        sfn_client.append(boto3.client("stepfunctions", region_name="us-east-1"))
        arn = sfn.start(start)
        desc = sfn.wait(arn, timeout=600)
        if desc["status"] != "SUCCEEDED":
            ends = ("FailedEventDetails", "OutEventDetails")
            failures = [e[k] for e in sfn.history(arn) for k in e if k.endswith(ends)]
            last = sfn.states_entered(arn)[-8:]
            raise AssertionError(f"{path} {duration}s ended {desc['status']}: {last} {failures}")
        history = sfn.history(arn)
    # Billed transitions: every state entered, and every retry of a task (AWS counts retries).
    entered = sum(1 for e in history if e["type"].endswith("StateEntered"))
    retries = sum(1 for e in history if e["type"] == "TaskScheduled") - sum(
        1 for e in history if e["type"] == "TaskStateEntered"
    )
    if pending:
        raise AssertionError(f"{path}: the ASL ended with {len(pending)} scripted steps left")
    billed = [(TASK_MEMORY[s.task], s.billed_s) for s in script.steps] + script.extra
    memory = MEMORY_MB | MEMORY_OVERRIDES.get(path, {})
    gb_seconds = sum(memory[fn] / 1024 * math.ceil(seconds * 1000) / 1000 for fn, seconds in billed)
    return Run(
        path=path,
        duration=duration,
        transitions=entered + retries,
        invocations=len(billed),
        gb_seconds=gb_seconds,
        seen_at=script.seen_at,
        ws_messages=script.ws_messages,
        measured="job.asl.json" if current else "old ASL",
    )


def lateness(path: str, duration: float, samples: int = 400, seed: int = 10) -> tuple[float, float]:
    rng = random.Random(f"{seed}-{path}-{duration}")
    late = []
    for _ in range(samples):
        d = duration * rng.uniform(0.75, 1.25)
        late.append(simulate(path, d).seen_at - d)
    late.sort()
    return statistics.median(late), late[int(0.95 * (len(late) - 1))]


# --------------------------------------------------------------------------- the loopback measurement


def loopback_overhead(runs: int = 15) -> tuple[float, float, float]:
    """Median seconds for a tiny prompt on the loopback fake: POST + /history polled every 1 ms,
    and POST + follow_prompt (socket, one look, events to the end); and one keep-alive GET /queue,
    which dominates both on the fake. Measured, module level only."""
    import requests
    from fakes import FakeComfyUI

    from comfyroute.executors.comfyui import ComfyUIExecutor, websocket_url
    from comfyroute.executors.comfyui_stream import FollowConfig, SocketTarget, follow_prompt

    prompt: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}},
    }
    direct, followed, request = [], [], []
    with FakeComfyUI(run_seconds=0.004) as fake:
        session = requests.Session()
        executor = ComfyUIExecutor(fake.url, progress_peek_seconds=0)
        for i in range(runs):
            job = f"direct-{i}"
            t0 = time.perf_counter()
            session.post(f"{fake.url}/prompt", json={"prompt": prompt, "prompt_id": job, "client_id": "x"}, timeout=5)
            while not session.get(f"{fake.url}/history/{job}", timeout=5).json():
                time.sleep(0.001)
            direct.append(time.perf_counter() - t0)
            job = f"follow-{i}"
            t0 = time.perf_counter()
            executor.submit(prompt, job)
            target = SocketTarget(websocket_url(executor.base_url, executor.client_id_for(job)))
            result = follow_prompt(
                job,
                target=target,
                look=lambda job=job: executor.status(job),  # type: ignore[misc]
                on_event=lambda e: None,
                config=FollowConfig(window_seconds=10),
            )
            assert result.end.value == "finished", result
            followed.append(time.perf_counter() - t0)
        for _ in range(10):  # back to back on one keep-alive connection, as the loops above do
            t0 = time.perf_counter()
            session.get(f"{fake.url}/queue", timeout=5)
            request.append(time.perf_counter() - t0)
    return statistics.median(direct), statistics.median(followed), statistics.median(request)


# --------------------------------------------------------------------------- the dev stack, measured

TINY_PROMPT: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}},
}


def _direct(url: str, runs: int) -> list[float]:
    """POST /prompt + /history polled every 1 ms, on one keep-alive session: ComfyUI alone."""
    import uuid

    import requests

    times = []
    with requests.Session() as session:
        for i in range(runs):
            prompt = json.loads(json.dumps(TINY_PROMPT))
            prompt["1"]["inputs"]["color"] = (i * 7919 + int(time.time())) % 0xFFFFFF  # never cached
            job = str(uuid.uuid4())
            t0 = time.perf_counter()
            session.post(f"{url}/prompt", json={"prompt": prompt, "prompt_id": job, "client_id": "bench"}, timeout=10)
            while not session.get(f"{url}/history/{job}", timeout=10).json():
                time.sleep(0.001)
            times.append(time.perf_counter() - t0)
    return times


def devstack_ratio(comfy_url: str | None = None, runs: int = 10) -> dict[str, Any]:
    """A tiny job through ``comfyroute dev`` (run_job -> terminal job_update over the real
    WebSocket, Follow streaming, real ASL on moto) against the same job on ComfyUI directly.
    ``comfy_url``: a real ComfyUI; else a loopback FakeComfyUI. Measured, medians."""
    import asyncio
    import contextlib

    from fakes import FakeComfyUI

    from comfyroute_tools.client import ComfyrouteClient
    from comfyroute_tools.dev.stack import DevStack

    async def through_stack(ws_url: str, token: str) -> list[tuple[float, float, int, int]]:
        out = []
        async with ComfyrouteClient(ws_url, token, poll_interval=600) as client:
            for i in range(runs + 1):  # the first warms the handlers (cold imports)
                prompt = json.loads(json.dumps(TINY_PROMPT))
                prompt["1"]["inputs"]["color"] = (i * 104729 + int(time.time())) % 0xFFFFFF
                seen: list[Any] = []
                t0 = time.perf_counter()
                job_id = await client.run_job(prompt=prompt)
                accepted = time.perf_counter() - t0
                result = await client.follow(job_id, timeout=60, on_message=seen.append)
                total = time.perf_counter() - t0
                assert result.ok, result.error
                nodes = sum(1 for m in seen if m.type == "node_update")
                steps = sum(1 for m in seen if m.type == "node_progress")
                if i:
                    out.append((total, accepted, nodes, steps))
        return out

    with contextlib.ExitStack() as stack:
        url = comfy_url or stack.enter_context(FakeComfyUI(run_seconds=0.004)).url
        addr = url.split("://", 1)[1]
        dev = stack.enter_context(DevStack("127.0.0.1", 0, comfyui_addr=addr, handler_log_level="ERROR"))
        direct = _direct(url, runs)
        staged = asyncio.run(through_stack(dev.ws_url, dev.token))
    total = statistics.median(t for t, _, _, _ in staged)
    return {
        "comfyui": "real ComfyUI" if comfy_url else "FakeComfyUI",
        "direct_ms": statistics.median(direct) * 1000,
        "stack_ms": total * 1000,
        "accepted_ms": statistics.median(a for _, a, _, _ in staged) * 1000,
        "ratio": total / statistics.median(direct),
        "node_updates": staged[-1][2],
        "progress": staged[-1][3],
        "runs": runs,
    }


# --------------------------------------------------------------------------- the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s and 60 s jobs only")
    parser.add_argument("--no-loopback", action="store_true", help="skip the loopback measurement")
    parser.add_argument("--no-devstack", action="store_true", help="skip the dev-stack measurement")
    parser.add_argument("--devstack-only", action="store_true", help="only the dev-stack measurement")
    parser.add_argument("--comfy", help="also measure against this real ComfyUI (http://127.0.0.1:PORT)")
    args = parser.parse_args()
    if args.devstack_only:
        report_devstack(args.comfy)
        return
    durations = (10.0, 60.0) if args.quick else (10.0, 60.0, 600.0)
    paths = ("today", "fixed-2s", "comfy-stream", "comfy-stream-128", "comfy-fallback", "runpod-webhook", "runpod-poll")
    print("Prices: AWS list, us-east-1 (2025): Step Functions Standard $0.025/1k transitions; Lambda arm64")
    print("$0.0000133334/GB-s + $0.20/M requests; API Gateway WebSocket $1.00/M messages. Free tiers ignored.")
    print(
        f"Model: Poll {MEMORY_MB['poll']} MB (running look {POLL_RUNNING_S * 1000:.0f} ms, with peek "
        f"{POLL_PEEK_S * 1000:.0f} ms: measured by the issue; final {POLL_FINAL_S * 1000:.0f} ms assumed), Follow "
        f"{MEMORY_MB['follow']} MB for its whole window ({FOLLOW_WINDOW_S:.0f} s), Arm {MEMORY_MB['arm']} MB, "
        f"slow poll {SLOW_POLL_S} s, fallback waits {', '.join(str(fallback_wait(n)) for n in range(9))} ..."
    )
    print(
        "Transitions (states entered + task retries, as billed): measured by running the ASL on moto\n"
        f"(the ASL before issue 10, {PREVIOUS_COMMIT}: today, fixed-2s; statemachine/job.asl.json: the rest)."
    )
    print("Lambda GB-s, invocations, WebSocket messages, lateness: modelled (see the constants in this file).")
    print()
    header = (
        f"{'path':<15} {'job':>5} | {'ASL':<11} | {'transitions':>11} | {'Lambda inv':>10} | {'GB-s':>7} | "
        f"{'$/1k jobs':>9} | {'ws msgs':>7} | {'$/1k +ws':>8} | {'late p50':>8} | {'late p95':>8}"
    )
    print(header)
    print("-" * len(header))
    for duration in durations:
        for path in paths:
            run = replay(path, duration)
            p50, p95 = lateness(path, duration)
            print(
                f"{path:<15} {duration:>4.0f}s | {run.measured:<11} | {run.transitions:>11} | "
                f"{run.invocations:>10} | {run.gb_seconds:>7.2f} | {run.dollars * 1000:>9.3f} | "
                f"{run.ws_messages:>7} | {run.dollars_with_ws * 1000:>8.3f} | {p50:>7.2f}s | {p95:>7.2f}s"
            )
        print()
    if not args.no_loopback:
        direct, followed, request = loopback_overhead()
        print(
            f"Measured on this machine, loopback FakeComfyUI, tiny prompt (median of 15): POST + /history every 1 ms "
            f"{direct * 1000:.1f} ms; POST + follow_prompt {followed * 1000:.1f} ms ({followed / direct:.1f}x).\n"
            f"Back-to-back keep-alive GET /queue on the fake: median {request * 1000:.1f} ms each (dominates both). "
            "Module level only: no Lambda, no Step Functions."
        )
    if not args.no_devstack:
        report_devstack(args.comfy)


def report_devstack(comfy_url: str | None) -> None:
    print()
    print("Measured: a tiny job (64x64 EmptyImage -> ImageInvert -> SaveImage) through `comfyroute dev`")
    print("(run_job -> terminal job_update on the WebSocket; Follow on ComfyUI's /ws; real ASL on moto)")
    print("against POST /prompt + /history every 1 ms on ComfyUI directly; medians, first job excluded.")
    for url in [None, comfy_url] if comfy_url else [None]:
        m = devstack_ratio(url)
        print(
            f"  {m['comfyui']:<12}: direct {m['direct_ms']:.1f} ms, dev stack {m['stack_ms']:.0f} ms "
            f"(run_job answered after {m['accepted_ms']:.0f} ms): {m['ratio']:.1f}x over {m['runs']} runs; "
            f"node_update {m['node_updates']}, node_progress {m['progress']} per job"
        )


if __name__ == "__main__":
    main()
