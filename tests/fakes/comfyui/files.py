"""ComfyUI's output/, temp/ and input/ folders, in memory: saved files, their counters, uploads."""

from __future__ import annotations

import mimetypes
import posixpath
import threading
from collections.abc import Callable
from pathlib import PurePosixPath

FOLDER_TYPES = ("output", "temp", "input")
_CONTENT_TYPES = {
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp4": "video/mp4",
    ".latent": "application/octet-stream",
    ".txt": "text/plain",
}


def content_type_for(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


class SaveOutsideFolder(Exception):
    """A filename_prefix that climbs out of the folder (ComfyUI refuses it at run time)."""


class FileStore:
    """ComfyUI's folders in memory, keyed by (folder type, subfolder, filename). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str, str], bytes] = {}

    def put(self, folder: str, subfolder: str, filename: str, data: bytes) -> None:
        with self._lock:
            self._files[(folder, subfolder, filename)] = data

    def get(self, folder: str, subfolder: str, filename: str) -> bytes | None:
        with self._lock:
            return self._files.get((folder, subfolder, filename))

    def names(self, folder: str) -> list[str]:
        with self._lock:
            return sorted(f"{sub}/{name}" if sub else name for (kind, sub, name) in self._files if kind == folder)

    def reserve(self, folder: str, prefix: str, count: int, name: Callable[[str, int], str]) -> tuple[str, list[str]]:
        """Split ``prefix`` into subfolder and base name and pick ``count`` unused names,
        numbering after the highest counter already used for that base (ComfyUI's rule)."""
        normal = posixpath.normpath(prefix) if prefix else "ComfyUI"
        if normal.startswith(("/", "..")):
            raise SaveOutsideFolder("Saving image outside the output folder is not allowed.")
        subfolder, base = posixpath.split(normal)
        with self._lock:
            highest = 0
            for kind, sub, filename in self._files:
                if kind != folder or sub != subfolder or not filename.startswith(base + "_"):
                    continue
                digits = filename[len(base) + 1 :].split("_")[0].split(".")[0]
                if digits.isdigit():
                    highest = max(highest, int(digits))
            names = [name(base, highest + 1 + i) for i in range(count)]
            for filename in names:  # claimed now so a concurrent save cannot reuse the counter
                self._files[(folder, subfolder, filename)] = b""
        return subfolder, names

    def upload(
        self, filename: str, data: bytes, *, subfolder: str = "", folder: str = "input", overwrite: bool = False
    ) -> dict[str, str] | None:
        """ComfyUI's ``POST /upload/image``: where the file went, or None when the name or subfolder
        is unacceptable (HTTP 400). Without ``overwrite`` a different file under a taken name
        becomes ``name (1).png``; an identical one is reused."""
        if folder not in FOLDER_TYPES or not filename or "/" in filename or filename in (".", ".."):
            return None
        sub = posixpath.normpath(subfolder) if subfolder else ""
        if sub == ".":
            sub = ""
        if sub.startswith(("/", "..")):
            return None
        name = filename
        if not overwrite:
            stem, dot, ext = filename.rpartition(".")
            stem, ext = (stem, dot + ext) if dot else (filename, "")
            n = 1
            while (existing := self.get(folder, sub, name)) is not None:
                if existing == data:
                    break
                name = f"{stem} ({n}){ext}"
                n += 1
        self.put(folder, sub, name, data)
        return {"name": name, "subfolder": subfolder, "type": folder}


def split_annotated(name: str, default: str = "input") -> tuple[str, str, str]:
    """``"sub/pic.png [output]"`` -> (folder type, subfolder, filename); ``default`` without
    an annotation (ComfyUI's annotated_filepath)."""
    folder = default
    for kind in FOLDER_TYPES:
        if name.endswith(f" [{kind}]"):
            folder, name = kind, name[: -len(kind) - 3]
    subfolder, filename = posixpath.split(name)
    return folder, subfolder, filename
