"""``comfyroute run`` / ``comfyroute jobs`` against the protocol-speaking fake server.

The server and file server come from ``test_client.py``; the commands run through the real
``comfyroute`` entry point (``comfyroute_tools.cli.main``), so registration is covered too.
"""

from __future__ import annotations

import io
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_backend import INLINE_BYTES, PROMPT, TOKEN, URI_BYTES, FakeServer, FileServer, UploadServer
from test_client import free_port

from comfyroute.protocol import JobStatus
from comfyroute.protocol.server_messages import JobUpdate, NodeProgress, OutputUpdate, OutputValue
from comfyroute_tools.cli import main
from comfyroute_tools.cli.run import (
    EXIT_BAD_INPUT,
    EXIT_CONNECTION,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    NoCredentials,
    PlainReporter,
    RichReporter,
    build_settings,
    format_job,
    resolve_endpoint,
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No real ~/.comfyroute/dev.json or environment may leak into these tests.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COMFYROUTE_URL", raising=False)
    monkeypatch.delenv("COMFYROUTE_TOKEN", raising=False)
    monkeypatch.delenv("COMFYROUTE_DEV_STATE", raising=False)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FileServer() as files, UploadServer() as uploads, FakeServer(files, uploads) as s:
        yield s


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps(PROMPT))
    return path


def graph_file(tmp_path: Path) -> Path:
    graph = {
        "nodes": [
            {
                "id": "1",
                "type": "comfy.EmptyImage",
                "properties": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
            },
            {"id": "2", "type": "comfy.SaveImage", "properties": {"filename_prefix": "t"}},
        ],
        "edges": [{"id": "e1", "source": "1", "target": "2", "sourceHandle": "output_0", "targetHandle": "images"}],
    }
    path = tmp_path / "graph.json"
    path.write_text(json.dumps({"name": "saved", "graph": graph, "settings": {"comfy_executor": "local"}}))
    return path


def run_cli(*argv: str) -> int:
    return main(list(argv))


# --------------------------------------------------------------------------- run


