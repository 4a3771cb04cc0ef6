"""RunPod's webhook (a Lambda function URL): a callback with the job's secret wakes the job's
wait; anything else is one 404. The body is a hint only (the next step asks RunPod)."""

from typing import Any

from comfyroute.awslambda.instrument import instrument
from comfyroute.awslambda.wiring import get_ports, preload
from comfyroute.jobs.webhook import callback_request, handle_callback

preload(("jobs", "state_machine"))


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method, path, body = callback_request(event)
    return handle_callback(get_ports(), method, path, body).model_dump()


handler = instrument(_handler)
