"""ComfyUI's ``GET /object_info``: the node schemas a workflow is converted with.

``ObjectInfo`` wraps the JSON (``{class_type: {input, input_order, output, output_name, ...}}``)
and parses a class's schema only when it is first asked for: a server with custom nodes has
thousands of classes and a workflow uses a few dozen. Inputs come in the order ComfyUI's
frontend lays them out (``input_order``'s required, then its optional, then any other), which
is the order of an editor node's widgets.

``bundled_object_info()`` is a snapshot of a core ComfyUI (no custom nodes) shipped with the
library, for executors that have no ``/object_info`` of their own (RunPod serverless).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

BUNDLED_SNAPSHOT = "object_info_core.json.gz"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True, eq=False)
class InputSpec:
    """One input of a node class, as ``/object_info`` declares it."""

    name: str
    type: str  # "INT", "IMAGE", ...; "COMBO" for a list of choices
    options: Mapping[str, Any]
    optional: bool
    choices: tuple[Any, ...] | None = None  # a combo's values

    @property
    def force_input(self) -> bool:
        """A socket even when its type has a widget (``forceInput``, or the old ``defaultInput``)."""
        return bool(self.options.get("forceInput")) or (self.optional and bool(self.options.get("defaultInput")))

    @property
    def widget_type(self) -> str:
        """The widget the frontend builds for it: ``widgetType`` when given, else its type."""
        declared = self.options.get("widgetType")
        return declared if isinstance(declared, str) and declared else self.type


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    type: str
    is_list: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class NodeSchema:
    """A node class: its inputs in frontend order and its outputs by slot (hashed by identity)."""

    name: str
    display_name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    output_node: bool = False
    category: str = ""
    _by_name: dict[str, InputSpec] = field(default_factory=dict, compare=False, repr=False)

    def input(self, name: str) -> InputSpec | None:
        return self._by_name.get(name)

    def output_slot(self, handle: str) -> int | None:
        """The slot of an output named ``handle``: by name, then case-insensitively, then by its type."""
        checks: tuple[Callable[[OutputSpec], bool], ...] = (
            lambda o: o.name == handle,
            lambda o: o.name.lower() == handle.lower(),
        )
        for matches in checks:
            for slot, output in enumerate(self.outputs):
                if matches(output):
                    return slot
        typed = [slot for slot, output in enumerate(self.outputs) if output.type == handle]
        return typed[0] if len(typed) == 1 else None


def parse_schema(class_type: str, raw: Mapping[str, Any]) -> NodeSchema:
    """A ``NodeSchema`` from one entry of ``/object_info``; lenient about missing parts."""
    found = raw.get("input")
    declared: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    specs: dict[str, InputSpec] = {}
    # Later sections win over earlier ones for a repeated name, as in the frontend's own parse.
    for section, optional in (("required", False), ("optional", True)):
        entries = declared.get(section)
        if not isinstance(entries, Mapping):
            continue
        for name, entry in entries.items():
            specs[name] = _input_spec(str(name), entry, optional)
    order = raw.get("input_order")
    ordered: list[InputSpec] = []
    if isinstance(order, Mapping):
        for section, optional in (("required", False), ("optional", True)):
            names = order.get(section)
            for name in names if isinstance(names, list) else ():
                spec = specs.get(name)
                if spec is not None and spec.optional is optional:
                    ordered.append(spec)
        seen = {spec.name for spec in ordered}
        ordered += [spec for name, spec in specs.items() if name not in seen]
    else:
        ordered = list(specs.values())
    outputs = _outputs(raw)
    display = raw.get("display_name")
    return NodeSchema(
        name=class_type,
        display_name=display if isinstance(display, str) and display else class_type,
        inputs=tuple(ordered),
        outputs=outputs,
        output_node=bool(raw.get("output_node")),
        category=str(raw.get("category") or ""),
        _by_name={spec.name: spec for spec in ordered},
    )


def _input_spec(name: str, entry: Any, optional: bool) -> InputSpec:
    if not isinstance(entry, (list, tuple)) or not entry:
        return InputSpec(name=name, type="UNKNOWN", options={}, optional=optional)
    kind = entry[0]
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
    if isinstance(kind, list):
        return InputSpec(name=name, type="COMBO", options=options, optional=optional, choices=tuple(kind))
    if kind == "COMBO":  # the newer form: the choices under options["options"]
        values = options.get("options")
        choices = tuple(values) if isinstance(values, list) else ()
        return InputSpec(name=name, type="COMBO", options=options, optional=optional, choices=choices)
    if isinstance(kind, str):
        return InputSpec(name=name, type=kind, options=options, optional=optional)
    return InputSpec(name=name, type="UNKNOWN", options=options, optional=optional)


def _outputs(raw: Mapping[str, Any]) -> tuple[OutputSpec, ...]:
    types = raw.get("output")
    if not isinstance(types, list):
        return ()
    names = _list(raw.get("output_name"))
    lists = _list(raw.get("output_is_list"))
    outputs = []
    for slot, kind in enumerate(types):
        type_name = "COMBO" if isinstance(kind, list) else str(kind)
        name = names[slot] if slot < len(names) and isinstance(names[slot], str) and names[slot] else None
        outputs.append(
            OutputSpec(
                name=name or f"output_{slot}",
                type=type_name,
                is_list=bool(lists[slot]) if slot < len(lists) else False,
            )
        )
    return tuple(outputs)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class ObjectInfo(Mapping[str, NodeSchema]):
    """The node classes of one ComfyUI, parsed on demand; a read-only mapping class name -> schema."""

    def __init__(self, raw: Mapping[str, Any], *, comfyui_version: str | None = None, source: str | None = None):
        if not isinstance(raw, Mapping):
            raise ValueError(f"object_info must be a JSON object of node classes, not {type(raw).__name__}")
        self.raw = raw
        self.comfyui_version = comfyui_version
        self.source = source
        self._parsed: dict[str, NodeSchema] = {}

    def __getitem__(self, class_type: str) -> NodeSchema:
        schema = self._parsed.get(class_type)
        if schema is None:
            entry = self.raw[class_type]  # KeyError for an unknown class, as a Mapping should
            schema = parse_schema(class_type, entry if isinstance(entry, Mapping) else {})
            self._parsed[class_type] = schema
        return schema

    def __contains__(self, class_type: object) -> bool:
        return class_type in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        version = f", ComfyUI {self.comfyui_version}" if self.comfyui_version else ""
        return f"ObjectInfo({len(self)} classes{version})"

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str | None = None) -> ObjectInfo:
        """From ``/object_info``'s JSON, gzipped or not, or from a snapshot file (see ``snapshot``)."""
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        obj = json.loads(data)
        if isinstance(obj, Mapping) and isinstance(obj.get("object_info"), Mapping):
            version = obj.get("comfyui_version")
            return cls(obj["object_info"], comfyui_version=str(version) if version else None, source=source)
        return cls(obj, source=source)

    @classmethod
    def load(cls, path: str | Path) -> ObjectInfo:
        return cls.from_bytes(Path(path).read_bytes(), source=str(path))


def snapshot(raw: Mapping[str, Any], *, comfyui_version: str | None, **about: Any) -> dict[str, Any]:
    """The JSON of a stored snapshot: ``{"comfyui_version", ..., "object_info"}``; ``from_bytes`` reads it."""
    return {"comfyui_version": comfyui_version, **about, "object_info": dict(raw)}


@cache
def bundled_object_info() -> ObjectInfo:
    """The core snapshot shipped with the library (see ``BUNDLED_COMFYUI_VERSION``)."""
    data = resources.files("comfyroute.conversion").joinpath("data", BUNDLED_SNAPSHOT).read_bytes()
    return ObjectInfo.from_bytes(data, source=f"bundled {BUNDLED_SNAPSHOT}")
