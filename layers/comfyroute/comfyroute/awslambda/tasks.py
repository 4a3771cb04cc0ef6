"""The handlers of the state machine's tasks (poll, notify): the event in, the model's JSON out.

An exception here is meant to reach Step Functions, whose Retry and Catch match its class name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from comfyroute.awslambda.instrument import Handler, instrument, logger
from comfyroute.awslambda.wiring import Port, get_ports, preload

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from comfyroute.ports import Ports


class _Event(BaseModel):
    # Each task's function validates one of these: the others are never built.
    model_config = ConfigDict(defer_build=True)


class PollEvent(_Event):
    job_id: str
    polls: int = 0
    # Set by the Arm state (waitForTaskToken): store it and wait for RunPod's webhook.
    task_token: str | None = None


class FollowEvent(_Event):
    job_id: str
    follows: int = 0


class NotifyEvent(_Event):
    job_id: str
    final: bool = False
    failure: dict[str, Any] | None = None


E = TypeVar("E", PollEvent, NotifyEvent, FollowEvent)


def task_handler(event_model: type[E], task: Callable[[Ports, E], BaseModel], *, uses: Iterable[Port]) -> Handler:
    """A handler running ``task`` on the validated event; ``uses`` names the ports it uses."""
    preload(uses)

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ev = event_model.model_validate(event)
        logger.append_keys(job_id=ev.job_id)
        return task(get_ports(), ev).model_dump(mode="json")

    return instrument(handler)
