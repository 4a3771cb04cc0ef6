"""The bases of every wire model: commands forbid keys they do not know; the workflow shapes
they carry keep them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


# Every model builds its validator on first use, not at import: each handler uses a few of
# these models (the default route only ping, pong and error), and building all of them would
# be a good part of every cold start.
class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class OpenWireModel(BaseModel):
    # Graph payloads come from editors that add their own keys (position, ui state, ...):
    # keep them, ignore them.
    model_config = ConfigDict(extra="allow", defer_build=True)
