"""Records to DynamoDB items and back: Decimal numbers, no None values, no empty writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

CONDITION_FAILED = "ConditionalCheckFailedException"

_deserializer = TypeDeserializer()


def to_item(record: Any) -> dict[str, Any]:
    """A pydantic model or a NamedTuple as a DynamoDB item: floats as Decimal, None values left out."""
    if isinstance(record, tuple) and hasattr(record, "_asdict"):
        return {k: to_value(v) for k, v in record._asdict().items() if v is not None}
    return json.loads(record.model_dump_json(exclude_none=True), parse_float=Decimal)  # type: ignore[no-any-return]


def to_value(value: Any) -> Any:
    """One attribute value as the boto3 resource API takes it."""
    if hasattr(value, "model_dump_json"):
        return to_item(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_value(v) for v in value]
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return json.loads(json.dumps(value), parse_float=Decimal)
    return value


def plain(value: Any) -> Any:
    """An item as boto3 returns it, with Decimals back as int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def from_wire(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item in the low-level wire format (``{"S": ...}``), as in a ``ClientError``'s ``Item``."""
    return {k: plain(_deserializer.deserialize(v)) for k, v in item.items()}