def test_run_saves_every_output_and_prints_the_paths(
    server: FakeServer, prompt_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"

    code = run_cli("run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--out", str(out))

    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    paths = [Path(line) for line in captured.out.splitlines()]
    assert paths == [out / "test_00001_.png", out / "clip.webp"]
    assert paths[0].read_bytes() == INLINE_BYTES
    assert paths[1].read_bytes() == URI_BYTES
    # Plain progress lines off a terminal: each status, node progress, outputs, the summary.
    for expected in (
        "queued on local",
        "running on local",
        "node 1: 1/2",
        "node 1: 2/2",
        "output 9.images: clip.webp",
        "completed in 2.5s; 2 of 2 outputs saved",
    ):
        assert expected in captured.err
    assert TOKEN not in captured.out + captured.err
    assert server.commands("run_job")[0].data.prompt == PROMPT


def test_run_sends_a_graph_with_its_settings_and_flags_on_top(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    code = run_cli(
        "run",
        str(graph_file(tmp_path)),
        "--url",
        server.url,
        "--token",
        TOKEN,
        "--job-id",
        "job-7",
        "--executor",
        "runpod",
        "--endpoint-id",
        "ep-1",
    )

    assert code == EXIT_OK
    data = server.commands("run_job")[0].data
    assert data.job_id == "job-7"
    assert data.prompt is None
    assert data.graph is not None
    assert [n.id for n in data.graph.nodes] == ["1", "2"]
    assert data.settings.model_dump(exclude_none=True) == {"comfy_executor": "runpod", "runpod_endpoint_id": "ep-1"}
    # The default output directory is ./outputs/JOB_ID/.
    assert sorted(p.name for p in (tmp_path / "outputs" / "job-7").iterdir()) == ["clip.webp", "test_00001_.png"]


def test_failed_job_exits_1_with_the_error(
    server: FakeServer, prompt_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.mode = "failed"

    code = run_cli("run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--out", str(tmp_path / "o"))

    err = capsys.readouterr().err
    assert code == EXIT_JOB_FAILED
    assert "failed: ImageBlur (node 3): blur_radius must be at least 1" in err
    assert not (tmp_path / "o").exists()


def test_workflow_refused_by_the_server_exits_2(
    server: FakeServer, prompt_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.mode = "reject"

    code = run_cli("run", str(prompt_file), "--url", server.url, "--token", TOKEN)

    assert code == EXIT_BAD_INPUT
    assert "SaveImage needs 'images'" in capsys.readouterr().err


def test_refused_token_exits_3_without_showing_it(
    server: FakeServer, prompt_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "not-the-right/token"

    code = run_cli("run", str(prompt_file), "--url", server.url, "--token", secret)

    captured = capsys.readouterr()
    assert code == EXIT_CONNECTION
    assert "refused the API token (HTTP 401)" in captured.err
    for form in (secret, "not-the-right%2Ftoken"):
        assert form not in captured.out + captured.err
    assert server.received == []


def test_unreachable_server_exits_3(prompt_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"ws://127.0.0.1:{free_port()}"

    code = run_cli("run", str(prompt_file), "--url", url, "--token", TOKEN)

    assert code == EXIT_CONNECTION
    assert f"cannot connect to {url}" in capsys.readouterr().err


def test_bad_graph_exits_2_listing_every_problem_before_connecting(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "nodes": [
                    {"id": "1", "type": "comfy.EmptyImage", "properties": {}},
                    {"id": "2", "type": "comfy.SaveImage", "properties": {}},
                    {"id": "2", "type": "comfy.ImageInvert", "properties": {}},
                ],
                "edges": [
                    {"id": "e1", "source": "1", "target": "9", "sourceHandle": "output_0", "targetHandle": "image"}
                ],
            }
        )
    )

    code = run_cli("run", str(bad), "--url", server.url, "--token", TOKEN)

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert f"{bad} is not a runnable workflow" in err
    assert "  - duplicate node id '2'" in err
    assert "  - edge e1 (1:output_0 -> 9:image): target node '9' does not exist" in err
    assert server.connections == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"1": ', "is not JSON"),
        (
            '{"1": {"inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}}}',
            "  - node 1: 'class_type' must be a non-empty string",
        ),
        ('{"nodes": [], "links": []}', "is a ComfyUI workflow without nodes"),
    ],
)
def test_unusable_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str) -> None:
    path = tmp_path / "w.json"
    path.write_text(content)

    assert run_cli("run", str(path), "--token", TOKEN) == EXIT_BAD_INPUT
    assert expected in capsys.readouterr().err


def test_missing_file_and_bad_options_exit_2(prompt_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", "/nonexistent/w.json", "--token", TOKEN) == EXIT_BAD_INPUT
    assert "cannot read /nonexistent/w.json" in capsys.readouterr().err
    assert run_cli("run", str(prompt_file), "--token", TOKEN, "--executor", "runpod") == EXIT_BAD_INPUT
    assert "needs an endpoint" in capsys.readouterr().err
    assert run_cli("run", str(prompt_file), "--token", TOKEN, "--endpoint-id", "bad/id") == EXIT_BAD_INPUT
    assert "runpod_endpoint_id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        run_cli("run", str(prompt_file), "--job-id", "no spaces please")
    assert exit_.value.code == 2


def test_ctrl_c_sends_cancel_job_and_exits_130(
    server: FakeServer, prompt_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.mode = "hang"
    # SIGINT from the server's thread lands in the main thread, as a Ctrl-C would.
    server.on_running = lambda: os.kill(os.getpid(), signal.SIGINT)

    code = run_cli("run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--job-id", "to-cancel")

    err = capsys.readouterr().err
    assert code == EXIT_INTERRUPTED
    assert [c.data.job_id for c in server.commands("cancel_job")] == ["to-cancel"]
    assert "interrupted; job to-cancel cancelled" in err
    # Ctrl-C works as usual again once the command is over.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_timeout_cancels_the_job_and_exits_1(
    server: FakeServer, prompt_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.mode = "hang"

    code = run_cli("run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--timeout", "0.3")

    assert code == EXIT_JOB_FAILED
    assert len(server.commands("cancel_job")) == 1
    assert "gave up after --timeout 0.3s" in capsys.readouterr().err


# --------------------------------------------------------------------------- jobs


def test_jobs_get_prints_a_summary_or_json(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = tmp_path / "p.json"
    prompt.write_text(json.dumps(PROMPT))
    assert (
        run_cli(
            "run", str(prompt), "--url", server.url, "--token", TOKEN, "--job-id", "j-1", "--out", str(tmp_path / "o")
        )
        == EXIT_OK
    )
    capsys.readouterr()

    assert run_cli("jobs", "get", "j-1", "--url", server.url, "--token", TOKEN) == EXIT_OK
    text = capsys.readouterr().out
    assert "job       j-1" in text
    assert "status    completed" in text
    assert "created   2023-11-14 22:13:20Z" in text
    assert "  9.images  clip.webp  image/webp  200000 bytes" in text

    assert run_cli("jobs", "get", "j-1", "--json", "--url", server.url, "--token", TOKEN) == EXIT_OK
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["job_id"] == "j-1"
    assert as_json["status"] == "completed"
    assert [o["value"]["filename"] for o in as_json["outputs"]] == ["../../test_00001_.png", "clip.webp"]


def test_jobs_get_of_an_unknown_job_exits_2(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    # An id the server does not know is bad input, like a bad workflow file.
    assert run_cli("jobs", "get", "ghost", "--url", server.url, "--token", TOKEN) == EXIT_BAD_INPUT
    assert "no job ghost" in capsys.readouterr().err


def test_jobs_list_prints_a_table(server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = tmp_path / "p.json"
    prompt.write_text(json.dumps(PROMPT))
    server.mode = "failed"
    for job in ("first-job", "second-job", "third-job"):
        run_cli("run", str(prompt), "--url", server.url, "--token", TOKEN, "--job-id", job)
    capsys.readouterr()

    assert run_cli("jobs", "list", "--limit", "2", "--url", server.url, "--token", TOKEN) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["JOB", "STATUS", "EXECUTOR", "WORKFLOW", "CREATED", "DURATION", "OUTPUTS"]
    rows = [line.split() for line in lines[2:] if line.strip()]
    assert rows == [
        ["first-job", "failed", "local", "wf-1", "2023-11-14", "22:13:20Z", "2.5s", "0"],
        ["second-job", "failed", "local", "wf-1", "2023-11-14", "22:13:20Z", "2.5s", "0"],
    ]
    assert server.commands("list_jobs")[0].data.limit == 2

    assert run_cli("jobs", "list", "--json", "--url", server.url, "--token", TOKEN) == EXIT_OK
    assert [j["job_id"] for j in json.loads(capsys.readouterr().out)] == ["first-job", "second-job", "third-job"]


# --------------------------------------------------------------------------- where to connect


def write_dev_info(home: Path, info: dict[str, Any]) -> None:
    (home / ".comfyroute").mkdir(parents=True, exist_ok=True)
    (home / ".comfyroute" / "dev.json").write_text(json.dumps(info))


def test_endpoint_comes_from_flags_then_env_then_dev_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_dev_info(home, {"ws_url": "ws://127.0.0.1:3001/?token=dev-token", "pid": 1})

    from_dev = resolve_endpoint(None, None, env={})
    assert from_dev.url == "ws://127.0.0.1:3001/"
    assert from_dev.token.get_secret_value() == "dev-token"
    assert "dev-token" not in repr(from_dev)

    from_env = resolve_endpoint(
        None, None, env={"COMFYROUTE_URL": "wss://x.example/prod", "COMFYROUTE_TOKEN": "env-token"}
    )
    assert (from_env.url, from_env.token.get_secret_value()) == ("wss://x.example/prod", "env-token")

    flags = resolve_endpoint("ws://h:1/?token=in-url", None, env={"COMFYROUTE_TOKEN": "env-token"})
    assert (flags.url, flags.token.get_secret_value()) == ("ws://h:1/", "env-token")


def test_the_dev_token_is_never_sent_to_another_server(tmp_path: Path) -> None:
    write_dev_info(tmp_path / "home", {"url": "ws://127.0.0.1:3001", "token": "dev-token"})

    with pytest.raises(NoCredentials, match=r"no API token for wss://prod\.example"):
        resolve_endpoint("wss://prod.example", None, env={})
    same = resolve_endpoint("ws://127.0.0.1:3001/", None, env={})
    assert same.token.get_secret_value() == "dev-token"


def test_no_token_anywhere_exits_3(prompt_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", str(prompt_file)) == EXIT_CONNECTION
    assert "no API token" in capsys.readouterr().err


def test_the_dev_state_file_gives_the_url(
    server: FakeServer, prompt_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As comfyroute_tools.dev writes it: the gateway's ws_url and no token (the token is printed once).
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "pid": 1,
                "moto_endpoint": "http://127.0.0.1:1",
                "ws_url": server.url.rstrip("/"),
                "http_url": "http://127.0.0.1:1",
                "started_at": 1.0,
            }
        )
    )
    monkeypatch.setenv("COMFYROUTE_DEV_STATE", str(state))
    monkeypatch.setenv("COMFYROUTE_TOKEN", TOKEN)

    assert run_cli("run", str(prompt_file), "--out", str(tmp_path / "o")) == EXIT_OK
    assert server.tokens_seen == [TOKEN]


# --------------------------------------------------------------------------- pieces


def test_build_settings_merges_and_checks() -> None:
    assert build_settings({}, None, None) == {}
    assert build_settings({"comfy_executor": "runpod", "runpod_endpoint_id": "a", "other": 1}, "local", None) == {
        "comfy_executor": "local",
        "runpod_endpoint_id": "a",
        "other": 1,
    }


def test_format_job_shows_the_error() -> None:
    from comfyroute.protocol.server_messages import JobView

    view = JobView(job_id="x", status=JobStatus.FAILED, error="boom", created_at=0, updated_at=0)
    text = format_job(view)
    assert "error     boom" in text
    assert "executor  -" in text
    assert "outputs   0" in text


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _timeline() -> list[Any]:
    value = OutputValue(filename="[bold]a.png", content_type="image/png", size=1)
    return [
        JobUpdate(job_id="j", status=JobStatus.RUNNING),
        NodeProgress(job_id="j", node_id="3", progress=1, total=4),
        NodeProgress(job_id="j", node_id="3", progress=1.1, total=4),
        OutputUpdate(job_id="j", node_id="9", node_name="Save", output_name="images", output_type="image", value=value),
        JobUpdate(job_id="j", status=JobStatus.COMPLETED),
    ]


def test_plain_reporter_prints_changes_only() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.start("j")
    for msg in _timeline():
        reporter.on_message(msg)
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == ["job j sent", "running", "node 3: 1/4", "output 9.images: [bold]a.png (1 bytes)", "completed"]


def test_rich_reporter_draws_on_a_terminal() -> None:
    stream = _Tty()
    reporter = RichReporter(stream)
    reporter.start("j")
    for msg in _timeline():
        reporter.on_message(msg)
    reporter.stop()
    out = stream.getvalue()
    assert "job j" in out
    assert "[bold]a.png" in out  # printed literally, not read as markup
    assert "completed" in out


# --------------------------------------------------------------------------- input files and big workflows

PHOTO = bytes((i * 13 + 5) % 256 for i in range(2 * 1024 * 1024 + 17))  # over BIG_FILE_BYTES
MASK = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
EDITOR = {
    "last_node_id": 2,
    "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "LoadImage", "mode": 0, "widgets_values": ["input.png", "image"]},
        {"id": 2, "type": "PreviewImage", "mode": 0, "inputs": [{"name": "images", "link": 1}]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    "version": 0.4,
}


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    photo, mask = tmp_path / "photo.png", tmp_path / "m.bin"
    photo.write_bytes(PHOTO)
    mask.write_bytes(MASK)
    return photo, mask


def test_run_with_files_sends_each_under_its_name(
    server: FakeServer, prompt_file: Path, media: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo, mask = media

    code = run_cli(
        "run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--job-id", "with-files",
        "--file", str(photo), "--file", f"mask.png={mask}", "--out", str(tmp_path / "o"),
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert server.job_inputs["with-files"] == [("photo.png", PHOTO, "image/png"), ("mask.png", MASK, "image/png")]
    sent = server.commands("run_job")[0].data
    assert sent.files[0].upload_id is not None  # 2 MB: uploaded
    assert sent.files[1].data is not None  # 208 bytes: inline
    assert "uploading photo.png (2.0 MB)" in err
    assert "uploading photo.png: 50%" in err
    assert "uploaded photo.png" in err
    assert len(server.commands("request_upload")) == 1


def test_bad_file_options_list_every_problem_before_connecting(
    server: FakeServer, prompt_file: Path, media: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo, _ = media
    odd = tmp_path / "what?.png"
    odd.write_bytes(b"x")

    code = run_cli(
        "run", str(prompt_file), "--url", server.url, "--token", TOKEN,
        "--file", "/nonexistent/a.png", "--file", str(odd), "--file", str(photo), "--file", f"photo.png={odd}",
        "--file", f"../x.png={photo}", "--file", str(tmp_path),
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "comfyroute run: bad --file" in err
    assert "  - --file /nonexistent/a.png: cannot read /nonexistent/a.png: No such file or directory" in err
    assert "input file name 'what?.png' is not allowed" in err
    assert f"(name it: --file NAME={odd})" in err
    assert f"--file photo.png={odd}: the name 'photo.png' is given twice" in err
    assert "input file name '../x.png' is not allowed" in err
    assert f"--file {tmp_path}: cannot read {tmp_path}" in err
    assert server.connections == 0


def test_an_existing_path_with_an_equals_sign_is_a_path(server: FakeServer, prompt_file: Path, tmp_path: Path) -> None:
    odd = tmp_path / "a=b.png"
    odd.write_bytes(MASK)

    code = run_cli(
        "run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--job-id", "eq",
        "--file", str(odd), "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == EXIT_OK
    assert server.job_inputs["eq"] == [("a=b.png", MASK, "image/png")]


def test_an_editor_workflow_is_sent_as_saved(
    server: FakeServer, media: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(EDITOR))
    _, mask = media

    code = run_cli(
        "run", str(path), "--url", server.url, "--token", TOKEN,
        "--file", f"input.png={mask}", "--out", str(tmp_path / "o"),
    )  # fmt: skip

    assert code == EXIT_OK, capsys.readouterr().err
    sent = server.commands("run_job")[0].data
    assert sent.workflow is not None
    assert sent.workflow.model_dump() == EDITOR
    assert sent.graph is None
    assert sent.prompt is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"nodes": [{"id": 1, "type": "LoadImage"}], "links": {}}, "  - workflow.links: Input should be a valid list"),
        ({"nodes": [], "links": []}, "is a ComfyUI workflow without nodes"),
    ],
)
def test_a_broken_editor_workflow_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, expected: str
) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(content))

    assert run_cli("run", str(path), "--token", TOKEN) == EXIT_BAD_INPUT
    assert expected in capsys.readouterr().err


def test_a_workflow_over_one_frame_is_uploaded_first(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
    }
    for i in range(2, 1002):
        prompt[str(i)] = {
            "class_type": "ImageInvert",
            "inputs": {"image": [str(i - 1), 0]},
            "_meta": {"title": f"Invert the picture once more, step number {i} of a thousand"},
        }
    prompt["1002"] = {"class_type": "SaveImage", "inputs": {"images": ["1001", 0], "filename_prefix": "big"}}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(prompt))

    code = run_cli(
        "run", str(path), "--url", server.url, "--token", TOKEN, "--job-id", "big", "--out", str(tmp_path / "o")
    )

    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert "over the 128.0 KB WebSocket limit: uploading it first" in err
    sent = server.commands("run_job")[0].data
    assert sent.prompt is None
    assert sent.workflow_upload_id is not None
    assert server.uploaded_workflows["big"] == prompt


def test_refused_uploads_exit_2_naming_why(
    server: FakeServer, prompt_file: Path, media: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo, _ = media
    svg = tmp_path / "logo.svg"
    svg.write_bytes(b"<svg/>" * 30_000)

    assert run_cli("run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--file", str(svg)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "request_upload refused: content type 'image/svg+xml' is not allowed" in err
    assert "[upload_not_allowed]" in err

    server.admit_delta = -1
    assert (
        run_cli("run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--file", str(photo)) == EXIT_BAD_INPUT
    )
    err = capsys.readouterr().err
    assert "upload of photo.png refused by 127.0.0.1" in err
    assert "(HTTP 400 EntityTooLarge)" in err
    assert server.commands("run_job") == []


def test_jobs_get_lists_the_input_files(
    server: FakeServer, prompt_file: Path, media: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, mask = media
    run_cli(
        "run", str(prompt_file), "--url", server.url, "--token", TOKEN, "--job-id", "j-in",
        "--file", f"mask.png={mask}", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    capsys.readouterr()

    assert run_cli("jobs", "get", "j-in", "--url", server.url, "--token", TOKEN) == EXIT_OK
    out = capsys.readouterr().out
    assert f"inputs    1\n  mask.png  image/png  {len(MASK)} bytes\noutputs " in out


def test_rich_reporter_shows_a_bar_for_big_uploads_and_a_line_for_small() -> None:
    stream = _Tty()
    reporter = RichReporter(stream)
    big = 3 * 1024 * 1024
    for sent in (0, big // 2, big):
        reporter.upload("big.png", sent, big)
    reporter.upload("small.png", 10, 10)
    assert reporter.transfers is not None
    task = reporter.transfer_tasks["big.png"]
    assert task is not None
    assert reporter.transfers.tasks[task].completed == big
    assert reporter.transfer_tasks["small.png"] is None
    reporter.start("j")  # the job's display takes over
    assert reporter.transfers is None
    reporter.stop()
    out = stream.getvalue()
    assert "uploading big.png" in out
    assert "uploading small.png (10 bytes)" in out
