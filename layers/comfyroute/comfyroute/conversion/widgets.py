"""The widgets ComfyUI's frontend gives a node class, and what it does with their values.

An editor node saves its widget values as a list (``widgets_values``) in the order of the
node's widgets, and that order is not the order of the inputs alone: the frontend adds widgets
of its own. This module rebuilds that layout from a class's ``/object_info`` schema, as
ComfyUI's frontend does when it creates the node (checked against the frontend itself for every
core class by the recorded ``tests/fixtures/editor/widget_layouts.json``):

- an input whose type has a widget (INT, FLOAT, STRING, COMBO, ...) and is not ``forceInput``
  gets one, named after the input;
- an INT with ``control_after_generate`` (or, by the old convention, named ``seed`` or
  ``noise_seed``) is followed by a ``control_after_generate`` widget; a COMBO with it by that
  and a ``control_filter_list`` widget. Their values are saved but never sent;
- a media combo (``image_upload`` and the like) makes the frontend add an ``upload`` button
  input after the others; its value (``"image"``) is saved but never sent;
- a remote combo with a refresh button is followed by two widgets of the frontend's own;
- a few core classes get widgets from the frontend's extensions (PreviewAny's text box, the
  3D nodes' viewport capture).

It also holds the rules for the values the frontend sends: ``dynamicPrompts`` text (comments
removed, ``{a|b}`` choices resolved) and text replacements in save nodes' ``filename_prefix``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any

from comfyroute.conversion.object_info import InputSpec, NodeSchema

# Input types the frontend draws a widget for: its core widgets and those of its core extensions.
WIDGET_TYPES = frozenset(
    {
        "INT",
        "FLOAT",
        "BOOLEAN",
        "STRING",
        "MARKDOWN",
        "COMBO",
        "IMAGEUPLOAD",
        "FILEUPLOAD",
        "COLOR",
        "IMAGECOMPARE",
        "TREESELECT",
        "MULTISELECT",
        "CHART",
        "GALLERIA",
        "SELECTBUTTON",
        "TEXTAREA",
        "WEBCAM",
        "AUDIO_UI",
        "AUDIOUPLOAD",
        "AUDIO_RECORD",
        "LOAD_3D",
        "LOAD_3D_ANIMATION",
        "PREVIEW_3D",
        "PREVIEW_3D_ANIMATION",
    }
)
# Widgets whose value only a browser can make at queue time (a camera frame, a 3D viewport).
BROWSER_ONLY_TYPES = frozenset({"WEBCAM", "LOAD_3D", "LOAD_3D_ANIMATION"})
# INT inputs that get a seed control by name alone: the frontend's legacy convention.
LEGACY_SEED_NAMES = frozenset({"seed", "noise_seed"})
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
# Save nodes whose filename_prefix the frontend runs through its %Node.widget% / %date:...% replacements.
SAVE_NODE_TYPES = frozenset(
    {
        "SaveImage",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveGLB",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)
_MEDIA_UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
# Inputs the frontend's 3D extensions add to these classes (a viewport capture), after the others.
_EXTRA_INPUTS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "SaveGLB": (("image", "PREVIEW_3D"),),
    "Preview3D": (("image", "PREVIEW_3D"),),
    "Preview3DAnimation": (("image", "PREVIEW_3D_ANIMATION"),),
}


class _Undefined:
    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:  # falsy, as JavaScript's undefined
        return False


UNDEFINED: Any = _Undefined()
"""A widget value JavaScript would hold as ``undefined``: the input is left out of the prompt."""


class WidgetKind(Enum):
    VALUE = "value"  # sent in the prompt under the widget's name
    CONTROL = "control"  # control_after_generate: saved, not sent
    FILTER = "filter"  # control_filter_list: saved, not sent
    UPLOAD = "upload"  # the upload button: saved, not sent
    UI = "ui"  # a widget of the frontend's own that is saved but not sent


@dataclass(frozen=True, slots=True)
class Widget:
    name: str
    kind: WidgetKind
    default: Any
    spec: InputSpec | None = None  # the input a VALUE widget edits
    input_type: str | None = None  # the type of the input socket it adds, if any
    saved: bool = True  # takes a slot in widgets_values

    @property
    def sent(self) -> bool:
        """Whether the frontend puts this widget's value in the prompt."""
        return self.kind is WidgetKind.VALUE


