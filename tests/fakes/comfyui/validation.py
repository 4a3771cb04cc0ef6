"""A port of ComfyUI's ``execution.validate_prompt`` / ``validate_inputs``: the same rules and
the same error shapes as the recorded ``err_*`` answers of ``POST /prompt``."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Validation:
    ok: bool
    error: dict[str, Any] | None
    outputs: list[str]
    node_errors: dict[str, Any]


def error_body(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _type_matches(received: Any, expected: Any) -> bool:
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    if "*" in (received, expected):
        return True
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


def _input_specs(schema: dict[str, Any]) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(name, category, type, extra) for every required and optional input, in schema order."""
    specs = []
    for category in ("required", "optional"):
        for name, spec in schema.get("input", {}).get(category, {}).items():
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, category, spec[0], extra))
    return specs


def _combo_options(input_type: Any, extra: dict[str, Any]) -> list[Any] | None:
    if isinstance(input_type, list):
        return input_type
    if input_type == "COMBO":
        return list(extra.get("options", []))
    return None


class _Validator:
    def __init__(
        self, prompt: dict[str, Any], object_info: dict[str, Any], input_exists: Callable[[str], bool]
    ) -> None:
        self.prompt = prompt
        self.object_info = object_info
        self.input_exists = input_exists
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def node(self, node_id: str) -> tuple[bool, list[dict[str, Any]]]:
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        inputs = node.get("inputs", {})
        schema = self.object_info[node["class_type"]]
        errors: list[dict[str, Any]] = []
        valid = True
        custom = {"image"} if node["class_type"] == "LoadImage" else set()
        for name, category, input_type, extra in _input_specs(schema):
            config = [input_type, extra]
            if name not in inputs:
                if category == "required":
                    errors.append(
                        error_body("required_input_missing", "Required input is missing", name, input_name=name)
                    )
                continue
            value = inputs[name]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(
                        error_body(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name,
                            input_name=name,
                            input_config=config,
                            received_value=value,
                        )
                    )
                    continue
                source_id, slot = value
                # A link to a missing node raises KeyError here, exactly where ComfyUI does.
                received = self.object_info[self.prompt[source_id]["class_type"]]["output"][slot]
                if not _type_matches(received, input_type):
                    errors.append(
                        error_body(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({input_type})",
                            input_name=name,
                            input_config=config,
                            received_type=received,
                            linked_node=value,
                        )
                    )
                    continue
                try:
                    if not self.node(source_id)[0]:
                        valid = False
                except Exception as exc:
                    valid = False
                    self.validated[source_id] = (
                        False,
                        [
                            error_body(
                                "exception_during_inner_validation",
                                "Exception when validating inner node",
                                str(exc),
                                input_name=name,
                                input_config=config,
                                exception_message=str(exc),
                                exception_type=type(exc).__name__,
                                traceback=traceback.format_tb(exc.__traceback__),
                                linked_node=value,
                            )
                        ],
                    )
                continue
            converters: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
            if isinstance(input_type, str) and input_type in converters:
                try:
                    value = converters[input_type](value)
                except Exception as exc:
                    errors.append(
                        error_body(
                            "invalid_input_type",
                            f"Failed to convert an input value to a {input_type} value",
                            f"{name}, {value}, {exc}",
                            input_name=name,
                            input_config=config,
                            received_value=value,
                            exception_message=str(exc),
                        )
                    )
                    continue
                inputs[name] = value
            if name in custom:
                continue
            if "min" in extra and value < extra["min"]:
                errors.append(
                    error_body(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {extra['min']}",
                        name,
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                )
                continue
            if "max" in extra and value > extra["max"]:
                errors.append(
                    error_body(
                        "value_bigger_than_max",
                        f"Value {value} bigger than max of {extra['max']}",
                        name,
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                )
                continue
            options = _combo_options(input_type, extra)
            if options is not None and value not in options:
                big = len(options) > 20
                listing = f"(list of length {len(options)})" if big else str(options)
                errors.append(
                    error_body(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: '{value}' not in {listing}",
                        input_name=name,
                        input_config=None if big else config,
                        received_value=value,
                    )
                )
        # LoadImage.VALIDATE_INPUTS: the file must exist (this replaces the combo check).
        image = inputs.get("image")
        if custom and isinstance(image, str) and not self.input_exists(image):
            errors.append(
                error_body(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"image - Invalid image file: {image}",
                    input_name="image",
                )
            )
        result = (not errors and valid, errors)
        self.validated[node_id] = result
        return result


def validate_prompt(
    prompt: dict[str, Any], object_info: dict[str, Any], input_exists: Callable[[str], bool]
) -> Validation:
    """ComfyUI's validation rules and error shapes. ``prompt`` gets INT/FLOAT inputs converted,
    as ComfyUI does. A prompt that is not a mapping of mappings raises (the server answers 500)."""
    outputs = []
    for node_id, node in prompt.items():
        if "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return Validation(False, error_body("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {})
        class_type = node["class_type"]
        if class_type not in object_info:
            message = f"Cannot execute because node {class_type} does not exist."
            return Validation(False, error_body("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {})
        if object_info[class_type].get("output_node") is True:
            outputs.append(node_id)
    if not outputs:
        return Validation(False, error_body("prompt_no_outputs", "Prompt has no outputs"), [], {})

    validator = _Validator(prompt, object_info, input_exists)
    good: list[str] = []
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        try:
            ok, reasons = validator.node(output)
        except Exception as exc:
            ok = False
            reasons = [
                error_body(
                    "exception_during_validation",
                    "Exception when validating node",
                    str(exc),
                    exception_type=type(exc).__name__,
                    traceback=traceback.format_tb(exc.__traceback__),
                )
            ]
            validator.validated[output] = (False, reasons)
        if ok:
            good.append(output)
            continue
        failed.append((output, reasons))
        for node_id, (node_ok, node_reasons) in validator.validated.items():
            if node_ok or not node_reasons:
                continue
            entry = node_errors.setdefault(
                node_id,
                {"errors": node_reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
            )
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failed for r in reasons)
        error = error_body("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return Validation(False, error, [], node_errors)
    return Validation(True, None, good, node_errors)
