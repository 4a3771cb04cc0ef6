"""State machine task: one look at the job on its executor; with a task token (the Arm state),
the start of a wait for RunPod's webhook."""

from pydantic import BaseModel

from comfyroute.awslambda.tasks import PollEvent, task_handler
from comfyroute.jobs.follow import poll_job
from comfyroute.jobs.webhook import arm_job
from comfyroute.ports import Ports


def _task(ports: Ports, ev: PollEvent) -> BaseModel:
    if ev.task_token is not None:
        return arm_job(ports, ev.job_id, ev.task_token)
    return poll_job(ports, ev.job_id, ev.polls)


handler = task_handler(
    PollEvent,
    _task,
    uses=("jobs", "executors", "outputs", "state_machine", "connections", "pusher"),
)