@dataclass(frozen=True, slots=True)
class Layout:
    """A class's widgets in the frontend's order and its input sockets (sockets, then widget inputs)."""

    widgets: tuple[Widget, ...]
    inputs: tuple[tuple[str, str, bool], ...]  # (name, type, has_widget)

    def widget(self, name: str) -> Widget | None:
        for widget in self.widgets:
            if widget.name == name:
                return widget
        return None


# Widgets the frontend's extensions add to a class (not inputs): appended, or after a named widget.
_EXTRA_WIDGETS: Mapping[str, tuple[Widget, ...]] = {
    "PreviewAny": (Widget("preview", WidgetKind.VALUE, "", saved=False),),
    "WebcamCapture": (Widget("waiting for camera...", WidgetKind.UI, "capture"),),
}
_3D_BUTTONS = (
    Widget("upload 3d model", WidgetKind.VALUE, "upload3dmodel"),
    Widget("upload extra resources", WidgetKind.VALUE, "uploadExtraResources"),
    Widget("clear", WidgetKind.VALUE, "clear"),
)
_WIDGETS_AFTER: Mapping[str, tuple[str, tuple[Widget, ...]]] = {
    "Load3D": ("model_file", _3D_BUTTONS),
    "Load3DAnimation": ("model_file", _3D_BUTTONS),
}


def has_widget(spec: InputSpec) -> bool:
    return spec.widget_type in WIDGET_TYPES and not spec.force_input


@lru_cache(maxsize=4096)
def layout(schema: NodeSchema) -> Layout:
    """The frontend's widgets and inputs for a node class (cached per schema object)."""
    specs = list(schema.inputs)
    upload_for = _media_combo(schema)
    if upload_for is not None:
        specs.append(InputSpec(name="upload", type="IMAGEUPLOAD", options={}, optional=False))
    for name, kind in _EXTRA_INPUTS.get(schema.name, ()):
        if schema.input(name) is None:
            specs.append(InputSpec(name=name, type=kind, options={}, optional=False))
    inputs: list[tuple[str, str, bool]] = [(s.name, s.type, False) for s in specs if not has_widget(s)]
    widgets: list[Widget] = []
    for spec in specs:
        if not has_widget(spec):
            continue
        inputs.append((spec.name, spec.type, True))
        widgets.extend(_widgets_of(spec))
        after = _WIDGETS_AFTER.get(schema.name)
        if after is not None and after[0] == spec.name:
            widgets.extend(after[1])
    widgets.extend(_EXTRA_WIDGETS.get(schema.name, ()))
    return Layout(widgets=tuple(widgets), inputs=tuple(inputs))


def _media_combo(schema: NodeSchema) -> InputSpec | None:
    # The frontend's upload extension looks at required inputs only, and takes the first.
    for spec in schema.inputs:
        if not spec.optional and spec.type == "COMBO" and is_media_upload(spec.options):
            return spec
    return None


def is_media_upload(options: Mapping[str, Any]) -> bool:
    """A combo of files the frontend gives an upload button (image, video, animated image)."""
    return any(options.get(o) is True for o in _MEDIA_UPLOAD_OPTIONS)


