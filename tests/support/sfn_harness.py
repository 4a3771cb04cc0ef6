"""Run the real ``statemachine/job.asl.json`` under moto, with its Lambda tasks answered by
Python callables in this process.

moto (``execute_state_machine``) interprets the definition with the same ASL interpreter as
LocalStack; a ``arn:aws:states:::lambda:invoke`` task becomes a boto3 ``Lambda.Invoke`` call
that moto routes to its Lambda backend. The harness replaces that backend's ``invoke`` for the
function ARNs it owns, so no Docker and no deployed function is involved, and it answers the
way the Lambda service does:

* a returned value becomes the response payload (JSON);
* a raised exception becomes ``FunctionError: Unhandled`` with the Python runtime's payload
  ``{"errorMessage", "errorType", "requestId", "stackTrace"}``; Step Functions takes
  ``errorType`` (the exception's class name) as the task's ``Error``, so ``Retry`` / ``Catch``
  on names like ``ExecutorUnavailable`` behave as deployed.

Time is taken out: ``Wait`` states and ``Retry`` back-off sleeps return at once, and the seconds
they asked for are recorded (``waits``, ``retry_sleeps``) so tests can still check them.

Use inside an active ``mock_aws(config=SFN_MOCK_CONFIG)``::

    with mock_aws(config=SFN_MOCK_CONFIG), StateMachineHarness(tasks={...}) as sfn:
        arn = sfn.start({"job_id": "j1", "polls": 0, "wait_seconds": 0})
        assert sfn.wait(arn)["status"] == "SUCCEEDED"
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any
from unittest import mock

import boto3
from moto.core.config import default_user_config
from moto.core.models import botocore_stubber
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

from comfyroute_tools.dev.asl import load_definition, placeholders
from comfyroute_tools.dev.asl_cache import cache_asl_programs
from comfyroute_tools.dev.lambdas import FunctionRegistry, InProcessFunction, function_name_of, patch_moto_invoke

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEFINITION = REPO_ROOT / "statemachine" / "job.asl.json"
SFN_MOCK_CONFIG: dict[str, Any] = {"stepfunctions": {"execute_state_machine": True}}
ACCOUNT_ID = "123456789012"

TaskHandler = Callable[[dict[str, Any], Any], Any]
_FINISHED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class Invocation:
    task: str  # the substitution key, e.g. "PollFunctionArn"
    payload: dict[str, Any]
    error: str | None  # errorType when the callable raised


def function_arn(key: str, region: str = "us-east-1", account_id: str = ACCOUNT_ID) -> str:
    """A stable fake Lambda ARN for a substitution key: PollFunctionArn -> ...:function:harness-poll."""
    short = key.removesuffix("FunctionArn").lower() or key.lower()
    return f"arn:aws:lambda:{region}:{account_id}:function:harness-{short}"


class StateMachineHarness:
    """The real job state machine on moto, its Lambda tasks dispatched to Python callables."""

    def __init__(
        self,
        definition_path: str | Path = DEFAULT_DEFINITION,
        tasks: Mapping[str, TaskHandler] | None = None,
        substitutions: Mapping[str, str] | None = None,
        *,
        region: str = "us-east-1",
    ) -> None:
        self.definition_path = Path(definition_path)
        self.region = region
        self._tasks: dict[str, TaskHandler] = dict(tasks or {})
        text = self.definition_path.read_text(encoding="utf-8")
        # Every "...FunctionArn" placeholder gets a fake ARN, registered or not: an unregistered
        # one reaches moto's own Lambda backend and fails like a missing function would.
        used = placeholders(text)
        unknown = set(self._tasks) - used
        if unknown:
            raise ValueError(f"tasks name no placeholder of {self.definition_path.name}: {sorted(unknown)}")
        subs: dict[str, str] = {key: function_arn(key, region) for key in used if key.endswith("FunctionArn")}
        subs.update(substitutions or {})
        self.substitutions = subs
        self.definition = load_definition(subs, self.definition_path)
        # function name -> task key, for dispatch.
        self._registry = FunctionRegistry()
        for key, handler in self._tasks.items():
            self._registry.add(
                InProcessFunction(
                    name=function_name_of(subs[key]),
                    handler=self._recording(key, handler),
                    arn=subs[key],
                    timeout_seconds=60,
                )
            )
        self._lock = threading.Lock()
        self._calls: list[Invocation] = []
        self.waits: list[int] = []
        self.retry_sleeps: list[float] = []
        self._stack = ExitStack()
        self._sfn: Any = None
        self.state_machine_arn = ""

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> StateMachineHarness:
        if not botocore_stubber.enabled:
            raise RuntimeError("StateMachineHarness must run inside an active mock_aws(config=SFN_MOCK_CONFIG)")
        if not default_user_config.get("stepfunctions", {}).get("execute_state_machine", False):
            raise RuntimeError(
                "moto does not execute state machines: use mock_aws(config=SFN_MOCK_CONFIG), "
                'i.e. {"stepfunctions": {"execute_state_machine": True}}'
            )
        try:
            self._patch_moto()
            self._sfn = boto3.client("stepfunctions", region_name=self.region)
            created = self._sfn.create_state_machine(
                name=f"harness-job-{uuid.uuid4().hex[:8]}",
                definition=self.definition,
                roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/harness-statemachine",
                type="STANDARD",
            )
            self.state_machine_arn = created["stateMachineArn"]
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _patch_moto(self) -> None:
        # The same Lambda dispatch the dev stack uses: comfyroute_tools.dev.lambdas.
        self._stack.enter_context(patch_moto_invoke(self._registry))
        self._stack.enter_context(cache_asl_programs())

        def no_wait(_self: WaitFunction, env: Any, wait_seconds: int) -> None:
            self.waits.append(wait_seconds)

        self._stack.enter_context(mock.patch.object(WaitFunction, "_wait_interval", no_wait))
        # retrier_decl calls time.sleep(interval); swap its `time` for one that only records,
        # leaving time.sleep alone for every other thread.
        self._stack.enter_context(
            mock.patch.object(retrier_decl, "time", SimpleNamespace(sleep=self.retry_sleeps.append))
        )

    # -- Lambda dispatch ---------------------------------------------------------------------

    def _recording(self, key: str, handler: TaskHandler) -> TaskHandler:
        """``handler`` that also records what it received and whether it raised."""

        def record(event: dict[str, Any], context: Any) -> Any:
            try:
                result = handler(event, context)
            except Exception as exc:
                self._record(Invocation(task=key, payload=copy.deepcopy(event), error=type(exc).__name__))
                raise
            self._record(Invocation(task=key, payload=copy.deepcopy(event), error=None))
            return result

        return record

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self._calls.append(invocation)

    # -- the API tests use -------------------------------------------------------------------

    def start(self, input: dict[str, Any], name: str | None = None) -> str:
        """Start an execution; returns its ARN."""
        resp = self._sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or f"exec-{uuid.uuid4().hex[:12]}",
            input=json.dumps(input),
        )
        return str(resp["executionArn"])

    def wait(self, execution_arn: str, timeout: float = 30) -> dict[str, Any]:
        """describe_execution once the execution has finished; TimeoutError naming the last state if not."""
        deadline = time.monotonic() + timeout
        while True:
            desc: dict[str, Any] = self._sfn.describe_execution(executionArn=execution_arn)
            if desc["status"] in _FINISHED:
                return desc
            if time.monotonic() > deadline:
                entered = [
                    e["stateEnteredEventDetails"]["name"]
                    for e in self.history(execution_arn)
                    if "stateEnteredEventDetails" in e
                ]
                raise TimeoutError(
                    f"execution {execution_arn} still {desc['status']} after {timeout}s; "
                    f"states entered: {entered[-10:]}"
                )
            time.sleep(0.005)

    def stop(self, execution_arn: str, error: str = "Stopped", cause: str = "") -> None:
        self._sfn.stop_execution(executionArn=execution_arn, error=error, cause=cause)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every history event of the execution, oldest first."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self._sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def states_entered(self, execution_arn: str) -> list[str]:
        """The names of the states the execution entered, in order."""
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(execution_arn)
            if "stateEnteredEventDetails" in e
        ]

    def invocations(self, task: str) -> list[dict[str, Any]]:
        """The payloads task ``task`` (a substitution key) received, in order."""
        with self._lock:
            return [copy.deepcopy(c.payload) for c in self._calls if c.task == task]

    def calls(self) -> list[Invocation]:
        """Every task invocation across tasks, in order."""
        with self._lock:
            return list(self._calls)

    def sequence(self) -> list[str]:
        """Task keys in invocation order, with ``!ErrorType`` appended where the callable raised."""
        return [c.task + (f"!{c.error}" if c.error else "") for c in self.calls()]
