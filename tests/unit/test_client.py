"""ComfyrouteClient against a small protocol-speaking WebSocket server on 127.0.0.1.

``FakeServer`` (tests/support/fake_backend.py) is not the backend: it plays scripted job
timelines so the client's behaviour can be checked: pairing of answers, output collection,
reconnect + get_job catch-up, downloads, errors, token handling. Commands are parsed with the
real ``parse_command``, so a malformed client frame fails the test. Uploads and input files are
in ``test_client_uploads.py``; ``test_client_cli.py`` drives the CLI against the same server.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.fake_backend import (
    INLINE_BYTES,
    PROMPT,
    TOKEN,
    URI_BYTES,
    URI_PATH,
    FakeServer,
    FileServer,
    UploadServer,
)

from comfyroute.protocol import MAX_MESSAGE_BYTES, ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import (
    JobUpdate,
    JobView,
    NodeProgress,
    OutputValue,
    ServerMessage,
    WorkflowSaved,
)
from comfyroute_tools.client import (
    AuthError,
    ComfyrouteClient,
    ConnectError,
    DownloadError,
    FollowTimeout,
    InvalidRequest,
    RequestError,
    RequestTimeout,
    download,
    download_blocking,
    safe_filename,
    split_token,
)


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as f:
        yield f


@pytest.fixture
def uploads() -> Iterator[UploadServer]:
    with UploadServer() as u:
        yield u


@pytest.fixture
def server(files: FileServer, uploads: UploadServer) -> Iterator[FakeServer]:
    with FakeServer(files, uploads) as s:
        yield s


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- running jobs


def test_run_job_follow_and_download_writes_identical_files(server: FakeServer, tmp_path: Path) -> None:
    seen: list[ServerMessage] = []

    async def go() -> tuple[str, Any, list[Path]]:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            job_id = await client.run_job(prompt=PROMPT, settings={"comfy_executor": "local"})
            result = await client.follow(job_id, on_message=seen.append)
            paths = [await download(out, tmp_path) for out in result.outputs]
            return job_id, result, paths

    job_id, result, paths = run(go())
    assert server.tokens_seen == [TOKEN]  # decoded by the server: the client encoded it properly
    sent = server.commands("run_job")[0].data
    assert sent.job_id == job_id
    assert sent.prompt == PROMPT
    assert sent.settings is not None
    assert sent.settings.comfy_executor is ExecutorKind.LOCAL
    assert result.ok
    assert result.status is JobStatus.COMPLETED
    assert result.duration == 2.5
    assert [o.value.filename for o in result.outputs] == ["../../test_00001_.png", "clip.webp"]
    assert [p.name for p in paths] == ["test_00001_.png", "clip.webp"]
    assert all(p.parent == tmp_path for p in paths)
    assert paths[0].read_bytes() == INLINE_BYTES
    assert paths[1].read_bytes() == URI_BYTES
    statuses = [m.status for m in seen if isinstance(m, JobUpdate)]
    assert statuses == [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
    assert [(m.progress, m.total) for m in seen if isinstance(m, NodeProgress)] == [(1, 2), (2, 2)]
    # The completed job's output list was confirmed with get_job; no duplicates came of it.
    assert len(server.commands("get_job")) == 1
    assert len(result.outputs) == 2


@pytest.mark.parametrize(("output_count", "asks"), [(2, 0), (3, 1)])
def test_a_terminal_update_counting_every_output_received_needs_no_get_job(
    server: FakeServer, output_count: int, asks: int
) -> None:
    # The fake pushes two outputs. A terminal update that counts two leaves nothing to confirm;
    # one that counts more than arrived makes the client ask get_job for the rest.
    server.output_count = output_count

    async def go() -> Any:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            job_id = await client.run_job(prompt=PROMPT)
            return await client.follow(job_id)

    result = run(go())
    assert result.status is JobStatus.COMPLETED
    assert len(result.outputs) == 2
    assert len(server.commands("get_job")) == asks


def test_run_job_generates_uuid_job_ids_and_keeps_given_ones(server: FakeServer) -> None:
    server.mode = "failed"

    async def go() -> tuple[str, str]:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            generated = await client.run_job(prompt=PROMPT)
            given = await client.run_job(prompt=PROMPT, job_id="my-job.1")
            await client.follow(generated)
            await client.follow(given)
            return generated, given

    generated, given = run(go())
    import uuid

    assert str(uuid.UUID(generated)) == generated
    assert given == "my-job.1"
    assert [c.data.job_id for c in server.commands("run_job")] == [generated, given]


def test_failed_job_is_a_result_with_the_error(server: FakeServer) -> None:
    server.mode = "failed"

    async def go() -> Any:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            return await client.follow(await client.run_job(prompt=PROMPT))

    result = run(go())
    assert not result.ok
    assert result.status is JobStatus.FAILED
    assert result.error == "ImageBlur (node 3): blur_radius must be at least 1"
    assert result.outputs == []


def test_refused_run_job_raises_request_error(server: FakeServer) -> None:
    server.mode = "reject"

    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.follow(await client.run_job(prompt=PROMPT))

    with pytest.raises(RequestError) as err:
        run(go())
    assert err.value.code == "bad_request"
    assert err.value.request == "run_job"
    assert "SaveImage needs 'images'" in str(err.value)


def test_follow_reconnects_after_a_drop_and_catches_up_with_get_job(server: FakeServer, tmp_path: Path) -> None:
    server.mode = "drop"

    async def go() -> Any:
        client = ComfyrouteClient(server.url, TOKEN, reconnect_delay=0.01)
        async with client:
            job_id = await client.run_job(prompt=PROMPT)
            result = await client.follow(job_id)
            assert client.connected
            paths = [await download(o, tmp_path) for o in result.outputs]
            return job_id, result, paths

    job_id, result, paths = run(go())
    assert server.connections == 2
    assert [(n, c.data.job_id) for n, c in server.received if c.command == "get_job"] == [(2, job_id)]
    assert result.status is JobStatus.COMPLETED
    assert len(result.outputs) == 2
    assert paths[0].read_bytes() == INLINE_BYTES  # fetched via its uri this time
    assert paths[1].read_bytes() == URI_BYTES


def test_follow_asks_get_job_when_the_job_goes_quiet(server: FakeServer) -> None:
    server.mode = "silent"
    seen: list[ServerMessage] = []

    async def go() -> Any:
        async with ComfyrouteClient(server.url, TOKEN, poll_interval=0.1) as client:
            return await client.follow(await client.run_job(prompt=PROMPT), on_message=seen.append)

    result = run(go())
    assert result.status is JobStatus.COMPLETED
    assert [o.node_id for o in result.outputs] == ["2", "9"]
    assert len(server.commands("get_job")) >= 1
    assert server.connections == 1
    # The catch-up shows up as a job_update, so progress displays see the final status.
    assert [m.status for m in seen if isinstance(m, JobUpdate)][-1] is JobStatus.COMPLETED


def test_follow_timeout_names_the_last_status(server: FakeServer) -> None:
    server.mode = "hang"

    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.follow(await client.run_job(prompt=PROMPT), timeout=0.3)

    with pytest.raises(FollowTimeout) as err:
        run(go())
    assert err.value.last_status is JobStatus.RUNNING
    assert "running" in str(err.value)


def test_cancel_job_ends_a_running_job_as_cancelled(server: FakeServer) -> None:
    server.mode = "hang"
    running = threading.Event()
    server.on_running = running.set

    async def go() -> Any:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            job_id = await client.run_job(prompt=PROMPT)
            await asyncio.to_thread(running.wait, 10)
            await client.cancel_job(job_id)
            return job_id, await client.follow(job_id)

    job_id, result = run(go())
    assert [c.data.job_id for c in server.commands("cancel_job")] == [job_id]
    assert result.status is JobStatus.CANCELLED


# --------------------------------------------------------------------------- requests


def test_get_job_leaves_unrelated_messages_for_messages(server: FakeServer) -> None:
    server.mode = "failed"
    server.noise_before_job = True

    async def go() -> tuple[JobView, ServerMessage]:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            job_id = await client.run_job(prompt=PROMPT)
            await client.follow(job_id)
            view = await client.get_job(job_id)
            stream = client.messages()
            first = await anext(stream)
            await stream.aclose()
            return view, first

    view, first = run(go())
    assert view.status is JobStatus.FAILED
    assert isinstance(first, NodeProgress)
    assert first.job_id == "someone-else"


def test_messages_yields_everything_nobody_claimed(server: FakeServer) -> None:
    async def go() -> list[ServerMessage]:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.run_job(prompt=PROMPT, job_id="streamed")
            got: list[ServerMessage] = []
            async for msg in client.messages():
                got.append(msg)
                if isinstance(msg, JobUpdate) and msg.status.terminal:
                    return got
            return got

    got = run(go())
    assert [m.type for m in got] == [
        "job_update",
        "job_update",
        "node_progress",
        "node_progress",
        "output_update",
        "output_update",
        "job_update",
    ]


def test_get_job_of_an_unknown_job_raises_not_found(server: FakeServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.get_job("nope")

    with pytest.raises(RequestError) as err:
        run(go())
    assert err.value.code == "not_found"
    assert "no job nope" in str(err.value)


def test_list_jobs_ping_and_save_workflow(server: FakeServer) -> None:
    server.mode = "failed"

    async def go() -> tuple[list[JobView], WorkflowSaved]:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.ping()
            for job in ("a1", "b2", "c3"):
                await client.follow(await client.run_job(prompt=PROMPT, job_id=job))
            jobs = await client.list_jobs(limit=2)
            saved = await client.save_workflow(
                "wf-9", prompt=PROMPT, settings={"comfy_executor": "runpod", "runpod_endpoint_id": "ep1"}
            )
            return jobs, saved

    jobs, saved = run(go())
    assert [j.job_id for j in jobs] == ["a1", "b2"]
    assert server.commands("list_jobs")[0].data.limit == 2
    assert len(server.commands("ping")) == 1
    assert saved.workflow_id == "wf-9"
    assert saved.settings == {"comfy_executor": "runpod", "runpod_endpoint_id": "ep1"}


def test_unparseable_server_frames_are_skipped_with_a_warning(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.junk_before_pong = True

    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.ping()

    run(go())  # the pong after the junk still answers the ping
    warnings = [r.getMessage() for r in caplog.records if r.name == "comfyroute_tools.client"]
    assert len(warnings) == 2
    assert all("cannot parse" in w for w in warnings)


def test_an_unanswered_request_times_out(server: FakeServer) -> None:
    server.mute = {"ping"}

    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN, request_timeout=0.2) as client:
            await client.ping()

    with pytest.raises(RequestTimeout, match="no answer to ping"):
        run(go())


def test_invalid_commands_are_refused_before_sending(server: FakeServer) -> None:
    async def go() -> list[str]:
        problems = []
        async with ComfyrouteClient(server.url, TOKEN) as client:
            for call in (
                lambda: client.run_job(prompt=PROMPT, job_id="has space"),
                lambda: client.run_job(graph={"nodes": []}, prompt=PROMPT),
                # params stay in the frame (only a workflow moves to an upload)
                lambda: client.run_job(prompt=PROMPT, params={"1": {"t": "x" * MAX_MESSAGE_BYTES}}),
                lambda: client.list_jobs(limit=0),
                lambda: client.get_job("../etc"),
            ):
                with pytest.raises(InvalidRequest) as err:
                    await call()
                problems.append(str(err.value))
        return problems

    problems = run(go())
    assert "data.job_id" in problems[0]
    assert "give only one of" in problems[1]
    assert f"at most {MAX_MESSAGE_BYTES} bytes" in problems[2]
    assert "limit" in problems[3]
    assert "'../etc'" in problems[4]
    assert server.received == []


# --------------------------------------------------------------------------- connection and token


def test_refused_token_raises_auth_error_without_the_token(server: FakeServer) -> None:
    secret = "wrong/secret+value"
    client = ComfyrouteClient(server.url, secret)

    with pytest.raises(AuthError) as err:
        run(client.connect())
    assert err.value.status == 401
    text = f"{err.value} {err.value!r} {client!r} {client.url}"
    assert "token" in str(err.value)
    for form in (secret, "wrong%2Fsecret%2Bvalue"):
        assert form not in text
    assert err.value.__suppress_context__  # the library's exception (with the URL) is not chained


def test_token_in_the_url_is_replaced_and_hidden() -> None:
    client = ComfyrouteClient("ws://127.0.0.1:1/?token=old&x=1", TOKEN)
    assert client.url == "ws://127.0.0.1:1/?x=1"
    assert "old" not in repr(client)
    assert TOKEN not in repr(client)
    assert split_token("wss://h/p?token=a%2Bb&y=2") == ("wss://h/p?y=2", "a+b")


def test_unreachable_server_raises_connect_error_naming_the_url() -> None:
    url = f"ws://127.0.0.1:{free_port()}/"

    with pytest.raises(ConnectError) as err:
        run(ComfyrouteClient(url, TOKEN, open_timeout=2).connect())
    assert not isinstance(err.value, AuthError)
    assert url in str(err.value)
    assert TOKEN not in str(err.value)


def test_non_websocket_urls_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="not a WebSocket URL"):
        ComfyrouteClient("http://127.0.0.1:3001", TOKEN)
    with pytest.raises(InvalidRequest, match="token is required"):
        ComfyrouteClient("ws://127.0.0.1:3001", "")


# --------------------------------------------------------------------------- downloads


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("..", "output"),
        (".hidden.png", "hidden.png"),
        ("a b(1).png", "a b(1).png"),
        ("semi;colon|pipe*.png", "semi_colon_pipe_.png"),
        ("nul\x00byte.png", "nulbyte.png"),
        ("CON.txt", "_CON.txt"),
        ("x" * 300 + ".png", "x" * 146 + ".png"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_downloads_never_overwrite(tmp_path: Path) -> None:
    value = OutputValue(filename="a.png", content_type="image/png", size=3, data=base64.b64encode(b"abc").decode())
    (tmp_path / "a.png").write_bytes(b"mine")

    paths = [download_blocking(value, tmp_path) for _ in range(2)]

    assert [p.name for p in paths] == ["a-1.png", "a-2.png"]
    assert (tmp_path / "a.png").read_bytes() == b"mine"
    assert all(p.read_bytes() == b"abc" for p in paths)


def test_download_creates_the_directory_and_fetches_by_uri(files: FileServer, tmp_path: Path) -> None:
    value = OutputValue(filename="clip.webp", content_type="image/webp", size=len(URI_BYTES), uri=files.url(URI_PATH))
    path = download_blocking(value, tmp_path / "new" / "dir")
    assert path == tmp_path / "new" / "dir" / "clip.webp"
    assert path.read_bytes() == URI_BYTES


@pytest.mark.parametrize(
    ("size", "path", "expected"),
    [
        (len(URI_BYTES) + 1, URI_PATH, "announced"),
        (len(URI_BYTES) - 1, URI_PATH, "more than"),
        (10, "/missing", "HTTP 404"),
    ],
)
def test_download_failures_leave_no_file_and_hide_the_signature(
    files: FileServer, tmp_path: Path, size: int, path: str, expected: str
) -> None:
    value = OutputValue(filename="clip.webp", content_type="image/webp", size=size, uri=files.url(path))

    with pytest.raises(DownloadError) as err:
        download_blocking(value, tmp_path)
    assert expected in str(err.value)
    assert "Signature" not in str(err.value)
    assert "deadbeef" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_bad_inline_data_and_odd_schemes(tmp_path: Path) -> None:
    cases = [
        (OutputValue(filename="a", content_type="x", size=3, data="!!notbase64"), "not valid base64"),
        (OutputValue(filename="a", content_type="x", size=4, data=base64.b64encode(b"abc").decode()), "is 3 bytes"),
        (OutputValue(filename="a", content_type="x", size=3, uri="file:///etc/passwd"), "refusing"),
        (OutputValue(filename="a", content_type="x", size=3), "neither"),
    ]
    for value, expected in cases:
        with pytest.raises(DownloadError, match=expected):
            download_blocking(value, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_reports_an_unreachable_host_without_the_url(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}/x.png?X-Amz-Signature=topsecret"
    value = OutputValue(filename="x.png", content_type="image/png", size=3, uri=uri)
    session = requests.Session()  # no retries: fail at once

    with pytest.raises(DownloadError) as err:
        download_blocking(value, tmp_path, session=session)
    assert "ConnectionError" in str(err.value)
    assert "topsecret" not in str(err.value)
