"""The job state machine definition (``statemachine/job.asl.json``) with its placeholders filled.

CloudFormation fills ``${Name}`` placeholders from ``DefinitionSubstitutions`` by plain text
replacement. It documents them for string values, so every placeholder sits inside a JSON
string and the file is valid JSON as it stands (editors, validators and ``DefinitionUri``'s S3
upload read it unfilled); numbers the loop needs travel in the execution input instead. The dev
stack and the tests need the filled definition without CloudFormation, so this module checks the
file is JSON, does the replacement the same way and checks the result again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The repository root is three levels above this file's folder (tools/comfyroute_tools/dev/).
DEFAULT_DEFINITION_PATH = Path(__file__).resolve().parents[3] / "statemachine" / "job.asl.json"

# CloudFormation's placeholder syntax; JSONPath strings ("$.job_id") never contain "${".
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")

# The placeholders template.yaml fills; the dev stack must give the same set.
REQUIRED_SUBSTITUTIONS: frozenset[str] = frozenset({"PollFunctionArn", "FollowFunctionArn", "NotifyFunctionArn"})


class DefinitionError(ValueError):
    """The state machine definition could not be filled in or is not valid JSON."""


def placeholders(text: str) -> set[str]:
    """The ``${Name}`` placeholder names used in a definition text."""
    return set(_PLACEHOLDER.findall(text))


def substitute(text: str, substitutions: Mapping[str, str]) -> str:
    """Replace every ``${Name}`` in ``text``; unknown names are an error, not left in place."""
    missing = sorted(placeholders(text) - substitutions.keys())
    if missing:
        raise DefinitionError(f"state machine definition needs substitutions for: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(substitutions[m.group(1)]), text)


def load_definition(substitutions: Mapping[str, str], path: str | Path = DEFAULT_DEFINITION_PATH) -> str:
    """The definition at ``path`` with ``substitutions`` applied, as JSON text for CreateStateMachine."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"cannot read state machine definition {source}: {exc}") from exc
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"state machine definition {source} is not valid JSON before substitution (placeholders "
            f"belong inside JSON strings): {exc}"
        ) from exc
    filled = substitute(text, substitutions)
    try:
        json.loads(filled)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"state machine definition {source} is not valid JSON after substitution: {exc}") from exc
    return filled


def load_definition_dict(
    substitutions: Mapping[str, str], path: str | Path = DEFAULT_DEFINITION_PATH
) -> dict[str, Any]:
    """Like :func:`load_definition`, parsed."""
    parsed: dict[str, Any] = json.loads(load_definition(substitutions, path))
    return parsed
