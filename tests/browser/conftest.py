"""Fixtures for the web client's tests in headless Chromium (marker ``browser``).

The page under test is the real one from ``tools/comfyroute_tools/web/``, served by
``comfyroute dev`` (``DevStack``) wired to the fake ComfyUI and fake RunPod servers, so a run
goes page -> WebSocket gateway -> handlers -> Step Functions poll loop -> fake executor and back.

The browser is Debian's ``/usr/bin/chromium`` driven by the Python ``playwright`` package
(``.ci/browser-deps.sh`` installs both; ``playwright install`` is never used). Without them the
tests skip, unless ``CI`` is set: in CI a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = Path(os.environ.get("COMFYROUTE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
# Playwright's per-action/expectation timeout; generous for a 2-core CI machine, and only a
# ceiling: every wait returns as soon as the page reaches the state.
PAGE_TIMEOUT_MS = 20_000


def _missing_browser_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python 'playwright' package is not installed (run .ci/browser-deps.sh)"
    if not CHROMIUM.is_file():
        return f"Chromium is not installed at {CHROMIUM} (run .ci/browser-deps.sh)"
    return None


@pytest.fixture(scope="session")
def _browser_available() -> None:
    reason = _missing_browser_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _fresh_artifacts() -> None:
    # Failure artifacts of an earlier run would read as failures of this one.
    for stale in ARTIFACTS.glob("FAILED-*"):
        stale.unlink()


# Module scope, not session: playwright's sync API keeps an asyncio loop running in this
# thread while it is open, and the asyncio tests in other files need it closed.
@pytest.fixture(scope="module")
def browser(_browser_available: None, _fresh_artifacts: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page (own localStorage) at 1280x800; on failure its screenshot and console go to artifacts/."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    pg.console_messages = console  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        if request.node.stash.get(_CALL_FAILED, False):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = request.node.name.replace("/", "_")
            try:
                pg.screenshot(path=str(ARTIFACTS / f"FAILED-{name}.png"), full_page=True)
            except Exception as exc:  # a crashed page must not hide the real failure
                console.append(f"(no screenshot: {exc})")
            (ARTIFACTS / f"FAILED-{name}.console.txt").write_text("\n".join(console), encoding="utf-8")
        context.close()


def _save_screenshot(pg: Any, name: str, *, docs: bool = True, docs_name: str = "screenshot.png") -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    pg.screenshot(path=str(path))
    if docs and os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, REPO / "docs" / docs_name)
    return path


@pytest.fixture
def save_screenshot() -> Any:
    """save_screenshot(page, NAME, docs=True, docs_name="screenshot.png"): to
    artifacts/browser/NAME, and (docs=True) to docs/DOCS_NAME when UPDATE_SCREENSHOT=1."""
    return _save_screenshot


# --------------------------------------------------------------------------- static hosting

WEB_DIR = REPO / "tools" / "comfyroute_tools" / "web"


class _QuietStaticHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def static_site(_browser_available: None) -> Iterator[str]:
    """The web client served as plain static files by a server that knows nothing of comfyroute,
    on another origin than the backend: how it is hosted on S3 + CloudFront."""
    handler = partial(_QuietStaticHandler, directory=str(WEB_DIR))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- the backend


BROWSER_TOKEN = "browser-tests-token-0123456789"
RUNPOD_KEY = "browser-tests-runpod-key"
# A fake ComfyUI node takes this long normally, and SLOW_NODE_SECONDS inside Backend.slow().
FAST_NODE_SECONDS = 0.05
SLOW_NODE_SECONDS = 30.0


class Backend:
    """The dev stack wired to a fake ComfyUI (the "local" executor) and a fake RunPod whose
    worker runs prompts on that same fake ComfyUI."""

    def __init__(self, dev: Any, comfy: Any, runpod: Any) -> None:
        self.dev = dev
        self.comfy = comfy
        self.runpod = runpod

    @property
    def http_url(self) -> str:
        return str(self.dev.http_url)

    @property
    def ws_url(self) -> str:
        return str(self.dev.ws_url) + "/"

    @property
    def token(self) -> str:
        return str(self.dev.token)

    def runpod_runs_on(self, endpoint_id: str) -> int:
        """How many jobs the fake RunPod accepted on this endpoint."""
        return sum(1 for job in list(self.runpod.jobs.values()) if job.endpoint_id == endpoint_id)

    @contextmanager
    def slow(self, node_seconds: float = SLOW_NODE_SECONDS) -> Iterator[None]:
        """Fake ComfyUI nodes take ``node_seconds`` each (interrupts still stop them at once)."""
        engine = self.comfy.engine
        engine.node_seconds = node_seconds
        try:
            yield
        finally:
            engine.node_seconds = FAST_NODE_SECONDS


@pytest.fixture(scope="module")
def backend(_browser_available: None) -> Iterator[Backend]:
    """Module-scoped: one DevStack may run per process, so it is stopped before other modules
    (the e2e tests) start theirs."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # the fakes import themselves as tests.fakes.*
    from comfyroute_tools.dev.stack import DevStack
    from tests.fakes import FakeComfyUI, FakeRunPod

    with (
        FakeComfyUI(node_seconds=FAST_NODE_SECONDS) as comfy,
        FakeRunPod(comfy=comfy, api_key=RUNPOD_KEY, queue_seconds=0.05) as runpod,
    ):
        dev = DevStack(
            "127.0.0.1",
            0,
            comfyui_addr=comfy.addr,
            runpod_api_base=runpod.url,
            runpod_api_key=RUNPOD_KEY,
            token=BROWSER_TOKEN,
            handler_log_level="WARNING",
            # Poll every second (the template's cap is longer) so finished jobs show up quickly.
            env_overrides={"POLL_INTERVAL_CAP_SECONDS": "1"},
        )
        dev.start()
        try:
            yield Backend(dev, comfy, runpod)
        finally:
            dev.stop()


# --------------------------------------------------------------------------- a scripted backend


class ScriptedBackend:
    """The scripted FakeServer of the client tests (tests/support/fake_backend.py) with its
    S3-like UploadServer, for what the dev stack cannot do yet: ``request_upload`` answered with
    a presigned POST, ``run_job.files`` / ``workflow_upload_id`` resolved against the bytes that
    arrived, and input files listed by ``get_job``. The page reaches it as a deployed page
    reaches its backend: the WebSocket, the upload store and the static site are three origins."""

    def __init__(self, server: Any, uploads: Any, files: Any) -> None:
        self.server = server
        self.uploads = uploads
        self.files = files

    @property
    def ws_url(self) -> str:
        return str(self.server.url)

    @property
    def token(self) -> str:
        return str(self.server.token)


@pytest.fixture
def scripted(_browser_available: None) -> Iterator[ScriptedBackend]:
    from support.fake_backend import FakeServer, FileServer, UploadServer

    with FileServer() as files, UploadServer() as uploads, FakeServer(files, uploads) as server:
        yield ScriptedBackend(server, uploads, files)