def _widgets_of(spec: InputSpec) -> list[Widget]:
    kind = spec.widget_type
    if kind == "IMAGEUPLOAD":
        return [Widget(spec.name, WidgetKind.UPLOAD, "image", input_type=spec.type)]
    main = Widget(spec.name, WidgetKind.VALUE, widget_default(spec), spec=spec, input_type=spec.type)
    out = [main]
    control = spec.options.get("control_after_generate")
    if kind == "INT" and (spec.name in LEGACY_SEED_NAMES if control is None else bool(control)):
        out.append(Widget(_control_name(spec, "control_after_generate"), WidgetKind.CONTROL, "randomize"))
    elif kind == "COMBO" and control:
        out.append(Widget(_control_name(spec, "control_after_generate"), WidgetKind.CONTROL, "randomize"))
        out.append(Widget(_control_name(spec, "control_filter_list"), WidgetKind.FILTER, ""))
    remote = spec.options.get("remote")
    if kind == "COMBO" and isinstance(remote, Mapping) and remote.get("refresh_button"):
        out.append(Widget("Auto-refresh after generation", WidgetKind.UI, False))
        out.append(Widget("refresh", WidgetKind.VALUE, "refresh"))
    return out


def _control_name(spec: InputSpec, default: str) -> str:
    named = spec.options.get(default)
    if isinstance(named, str):
        return named
    prefix = spec.options.get("control_prefix")
    return f"{prefix} {default}" if prefix else default


def upload_combo_value(spec: InputSpec, value: Any) -> Any:
    """What a media combo (one with an upload button) reads back: the frontend wraps its value.

    An empty value reads as the text of the combo's starting value (``"undefined"`` when it
    had none); a file outside ``input`` gets its folder appended (``"x.png [output]"``).
    """
    if not value:
        default = widget_default(spec)
        return "undefined" if default is UNDEFINED else js_string(default)
    folder = spec.options.get("image_folder", "input")
    if isinstance(value, list):
        if spec.options.get("allow_batch"):
            return [_annotated(v, folder) for v in value]
        return _annotated(value[0], folder)
    return _annotated(value, folder)


def _annotated(value: Any, folder: Any) -> Any:
    if not isinstance(value, str) or folder == "input":
        return value
    lowered = value.lower()
    if any(f"[{kind}]" in lowered for kind in ("input", "output", "temp")):
        return value
    return f"{value} [{folder}]"


def widget_default(spec: InputSpec) -> Any:
    """The value a new widget starts with in the frontend (kept when a workflow saves none)."""
    default = spec.options.get("default")
    kind = spec.widget_type
    if kind == "COMBO":
        # The frontend tests the default for truth: a falsy default means the first choice.
        if default:
            return default
        if spec.choices:
            return spec.choices[0]
        return "Loading..." if spec.options.get("remote") else UNDEFINED
    if kind in ("INT", "FLOAT"):
        return 0 if default is None else default
    if kind == "BOOLEAN":
        return False if default is None else default
    if kind in ("STRING", "MARKDOWN", "TEXTAREA"):
        return "" if default is None else default
    if kind == "COLOR":
        return default or "#000000"
    return "" if default is None else default


def migrate_widgets_values(schema: NodeSchema, lay: Layout, values: list[Any]) -> list[Any]:
    """Drop the values old frontends saved for ``forceInput`` inputs, as the frontend does.

    Applies only when the count matches the old layout exactly (forceInput inputs counted as
    widgets), so a current workflow is never touched.
    """
    names = {w.name for w in lay.widgets}
    old = [s for s in schema.inputs if s.name in names or s.force_input]
    if not any(s.force_input for s in old):
        return values
    count = sum(2 if _has_control(s) else 1 for s in old)
    if count != len(values):
        return values
    return [value for spec, value in zip(old, values, strict=False) if not spec.force_input]


def _has_control(spec: InputSpec) -> bool:
    return bool(spec.options.get("control_after_generate")) or spec.name in LEGACY_SEED_NAMES


# --------------------------------------------------------------------------- dynamic prompts

# JavaScript's "." stops at every line terminator, Python's only at "\n".
_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//[^\n\r\u2028\u2029]*")
_UNESCAPE = re.compile(r"\\([{}|])")


def strip_comments(text: str) -> str:
    return _COMMENTS.sub("", text)


