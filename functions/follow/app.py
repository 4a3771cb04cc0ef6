"""State machine task: follow a ComfyUI job on its /ws for one window, pushing node updates,
sampler progress and outputs as they happen (and the terminal update when it ends)."""

from comfyroute.awslambda.tasks import FollowEvent, task_handler
from comfyroute.jobs.follow_stream import follow_job

handler = task_handler(
    FollowEvent,
    lambda ports, ev: follow_job(ports, ev.job_id, ev.follows),
    uses=("jobs", "executors", "outputs", "connections", "pusher"),
)
