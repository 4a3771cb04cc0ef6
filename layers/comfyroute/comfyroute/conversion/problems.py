"""What went wrong converting a workflow: one structured problem per node / input, and the error.

A ``ConversionProblem`` names where the problem is (``node_id``, ``class_type``, ``input``, each
optional) and what it is (``message``). ``GraphError`` carries the list: ``details`` for clients
that show problems next to nodes (the wire's ``{node_id, class_type, input, message}``),
``problems`` as readable lines, and ``str()`` as one bounded line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

# Messages go back to clients over a 128 KB WebSocket frame: keep any one of them bounded.
MAX_SHOWN = 50


class ConversionProblem(BaseModel):
    """One problem of a workflow; ``node_id`` is the prompt's id (``"5"``, or ``"11:10:6"`` inside subgraphs)."""

    model_config = ConfigDict(frozen=True)

    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    message: str

    def text(self) -> str:
        """``node 5 (KSampler) input 'seed': message``; only the parts that are known."""
        where = ""
        if self.node_id is not None:
            where = f"node {self.node_id}"
            if self.class_type:
                where += f" ({self.class_type})"
        elif self.class_type:
            where = self.class_type
        if self.input is not None:
            where += f"{' ' if where else ''}input '{self.input}'"
        return f"{where}: {self.message}" if where else self.message


class GraphError(ValueError):
    """A workflow or prompt that cannot be run; every problem found, not only the first."""

    def __init__(self, problems: Iterable[str | ConversionProblem]) -> None:
        details = [p if isinstance(p, ConversionProblem) else ConversionProblem(message=p) for p in problems]
        self.details: list[ConversionProblem] = details or [ConversionProblem(message="invalid workflow")]
        self.problems: list[str] = [p.text() for p in self.details]
        super().__init__(self.problems)

    def __str__(self) -> str:
        shown = self.problems[:MAX_SHOWN]
        rest = len(self.problems) - len(shown)
        return "; ".join(shown) + (f"; and {rest} more problems" if rest > 0 else "")

    def __repr__(self) -> str:
        return f"GraphError({self.problems[:MAX_SHOWN]!r})"

    def details_json(self, limit: int = MAX_SHOWN) -> list[dict[str, Any]]:
        """The first ``limit`` problems as JSON objects (absent parts are null), for the wire."""
        return [p.model_dump(mode="json") for p in self.details[:limit]]
