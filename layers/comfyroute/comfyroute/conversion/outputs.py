"""Which nodes of a prompt are its output nodes (SaveImage, PreviewImage, SaveAudio, ...).

ComfyUI runs a prompt for its output nodes, the classes whose schema says ``output_node``.
The schemas are the bundled snapshot's (``object_info.bundled_object_info``); a class it does
not know counts as an output node only by the name ComfyUI's savers and previews share.
"""

from __future__ import annotations

from collections.abc import Mapping

from comfyroute.conversion.object_info import ObjectInfo, bundled_object_info

_OUTPUT_NAME_PREFIXES = ("Save", "Preview")


def is_output_class(class_type: str, object_info: ObjectInfo | None = None) -> bool:
    info = object_info if object_info is not None else bundled_object_info()
    schema = info.get(class_type)
    if schema is not None:
        return schema.output_node
    return class_type.startswith(_OUTPUT_NAME_PREFIXES)


def output_node_ids(node_classes: Mapping[str, str], object_info: ObjectInfo | None = None) -> list[str]:
    """The ids of the output nodes among ``{node_id: class_type}``, in the prompt's order."""
    return [nid for nid, cls in node_classes.items() if cls and is_output_class(cls, object_info)]


def sole_output_node(node_classes: Mapping[str, str], object_info: ObjectInfo | None = None) -> str | None:
    """The prompt's output node when it has exactly one, else None."""
    ids = output_node_ids(node_classes, object_info)
    return ids[0] if len(ids) == 1 else None
