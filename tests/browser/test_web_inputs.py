"""Input files and editor workflows in the web client, in headless Chromium.

The backend is the scripted FakeServer with its S3-like UploadServer (conftest ``scripted``): the
dev stack does not answer ``request_upload`` yet. Everything else is real: the page is served as
static files from its own origin, the WebSocket and the upload store are two more origins (so the
upload POST goes through CORS with a preflight, as against S3), and the tests check the exact
bytes that reached the job.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from support import png

from comfyroute.protocol.server_messages import JobOutput, OutputValue

pytestmark = pytest.mark.browser

expect: Any = None


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as pw_expect

    expect = pw_expect


LOAD_PROMPT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "2": {"class_type": "LoadImageMask", "inputs": {"image": "mask.png", "channel": "alpha"}},
    "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "inv"}},
}
# ComfyUI's Save (schema 0.4): LoadImage -> ImageInvert -> SaveImage, with a group and a note.
EDITOR = {
    "id": "3f1c2a9e-5d4b-4c1e-9a7f-2b8d6e0c4a11",
    "revision": 0,
    "last_node_id": 4,
    "last_link_id": 2,
    "nodes": [
        {
            "id": 1,
            "type": "LoadImage",
            "pos": [50, 100],
            "size": [315, 314],
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": [],
            "outputs": [
                {"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0},
                {"name": "MASK", "type": "MASK", "links": None},
            ],
            "properties": {"Node name for S&R": "LoadImage"},
            "widgets_values": ["photo.png", "image"],
        },
        {
            "id": 2,
            "type": "ImageInvert",
            "pos": [420, 100],
            "size": [210, 26],
            "flags": {},
            "order": 1,
            "mode": 0,
            "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2], "slot_index": 0}],
            "properties": {"Node name for S&R": "ImageInvert"},
            "widgets_values": [],
        },
        {
            "id": 3,
            "type": "SaveImage",
            "pos": [680, 100],
            "size": [315, 270],
            "flags": {},
            "order": 2,
            "mode": 0,
            "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
            "outputs": [],
            "properties": {},
            "widgets_values": ["inverted"],
        },
        {"id": 4, "type": "Note", "pos": [50, 450], "mode": 0, "properties": {}, "widgets_values": ["Invert a photo"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    "groups": [{"id": 1, "title": "Invert", "bounding": [30, 20, 1000, 420]}],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}


def _photo_rgb(width: int, height: int) -> bytes:
    """A colour ramp with grain: it looks like something, and the grain keeps the PNG from
    compressing below what has to be uploaded (over what can ride inline in a 128 KB frame)."""
    out = bytearray()
    state = 12345
    for y in range(height):
        for x in range(width):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            grain = (state >> 16) % 28
            out += bytes((20 + x * 200 // width + grain, 40 + y * 160 // height + grain, 170 + grain))
    return bytes(out)


PHOTO_W, PHOTO_H = 320, 240
PHOTO_RGB = _photo_rgb(PHOTO_W, PHOTO_H)
PHOTO = png.encode_rgb(PHOTO_W, PHOTO_H, PHOTO_RGB)
MASK = png.encode_rgb(16, 16, bytes(range(256)) * 3)


def connect(page: Any, site: str, scripted: Any) -> None:
    page.goto(site + "/")
    page.fill("#ws-url", scripted.ws_url)
    page.fill("#token", scripted.token)
    page.click("#connect")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "open")


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def open_workflow(page: Any, path: Path) -> None:
    page.set_input_files("#wf-file", str(path))
    expect(page.locator("#wf-info")).to_be_visible()


def sent_job(scripted: Any) -> Any:
    runs = scripted.server.commands("run_job")
    assert len(runs) == 1
    return runs[0].data


def no_page_errors(page: Any) -> None:
    assert not [m for m in page.console_messages if m.startswith(("error", "pageerror"))], page.console_messages


# --------------------------------------------------------------------------- the file picker


def test_file_picker_attaches_files_and_the_run_sends_their_exact_bytes(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    page.set_input_files(
        "#input-files", [str(write(tmp_path, "photo.png", PHOTO)), str(write(tmp_path, "mask.png", MASK))]
    )

    items = page.locator("#attachments li")
    expect(items).to_have_count(2)
    expect(page.locator("#attachments .att-name").nth(0)).to_have_value("photo.png")
    expect(page.locator("#attachments .att-name").nth(1)).to_have_value("mask.png")
    expect(items.nth(0)).to_contain_text("image/png")
    expect(page.locator("#announce")).to_have_text("Attached 2 files: photo.png, mask.png.")

    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")

    data = sent_job(scripted)
    photo_ref, mask_ref = data.files
    assert (photo_ref.name, mask_ref.name) == ("photo.png", "mask.png")
    # Smallest first while the frame fits: the mask rides inline, the photo is uploaded.
    assert mask_ref.upload_id is None
    assert mask_ref.decoded() == MASK
    assert mask_ref.content_type == "image/png"
    assert photo_ref.upload_id is not None
    assert scripted.server.job_inputs[data.job_id] == [
        ("photo.png", PHOTO, "image/png"),
        ("mask.png", MASK, "image/png"),
    ]
    # One multipart POST from the page's origin: every field, then the file.
    (post,) = scripted.uploads.posts
    assert post["origin"] == static_site
    assert post["order"] == ["key", "Content-Type", "x-amz-meta-filename", "policy", "x-amz-signature", "file"]
    # The job view lists what the job was given.
    inputs = page.locator("#job-inputs li")
    expect(inputs).to_have_count(2)
    expect(inputs.nth(0)).to_have_text(re.compile(r"photo\.png · image/png · \d+\.\d KB"))
    expect(page.locator("#attachments li").nth(0)).to_contain_text("Uploaded")
    expect(page.locator("#attachments li").nth(1)).to_contain_text("Sent with the job")
    no_page_errors(page)


def test_a_second_run_reuses_the_upload(page: Any, static_site: str, scripted: Any, tmp_path: Path) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    page.set_input_files("#input-files", str(write(tmp_path, "photo.png", PHOTO)))
    for n in (1, 2):
        page.click("#run")
        expect(page.locator("#job")).to_have_attribute("data-status", "completed")
        expect(page.locator("#run")).to_be_enabled()
        assert len(scripted.server.commands("run_job")) == n
    first, second = (c.data for c in scripted.server.commands("run_job"))
    assert first.files[0].upload_id == second.files[0].upload_id
    assert len(scripted.uploads.posts) == 1


# --------------------------------------------------------------------------- drag and drop


def test_dropped_files_are_attached_renamed_and_sent(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "Holiday photo?.png", { type: "image/png" }));
            return dt;
        }""",
        base64.b64encode(PHOTO).decode(),
    )
    page.dispatch_event("#drop-zone", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": transfer})
    expect(page.locator("#drop-zone")).to_have_attribute("data-state", "over")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop-zone")).to_have_attribute("data-state", "idle")

    name = page.locator("#attachments .att-name")
    expect(name).to_have_count(1)
    expect(name).to_have_value("Holiday photo_.png")  # the file's own name, made safe
    name.fill("photo.png")  # the name LoadImage asks for
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")

    data = sent_job(scripted)
    assert [f.name for f in data.files] == ["photo.png"]
    assert scripted.server.job_inputs[data.job_id] == [("photo.png", PHOTO, "image/png")]
    stored = scripted.uploads.get(data.files[0].upload_id)
    assert stored is not None
    assert stored.filename == "photo.png"
    no_page_errors(page)


def test_a_file_dropped_beside_the_zone_does_not_leave_the_page(page: Any, static_site: str, scripted: Any) -> None:
    connect(page, static_site, scripted)
    transfer = page.evaluate_handle(
        "() => { const dt = new DataTransfer(); dt.items.add(new File(['x'], 'a.png')); return dt; }"
    )
    prevented = page.evaluate(
        """(dt) => {
            const ev = new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true });
            document.getElementById('job').dispatchEvent(ev);
            return ev.defaultPrevented;
        }""",
        transfer,
    )
    assert prevented
    expect(page.locator("#attachments li")).to_have_count(0)


# --------------------------------------------------------------------------- names and refusals


def test_a_bad_or_repeated_name_blocks_the_run_and_says_why(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    page.set_input_files("#input-files", [str(write(tmp_path, "a.png", MASK)), str(write(tmp_path, "b.png", MASK))])
    names = page.locator("#attachments .att-name")
    names.nth(0).fill("../a.png")
    expect(names.nth(0)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#attachments .att-error").nth(0)).to_contain_text("no folders")

    page.click("#run")
    expect(names.nth(0)).to_be_focused()
    expect(page.locator("#announce")).to_contain_text("Fix the name of a.png")
    names.nth(0).fill("b.png")
    for i in (0, 1):
        expect(page.locator("#attachments .att-error").nth(i)).to_contain_text("also named “b.png”")
    page.click("#run")
    names.nth(0).fill("a.png")
    expect(names.nth(0)).not_to_have_attribute("aria-invalid", "true")
    assert scripted.server.commands("run_job") == []
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")


def test_a_file_the_store_refuses_is_shown_on_the_file_and_no_job_starts(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    scripted.server.admit_delta = -1  # the POST policy admits one byte less: S3 says EntityTooLarge
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    page.set_input_files("#input-files", str(write(tmp_path, "photo.png", PHOTO)))
    page.click("#run")

    expect(page.locator("#job")).to_have_attribute("data-status", "failed")
    error = page.locator("#attachments .att-error")
    expect(error).to_contain_text("(HTTP 400 EntityTooLarge)")
    expect(error).to_contain_text(f"the upload admits at most {len(PHOTO) - 1}")
    expect(page.locator("#job-error")).to_contain_text("The job was not started")
    expect(page.locator("#announce")).to_contain_text("The job was not started")
    assert scripted.server.commands("run_job") == []
    assert scripted.uploads.objects == {}


def test_a_content_type_the_backend_refuses_is_named(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    page.set_input_files("#input-files", str(write(tmp_path, "logo.svg", "<svg/>" * 30_000)))
    page.click("#run")

    expect(page.locator("#attachments .att-error")).to_contain_text("content type 'image/svg+xml' is not allowed")
    expect(page.locator("#job")).to_have_attribute("data-status", "failed")
    assert scripted.uploads.posts == []


# --------------------------------------------------------------------------- editor workflows, big workflows


def test_an_editor_workflow_opens_as_saved_and_runs_as_workflow(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "invert-photo.json", json.dumps(EDITOR)))
    expect(page.locator("#wf-kind")).to_have_text("ComfyUI workflow, 4 nodes")
    expect(page.locator("#wf-name")).to_have_text("invert-photo")
    expect(page.locator("#wf-file-error")).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved")
    saved = scripted.server.commands("save_workflow")[0].data
    assert saved.workflow is not None
    assert saved.workflow.model_dump() == EDITOR

    page.set_input_files("#input-files", str(write(tmp_path, "photo.png", PHOTO)))
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")
    data = sent_job(scripted)
    assert data.workflow is not None
    assert data.workflow.model_dump() == EDITOR  # links, groups, the note and all
    assert data.graph is None
    assert data.prompt is None
    assert data.workflow_id == saved.workflow_id
    no_page_errors(page)


def test_a_workflow_over_one_frame_is_uploaded_and_run_by_upload_id(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    prompt: dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}}}
    for i in range(2, 1002):
        prompt[str(i)] = {
            "class_type": "ImageBlend",
            "inputs": {"image1": [str(i - 1), 0], "image2": ["1", 0], "blend_factor": 0.5, "blend_mode": "normal"},
            "_meta": {"title": f"Blend {i}"},
        }
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "big.json", json.dumps(prompt)))
    expect(page.locator("#save-state")).to_contain_text("too large to save on the server")
    assert scripted.server.commands("save_workflow") == []
    page.set_input_files("#input-files", str(write(tmp_path, "photo.png", MASK)))
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")

    data = sent_job(scripted)
    assert data.prompt is None
    assert data.workflow_upload_id is not None
    assert scripted.server.uploaded_workflows[data.job_id] == prompt
    assert data.files[0].decoded() == MASK  # the small file still rides inline
    request = scripted.server.commands("request_upload")[0].data
    assert (request.filename, request.content_type) == ("workflow.json", "application/json")


