"""The client's uploads and input files against the scripted FakeServer and the S3-like
UploadServer (tests/support/fake_backend.py): request_upload, the presigned multipart POST, which
files ride inline, the automatic workflow_upload_id, and every refusal named."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_backend import PROMPT, TOKEN, FakeServer, FileServer, UploadServer
from test_client import free_port

from comfyroute.protocol import MAX_MESSAGE_BYTES, JobStatus
from comfyroute.protocol.server_messages import UploadReady
from comfyroute.protocol.workflow_commands import InputFileRef, RunJobData
from comfyroute_tools.client import (
    ComfyrouteClient,
    InvalidRequest,
    RequestError,
    UploadFailed,
    UploadRefused,
)
from comfyroute_tools.uploads import (
    PLACEHOLDER_UPLOAD_ID,
    FilePayload,
    PendingFile,
    describe_refusal,
    frame_size,
    guess_content_type,
    plan_files,
    post_upload,
    resolve_files,
)

# Not a real PNG: bytes that would show any corruption (every value, a NUL, CR LF, a boundary-like run).
PHOTO = bytes((i * 31 + 7) % 256 for i in range(300_000)) + b"\r\n--boundary--\r\n\x00"
MASK = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
LOAD_PROMPT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
}
EDITOR = {
    "last_node_id": 2,
    "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "LoadImage", "mode": 0, "widgets_values": ["photo.png", "image"]},
        {"id": 2, "type": "PreviewImage", "mode": 0, "inputs": [{"name": "images", "link": 1}]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    "version": 0.4,
}


@pytest.fixture
def uploads() -> Iterator[UploadServer]:
    with UploadServer() as u:
        yield u


@pytest.fixture
def server(uploads: UploadServer) -> Iterator[FakeServer]:
    with FileServer() as files, FakeServer(files, uploads) as s:
        yield s


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(PHOTO)
    return path


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def big_prompt(nodes: int = 1000) -> dict[str, Any]:
    """A chain of ``nodes`` nodes whose run_job frame passes 128 KB (about 150 bytes a node)."""
    prompt: dict[str, Any] = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}}}
    for i in range(2, nodes + 1):
        prompt[str(i)] = {
            "class_type": "ImageBlend",
            "inputs": {"image1": [str(i - 1), 0], "image2": ["1", 0], "blend_factor": 0.5, "blend_mode": "normal"},
            "_meta": {"title": f"Blend {i}"},
        }
    return prompt


# --------------------------------------------------------------------------- upload()


def test_upload_of_a_path_posts_every_field_then_the_exact_bytes(
    server: FakeServer, uploads: UploadServer, photo: Path
) -> None:
    seen: list[tuple[int, int]] = []

    async def go() -> str:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            return await client.upload(photo, progress=lambda sent, total: seen.append((sent, total)))

    upload_id = run(go())
    request = server.commands("request_upload")[0].data
    assert (request.filename, request.content_type, request.size) == ("photo.png", "image/png", len(PHOTO))
    stored = uploads.get(upload_id)
    assert stored is not None
    assert stored.data == PHOTO
    assert (stored.content_type, stored.filename) == ("image/png", "photo.png")
    post = uploads.posts[0]
    assert post["order"] == ["key", "Content-Type", "x-amz-meta-filename", "policy", "x-amz-signature", "file"]
    # Progress rises to the whole file and never past it.
    assert seen[-1] == (len(PHOTO), len(PHOTO))
    assert all(total == len(PHOTO) for _, total in seen)
    sent = [s for s, _ in seen]
    assert sent == sorted(sent)
    assert len(seen) > 2


def test_upload_of_bytes_takes_the_given_name_and_type(server: FakeServer, uploads: UploadServer) -> None:
    async def go() -> str:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            return await client.upload(b"RIFF....WAVE", filename="clip.bin", content_type="audio/wav")

    stored = uploads.get(run(go()))
    assert stored is not None
    assert (stored.data, stored.content_type, stored.filename) == (b"RIFF....WAVE", "audio/wav", "clip.bin")


def test_concurrent_uploads_each_get_their_own_id_even_without_ref_echo(
    server: FakeServer, uploads: UploadServer, tmp_path: Path
) -> None:
    server.echo_ref = False
    blobs = {f"f{i}.png": bytes([i]) * (1000 * (i + 1)) for i in range(4)}

    async def go() -> list[str]:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            return list(await asyncio.gather(*(client.upload(data, filename=name) for name, data in blobs.items())))

    ids = run(go())
    assert len(set(ids)) == 4
    for (name, data), upload_id in zip(blobs.items(), ids, strict=True):
        stored = uploads.get(upload_id)
        assert stored is not None
        assert (stored.filename, stored.data) == (name, data)


def test_a_refused_request_upload_is_a_request_error(server: FakeServer, uploads: UploadServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.upload(b"<svg/>", filename="logo.svg")

    with pytest.raises(RequestError) as err:
        run(go())
    assert err.value.code == "upload_not_allowed"
    assert err.value.request == "request_upload"
    assert "image/svg+xml" in str(err.value)
    assert uploads.posts == []


def test_an_oversized_file_is_refused_by_the_server_before_any_post(
    server: FakeServer, uploads: UploadServer, photo: Path
) -> None:
    server.max_upload_bytes = 1000

    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.upload(photo)

    with pytest.raises(RequestError) as err:
        run(go())
    assert err.value.code == "upload_too_large"
    assert uploads.posts == []


def test_s3_entity_too_large_is_named_with_its_sizes(server: FakeServer, uploads: UploadServer, photo: Path) -> None:
    # The policy admits one byte less than the file, so the store (not the server) says no.
    server.admit_delta = -1

    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.upload(photo)

    with pytest.raises(UploadRefused) as err:
        run(go())
    assert (err.value.status, err.value.code) == (400, "EntityTooLarge")
    text = str(err.value)
    assert "upload of photo.png refused by 127.0.0.1" in text
    assert f"sent {len(PHOTO)} bytes; the upload admits at most {len(PHOTO) - 1}" in text
    assert uploads.objects == {}


def test_an_expired_policy_is_reported_as_s3_words_it(server: FakeServer, uploads: UploadServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            ready = await client.request_upload("a.png", "image/png", 3)
            uploads.expire(ready.upload_id)
            post_upload(ready, FilePayload.from_bytes(b"abc", filename="a.png"))

    with pytest.raises(UploadRefused) as err:
        run(go())
    assert (err.value.status, err.value.code) == (403, "AccessDenied")
    assert "Policy expired" in str(err.value)
    signature = uploads.posts[0]["fields"]["x-amz-signature"]
    assert signature not in str(err.value)


def test_refusal_text_never_carries_what_s3_echoes_of_the_signature() -> None:
    body = (
        b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match"
        b"</Message><StringToSign>eyJzZWNyZXQiOiJ4In0=</StringToSign><SignatureProvided>deadbeef</SignatureProvided>"
        b"</Error>"
    )
    err = describe_refusal(403, body, "a.png", "bucket.s3.amazonaws.com")
    assert err.code == "SignatureDoesNotMatch"
    assert "HTTP 403 SignatureDoesNotMatch" in str(err)
    assert "eyJzZWNyZXQi" not in str(err)
    assert "deadbeef" not in str(err)
    plain = describe_refusal(502, b"<html>Bad Gateway</html>", "a.png", "h")
    assert str(plain) == "upload of a.png refused by h (HTTP 502)"
    assert plain.code is None


def test_an_unreachable_store_names_the_host_only() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    ready = UploadReady(
        upload_id="u1", url=url, fields={"key": "uploads/u1", "x-amz-signature": "s3cr3t"}, expires_in=9, max_bytes=3
    )

    with pytest.raises(UploadFailed) as err:
        post_upload(ready, FilePayload.from_bytes(b"abc", filename="a.png"))
    assert f"upload of a.png to 127.0.0.1:{url.split(':')[2].rstrip('/')} failed (ConnectionError)" == str(err.value)
    assert "s3cr3t" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "fields", "max_bytes", "expected"),
    [
        ("file:///etc/passwd", {}, 3, "refusing an upload URL with scheme 'file'"),
        ("https://h/", {"file": "x"}, 3, "already has a 'file' field"),
        ("https://h/", {}, 2, "the file is 3 bytes; the upload admits at most 2"),
    ],
)
def test_odd_upload_forms_are_refused_before_sending(
    url: str, fields: dict[str, str], max_bytes: int, expected: str
) -> None:
    ready = UploadReady(upload_id="u1", url=url, fields=fields, expires_in=9, max_bytes=max_bytes)
    with pytest.raises(UploadFailed, match=expected):
        post_upload(ready, FilePayload.from_bytes(b"abc", filename="a.png"))


# --------------------------------------------------------------------------- run_job(files=...)


def test_run_job_with_files_uploads_big_inlines_small_and_keeps_given_ids(
    server: FakeServer, uploads: UploadServer, photo: Path
) -> None:
    progress: list[tuple[str, int, int]] = []

    async def go() -> tuple[str, str, Any, Any]:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            earlier = await client.upload(b"GIF89a-ref", filename="ref.gif")
            job_id = await client.run_job(
                prompt=LOAD_PROMPT,
                files=[photo, ("mask.png", MASK), ("ref.gif", earlier)],
                upload_progress=lambda name, sent, total: progress.append((name, sent, total)),
            )
            result = await client.follow(job_id)
            return earlier, job_id, result, await client.get_job(job_id)

    earlier, job_id, result, view = run(go())
    assert result.ok
    sent = server.commands("run_job")[0].data
    assert [f.name for f in sent.files] == ["photo.png", "mask.png", "ref.gif"]  # the caller's order
    photo_ref, mask_ref, ref_ref = sent.files
    assert photo_ref.upload_id is not None
    assert photo_ref.data is None
    assert mask_ref.upload_id is None
    assert mask_ref.decoded() == MASK
    assert mask_ref.content_type == "image/png"
    assert ref_ref.upload_id == earlier
    assert len(server.commands("request_upload")) == 2  # ref.gif earlier, photo.png now: the mask rode inline
    # The exact bytes reached the job, each under its name.
    assert server.job_inputs[job_id] == [
        ("photo.png", PHOTO, "image/png"),
        ("mask.png", MASK, "image/png"),
        ("ref.gif", b"GIF89a-ref", "image/gif"),
    ]
    assert [(i.name, i.size, i.content_type) for i in view.inputs] == [
        ("photo.png", len(PHOTO), "image/png"),
        ("mask.png", len(MASK), "image/png"),
        ("ref.gif", 10, "image/gif"),
    ]
    assert {name for name, _, _ in progress} == {"photo.png"}
    assert progress[-1] == ("photo.png", len(PHOTO), len(PHOTO))


def test_run_follows_to_the_end_with_files_as_a_mapping(server: FakeServer, photo: Path) -> None:
    async def go() -> Any:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            return await client.run(prompt=LOAD_PROMPT, files={"photo.png": photo, "mask.png": MASK})

    result = run(go())
    assert result.status is JobStatus.COMPLETED
    assert [n for n, _, _ in server.job_inputs[result.job_id]] == ["photo.png", "mask.png"]
    assert server.job_inputs[result.job_id][0][1] == PHOTO


def test_inline_files_fill_the_frame_smallest_first(server: FakeServer, uploads: UploadServer) -> None:
    # 40 KB each is 53 KB of base64: two fit beside the prompt, the third would pass 128 KB.
    blobs = [(f"tile{i}.png", bytes([i]) * (40_000 + i)) for i in range(4)]

    async def go() -> str:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            job_id = await client.run_job(prompt=LOAD_PROMPT, files=list(reversed(blobs)))
            await client.follow(job_id)
            return job_id

    job_id = run(go())
    sent = server.commands("run_job")[0].data
    inline = sorted(f.name for f in sent.files if f.data is not None)
    assert inline == ["tile0.png", "tile1.png"]
    assert len(server.commands("request_upload")) == 2
    raw_size = frame_size(sent)
    assert raw_size <= MAX_MESSAGE_BYTES
    assert dict((n, b) for n, b, _ in server.job_inputs[job_id]) == dict(blobs)


def test_plan_files_is_exact_at_the_limit() -> None:
    data = RunJobData(prompt=LOAD_PROMPT, job_id="j1")
    pending = [PendingFile(name="a.png", payload=FilePayload.from_bytes(b"x" * 3000, filename="a.png"))]
    refs, uploads = plan_files(data, pending)
    fitting = frame_size(data.model_copy(update={"files": refs}))
    assert uploads == []
    # One byte less room and the same file must go by upload instead.
    refs, uploads = plan_files(data, pending, limit=fitting - 1)
    assert uploads == [0]
    assert refs[0].upload_id == PLACEHOLDER_UPLOAD_ID


def test_a_workflow_over_one_frame_goes_by_workflow_upload_id(server: FakeServer, uploads: UploadServer) -> None:
    prompt = big_prompt()
    assert frame_size(RunJobData(prompt=prompt)) > MAX_MESSAGE_BYTES

    async def go() -> str:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            result = await client.run(prompt=prompt, files=[("photo.png", MASK)], job_id="big-1")
            return result.job_id

    job_id = run(go())
    sent = server.commands("run_job")[0].data
    assert sent.prompt is None
    assert sent.workflow_upload_id is not None
    assert server.uploaded_workflows[job_id] == prompt
    request = server.commands("request_upload")[0].data
    assert (request.filename, request.content_type) == ("workflow.json", "application/json")
    assert sent.files[0].decoded() == MASK  # the small file still rides inline beside the id


@pytest.mark.parametrize("kind", ["graph", "workflow"])
def test_big_graphs_and_editor_workflows_are_uploaded_whole(server: FakeServer, kind: str) -> None:
    if kind == "graph":
        nodes: list[dict[str, Any]] = [
            {"id": str(i), "type": "comfy.ImageInvert", "properties": {"pad": "p" * 200}} for i in range(700)
        ]
        body: dict[str, Any] = {"nodes": nodes, "edges": []}
    else:
        nodes = [
            {"id": i, "type": "ImageInvert", "mode": 0, "pos": [i, i], "widgets_values": ["w" * 200]}
            for i in range(700)
        ]
        body = {**EDITOR, "nodes": nodes}

    async def go() -> str:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            result = await (client.run(graph=body) if kind == "graph" else client.run(workflow=body))
            return result.job_id

    job_id = run(go())
    sent = server.commands("run_job")[0].data
    assert getattr(sent, kind) is None
    assert server.uploaded_workflows[job_id] == body


def test_a_small_editor_workflow_is_sent_as_workflow(server: FakeServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.run(workflow=EDITOR, files=[("photo.png", MASK)])
            await client.save_workflow("wf-ed", workflow=EDITOR, name="Editor")

    run(go())
    sent = server.commands("run_job")[0].data
    assert sent.workflow is not None
    assert sent.workflow.model_dump() == EDITOR
    assert server.commands("request_upload") == []
    saved = server.commands("save_workflow")[0].data
    assert saved.workflow.model_dump() == EDITOR


def test_an_unknown_upload_id_refuses_the_job(server: FakeServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.run(prompt=LOAD_PROMPT, files=[("photo.png", "6773a8c0.neverissuedneverissued00")])

    with pytest.raises(RequestError) as err:
        run(go())
    assert err.value.code == "upload_not_found"
    assert "unknown or expired" in str(err.value)


def test_files_too_many_for_one_frame_are_refused_before_any_upload(server: FakeServer, uploads: UploadServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.run_job(
                prompt=LOAD_PROMPT,
                params={"1": {"pad": "x" * (MAX_MESSAGE_BYTES - 100)}},
                files=[("a.png", b"x" * 5000)],
            )

    with pytest.raises(InvalidRequest, match="with every large file uploaded"):
        run(go())
    assert server.commands("request_upload") == []
    assert uploads.posts == []


# --------------------------------------------------------------------------- file arguments


def test_file_arguments_and_their_names(photo: Path) -> None:
    ref = InputFileRef(name="given.png", upload_id="u-1")
    for given in (photo, str(photo)):
        pending = resolve_files([given])
        assert [(p.name, p.payload.size if p.payload else None) for p in pending] == [("photo.png", len(PHOTO))]
    pending = resolve_files([("b.wav", Path(photo)), ("c.png", b"abc"), ("d.png", "6773a8c0.abc"), ref])
    assert [p.name for p in pending] == ["b.wav", "c.png", "d.png", "given.png"]
    assert pending[0].payload is not None
    assert pending[0].payload.content_type == "audio/wav"  # named by the caller: typed by that name
    assert pending[0].payload.path == photo
    assert pending[2].ref == InputFileRef(name="d.png", upload_id="6773a8c0.abc")
    assert pending[3].ref is ref


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([b"abc"], "a file given as bytes needs a name"),
        ([("../x.png", b"a")], "input file name '../x.png' is not allowed"),
        ([("a.png", "pictures/a.png")], "looks like a path, but a str beside a name is an upload id"),
        ([("a.png", "no such id!")], "is not an upload id"),
        ([("a.png", 12)], "expected bytes, a pathlib.Path or an upload id, not int"),
        ([("a.png", b"1"), ("a.png", b"2")], "'a.png' is given more than once"),
        (["/nonexistent/photo.png"], "cannot read /nonexistent/photo.png"),
        ("photo.png", "not a single path"),
        ([3.5], "not float"),
    ],
)
def test_bad_file_arguments_are_refused_before_sending(files: Any, expected: str) -> None:
    with pytest.raises(InvalidRequest, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        resolve_files(files)


def test_a_path_whose_name_is_not_a_safe_input_name_says_so(tmp_path: Path) -> None:
    odd = tmp_path / "what?.png"
    odd.write_bytes(b"x")
    with pytest.raises(InvalidRequest, match=r"input file name 'what\?\.png' is not allowed"):
        resolve_files([odd])
    assert resolve_files([("what.png", odd)])[0].payload is not None


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="is not a file"):
        resolve_files([tmp_path])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.PNG", "image/png"),
        ("a.webp", "image/webp"),
        ("a.wav", "audio/wav"),
        ("a.mkv", "video/x-matroska"),
        ("a.json", "application/json"),
        ("noext", "application/octet-stream"),
    ],
)
def test_content_types_from_names(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected


def test_a_bad_file_argument_sends_nothing(server: FakeServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.run_job(prompt=PROMPT, files=[("a b/c.png", b"x")])

    with pytest.raises(InvalidRequest):
        run(go())
    assert server.received == []


def test_inline_data_is_standard_base64(server: FakeServer) -> None:
    async def go() -> None:
        async with ComfyrouteClient(server.url, TOKEN) as client:
            await client.run(prompt=LOAD_PROMPT, files=[("photo.png", MASK)])

    run(go())
    assert server.commands("run_job")[0].data.files[0].data == base64.b64encode(MASK).decode()
