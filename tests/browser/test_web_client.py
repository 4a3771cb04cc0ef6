"""The web client in headless Chromium against the dev stack and the fake executors.

Every run goes page -> dev gateway -> the real handlers -> Step Functions (moto) -> fake ComfyUI
or fake RunPod, and back through the Management API to the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

expect: Any = None  # playwright.sync_api.expect, imported once the browser fixture has run


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as pw_expect

    expect = pw_expect


# ComfyUI API-format prompt that needs no model files (reference recording empty_invert_save).
INVERT_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x1F5FBF}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "browser"}},
}


# Two nodes that ComfyUI's validation rejects: EmptyImage width 0 (below its minimum) and an
# ImageInvert with nothing connected to its required `image` input.
INVALID_GRAPH = {
    "id": "wf-invalid",
    "name": "Invalid graph",
    "graph": {
        "nodes": [
            {
                "id": "1",
                "type": "comfy.EmptyImage",
                "properties": {"width": 0, "height": 64, "batch_size": 1, "color": 0},
            },
            {"id": "2", "type": "comfy.ImageInvert", "properties": {}},
            {"id": "3", "type": "comfy.SaveImage", "properties": {"filename_prefix": "bad"}},
            {"id": "4", "type": "comfy.ImageInvert", "properties": {}},
            {"id": "5", "type": "comfy.SaveImage", "properties": {"filename_prefix": "bad"}},
        ],
        "edges": [
            {"source": "1", "sourceHandle": "output_0", "target": "2", "targetHandle": "image"},
            {"source": "2", "sourceHandle": "output_0", "target": "3", "targetHandle": "images"},
            {"source": "4", "sourceHandle": "output_0", "target": "5", "targetHandle": "images"},
        ],
    },
}
INVALID_NODES = {"1": "EmptyImage", "4": "ImageInvert"}


def invert_graph(workflow_id: str, name: str) -> dict[str, Any]:
    """The same workflow as a nodetool graph, wrapped the way nodetool saves workflows."""
    return {
        "id": workflow_id,
        "name": name,
        "graph": {
            "nodes": [
                {
                    "id": "1",
                    "type": "comfy.EmptyImage",
                    "properties": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
                },
                {"id": "2", "type": "comfy.ImageInvert", "properties": {}},
                {"id": "3", "type": "comfy.SaveImage", "properties": {"filename_prefix": "browser"}},
            ],
            "edges": [
                {"id": "e1", "source": "1", "sourceHandle": "output_0", "target": "2", "targetHandle": "image"},
                {"id": "e2", "source": "2", "sourceHandle": "output_0", "target": "3", "targetHandle": "images"},
            ],
        },
    }


def write_json(tmp_path: Path, name: str, obj: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def connect(page: Any, backend: Any) -> None:
    page.goto(backend.http_url + "/")
    # Served by the dev stack, the page suggests its own host as the WebSocket URL.
    expect(page.locator("#ws-url")).to_have_value(backend.ws_url)
    page.fill("#token", backend.token)
    page.click("#connect")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "open")


def open_file(page: Any, path: Path) -> None:
    page.set_input_files("#wf-file", str(path))


def run_and_wait(page: Any, status: str = "completed") -> None:
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", status)


# --------------------------------------------------------------------------- the executor selector


def test_runpod_choice_shows_endpoint_field_runs_and_shows_the_image(
    page: Any, backend: Any, tmp_path: Path, save_screenshot: Any
) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    expect(page.locator("#wf-name")).to_have_text("invert")
    expect(page.locator("#executor")).to_have_value("local")
    expect(page.locator("#endpoint")).to_be_hidden()

    page.select_option("#executor", "runpod")
    expect(page.locator("#endpoint")).to_be_visible()
    page.fill("#endpoint", "ep-browser")
    run_and_wait(page)

    image = page.locator("#outputs figure[data-kind=image] img")
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", re.compile(r"Output image .*\.png"))
    # The image really decoded: a broken src has naturalWidth 0.
    page.wait_for_function("() => document.querySelector('#outputs img').naturalWidth === 64")
    expect(page.locator("#job-executor")).to_have_text("RunPod")
    expect(page.locator("#outputs a.download")).to_have_attribute("download", re.compile(r"\.png$"))
    assert backend.runpod_runs_on("ep-browser") == 1
    expect(page.locator("#announce")).to_have_text("Job completed with 1 output.")
    save_screenshot(page, "finished-job.png")


def test_switching_back_to_local_hides_the_field_and_survives_a_reload(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "graph.json", invert_graph("wf-reload", "Reload test")))
    expect(page.locator("#wf-id")).to_have_text("wf-reload")
    page.select_option("#executor", "runpod")
    page.fill("#endpoint", "ep-kept")
    page.locator("#endpoint").blur()
    expect(page.locator("#save-state")).to_have_text("Saved")

    page.select_option("#executor", "local")
    expect(page.locator("#endpoint")).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved")

    page.reload()
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "open")  # remembered URL + token
    expect(page.locator("#wf-id")).to_have_text("wf-reload")
    expect(page.locator("#executor")).to_have_value("local")
    expect(page.locator("#endpoint")).to_be_hidden()
    # The endpoint typed earlier is kept for when RunPod is chosen again.
    page.select_option("#executor", "runpod")
    expect(page.locator("#endpoint")).to_have_value("ep-kept")
    page.select_option("#executor", "local")

    # The restored choice is what the run uses.
    runpod_before = backend.runpod_runs_on("ep-kept")
    run_and_wait(page)
    expect(page.locator("#job-executor")).to_have_text("Local")
    assert backend.runpod_runs_on("ep-kept") == runpod_before


def test_runpod_without_endpoint_asks_for_it_instead_of_running(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    page.select_option("#executor", "runpod")
    page.click("#run")
    expect(page.locator("#endpoint-error")).to_contain_text("endpoint ID")
    expect(page.locator("#endpoint")).to_be_focused()
    expect(page.locator("#endpoint")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#job-body")).to_be_hidden()


# --------------------------------------------------------------------------- errors, cancel


def test_invalid_graph_lists_each_node_error(page: Any, backend: Any, tmp_path: Path, save_screenshot: Any) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "bad.json", INVALID_GRAPH))
    page.click("#run")
    expect(page.locator("#job")).to_have_attribute("data-status", "failed")
    error = page.locator("#job-error")
    expect(error).to_be_visible()
    items = error.locator("li[data-node-id]")
    expect(items).to_have_count(len(INVALID_NODES))
    for node_id, node_class in INVALID_NODES.items():
        expect(error.locator(f"li[data-node-id='{node_id}']")).to_contain_text(f"Node {node_id} ({node_class})")
    expect(error.locator("li[data-node-id='1']")).to_contain_text("smaller than min")
    expect(error.locator("li[data-node-id='4']")).to_contain_text("Required input is missing")
    expect(page.locator("#announce")).to_contain_text(re.compile(r"failed|not started", re.I))
    save_screenshot(page, "invalid-graph.png", docs=False)


def test_a_file_that_is_not_a_workflow_is_explained(page: Any, backend: Any, tmp_path: Path) -> None:
    page.goto(backend.http_url + "/")
    open_file(page, write_json(tmp_path, "notes.json", {"title": "not a workflow", "items": []}))
    expect(page.locator("#wf-file-error")).to_contain_text("neither a nodetool graph")
    expect(page.locator("#wf-file-error")).to_contain_text("a ComfyUI workflow ({nodes, links})")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    open_file(page, tmp_path / "broken.json")
    expect(page.locator("#wf-file-error")).to_contain_text("not valid JSON")
    expect(page.locator("#wf-info")).to_be_hidden()


def test_cancel_stops_a_slow_run(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    with backend.slow():
        page.click("#run")
        expect(page.locator("#job")).to_have_attribute("data-status", re.compile("queued|running"))
        expect(page.locator("#cancel")).to_be_enabled()
        interrupts_before = len(backend.comfy.interrupts) + len(backend.comfy.deletes)
        page.click("#cancel")
        expect(page.locator("#job")).to_have_attribute("data-status", "cancelled")
        # The fake ComfyUI was told to stop (interrupt while running, or removal from its queue).
        assert len(backend.comfy.interrupts) + len(backend.comfy.deletes) > interrupts_before
    expect(page.locator("#job-status")).to_have_text("Cancelled")
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#run")).to_be_enabled()


# --------------------------------------------------------------------------- history, reconnect


def test_history_lists_jobs_and_shows_a_picked_one(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    run_and_wait(page)
    job_id = page.locator("#job-id").inner_text()
    entry = page.locator(f"#history button[data-job-id='{job_id}']")
    expect(entry).to_contain_text("Completed")

    page.reload()  # a fresh page knows nothing of the job but what get_job tells it
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "open")
    page.locator(f"#history button[data-job-id='{job_id}']").click()
    expect(page.locator("#job-id")).to_have_text(job_id)
    expect(page.locator("#job-status")).to_have_text("Completed")
    expect(page.locator("#outputs img")).to_have_count(1)
    expect(page.locator(f"#history button[data-job-id='{job_id}']")).to_have_attribute("aria-current", "true")


def test_a_dropped_connection_reconnects_and_catches_up(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    with backend.slow(node_seconds=1.0):
        page.click("#run")
        expect(page.locator("#job")).to_have_attribute("data-status", re.compile("queued|running"))
        page.evaluate("window.comfyroute.dropConnection()")
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "reconnecting")
        expect(page.locator("#conn-state")).to_have_attribute("data-state", "open")
        # The backend pushes to the connection that started the job, which is gone; the page
        # follows the job with get_job until it ends, outputs included.
        expect(page.locator("#job")).to_have_attribute("data-status", "completed")
    expect(page.locator("#outputs img")).to_have_count(1)


def test_a_reload_during_a_run_picks_the_job_up_again(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    with backend.slow(node_seconds=1.0):
        page.click("#run")
        expect(page.locator("#job")).to_have_attribute("data-status", re.compile("queued|running"))
        job_id = page.locator("#job-id").inner_text()
        page.reload()
        expect(page.locator("#job-id")).to_have_text(job_id)
        expect(page.locator("#job")).to_have_attribute("data-status", "completed")
    expect(page.locator("#outputs img")).to_have_count(1)


# --------------------------------------------------------------------------- accessibility, layout


def test_every_control_is_labelled_and_status_is_announced(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    page.select_option("#executor", "runpod")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button, textarea')]
            .filter(el => el.offsetParent !== null)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !(el.textContent || '').trim())
            .map(el => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    assert page.get_attribute("#token", "type") == "password"
    assert page.get_attribute("#announce", "aria-live") == "polite"

    # Keyboard only: tab to the executor, pick Local with the arrow key, tab on to Run, press Enter.
    page.focus("#executor")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#executor")).to_have_value("local")
    expect(page.locator("#endpoint")).to_be_hidden()
    page.keyboard.press("Tab")
    expect(page.locator("#run")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # visible focus
    page.keyboard.press("Enter")
    expect(page.locator("#job")).to_have_attribute("data-status", "completed")
    expect(page.locator("#announce")).to_have_text(re.compile(r"Job completed with 1 output"))


def test_layout_fits_1280x800_without_horizontal_scroll(page: Any, backend: Any, tmp_path: Path) -> None:
    connect(page, backend)
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    run_and_wait(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280
    box = page.locator("#run").bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= 800


def test_served_as_plain_static_files_it_connects_to_a_backend_elsewhere(
    page: Any, backend: Any, static_site: str, tmp_path: Path
) -> None:
    page.goto(static_site + "/")
    # Its own host is only a suggestion; the user enters the backend's URL.
    expect(page.locator("#ws-url")).to_have_value(static_site.replace("http://", "ws://") + "/")
    page.fill("#ws-url", backend.ws_url)
    page.fill("#token", backend.token)
    page.click("#connect")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "open")
    open_file(page, write_json(tmp_path, "invert.json", INVERT_PROMPT))
    run_and_wait(page)
    expect(page.locator("#outputs img")).to_have_count(1)
    assert not [m for m in page.console_messages if m.startswith(("error", "pageerror"))]


def test_a_wrong_token_is_reported_without_retrying(page: Any, backend: Any) -> None:
    page.goto(backend.http_url + "/")
    page.fill("#token", "not-the-token-at-all")
    page.click("#connect")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "failed")
    expect(page.locator("#conn-state")).to_contain_text("Check the WebSocket URL and the token")
    expect(page.locator("#run")).to_be_disabled()