# --------------------------------------------------------------------------- the job's inputs, accessibility


def test_a_job_picked_from_the_history_lists_its_inputs(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    page.set_input_files(
        "#input-files", [str(write(tmp_path, "photo.png", PHOTO)), str(write(tmp_path, "mask.png", MASK))]
    )
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")
    job_id = sent_job(scripted).job_id

    page.reload()  # nothing of the run is left in the page: the inputs come from get_job
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "open")
    page.click(f"#history button[data-job-id='{job_id}']")
    inputs = page.locator("#job-inputs li")
    expect(inputs).to_have_count(2)
    expect(inputs.nth(0)).to_have_attribute("data-name", "photo.png")
    expect(inputs.nth(1)).to_contain_text(f"mask.png · image/png · {len(MASK)} B")
    expect(page.locator("#job-inputs-heading")).to_have_text("Input files")


def test_input_controls_are_labelled_and_work_from_the_keyboard(
    page: Any, static_site: str, scripted: Any, tmp_path: Path
) -> None:
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "load.json", json.dumps(LOAD_PROMPT)))
    page.set_input_files("#input-files", [str(write(tmp_path, "a.png", MASK)), str(write(tmp_path, "b.png", MASK))])
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button, textarea, progress')]
            .filter(el => el.offsetParent !== null)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !(el.textContent || '').trim())
            .map(el => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    assert page.locator("#input-files").get_attribute("multiple") is not None
    expect(page.get_by_label("Name in the workflow for a.png")).to_have_value("a.png")
    expect(page.get_by_label("Attach files")).to_have_attribute("type", "file")

    # Keyboard: Tab from the first name to its Remove button, Enter removes it, focus stays in the list.
    page.focus("#attachments .att-name >> nth=0")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Remove a.png")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#attachments li")).to_have_count(1)
    expect(page.get_by_role("button", name="Remove b.png")).to_be_focused()
    expect(page.locator("#announce")).to_have_text("Removed a.png.")
    assert page.get_attribute("#inputs-error", "role") == "alert"


