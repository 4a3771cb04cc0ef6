"""The loopback fakes against the recordings of a real ComfyUI and against the RunPod contract.

Recordings come from tests/fixtures/comfyui/ (traffic of a real ComfyUI 0.3.64)
and tests/fixtures/runpod/ (built from RunPod's documented contract). Every wait polls with a deadline.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import socket
import struct
import threading
import time
import uuid
import wave
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from fakes import FakeComfyUI, FakeRunPod, Image, decode_png, encode_png
from fakes.comfyui.nodes import NODE_FUNCTIONS
from fakes.loopback import Handler
from support.recordings import body, exchange, load_bytes, load_recording
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

DEADLINE = 5.0


# -- helpers ------------------------------------------------------------------------------------


def recorded_prompt(name: str) -> dict[str, Any]:
    """The API prompt a recorded history entry ran (its ``prompt[2]``)."""
    (entry,) = body(name).values()
    return copy.deepcopy(entry["prompt"][2])


INVERT = recorded_prompt("history_ok")  # EmptyImage 64x64 black -> ImageInvert -> SaveImage probe_cc93ae
BLUR_ERROR = recorded_prompt("runtime_error")  # 1x1 image, blur radius 31
SLOW_CHAIN = recorded_prompt("history_interrupted")  # 1024x1024, three blurs
LATENT = recorded_prompt("wf_latent")
PREVIEW = recorded_prompt("wf_preview")


def poll(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {value!r}"[:2000])
        time.sleep(0.01)


def submit(fake: FakeComfyUI, prompt: dict[str, Any], **extra: Any) -> str:
    r = requests.post(f"{fake.url}/prompt", json={"prompt": prompt, "client_id": "test", **extra}, timeout=5)
    assert r.status_code == 200, r.text
    return str(r.json()["prompt_id"])


def history_of(fake: FakeComfyUI, prompt_id: str) -> dict[str, Any]:
    entry = poll(lambda: requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json(), bool)
    return dict(entry[prompt_id])


def normalise(value: Any, prompt_id: str) -> Any:
    """Replace what differs between runs (ids, timestamps, queue numbers) with placeholders."""
    if isinstance(value, dict):
        return {k: 0 if k == "timestamp" else normalise(v, prompt_id) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, prompt_id) for v in value]
    return "<id>" if value == prompt_id else value


def normalised_entry(history: dict[str, Any]) -> dict[str, Any]:
    ((prompt_id, entry),) = history.items()
    entry = normalise(entry, prompt_id)
    entry["prompt"][0] = 0
    return entry


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(tag, body) of every chunk, read independently of the fake's own decoder."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_pixel(data: bytes) -> tuple[int, int, int]:
    """Top-left pixel of an 8-bit RGB PNG."""
    raw = zlib.decompress(b"".join(body for tag, body in png_chunks(data) if tag == b"IDAT"))
    assert raw[0] == 0  # the fake writes unfiltered rows
    return raw[1], raw[2], raw[3]


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(run_seconds=0.02) as fake:
        yield fake


# -- ComfyUI: /prompt -----------------------------------------------------------------------------


def test_post_prompt_answers_like_the_recording(comfy: FakeComfyUI) -> None:
    recorded = exchange("post_prompt_ok")
    r = requests.post(f"{comfy.url}/prompt", json={"prompt": INVERT, "client_id": "test"}, timeout=5)
    assert (r.status_code, r.headers["Content-Type"]) == (recorded.status, recorded.content_type)
    answer = r.json()
    assert answer.keys() == recorded.body.keys()
    assert uuid.UUID(answer["prompt_id"]).version == 4
    assert (answer["number"], answer["node_errors"]) == (0, {})
    assert comfy.submitted == [INVERT]


def test_client_chosen_prompt_id_is_kept(comfy: FakeComfyUI) -> None:
    sent = load_recording("post_prompt_custom_id")["sent_prompt_id"]
    prompt_id = submit(comfy, INVERT, prompt_id=sent)
    assert prompt_id == sent
    assert history_of(comfy, sent)["status"]["status_str"] == "success"


def _link_to_missing() -> dict[str, Any]:
    prompt = copy.deepcopy(INVERT)
    prompt["3"]["inputs"]["images"] = ["99", 0]
    return prompt


def _missing_input() -> dict[str, Any]:
    prompt = copy.deepcopy(INVERT)
    prompt["2"]["inputs"] = {}
    return prompt


def _out_of_range() -> dict[str, Any]:
    prompt = copy.deepcopy(INVERT)
    prompt["1"]["inputs"].update(width=0, height=99999)
    return prompt


def _bad_int() -> dict[str, Any]:
    prompt = copy.deepcopy(INVERT)
    prompt["1"]["inputs"]["width"] = "abc"
    return prompt


WRONG_LINK = {
    "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
BAD_COMBO = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "does_not_exist.png"}},
    "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}

REJECTIONS: list[tuple[str, Any]] = [
    ("err_no_prompt_key", {"client_id": "test"}),
    ("err_missing_class_type", {"prompt": {"1": {"inputs": {}}}}),
    ("err_invalid_class", {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}),
    ("err_no_output_node", {"prompt": {"1": INVERT["1"]}}),
    ("err_empty_prompt", {"prompt": {}}),
    ("err_missing_input", {"prompt": _missing_input()}),
    ("err_out_of_range", {"prompt": _out_of_range()}),
    ("err_bad_value_type", {"prompt": _bad_int()}),
    ("err_wrong_link_type", {"prompt": WRONG_LINK}),
    ("err_bad_combo", {"prompt": BAD_COMBO}),
]


@pytest.mark.parametrize(("recording", "request_body"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_match_the_recordings_exactly(comfy: FakeComfyUI, recording: str, request_body: Any) -> None:
    recorded = exchange(recording)
    r = requests.post(f"{comfy.url}/prompt", json=request_body, timeout=5)
    assert (r.status_code, r.headers["Content-Type"]) == (recorded.status, recorded.content_type)
    assert r.json() == recorded.body
    assert requests.get(f"{comfy.url}/queue", timeout=5).json() == {"queue_running": [], "queue_pending": []}


def test_link_to_a_missing_node_is_a_keyerror_during_validation(comfy: FakeComfyUI) -> None:
    recorded = exchange("err_missing_link").body
    r = requests.post(f"{comfy.url}/prompt", json={"prompt": _link_to_missing()}, timeout=5)
    assert r.status_code == 400
    answer = r.json()
    assert answer["error"] == recorded["error"]
    (error,) = answer["node_errors"]["3"]["errors"]
    (expected,) = recorded["node_errors"]["3"]["errors"]
    assert {k: error[k] for k in ("type", "message", "details")} == {
        k: expected[k] for k in ("type", "message", "details")
    }
    assert error["extra_info"]["exception_type"] == "KeyError"
    assert error["extra_info"]["traceback"]
    assert all(isinstance(line, str) for line in error["extra_info"]["traceback"])
    assert answer["node_errors"]["3"]["dependent_outputs"] == ["3"]


def test_malformed_json_is_a_text_500(comfy: FakeComfyUI) -> None:
    recorded = exchange("err_malformed_json")
    r = requests.post(f"{comfy.url}/prompt", data=b"{not json", timeout=5)
    assert (r.status_code, r.headers["Content-Type"], r.text) == (
        recorded.status,
        recorded.content_type,
        recorded.body,
    )


def test_a_valid_output_next_to_a_broken_one_runs_with_node_errors(comfy: FakeComfyUI) -> None:
    prompt = copy.deepcopy(INVERT) | {"4": {"class_type": "PreviewImage", "inputs": {"images": ["99", 0]}}}
    r = requests.post(f"{comfy.url}/prompt", json={"prompt": prompt}, timeout=5)
    assert r.status_code == 200
    assert list(r.json()["node_errors"]) == ["4"]
    entry = history_of(comfy, r.json()["prompt_id"])
    assert entry["prompt"][4] == ["3"]
    assert list(entry["outputs"]) == ["3"]


# -- ComfyUI: running, history, queue, interrupt ---------------------------------------------------


def test_history_is_empty_until_done_then_equals_history_ok() -> None:
    with FakeComfyUI(run_seconds=0.05) as fake:
        fake.pause()
        prompt_id = submit(fake, INVERT)
        assert requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json() == {}
        assert requests.get(f"{fake.url}/queue", timeout=5).json()["queue_pending"][0][1] == prompt_id
        fake.resume()
        entry = poll(lambda: requests.get(f"{fake.url}/history/{prompt_id}", timeout=5).json(), bool)
    assert normalised_entry(entry) == normalised_entry(body("history_ok"))


@pytest.mark.parametrize("recording", ["wf_latent", "wf_plain"])
def test_other_recorded_workflows_give_the_recorded_history(recording: str) -> None:
    recorded = normalised_entry(body(recording))
    with FakeComfyUI(run_seconds=0.0) as fake:
        # The recorded server had saved one file under that prefix before, hence its _00002_.
        submit(fake, recorded_prompt(recording))
        prompt_id = submit(fake, recorded_prompt(recording))
        got = normalised_entry({prompt_id: history_of(fake, prompt_id)})
    assert got == recorded


def test_preview_images_are_temp_files_one_per_batch_item(comfy: FakeComfyUI) -> None:
    entry = history_of(comfy, submit(comfy, PREVIEW))
    images = entry["outputs"]["2"]["images"]
    recorded = body("wf_preview")
    (recorded_entry,) = recorded.values()
    assert len(images) == len(recorded_entry["outputs"]["2"]["images"]) == 2
    for image in images:
        assert image["type"] == "temp"
        assert image["subfolder"] == ""
        assert image["filename"].startswith("ComfyUI_temp_")
        assert image["filename"].endswith("_.png")
        r = requests.get(f"{comfy.url}/view", params={**image}, timeout=5)
        assert png_pixel(r.content) == (0, 0, 255)  # colour 255 is pure blue


def test_runtime_error_matches_the_recording() -> None:
    recorded = body("runtime_error")
    with FakeComfyUI(run_seconds=0.0) as fake:
        prompt_id = submit(fake, BLUR_ERROR)
        got = normalised_entry({prompt_id: history_of(fake, prompt_id)})
    want = normalised_entry(recorded)
    assert (got["outputs"], got["meta"], got["prompt"]) == (want["outputs"], want["meta"], want["prompt"])
    assert {k: got["status"][k] for k in ("status_str", "completed")} == {"status_str": "error", "completed": False}
    assert [m[0] for m in got["status"]["messages"]] == [m[0] for m in want["status"]["messages"]]
    error, expected = got["status"]["messages"][-1][1], want["status"]["messages"][-1][1]
    assert error.keys() == expected.keys()
    same = ("prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type", "current_outputs")
    assert {k: error[k] for k in same} == {k: expected[k] for k in same}
    assert error["traceback"]
    assert all(isinstance(line, str) for line in error["traceback"])


def test_queue_shapes_delete_and_interrupt_like_the_recordings() -> None:
    with FakeComfyUI(node_seconds=1.0) as fake:
        assert requests.get(f"{fake.url}/queue", timeout=5).json() == exchange("queue_idle").body
        slow = submit(fake, SLOW_CHAIN)
        waiting = submit(fake, INVERT)
        queue = poll(lambda: requests.get(f"{fake.url}/queue", timeout=5).json(), lambda q: q["queue_running"])
        recorded = body("queue_busy")
        (running,) = queue["queue_running"]
        (pending,) = queue["queue_pending"]
        assert len(running) == len(recorded["queue_running"][0]) == 5
        assert (running[1], running[2], running[3], running[4]) == (slow, SLOW_CHAIN, {"client_id": "test"}, ["5"])
        assert (pending[1], pending[4]) == (waiting, ["3"])

        r = requests.post(f"{fake.url}/queue", json={"delete": [waiting]}, timeout=5)
        assert (r.status_code, r.content) == (exchange("post_queue_delete").status, b"")
        assert requests.get(f"{fake.url}/queue", timeout=5).json()["queue_pending"] == []

        # An interrupt aimed at another prompt leaves the running one alone.
        r = requests.post(f"{fake.url}/interrupt", json={"prompt_id": "someone-else"}, timeout=5)
        assert (r.status_code, r.content) == (200, b"")
        r = requests.post(f"{fake.url}/interrupt", json={"prompt_id": slow}, timeout=5)
        assert (r.status_code, r.content, r.headers.get("Content-Type")) == (200, b"", None)
        entry = history_of(fake, slow)
        assert fake.interrupts == ["someone-else", slow]
        assert fake.deletes == [waiting]
        assert fake.wait_idle()
        assert requests.get(f"{fake.url}/history/{waiting}", timeout=5).json() == body("history_deleted_pending")

    want = normalised_entry(body("history_interrupted"))
    got = normalise(entry, slow)
    assert (got["outputs"], got["status"]["status_str"], got["status"]["completed"]) == ({}, "error", False)
    assert [m[0] for m in got["status"]["messages"]] == [m[0] for m in want["status"]["messages"]]
    info = got["status"]["messages"][-1][1]
    assert info.keys() == want["status"]["messages"][-1][1].keys()
    assert info["node_type"] == SLOW_CHAIN[info["node_id"]]["class_type"]
    assert info["node_id"] not in info["executed"]


def test_interrupt_without_body_stops_whatever_runs_and_only_that() -> None:
    with FakeComfyUI(node_seconds=0.2) as fake:
        first = submit(fake, INVERT)
        second = submit(fake, INVERT)
        poll(lambda: requests.get(f"{fake.url}/queue", timeout=5).json(), lambda q: q["queue_running"])
        assert requests.post(f"{fake.url}/interrupt", timeout=5).status_code == 200
        assert history_of(fake, first)["status"]["messages"][-1][0] == "execution_interrupted"
        assert history_of(fake, second)["status"]["status_str"] == "success"
    assert fake.interrupts == [None]


def test_identical_resubmission_is_served_from_cache_when_enabled() -> None:
    with FakeComfyUI(run_seconds=0.0, cache=True) as fake:
        first = history_of(fake, submit(fake, INVERT))
        second = history_of(fake, submit(fake, INVERT))
    assert second["outputs"] == first["outputs"]
    assert second["status"]["messages"][1][1]["nodes"] == ["1", "2", "3"]


# -- ComfyUI: files --------------------------------------------------------------------------------


def test_view_serves_real_png_bytes_like_the_recording(comfy: FakeComfyUI) -> None:
    recorded = load_recording("view_ok")
    image = history_of(comfy, submit(comfy, INVERT))["outputs"]["3"]["images"][0]
    r = requests.get(f"{comfy.url}/view", params=image, timeout=5)
    assert (r.status_code, r.headers["Content-Type"]) == (recorded["status"], recorded["content_type"])
    assert r.headers["Content-Disposition"] == recorded["content_disposition"]
    assert r.content[:16].hex() == recorded["first16"]
    assert png_pixel(r.content) == (255, 255, 255)  # black inverted
    assert decode_png(r.content).width == 64
    assert r.content == comfy.file_bytes(image["filename"])
    assert comfy.files == [image["filename"]]


@pytest.mark.parametrize(
    ("recording", "params"),
    [
        ("view_missing", {"filename": "nope.png", "type": "output", "subfolder": ""}),
        ("view_traversal", {"filename": "../secret.png", "type": "output"}),
        ("view_traversal", {"filename": "/etc/passwd", "type": "output"}),
    ],
)
def test_view_refusals_have_empty_bodies(comfy: FakeComfyUI, recording: str, params: dict[str, str]) -> None:
    recorded = exchange(recording)
    r = requests.get(f"{comfy.url}/view", params=params, timeout=5)
    assert (r.status_code, r.content, r.headers.get("Content-Type")) == (recorded.status, b"", recorded.content_type)


def test_view_refuses_a_subfolder_outside_the_folder(comfy: FakeComfyUI) -> None:
    r = requests.get(f"{comfy.url}/view", params={"filename": "x.png", "subfolder": "../.."}, timeout=5)
    assert (r.status_code, r.content) == (403, b"")


def test_latents_go_to_their_subfolder_and_counters_grow(comfy: FakeComfyUI) -> None:
    first = history_of(comfy, submit(comfy, LATENT))["outputs"]["2"]["latents"][0]
    second = history_of(comfy, submit(comfy, LATENT))["outputs"]["2"]["latents"][0]
    assert first == {"filename": "probe_00001_.latent", "subfolder": "latents", "type": "output"}
    assert second["filename"] == "probe_00002_.latent"
    data = requests.get(f"{comfy.url}/view", params=first, timeout=5).content
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert header["latent_tensor"]["shape"] == [1, 4, 8, 8]


def test_uploaded_image_feeds_loadimage(comfy: FakeComfyUI) -> None:
    original = load_bytes("view_ok.png")  # a PNG written by the real ComfyUI: white 64x64
    r = requests.post(
        f"{comfy.url}/upload/image", files={"image": ("probe_upload.png", original, "image/png")}, timeout=5
    )
    assert (r.status_code, r.json()) == (200, {"name": "probe_upload.png", "subfolder": "", "type": "input"})
    prompt = copy.deepcopy(INVERT) | {"1": {"class_type": "LoadImage", "inputs": {"image": "probe_upload.png"}}}
    image = history_of(comfy, submit(comfy, prompt))["outputs"]["3"]["images"][0]
    served = requests.get(f"{comfy.url}/view", params=image, timeout=5).content
    assert png_pixel(served) == (0, 0, 0)
    info = requests.get(f"{comfy.url}/object_info", timeout=5).json()
    assert "probe_upload.png" in info["LoadImage"]["input"]["required"]["image"][0]

    other = encode_png(Image.solid(2, 2, 0x123456))
    r = requests.post(f"{comfy.url}/upload/image", files={"image": ("probe_upload.png", other)}, timeout=5)
    assert r.json()["name"] == "probe_upload (1).png"  # a different file never overwrites silently
    r = requests.post(f"{comfy.url}/upload/image", files={"image": ("probe_upload.png", original)}, timeout=5)
    assert r.json()["name"] == "probe_upload.png"  # the identical file is reused
    assert requests.post(f"{comfy.url}/upload/image", files={"other": ("a.png", other)}, timeout=5).status_code == 400


def test_every_output_kind_is_served_with_its_content_type(comfy: FakeComfyUI) -> None:
    frames = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 6, "batch_size": 3, "color": 0xFF0000}}
    prompt = {
        "1": frames,
        "2": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": "anim",
                "fps": 6.0,
                "lossless": True,
                "quality": 80,
                "method": "default",
            },
        },
        "3": {
            "class_type": "SaveAnimatedPNG",
            "inputs": {"images": ["1", 0], "filename_prefix": "apng", "fps": 6.0, "compress_level": 4},
        },
        "4": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8.0,
                "loop_count": 0,
                "filename_prefix": "clip",
                "format": "image/gif",
                "pingpong": False,
                "save_output": True,
            },
        },
        "5": {"class_type": "EmptyAudio", "inputs": {"duration": 0.1, "sample_rate": 8000, "channels": 1}},
        "6": {"class_type": "SaveAudio", "inputs": {"audio": ["5", 0], "filename_prefix": "audio/tone"}},
        "7": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
    }
    outputs = history_of(comfy, submit(comfy, prompt))["outputs"]
    assert outputs["2"]["animated"] == [True]
    assert outputs["3"]["animated"] == [True]
    assert outputs["4"]["gifs"][0]["format"] == "image/gif"
    assert outputs["6"]["audio"][0]["subfolder"] == "audio"
    assert outputs["8"] == {"text": ["hello"]}

    def fetch(entry: dict[str, Any]) -> requests.Response:
        params = {k: entry[k] for k in ("filename", "subfolder", "type")}
        return requests.get(f"{comfy.url}/view", params=params, timeout=5)

    webp, apng = fetch(outputs["2"]["images"][0]), fetch(outputs["3"]["images"][0])
    gif, wav = fetch(outputs["4"]["gifs"][0]), fetch(outputs["6"]["audio"][0])
    assert webp.headers["Content-Type"] == "image/webp"
    assert webp.content[8:12] == b"WEBP"
    assert apng.headers["Content-Type"] == "image/png"
    chunks = png_chunks(apng.content)
    (actl,) = [body for tag, body in chunks if tag == b"acTL"]
    assert struct.unpack(">II", actl) == (3, 0)  # three frames, looping forever
    assert [tag for tag, _ in chunks].count(b"fcTL") == 3
    assert gif.headers["Content-Type"] == "image/gif"
    assert gif.content[:6] == b"GIF89a"
    assert gif.content[-1:] == b";"
    assert gif.content.count(b"\x21\xf9\x04") == 3  # one graphic control block per frame
    assert wav.headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as audio:
        assert (audio.getframerate(), audio.getnframes()) == (8000, 800)


def test_object_info_covers_every_executable_class(comfy: FakeComfyUI) -> None:
    info = requests.get(f"{comfy.url}/object_info", timeout=5).json()
    assert set(NODE_FUNCTIONS) == set(info)
    recorded = load_recording("object_info.json", "graph")  # the recorded server's whole /object_info
    assert all(info[name] == recorded[name] for name in ("EmptyImage", "ImageInvert", "SaveImage", "ImageBlur"))


def test_png_codec_round_trips_and_reads_a_real_comfyui_png() -> None:
    image = Image(3, 2, bytes(range(18)))
    assert decode_png(encode_png(image)) == image
    real = decode_png(load_bytes("view_ok.png"))
    assert (real.width, real.height, real.pixel(63, 63)) == (64, 64, (255, 255, 255))


# -- ComfyUI: access gate, prefix, misc -----------------------------------------------------------


def test_required_headers_gate_every_request_and_stay_out_of_repr() -> None:
    with FakeComfyUI(required_headers={"CF-Access-Client-Secret": "s3cret"}, prefix="/comfy") as fake:
        assert requests.get(f"{fake.url}/queue", timeout=5).status_code == 401
        wrong = {"CF-Access-Client-Secret": "nope"}
        assert requests.get(f"{fake.url}/queue", headers=wrong, timeout=5).status_code == 401
        ok = {"CF-Access-Client-Secret": "s3cret"}
        assert fake.url.endswith("/comfy")
        assert requests.get(f"{fake.url}/queue", headers=ok, timeout=5).json() == exchange("queue_idle").body
        assert requests.get(f"http://{fake.addr}/queue", headers=ok, timeout=5).status_code == 404
        assert "s3cret" not in repr(fake)


def test_stop_closes_keep_alive_connections() -> None:
    fake = FakeComfyUI().start()
    url = fake.url
    session = requests.Session()
    assert session.get(f"{url}/queue", timeout=5).status_code == 200
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{url}/queue", timeout=5)


# -- ComfyUI: /ws ----------------------------------------------------------------------------------


def open_ws(fake: FakeComfyUI, client_id: str, **kwargs: Any) -> ClientConnection:
    return ws_connect(f"ws://{fake.addr}{fake.prefix}/ws?clientId={client_id}", open_timeout=5, **kwargs)


def ws_frames_until(ws: ClientConnection, done: Callable[[dict[str, Any]], bool]) -> list[str | bytes]:
    """Every frame up to and including the first text message for which ``done`` holds."""
    frames: list[str | bytes] = []
    deadline = time.monotonic() + DEADLINE
    while True:
        frame = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        frames.append(frame)
        if isinstance(frame, str) and done(json.loads(frame)):
            return frames


def prompt_done(prompt_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "executing" and m["data"] == {"node": None, "prompt_id": prompt_id}


def ws_shape(frames: list[Any]) -> list[tuple[Any, ...]]:
    """What must match a recording: message types in order with their nodes and node states,
    binary frames by header. Queue ``status`` broadcasts are left out: they depend on what
    else the recorder had queued."""
    shape: list[tuple[Any, ...]] = []
    for frame in frames:
        if isinstance(frame, bytes):
            shape.append(("binary", *struct.unpack(">II", frame[:8]), frame[8:16] == b"\x89PNG\r\n\x1a\n"))
            continue
        msg = json.loads(frame) if isinstance(frame, str) else frame
        kind, data = msg["type"], msg["data"]
        if kind == "status":
            continue
        if kind in ("executing", "executed", "progress"):
            shape.append((kind, data["node"]))
        elif kind == "progress_state":
            shape.append((kind, tuple((node, state["state"]) for node, state in data["nodes"].items())))
        else:
            shape.append((kind,))
    return shape


def recorded_ws(name: str) -> list[Any]:
    """A ws_sequence recording as frames (binary ones as their recorded header and magic)."""
    return [
        struct.pack(">II", e["event_type"], e["format"]) + bytes.fromhex(e["magic"])
        if e["kind"] == "binary"
        else e["msg"]
        for e in load_recording(name)
    ]


@pytest.mark.parametrize(
    ("recording", "prompt", "interrupt_at"),
    [
        ("ws_sequence_tiny", INVERT, None),
        ("ws_sequence_runtime_error", BLUR_ERROR, None),
        ("ws_sequence_interrupt", SLOW_CHAIN, "3"),
    ],
)
def test_ws_events_of_a_prompt_match_the_recording(
    recording: str, prompt: dict[str, Any], interrupt_at: str | None
) -> None:
    with FakeComfyUI(node_seconds=0.05 if interrupt_at is None else 0.3) as fake, open_ws(fake, "test") as ws:
        hello = json.loads(ws.recv(timeout=DEADLINE))
        assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "test"}}
        prompt_id = submit(fake, prompt)

        def done(m: dict[str, Any]) -> bool:
            if interrupt_at is not None and m["type"] == "executing" and m["data"]["node"] == interrupt_at:
                requests.post(f"{fake.url}/interrupt", json={"prompt_id": prompt_id}, timeout=5)
            return prompt_done(prompt_id)(m)

        frames = ws_frames_until(ws, done)
    assert ws_shape(frames) == ws_shape(recorded_ws(recording))
    messages = [json.loads(f) for f in frames if isinstance(f, str)]
    assert {m["data"]["prompt_id"] for m in messages if m["type"] != "status"} == {prompt_id}
    first_state = next(m["data"] for m in messages if m["type"] == "progress_state")
    recorded_state = next(m["data"] for m in recorded_ws(recording) if m["type"] == "progress_state")
    assert first_state["nodes"]["1"].keys() == recorded_state["nodes"]["1"].keys()


def test_ws_events_of_a_cached_prompt_match_the_recording() -> None:
    with FakeComfyUI(run_seconds=0.0, cache=True) as fake:
        history_of(fake, submit(fake, INVERT))
        with open_ws(fake, "test") as ws:
            ws.recv(timeout=DEADLINE)  # status
            prompt_id = submit(fake, INVERT)
            frames = ws_frames_until(ws, prompt_done(prompt_id))
    assert ws_shape(frames) == ws_shape(recorded_ws("ws_sequence_cached"))


def test_ws_progress_steps_come_like_the_recorded_progress_with_previews() -> None:
    with FakeComfyUI(node_seconds=0.05, progress_steps=2) as fake, open_ws(fake, "test") as ws:
        ws.recv(timeout=DEADLINE)
        prompt_id = submit(fake, INVERT)
        frames = ws_frames_until(ws, prompt_done(prompt_id))
    shape = ws_shape(frames)
    # ws_sequence_ws_save: each step is progress_state (node running), progress, preview frame.
    recorded = ws_shape(recorded_ws("ws_sequence_ws_save"))
    step = recorded[recorded.index(("progress", "2")) - 1 : recorded.index(("progress", "2")) + 2]
    assert step[0][0] == "progress_state"
    assert step[2] == ("binary", 1, 2, True)
    for node in ("1", "2", "3"):
        at = shape.index(("progress", node))
        assert shape[at - 1][0] == "progress_state"
        assert shape[at + 1] == step[2]
    values = [json.loads(f)["data"] for f in frames if isinstance(f, str) and '"type": "progress"' in f]
    assert [(v["node"], v["value"], v["max"]) for v in values] == [(n, k, 2) for n in ("1", "2", "3") for k in (1, 2)]


def test_ws_reconnect_of_the_running_client_gets_the_current_node_and_others_get_status_only() -> None:
    with FakeComfyUI(node_seconds=0.4) as fake, open_ws(fake, "bystander") as other:
        assert json.loads(other.recv(timeout=DEADLINE))["data"]["sid"] == "bystander"
        r = requests.post(f"{fake.url}/prompt", json={"prompt": INVERT, "client_id": "runner"}, timeout=5)
        prompt_id = r.json()["prompt_id"]
        node = poll(lambda: fake.engine.current_node_of("runner"), lambda n: n is not None)
        with open_ws(fake, "runner") as ws:
            hello = json.loads(ws.recv(timeout=DEADLINE))
            resent = json.loads(ws.recv(timeout=DEADLINE))
            assert hello["type"] == "status"
            assert hello["data"]["sid"] == "runner"
            # As ComfyUI's server.py: {"node": last_node_id}, no prompt_id.
            assert resent["type"] == "executing"
            assert resent["data"]["node"] in {node, str(int(node) + 1)}
            assert resent["data"].keys() == {"node"}
            assert ws_frames_until(ws, prompt_done(prompt_id))
        seen = ws_frames_until(
            other, lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0
        )
    assert {json.loads(f)["type"] for f in seen} == {"status"}
    assert fake.ws_clients == ["bystander", "runner"]


def test_ws_handshake_is_gated_and_prefixed_like_http() -> None:
    headers = {"CF-Access-Client-Secret": "sekrit-1"}
    with FakeComfyUI(required_headers=headers, prefix="/comfy") as fake:
        with pytest.raises(InvalidStatus) as refused:
            open_ws(fake, "x")
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as outside:
            ws_connect(f"ws://{fake.addr}/ws?clientId=x", open_timeout=5, additional_headers=headers)
        assert outside.value.response.status_code == 404
        not_upgraded = requests.get(f"{fake.url}/ws", headers=headers, timeout=5)
        assert not_upgraded.status_code == 400
        with open_ws(fake, "x", additional_headers=headers) as ws:
            assert json.loads(ws.recv(timeout=DEADLINE))["data"]["sid"] == "x"
            ws.ping().wait(DEADLINE)  # the fake answers pings
        assert ws.close_code == 1000  # the fake echoed our close frame


def test_a_quiet_websocket_outlives_the_http_idle_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Handler, "timeout", 0.2)  # idle HTTP connections are dropped after this
    with FakeComfyUI(run_seconds=0.0) as fake, open_ws(fake, "test") as ws:
        ws.recv(timeout=DEADLINE)
        with socket.create_connection(("127.0.0.1", fake.port), timeout=DEADLINE) as idle:
            assert idle.recv(1) == b""  # the server hung up on the idle HTTP connection
        prompt_id = submit(fake, INVERT)
        assert ws_frames_until(ws, prompt_done(prompt_id))


def test_stop_closes_open_websockets() -> None:
    fake = FakeComfyUI().start()
    ws = open_ws(fake, "x")
    ws.recv(timeout=DEADLINE)
    fake.stop()
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=DEADLINE)
    ws.close()


# -- RunPod ----------------------------------------------------------------------------------------

AUTH = {"Authorization": "Bearer test-key"}


def run(fake: FakeRunPod, payload: dict[str, Any], endpoint: str = "ep1") -> str:
    r = requests.post(f"{fake.url}/{endpoint}/run", json=payload, headers=AUTH, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json().keys() == load_recording("run_ok", "runpod").keys()
    assert r.json()["status"] == "IN_QUEUE"
    return str(r.json()["id"])


def status(fake: FakeRunPod, job_id: str, endpoint: str = "ep1") -> requests.Response:
    return requests.get(f"{fake.url}/{endpoint}/status/{job_id}", headers=AUTH, timeout=5)


def final_status(fake: FakeRunPod, job_id: str) -> dict[str, Any]:
    fake.wait_for(job_id)
    return dict(status(fake, job_id).json())


def test_runpod_lifecycle_with_real_bytes_from_the_attached_comfyui() -> None:
    with FakeComfyUI(run_seconds=0.02) as comfy, FakeRunPod(comfy=comfy, queue_seconds=0.2, run_seconds=0.3) as rp:
        job_id = run(rp, {"input": {"workflow": INVERT}, "policy": {"executionTimeout": 60000}})
        seen: list[str] = []

        def look() -> str:
            current = status(rp, job_id).json()["status"]
            if not seen or seen[-1] != current:
                seen.append(current)
            return str(current)

        poll(look, lambda s: s == "COMPLETED")
        answer = status(rp, job_id).json()
        assert seen == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
        assert answer.keys() == load_recording("status_completed_v5_base64", "runpod").keys()
        (image,) = answer["output"]["images"]
        assert image["type"] == "base64"
        assert image["filename"] == "probe_cc93ae_00001_.png"
        assert base64.b64decode(image["data"]) == comfy.file_bytes("probe_cc93ae_00001_.png")
        assert comfy.submitted == [INVERT]
        assert comfy.files == ["probe_cc93ae_00001_.png"]
        assert rp.runs[0]["input"]["workflow"] == INVERT
        assert rp.requests["run"] == 1
        health = requests.get(f"{rp.url}/ep1/health", headers=AUTH, timeout=5).json()
        assert health.keys() == load_recording("health", "runpod").keys()
        assert health["jobs"]["completed"] == 1


def test_runpod_without_comfy_makes_the_same_bytes_as_the_fake_comfyui() -> None:
    with FakeComfyUI(run_seconds=0.0) as comfy:
        expected = requests.get(
            f"{comfy.url}/view", params=history_of(comfy, submit(comfy, INVERT))["outputs"]["3"]["images"][0], timeout=5
        ).content
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0) as rp:
        answer = final_status(rp, run(rp, {"input": {"workflow": INVERT}}))
    assert base64.b64decode(answer["output"]["images"][0]["data"]) == expected


def test_runpod_v4_keeps_only_the_last_image_as_a_data_uri() -> None:
    prompt = copy.deepcopy(INVERT)
    prompt["1"]["inputs"]["batch_size"] = 2
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0, output_format="v4") as rp:
        answer = final_status(rp, run(rp, {"input": {"workflow": prompt}}))
    assert answer["status"] == "COMPLETED"
    assert answer["output"]["status"] == "success"
    prefix, data = answer["output"]["message"].split(",", 1)
    assert prefix == "data:image/png;base64"
    assert png_pixel(base64.b64decode(data)) == (255, 255, 255)
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0, output_format="v4-bare") as rp:
        bare = final_status(rp, run(rp, {"input": {"workflow": INVERT}}))["output"]["message"]
    assert base64.b64decode(bare)[:8] == b"\x89PNG\r\n\x1a\n"


def test_runpod_s3_urls_point_at_fetchable_bytes() -> None:
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0, s3_urls=True) as rp:
        image = final_status(rp, run(rp, {"input": {"workflow": INVERT}}))["output"]["images"][0]
        assert image["type"] == "s3_url"
        fetched = requests.get(image["data"], timeout=5)
    assert fetched.status_code == 200
    assert png_pixel(fetched.content) == (255, 255, 255)


def test_runpod_auth_and_rate_limit() -> None:
    with FakeRunPod(rate_limit_first=1, queue_seconds=0.0, run_seconds=0.0) as rp:
        payload = {"input": {"workflow": INVERT}}
        limited = requests.post(f"{rp.url}/ep1/run", json=payload, headers=AUTH, timeout=5)
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "0")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-key"}):
            r = requests.post(f"{rp.url}/ep1/run", json=payload, headers=headers, timeout=5)
            assert r.status_code == 401
            assert "test-key" not in r.text
        assert rp.requests["unauthorized"] == 3
        assert rp.requests["rate_limited"] == 1
        job_id = run(rp, payload)
        assert status(rp, "no-such-job").status_code == 404
        assert status(rp, job_id, endpoint="other-endpoint").status_code == 404
        assert "test-key" not in repr(rp)


def test_runpod_cancel_while_queued() -> None:
    with FakeRunPod(queue_seconds=30.0) as rp:
        job_id = run(rp, {"input": {"workflow": INVERT}})
        r = requests.post(f"{rp.url}/ep1/cancel/{job_id}", headers=AUTH, timeout=5)
        assert r.json() == {"id": job_id, "status": "CANCELLED"}
        assert r.json().keys() == load_recording("cancel_ok", "runpod").keys()
        assert status(rp, job_id).json()["status"] == "CANCELLED"
        assert rp.cancels == [job_id]


def test_runpod_cancel_while_running_interrupts_the_comfy_prompt() -> None:
    with FakeComfyUI(node_seconds=2.0) as comfy, FakeRunPod(comfy=comfy, queue_seconds=0.0, run_seconds=0.0) as rp:
        job_id = run(rp, {"input": {"workflow": INVERT}})
        poll(lambda: comfy.engine.queue()["queue_running"], bool)
        requests.post(f"{rp.url}/ep1/cancel/{job_id}", headers=AUTH, timeout=5)
        assert rp.wait_for(job_id) == "CANCELLED"
        poll(lambda: comfy.interrupts, bool)
        assert comfy.wait_idle()


def test_runpod_failures() -> None:
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0, fail_with="GPU OOM") as rp:
        oom = final_status(rp, run(rp, {"input": {"workflow": INVERT}}))
    assert (oom["status"], oom["error"]) == ("FAILED", "GPU OOM")
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0) as rp:
        broken = final_status(rp, run(rp, {"input": {"workflow": BLUR_ERROR}}))
        invalid = final_status(rp, run(rp, {"input": {"workflow": _missing_input()}}))
        missing = final_status(rp, run(rp, {"input": {"images": []}}))
    assert (broken["status"], broken["error"]) == ("FAILED", "Job processing failed")
    assert broken["output"]["details"][0].startswith("Workflow execution error: Node Type: ImageBlur, Node ID: 2")
    assert invalid["status"] == "FAILED"
    assert invalid["error"].startswith("Workflow validation failed:\n• Node 2 (errors)")
    assert (missing["status"], missing["error"]) == ("FAILED", "Missing 'workflow' parameter")


def test_runpod_outputs_without_images_and_input_images() -> None:
    ws_only = {"1": INVERT["1"], "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
    load = copy.deepcopy(INVERT) | {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}}}
    png = base64.b64encode(load_bytes("view_ok.png")).decode()
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0) as rp:
        latent_only = final_status(rp, run(rp, {"input": {"workflow": LATENT}}))
        nothing = final_status(rp, run(rp, {"input": {"workflow": ws_only}}))
        loaded = final_status(
            rp,
            run(
                rp,
                {"input": {"workflow": load, "images": [{"name": "in.png", "image": f"data:image/png;base64,{png}"}]}},
            ),
        )
    # Outputs, but none of them images: the worker's success_no_images.
    assert latent_only["output"] == load_recording("status_completed_v5_no_images", "runpod")["output"]
    # No outputs at all (SaveImageWebsocket records none): worker 5.x fails the job.
    assert (nothing["status"], nothing["error"]) == ("FAILED", "Job processing failed")
    assert nothing["output"]["details"][0].startswith("No outputs found in history for prompt")
    assert loaded["status"] == "COMPLETED"
    assert png_pixel(base64.b64decode(loaded["output"]["images"][0]["data"])) == (0, 0, 0)


def test_runpod_execution_timeout_and_ttl() -> None:
    with FakeRunPod(queue_seconds=0.0, run_seconds=5.0) as rp:
        slow = run(rp, {"input": {"workflow": INVERT}, "policy": {"executionTimeout": 50}})
        assert rp.wait_for(slow) == "TIMED_OUT"
        assert status(rp, slow).json().keys() >= load_recording("status_timed_out", "runpod").keys()
    with FakeRunPod(queue_seconds=0.0, run_seconds=0.0) as rp:
        short = run(rp, {"input": {"workflow": INVERT}, "policy": {"ttl": 200}})
        assert rp.wait_for(short) == "COMPLETED"
        poll(lambda: status(rp, short).status_code, lambda code: code == 404)


class _Hook(BaseHTTPRequestHandler):
    answers: list[int]
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(self.answers.pop(0) if self.answers else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_runpod_webhook_is_retried_after_a_failure() -> None:
    hook = type("Hook", (_Hook,), {"answers": [500], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), hook)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        with FakeRunPod(queue_seconds=0.0, run_seconds=0.0, webhook_retry_seconds=0.01) as rp:
            job_id = run(rp, {"input": {"workflow": INVERT}, "webhook": url})
            poll(lambda: rp.webhooks, lambda w: len(w) == 2)
            assert rp.webhooks == [(url, 500), (url, 200)]
    finally:
        server.shutdown()
        server.server_close()
    assert [(p["id"], p["status"]) for p in hook.received] == [(job_id, "COMPLETED")] * 2
