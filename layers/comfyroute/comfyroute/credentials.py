"""A user's executor credentials: the JSON of their secret in Secrets Manager."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from comfyroute.defaults import COMFYUI_ADDR


class CredentialsError(Exception):
    """The user's secret exists but cannot be used; the message names the secret, never its values."""


class Credentials(BaseModel):
    """A user's executor credentials: the JSON of secret ``{prefix}/users/{user_id}``."""

    # Built on first use: only a job that reaches its executor reads the secret.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True, defer_build=True)

    comfyui_addr: str = Field(default=COMFYUI_ADDR, alias="COMFYUI_ADDR")
    comfyui_headers: dict[str, SecretStr] = Field(default_factory=dict, alias="COMFYUI_HEADERS")
    runpod_api_key: SecretStr | None = Field(default=None, alias="RUNPOD_API_KEY")

    @field_validator("comfyui_headers", mode="before")
    @classmethod
    def _headers_from_json(cls, v: Any) -> Any:
        # Secrets Manager's console stores flat strings, so the headers may be JSON text.
        if isinstance(v, str):
            v = v.strip()
            if not v:
                return {}
            try:
                return json.loads(v)
            except json.JSONDecodeError:
                raise ValueError("COMFYUI_HEADERS must be a JSON object of header names to values") from None
        return v

    @field_validator("comfyui_addr", mode="before")
    @classmethod
    def _blank_addr(cls, v: Any) -> Any:
        return COMFYUI_ADDR if v in (None, "") else v

    # Loaded from the deployment's default secret (or the built-in defaults), not the user's own:
    # its ComfyUI is shared, and its address is not the user's to see.
    shared: bool = Field(default=False, exclude=True)

    def secret_values(self) -> list[str]:
        """Every value that must never leave in a message or a log line."""
        values = list(self.header_values().values())
        if self.runpod_api_key is not None:
            values.append(self.runpod_api_key.get_secret_value())
        return values

    def header_values(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.comfyui_headers.items()}