def test_screenshot_of_a_run_with_input_files(
    page: Any, static_site: str, scripted: Any, tmp_path: Path, save_screenshot: Any
) -> None:
    # The output shown is the photo inverted (computed here: the scripted backend runs no ComfyUI).
    inverted = png.encode_rgb(PHOTO_W, PHOTO_H, png.inverted(PHOTO_RGB))
    value = OutputValue(
        filename="inverted_00001_.png",
        content_type="image/png",
        size=len(inverted),
        data=base64.b64encode(inverted).decode(),
    )
    out = JobOutput(node_id="3", node_name="SaveImage", output_name="images", output_type="image", value=value)
    scripted.server.outputs = lambda *, inline: [out]  # type: ignore[method-assign]
    connect(page, static_site, scripted)
    open_workflow(page, write(tmp_path, "invert-photo.json", json.dumps(EDITOR)))
    page.set_input_files(
        "#input-files", [str(write(tmp_path, "photo.png", PHOTO)), str(write(tmp_path, "mask.png", MASK))]
    )
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")
    expect(page.locator("#outputs img")).to_have_count(1)
    expect(page.locator("#job-inputs li")).to_have_count(2)
    expect(page.locator("#announce")).to_have_text("Job completed with 1 output.")
    path = save_screenshot(page, "inputs.png", docs_name="screenshot-inputs.png")
    assert path.stat().st_size > 10_000
