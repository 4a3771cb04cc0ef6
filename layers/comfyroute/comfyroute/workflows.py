"""Saved workflows: a user's graph, API prompt or ComfyUI editor workflow and its executor
settings, by workflow id. An editor workflow is kept as saved and converted when it runs, with
the schemas of the executor it runs on then."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_serializer, field_validator

from comfyroute import messages
from comfyroute.protocol.workflow_commands import ExecutorSettings, SaveWorkflowData

if TYPE_CHECKING:
    from comfyroute.ports import Caller, Ports


class WorkflowRecord(BaseModel):
    user_id: str
    workflow_id: str
    name: str | None = None
    graph_json: str | None = None
    prompt_json: str | None = None
    workflow_json: str | None = None  # a ComfyUI editor workflow, as the client sent it
    # As ExecutorSettings.stored() gives them: the keys that were set, other settings included.
    settings: dict[str, Any] = Field(default_factory=dict)
    updated_at: float

    # Stored as JSON text: the keys and numbers are the client's, and DynamoDB refuses some of
    # both in a map (empty keys, numbers past 38 digits or 1e125).
    @field_validator("settings", mode="before")
    @classmethod
    def _settings_from_text(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    @field_serializer("settings", when_used="json")
    def _settings_as_text(self, v: dict[str, Any]) -> str:
        return json.dumps(v, separators=(",", ":"))

    @property
    def executor_settings(self) -> ExecutorSettings:
        return ExecutorSettings.model_validate(self.settings)


def save_workflow(ports: Ports, caller: Caller, data: SaveWorkflowData) -> None:
    """Store the workflow; settings merge key by key into those already saved, and a save
    without a graph, prompt or editor workflow keeps the saved one."""
    existing = ports.workflows.get(caller.user_id, data.workflow_id)
    base = existing.executor_settings if existing else ExecutorSettings()
    settings = base.merged(data.settings).stored()
    graph_json = data.graph.model_dump_json() if data.graph is not None else None
    prompt_json = json.dumps(data.prompt) if data.prompt is not None else None
    workflow_json = data.workflow.model_dump_json() if data.workflow is not None else None
    if graph_json is None and prompt_json is None and workflow_json is None and existing is not None:
        graph_json, prompt_json, workflow_json = existing.graph_json, existing.prompt_json, existing.workflow_json
    ports.workflows.put(
        WorkflowRecord(
            user_id=caller.user_id,
            workflow_id=data.workflow_id,
            name=data.name or (existing.name if existing else None),
            graph_json=graph_json,
            prompt_json=prompt_json,
            workflow_json=workflow_json,
            settings=settings,
            updated_at=time.time(),
        )
    )
    messages.reply(ports, caller, messages.workflow_saved(data.workflow_id, settings))
