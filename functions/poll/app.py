"""State machine task: one look at the job on its executor."""

from comfyroute.awslambda.tasks import PollEvent, task_handler
from comfyroute.jobs.follow import poll_job

handler = task_handler(
    PollEvent,
    lambda ports, ev: poll_job(ports, ev.job_id, ev.polls),
    uses=("jobs", "executors", "outputs"),
)
