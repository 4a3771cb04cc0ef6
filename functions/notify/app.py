"""State machine task: push job_update / node_progress / output_update to the job's client."""

from comfyroute.awslambda.tasks import NotifyEvent, task_handler
from comfyroute.jobs.notify import notify_job

handler = task_handler(
    NotifyEvent,
    lambda ports, ev: notify_job(ports, ev.job_id, final=ev.final, failure=ev.failure),
    uses=("jobs", "connections", "outputs", "pusher", "message_log"),
)