def process_dynamic_prompt(text: str, rng: random.Random | None = None) -> str:
    """``dynamicPrompts`` text as the frontend sends it: comments removed, each ``{a|b|...}`` one choice.

    ``\\{``, ``\\|`` and ``\\}`` are literal characters. Nested choices work; the choice made is
    processed again, as the frontend does. ``rng`` picks the choices (the frontend's Math.random).
    """
    draw = (rng or random).random
    return _process(text, lambda count: int(draw() * count))


def dynamic_prompt_choices(text: str, limit: int = 10_000) -> set[str] | None:
    """Every text ``process_dynamic_prompt`` can give, or None when there are more than ``limit``."""
    results: set[str] = set()
    # Depth-first over the sequences of decisions: replay a prefix, take option 0 after it,
    # and queue every other option of each new decision.
    pending: list[list[int]] = [[]]
    while pending:
        forced = pending.pop()
        made: list[int] = []

        def choose(count: int, forced: list[int] = forced, made: list[int] = made) -> int:
            if len(made) < len(forced):
                made.append(forced[len(made)])
            else:
                made.append(0)
                pending.extend([*made[:-1], other] for other in range(1, count))
            return made[-1]

        results.add(_process(text, choose))
        if len(results) > limit:
            return None
    return results


def _process(text: str, choose: Callable[[int], int]) -> str:
    source = strip_comments(text)
    pos = 0
    out: list[str] = []

    def escape() -> str:
        nonlocal pos
        # At the very end JavaScript reads past the string and gets "undefined".
        nxt = source[pos] if pos < len(source) else "undefined"
        pos += 1
        return "\\" + nxt

    def choice_block() -> str:
        nonlocal pos
        options: list[str] = []
        choice = ""
        depth = 0
        while pos < len(source):
            char = source[pos]
            pos += 1
            if char == "\\":
                choice += escape()
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                if not depth:
                    break
                depth -= 1
            elif char == "|" and not depth:
                options.append(choice)
                choice = ""
                continue
            choice += char
        options.append(choice)
        return _process(options[choose(len(options))], choose)

    while pos < len(source):
        char = source[pos]
        pos += 1
        if char == "\\":
            out.append(escape())
        elif char == "{":
            out.append(choice_block())
        else:
            out.append(char)
    return _UNESCAPE.sub(r"\1", "".join(out))


# --------------------------------------------------------------------------- text replacements

_REPLACEMENT = re.compile(r"%([^%]+)%")
_DATE_TOKEN = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
_UNSAFE_IN_NAMES = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')


def format_date(text: str, now: datetime) -> str:
    """The frontend's ``%date:...%`` format: yyyy yy MM M dd d hh h mm m ss s (no zone, no AM/PM)."""
    parts = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def token(match: re.Match[str]) -> str:
        found = match[0]
        if found == "yy":
            return str(now.year)[2:]
        if found == "yyyy":
            return str(now.year)
        if found[0] in parts:
            return str(parts[found[0]]).rjust(len(found), "0")
        return found

    return _DATE_TOKEN.sub(token, text)


def apply_text_replacements(
    value: str,
    lookup: Callable[[str, str], Any],
    now: Callable[[], datetime] = datetime.now,
) -> str:
    """``%Node.widget%`` and ``%date:...%`` in a value, as the frontend replaces them.

    ``lookup(node, widget)`` gives a widget's value, finding the node by its "Node name for
    S&R" property and then by title, or ``UNDEFINED`` when there is no such node or widget (the
    text is then left as it is).
    """

    def replace(match: re.Match[str]) -> str:
        text = match[1]
        split = text.split(".")
        if len(split) != 2:
            if split[0].startswith("date:"):
                return format_date(split[0][5:], now())
            return match[0]
        found = lookup(split[0], split[1])
        if found is UNDEFINED:
            return match[0]
        return _UNSAFE_IN_NAMES.sub("_", js_string(found if found is not None else ""))

    return _REPLACEMENT.sub(replace, value)


def js_string(value: Any) -> str:
    """``String(value)`` as JavaScript writes it, for the JSON values a widget holds."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)
