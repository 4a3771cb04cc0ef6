"""The worker's view of ComfyUI: over HTTP (an attached FakeComfyUI, called exactly as
worker-comfyui calls its ComfyUI) or in process (a private ComfyEngine: same code, same bytes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from ..comfyui import ComfyEngine, FakeComfyUI

SERVER_ERROR_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"


class ComfyPort(Protocol):
    def upload(self, name: str, data: bytes) -> str | None:
        """Upload an input image; the worker's error message, or None when it went."""

    def queue(self, prompt: Any, client_id: str) -> tuple[int, str]:
        """POST /prompt: (HTTP status, body text)."""

    def history(self, prompt_id: str) -> dict[str, Any]: ...

    def view(self, filename: str, subfolder: str, folder: str) -> bytes | None: ...

    def stop(self, prompt_id: str) -> None:
        """Take the prompt out of the queue and interrupt it if it runs."""


class HttpComfy:
    """Talks to a FakeComfyUI the way worker-comfyui talks to its ComfyUI."""

    def __init__(self, fake: FakeComfyUI) -> None:
        self.fake = fake  # read at call time: the fake may be started after FakeRunPod is built

    def _call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, bytes]:
        headers = dict(self.fake.required_headers)
        if ctype:
            headers["Content-Type"] = ctype
        request = urllib.request.Request(self.fake.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def upload(self, name: str, data: bytes) -> str | None:
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode() + data
        body += f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'.encode()
        body += f"--{boundary}--\r\n".encode()
        status, _ = self._call("POST", "/upload/image", body, f"multipart/form-data; boundary={boundary}")
        return None if status == 200 else f"Error uploading {name}: HTTP {status}"

    def queue(self, prompt: Any, client_id: str) -> tuple[int, str]:
        body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
        status, raw = self._call("POST", "/prompt", body, "application/json")
        return status, raw.decode("utf-8", "replace")

    def history(self, prompt_id: str) -> dict[str, Any]:
        status, raw = self._call("GET", f"/history/{quote(prompt_id)}")
        return json.loads(raw) if status == 200 else {}

    def view(self, filename: str, subfolder: str, folder: str) -> bytes | None:
        query = urlencode({"filename": filename, "subfolder": subfolder, "type": folder})
        status, raw = self._call("GET", f"/view?{query}")
        return raw if status == 200 else None

    def stop(self, prompt_id: str) -> None:
        self._call("POST", "/queue", json.dumps({"delete": [prompt_id]}).encode(), "application/json")
        self._call("POST", "/interrupt", json.dumps({"prompt_id": prompt_id}).encode(), "application/json")


class LocalComfy:
    """The same calls against a private in-process engine (no attached FakeComfyUI)."""

    def __init__(self, engine: ComfyEngine) -> None:
        self.engine = engine

    def upload(self, name: str, data: bytes) -> str | None:
        saved = self.engine.store.upload(name, data, overwrite=True)
        return None if saved else f"Error uploading {name}: HTTP 400"

    def queue(self, prompt: Any, client_id: str) -> tuple[int, str]:
        try:
            status, payload = self.engine.submit({"prompt": prompt, "client_id": client_id})
        except Exception:
            return 500, SERVER_ERROR_TEXT
        return status, json.dumps(payload)

    def history(self, prompt_id: str) -> dict[str, Any]:
        return self.engine.history(prompt_id)

    def view(self, filename: str, subfolder: str, folder: str) -> bytes | None:
        return self.engine.store.get(folder, subfolder, filename)

    def stop(self, prompt_id: str) -> None:
        self.engine.delete_pending([prompt_id])
        self.engine.interrupt(prompt_id)
