"""worker-comfyui's ``handler()``: its input checks and messages, input images uploaded, the
prompt queued, history awaited, images fetched from ``/view`` and returned in the 5.x
(``images[]``) or 2.x-4.x (``message``) output format. ``error`` in the result fails the job."""

from __future__ import annotations

import base64
import json
import posixpath
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from .comfy import ComfyPort
from .jobs import Job

OutputFormat = Literal["v5", "v4", "v4-bare"]
V4_OUTPUT_PATH = "/comfyui/output"  # where worker-comfyui 2.x-4.x looked for images
# Hands an image back as the worker would: ("base64", data) or ("s3_url", url).
Deliver = Callable[[Job, str, bytes], tuple[str, str]]


def queue_error_message(status: int, text: str) -> str:
    """worker-comfyui 5.x's wording for a prompt ComfyUI refused (handler.queue_workflow)."""
    if status != 400:
        return f"Error queuing workflow: {status} Server Error"
    try:
        data = json.loads(text)
    except ValueError:
        return f"ComfyUI validation failed (could not parse error response): {text}"
    message = "Workflow validation failed"
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message", message)
        if error.get("type") == "prompt_outputs_failed_validation":
            message = "Workflow validation failed"
    elif error is not None:
        message = str(error)
    details: list[str] = []
    for node_id, node_error in data.get("node_errors", {}).items():
        if isinstance(node_error, dict):
            details.extend(f"Node {node_id} ({key}): {value}" for key, value in node_error.items())
        else:
            details.append(f"Node {node_id}: {node_error}")
    if details:
        return f"{message}:\n" + "\n".join(f"• {detail}" for detail in details)
    return f"{message}. Raw response: {text}"


class Worker:
    """One endpoint's worker: ``run(job)`` is its handler() for that job."""

    def __init__(self, comfy: ComfyPort, output_format: OutputFormat, deliver: Deliver) -> None:
        self.comfy = comfy
        self.output_format = output_format
        self.deliver = deliver

    def run(self, job: Job) -> dict[str, Any]:
        """The handler's result dict; raises Stopped if the job is stopped while it waits."""
        data = job.input
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return {"error": "Invalid JSON format in input"}
        if data is None:
            return {"error": "Please provide input"}
        if not isinstance(data, dict) or data.get("workflow") is None:
            return {"error": "Missing 'workflow' parameter"}
        images = data.get("images")
        if images is not None and (
            not isinstance(images, list)
            or not all(isinstance(i, dict) and "name" in i and "image" in i for i in images)
        ):
            return {"error": "'images' must be a list of objects with 'name' and 'image' keys"}
        upload_errors = []
        for image in images or []:
            try:
                blob = base64.b64decode(str(image["image"]).split(",", 1)[-1], validate=True)
            except ValueError as exc:
                upload_errors.append(f"Error decoding base64 for {image['name']}: {exc}")
                continue
            if (problem := self.comfy.upload(str(image["name"]), blob)) is not None:
                upload_errors.append(problem)
        if upload_errors:
            return {"error": "Failed to upload one or more input images", "details": upload_errors}

        status, text = self.comfy.queue(data["workflow"], str(uuid.uuid4()))
        if status != 200:
            if self.output_format == "v5":
                return {"error": queue_error_message(status, text)}
            return {"error": f"Error queuing workflow: HTTP Error {status}: Bad Request"}
        prompt_id = json.loads(text)["prompt_id"]
        job.comfy_prompt_id = prompt_id
        entry = self._await_history(job, prompt_id)
        if self.output_format == "v5":
            return self._v5_result(job, prompt_id, entry)
        return self._v4_result(job, entry)

    def _await_history(self, job: Job, prompt_id: str) -> dict[str, Any]:
        while True:
            entry = self.comfy.history(prompt_id).get(prompt_id)
            if entry is not None:
                return dict(entry)
            job.wait_until(time.monotonic() + 0.01)

    def _v5_result(self, job: Job, prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        errors: list[str] = []
        for name, info in entry.get("status", {}).get("messages", []):
            if name == "execution_error":
                errors.append(
                    "Workflow execution error: "
                    f"Node Type: {info.get('node_type')}, Node ID: {info.get('node_id')}, "
                    f"Message: {info.get('exception_message')}"
                )
        outputs = entry.get("outputs", {})
        if not outputs and not errors:
            errors.append(f"No outputs found in history for prompt {prompt_id}.")
        images = []
        for node_output in outputs.values():
            for image in node_output.get("images", []):
                if image.get("type") == "temp":  # the worker skips previews
                    continue
                blob = self.comfy.view(image["filename"], image.get("subfolder", ""), image.get("type", "output"))
                if blob is None:
                    errors.append(f"Failed to fetch image data for {image['filename']} from /view endpoint.")
                    continue
                kind, data = self.deliver(job, image["filename"], blob)
                images.append({"filename": image["filename"], "type": kind, "data": data})
        result: dict[str, Any] = {}
        if images:
            result["images"] = images
        if errors:
            result["errors"] = errors
        if not images and errors:
            return {"error": "Job processing failed", "details": errors}
        if not images:
            result["status"] = "success_no_images"
            result["images"] = []
        return result

    def _v4_result(self, job: Job, entry: dict[str, Any]) -> dict[str, Any]:
        outputs = entry.get("outputs", {})
        if not outputs:  # the old worker polled history until its retries ran out
            return {"error": "Max retries reached while waiting for image generation"}
        last: dict[str, Any] | None = None
        for node_output in outputs.values():
            for image in node_output.get("images", []):
                last = image
        if last is None:
            return {
                "status": "error",
                "message": f"the image does not exist in the specified output folder: {V4_OUTPUT_PATH}/",
            }
        path = posixpath.join(last.get("subfolder", ""), last["filename"])
        blob = (
            self.comfy.view(last["filename"], last.get("subfolder", ""), "output")
            if last.get("type") == "output"
            else None
        )
        if blob is None:
            message = f"the image does not exist in the specified output folder: {V4_OUTPUT_PATH}/{path}"
            return {"status": "error", "message": message}
        kind, data = self.deliver(job, last["filename"], blob)
        if kind == "base64" and self.output_format == "v4":
            data = f"data:image/png;base64,{data}"
        return {"status": "success", "message": data}
