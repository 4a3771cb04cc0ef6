"""The web client's ES modules, imported into a real page and exercised directly.

These cover branches the end-to-end tests do not reach through the fakes: every workflow file
shape, error-text parsing, backoff and URL handling, and output rendering by content type.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def modules(browser: Any, static_site: str) -> Iterator[Any]:
    """call(module, expression, arg): evaluate `expression` with `m` = the imported module.

    One page for the whole module: these tests only call functions, and the one that touches
    localStorage clears it first."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(static_site + "/index.html")

    def call(module: str, expression: str, arg: Any = None) -> Any:
        # `m` is the imported module, `arg` the (JSON) argument.
        return page.evaluate(f"async (arg) => {{ const m = await import('./{module}'); return ({expression}); }}", arg)

    yield call
    context.close()


# --------------------------------------------------------------------------- workflow files


def test_workflow_file_shapes(modules: Any) -> None:
    parse = """(() => {
        const w = m.parseWorkflowFile(arg.text, arg.name);
        const n = w.kind === 'graph' ? w.body.nodes.length : Object.keys(w.body).length;
        return {id: w.id, name: w.name, kind: w.kind, n, settings: w.settings};
    })()"""
    graph = {"nodes": [{"id": "1", "type": "comfy.EmptyImage"}], "edges": []}
    wrapped = {
        "id": "wf-1",
        "name": "Mine",
        "graph": graph,
        "settings": {"comfy_executor": "runpod", "runpod_endpoint_id": " ep1 "},
    }
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}}

    assert modules("workflows.js", parse, {"text": json.dumps(graph), "name": "My Graph.json"}) == {
        "id": "my-graph",
        "name": "My Graph",
        "kind": "graph",
        "n": 1,
        "settings": {},
    }
    assert modules("workflows.js", parse, {"text": json.dumps(wrapped), "name": "x.json"}) == {
        "id": "wf-1",
        "name": "Mine",
        "kind": "graph",
        "n": 1,
        "settings": {"comfy_executor": "runpod", "runpod_endpoint_id": "ep1"},
    }
    assert modules("workflows.js", parse, {"text": json.dumps(prompt), "name": "api.json"})["kind"] == "prompt"
    # A prompt's node ids are not a workflow id: the file name is.
    assert modules("workflows.js", parse, {"text": json.dumps(prompt), "name": "api.json"})["id"] == "api"
    assert (
        modules("workflows.js", parse, {"text": json.dumps({"prompt": prompt}), "name": "p.json"})["kind"] == "prompt"
    )
    # A ComfyUI editor workflow (as its Save writes it) is taken as it is, every key kept.
    editor = {
        "id": "3f1c2a9e-5d4b-4c1e-9a7f-2b8d6e0c4a11",
        "nodes": [{"id": 1, "type": "LoadImage", "widgets_values": ["a.png", "image"]}],
        "links": [],
        "groups": [{"title": "G"}],
        "definitions": {"subgraphs": []},
        "version": 0.4,
    }
    whole = modules("workflows.js", "m.parseWorkflowFile(arg, 'Invert photo.json')", json.dumps(editor))
    assert whole["kind"] == "workflow"
    assert whole["body"] == editor
    assert whole["name"] == "Invert photo"
    assert whole["id"] == editor["id"]
    classes = modules("workflows.js", "[...m.nodeClasses({kind: 'workflow', body: arg}).entries()]", editor)
    assert classes == [["1", "LoadImage"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "must contain a JSON object"),
        ('{"nodes": [1], "links": []}', "Every node of a ComfyUI workflow must be a JSON object"),
        ('{"nodes": [], "links": []}', "The ComfyUI workflow has no nodes"),
        ('{"hello": "world"}', "neither a nodetool graph"),
        ('{"nodes": [], "edges": []}', "no nodes"),
    ],
)
def test_workflow_file_errors_say_what_is_wrong(modules: Any, text: str, expected: str) -> None:
    message = modules(
        "workflows.js",
        "(() => { try { m.parseWorkflowFile(arg, 'f.json'); return null; } catch (e) { return e.message; } })()",
        text,
    )
    assert message is not None
    assert expected in message


def test_workflow_ids_are_protocol_safe(modules: Any) -> None:
    ids = modules(
        "workflows.js",
        "arg.map(([c, n]) => m.workflowIdFor(c, n))",
        [["ok-id_1", "ignored"], ["has space", "Über Workflow!"], [None, "---"], [None, ""]],
    )
    assert ids[0] == "ok-id_1"
    assert ids[1] == "ber-workflow"
    for generated in ids[2:]:
        assert generated.startswith("wf-")
        assert len(generated) == 19


def test_settings_checks(modules: Any) -> None:
    problems = modules(
        "workflows.js",
        "arg.map((s) => m.settingsProblem(s))",
        [
            {"comfy_executor": "local"},
            {"comfy_executor": "runpod"},
            {"comfy_executor": "runpod", "runpod_endpoint_id": "bad id/../x"},
            {"comfy_executor": "runpod", "runpod_endpoint_id": "abc-123_x"},
        ],
    )
    assert problems[0] is None
    assert "Enter the RunPod endpoint ID" in problems[1]
    assert "may only contain" in problems[2]
    assert problems[3] is None
    wire = modules(
        "workflows.js",
        "arg.map((s) => m.wireSettings(s))",
        [{"comfy_executor": "runpod", "runpod_endpoint_id": ""}, {}],
    )
    assert wire == [{"comfy_executor": "runpod"}, {"comfy_executor": "local"}]


def test_local_index_survives_and_reports_unsynced(modules: Any) -> None:
    result = modules(
        "workflows.js",
        """(() => {
            localStorage.clear();
            const idx = new m.WorkflowIndex(localStorage);
            idx.put({id: 'b', name: 'Beta', kind: 'prompt', body: {'1': {class_type: 'X', inputs: {}}},
                     settings: {comfy_executor: 'runpod', runpod_endpoint_id: 'ep'}}, {synced: false});
            const graph = {nodes: [{id: '1', type: 'comfy.X'}], edges: []};
            idx.put({id: 'a', name: 'Alpha', kind: 'graph', body: graph}, {synced: true});
            const again = new m.WorkflowIndex(localStorage);
            const unsynced = again.unsynced().map((e) => e.id);
            again.markSynced('b');
            return {names: again.list().map((e) => e.name), unsynced, after: again.unsynced().length,
                    b: again.get('b').settings, kind: again.get('a').kind, missing: again.get('zzz')};
        })()""",
    )
    assert result == {
        "names": ["Alpha", "Beta"],
        "unsynced": ["b"],
        "after": 0,
        "b": {"comfy_executor": "runpod", "runpod_endpoint_id": "ep"},
        "kind": "graph",
        "missing": None,
    }


# --------------------------------------------------------------------------- errors, jobs


def test_validation_errors_become_one_item_per_node(modules: Any) -> None:
    text = (
        "ComfyUI rejected the prompt (400): Prompt outputs failed validation: "
        "node 1 (EmptyImage): Value 0 smaller than min of 1: width; "
        "node 4 (ImageInvert): Required input is missing: image"
    )
    parsed = modules("jobs.js", "m.parseErrorText(arg)", text)
    assert parsed == {
        "summary": "ComfyUI rejected the prompt (400): Prompt outputs failed validation",
        "items": [
            {"nodeId": "1", "nodeClass": "EmptyImage", "message": "Value 0 smaller than min of 1: width"},
            {"nodeId": "4", "nodeClass": "ImageInvert", "message": "Required input is missing: image"},
        ],
    }
    newline = modules("jobs.js", "m.parseErrorText(arg)", "node 2 (A): bad\nnode 3: worse")
    assert [i["nodeId"] for i in newline["items"]] == ["2", "3"]
    plain = modules("jobs.js", "m.parseErrorText(arg)", "ComfyUI node 3 (ImageBlur) failed: RuntimeError: boom")
    assert plain == {"summary": "ComfyUI node 3 (ImageBlur) failed: RuntimeError: boom", "items": []}


def test_job_state_from_messages(modules: Any) -> None:
    result = modules(
        "jobs.js",
        """(() => {
            const jobs = new Map();
            const out = {node_id: '3', node_name: 'SaveImage', output_name: 'images', output_type: 'image',
                         value: {filename: 'a.png', content_type: 'image/png', size: 1}};
            const steps = [
                m.applyMessage(jobs, {type: 'job_update', job_id: 'j', status: 'queued', executor: 'runpod'}),
                m.applyMessage(jobs, {type: 'node_progress', job_id: 'j', node_id: '2', progress: 5, total: 20}),
                m.applyMessage(jobs, {type: 'output_update', job_id: 'j', ...out}),
                m.applyMessage(jobs, {type: 'output_update', job_id: 'j', ...out}),
            ];
            const mid = {status: jobs.get('j').status, overall: m.overallProgress(jobs.get('j'))};
            const view = {job_id: 'j', status: 'completed', created_at: 100, updated_at: 103.5, outputs: [out]};
            m.applyMessage(jobs, {type: 'job', job: view});
            const j = jobs.get('j');
            return {steps: steps.map((s) => s.changed), mid, status: j.status, outputs: j.outputs.length,
                    overall: m.overallProgress(j), elapsed: m.elapsedSeconds(j, 0), executor: j.executor};
        })()""",
    )
    assert result == {
        "steps": ["status", "progress", "output", "output"],
        "mid": {"status": "running", "overall": 0.25},
        "status": "completed",
        "outputs": 1,  # the same output twice (push + catch-up) is shown once
        "overall": 1,
        "elapsed": 3.5,
        "executor": "runpod",
    }


def test_durations_read_well(modules: Any) -> None:
    assert modules("jobs.js", "arg.map((s) => m.formatDuration(s))", [0.25, 59.94, 65, 3725, None]) == [
        "0.3 s",
        "59.9 s",
        "1 min 05 s",
        "1 h 02 min",
        "—",
    ]


# --------------------------------------------------------------------------- connection


def test_backoff_doubles_with_jitter_and_is_capped(modules: Any) -> None:
    delays = modules(
        "connection.js",
        "[0, 1, 2, 3, 10, 50].map((a) => [0, 0.999999].map((r) => m.backoffDelay(a, m.BACKOFF, () => r)))",
    )
    lows = [d[0] for d in delays]
    highs = [d[1] for d in delays]
    assert lows == [250, 500, 1000, 2000, 7500, 7500]
    assert highs == [500, 1000, 2000, 4000, 15000, 15000]


def test_socket_url(modules: Any) -> None:
    urls = modules(
        "connection.js",
        "arg.map((u) => { try { return m.socketUrl(u, 't k&n'); } catch (e) { return 'ERR ' + e.message; } })",
        ["ws://127.0.0.1:3001/", "https://abc.execute-api.us-east-1.amazonaws.com/prod", "ftp://x", "nonsense"],
    )
    assert urls[0] == "ws://127.0.0.1:3001/?token=t+k%26n"
    assert urls[1] == "wss://abc.execute-api.us-east-1.amazonaws.com/prod?token=t+k%26n"
    assert urls[2].startswith("ERR ")
    assert "ws://" in urls[2]
    assert urls[3].startswith("ERR ")
    assert "not a URL" in urls[3]
    defaults = modules(
        "connection.js",
        "arg.map((l) => m.defaultSocketUrl(l))",
        [
            {"protocol": "https:", "host": "app.example.com"},
            {"protocol": "http:", "host": "127.0.0.1:3001"},
            {"protocol": "file:", "host": ""},
        ],
    )
    assert defaults == ["wss://app.example.com/", "ws://127.0.0.1:3001/", "ws://127.0.0.1:3001/"]


# --------------------------------------------------------------------------- output rendering


def _silent_wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)
    return buf.getvalue()


WAV = base64.b64encode(_silent_wav()).decode()


def test_outputs_render_by_content_type_with_download_links(modules: Any) -> None:
    outputs = [
        {
            "node_id": "9",
            "node_name": "SaveAudio",
            "output_name": "audio",
            "output_type": "audio",
            "value": {"filename": "a.wav", "content_type": "audio/wav", "size": len(_silent_wav()), "data": WAV},
        },
        {
            "node_id": "8",
            "node_name": "SaveVideo",
            "output_name": "video",
            "output_type": "video",
            "value": {"filename": "v.mp4", "content_type": "video/mp4", "size": 10, "uri": "http://127.0.0.1:9/v.mp4"},
        },
        {
            "node_id": "7",
            "node_name": "ShowText",
            "output_name": "text",
            "output_type": "text",
            "value": {
                "filename": "t.txt",
                "content_type": "text/plain",
                "size": 11,
                "data": base64.b64encode("héllo <b>x</b>".encode()).decode(),
            },
        },
        {
            "node_id": "6",
            "node_name": "SaveLatent",
            "output_name": "latents",
            "output_type": "latent",
            "value": {
                "filename": "l.latent",
                "content_type": "application/octet-stream",
                "size": 5,
                "uri": "javascript:alert(1)",
            },
        },
    ]
    result = modules(
        "render.js",
        """(async () => {
            const box = document.createElement('div');
            document.body.append(box);
            m.renderOutputs(box, arg);
            await new Promise((r) => setTimeout(r, 50));  // text is filled in asynchronously
            return [...box.querySelectorAll('figure')].map((f) => ({
                kind: f.dataset.kind,
                media: (f.querySelector('img, video, audio, pre') || {}).tagName || null,
                src: (f.querySelector('video, audio') || {}).src || null,
                text: (f.querySelector('pre') || {}).textContent || null,
                bold: f.querySelectorAll('b').length,
                href: (f.querySelector('a.download') || {}).href || null,
                download: (f.querySelector('a.download') || {}).download || null,
            }));
        })()""",
        outputs,
    )
    audio, video, text, latent = result
    assert audio["kind"] == "audio"
    assert audio["media"] == "AUDIO"
    assert audio["src"].startswith("data:audio/wav;base64,")
    assert audio["href"] == audio["src"]
    assert video["kind"] == "video"
    assert video["media"] == "VIDEO"
    assert video["src"] == "http://127.0.0.1:9/v.mp4"
    assert video["download"] == "v.mp4"
    assert text["kind"] == "text"
    assert text["text"] == "héllo <b>x</b>"
    assert text["bold"] == 0
    # A URL that is not http(s)/data/blob is neither loaded nor linked.
    assert latent["kind"] == "file"
    assert latent["href"] is None


def test_outputs_are_not_redrawn_when_unchanged(modules: Any) -> None:
    """Progress messages re-render the job; a playing video or loaded image must survive that."""
    same, redrawn = modules(
        "render.js",
        """(() => {
            const box = document.createElement('div');
            const out = (name) => ({node_id: '3', node_name: 'SaveImage', output_name: 'images', output_type: 'image',
                value: {filename: name, content_type: 'image/png', size: 1, uri: 'http://127.0.0.1:9/' + name}});
            m.renderOutputs(box, [out('a.png')], 'No outputs yet.', 'j1');
            const first = box.querySelector('img');
            m.renderOutputs(box, [out('a.png')], 'No outputs yet.', 'j1');
            const same = box.querySelector('img') === first;
            m.renderOutputs(box, [out('a.png'), out('b.png')], 'No outputs yet.', 'j1');
            return [same, box.querySelectorAll('img').length];
        })()""",
    )
    assert same is True
    assert redrawn == 2


# --------------------------------------------------------------------------- input files and uploads


def test_input_names_follow_the_protocol_rule(modules: Any) -> None:
    names = ["input.png", "My Photo (2).jpg", "_x", "../a.png", "a/b.png", ".hidden", "trail.", "x" * 129, "", "é.png"]
    problems = modules("uploads.js", "arg.map((n) => m.inputNameProblem(n))", names)
    assert [p is None for p in problems] == [True, True, True, False, False, False, False, False, False, False]
    suggested = modules(
        "uploads.js",
        "arg.map((n) => m.suggestInputName(n))",
        ["Holiday photo?.png", "C:\\pics\\cat.png", "..hidden.png", "café.png", "...", "x" * 140 + ".webp", "???"],
    )
    assert suggested[:5] == ["Holiday photo_.png", "cat.png", "hidden.png", "cafe.png", "input"]
    assert suggested[6] == "___"
    assert suggested[5] == "x" * 123 + ".webp"
    assert len(suggested[5]) == 128
    marked = modules(
        "uploads.js",
        "[...m.namesProblems(arg).keys()]",
        [{"name": "a"}, {"name": "b"}, {"name": "a"}, {"name": "../c"}],
    )
    assert marked == [0, 2, 3]


def test_content_types_come_from_the_extension_first(modules: Any) -> None:
    types = modules(
        "uploads.js",
        "arg.map(([name, type]) => m.guessContentType({name, type}))",
        [["a.PNG", ""], ["a.wav", "audio/x-wav"], ["clip.mkv", ""], ["a.bin", "application/x-thing"], ["noext", ""]],
    )
    assert types == ["image/png", "audio/wav", "video/x-matroska", "application/x-thing", "application/octet-stream"]


def test_base64_of_a_large_buffer_matches_python(modules: Any) -> None:
    data = bytes((i * 7 + 1) % 256 for i in range(200_000))
    encoded = modules(
        "uploads.js",
        "m.toBase64(Uint8Array.from(atob(arg), (c) => c.charCodeAt(0)).buffer)",
        base64.b64encode(data).decode(),
    )
    assert base64.b64decode(encoded) == data


def test_plan_files_inlines_the_smallest_while_the_frame_fits(modules: Any) -> None:
    plan = modules(
        "uploads.js",
        """(async () => {
            const file = (name, size) => ({ name, size, content_type: "image/png",
                read: async () => new Uint8Array(size).fill(7).buffer });
            const files = [file("big.png", 90000), file("a.png", 30000), file("b.png", 30000), file("c.png", 30000),
                           { ...file("done.png", 10), upload_id: "u-done" }];
            const data = { job_id: "j", prompt: { "1": { class_type: "LoadImage", inputs: { image: "a.png" } } } };
            const plan = await m.planFiles(data, files);
            const final = { ...data, files: plan.files };
            return { uploads: plan.uploads, kinds: plan.files.map((f) => (f.data ? "inline" : f.upload_id)),
                     bytes: m.frameBytes(final), limit: m.MAX_MESSAGE_BYTES,
                     inlineType: plan.files[1].content_type };
        })()""",
    )
    # 30 KB is 40 KB of base64: three fit (120 KB), the 90 KB file does not; the uploaded one stays.
    assert plan["kinds"] == ["u" * 128, "inline", "inline", "inline", "u-done"]
    assert plan["uploads"] == [0]
    assert plan["bytes"] <= plan["limit"]
    assert plan["inlineType"] == "image/png"


def test_s3_refusals_read_as_sentences_without_the_signature(modules: Any) -> None:
    too_large = (
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>EntityTooLarge</Code>"
        "<Message>Your proposed upload exceeds the maximum allowed size</Message>"
        "<ProposedSize>300</ProposedSize><MaxSizeAllowed>299</MaxSizeAllowed></Error>"
    )
    signature = (
        "<Error><Code>SignatureDoesNotMatch</Code><Message>No match</Message>"
        "<StringToSign>c2VjcmV0</StringToSign><SignatureProvided>deadbeef</SignatureProvided></Error>"
    )
    texts = modules(
        "uploads.js",
        "arg.map(([status, body]) => m.describeRefusal(status, body, 'photo.png'))",
        [[400, too_large], [403, signature], [502, "<html>bad gateway</html>"], [0, ""]],
    )
    assert texts[0] == (
        "The upload of photo.png was refused (HTTP 400 EntityTooLarge): Your proposed upload exceeds the maximum "
        "allowed size (sent 300 bytes; the upload admits at most 299)."
    )
    assert texts[1] == "The upload of photo.png was refused (HTTP 403 SignatureDoesNotMatch): No match."
    assert "c2VjcmV0" not in texts[1]
    assert "deadbeef" not in texts[1]
    assert texts[2] == "The upload of photo.png was refused (HTTP 502)."


def test_upload_requests_pair_answers_and_refusals(modules: Any) -> None:
    result = modules(
        "uploads.js",
        """(async () => {
            const sent = [];
            const reqs = new m.UploadRequests((c, d) => { sent.push([c, d]); return true; }, { timeoutMs: 2000 });
            const first = reqs.request("a.png", "image/png", 3);
            const second = reqs.request("b.svg", "image/svg+xml", 4);
            await new Promise((r) => setTimeout(r, 0));
            const stray = reqs.handle({ type: "upload_ready", upload_id: "x", ref: "not-ours" });
            const answered = reqs.handle({ type: "upload_ready", upload_id: "u1", ref: sent[0][1].ref, fields: {} });
            const a = await first;
            await new Promise((r) => setTimeout(r, 0));
            // A server that does not echo ref: the refusal of the one request in flight is its own.
            reqs.handle({ type: "error", request: "request_upload", code: "upload_not_allowed", message: "no SVG" });
            let err = null;
            try { await second; } catch (e) { err = [e.message, e.code]; }
            const offline = new m.UploadRequests(() => false);
            let off = null;
            try { await offline.request("c.png", "image/png", 1); } catch (e) { off = e.message; }
            return { sent: sent.map(([c, d]) => [c, d.filename, d.content_type, d.size]), stray, answered,
                     id: a.upload_id, err, off };
        })()""",
    )
    assert result["sent"] == [
        ["request_upload", "a.png", "image/png", 3],
        ["request_upload", "b.svg", "image/svg+xml", 4],
    ]
    assert result["stray"] is False
    assert result["answered"] is True
    assert result["id"] == "u1"
    assert result["err"] == ["no SVG", "upload_not_allowed"]
    assert "Not connected" in result["off"]


def test_job_views_carry_inputs_and_a_silent_backend_keeps_the_page_s(modules: Any) -> None:
    result = modules(
        "jobs.js",
        """(() => {
            const jobs = new Map();
            jobs.set("j", m.newJob("j", { inputs: [{ name: "a.png", size: 3, content_type: "image/png" }] }));
            m.applyJobView(jobs, { job_id: "j", status: "running", inputs: [] });
            const kept = jobs.get("j").inputs.map((i) => i.name);
            m.applyJobView(jobs, { job_id: "j", status: "completed",
                                   inputs: [{ name: "b.png", size: 4, content_type: "image/png" }] });
            return { kept, now: jobs.get("j").inputs };
        })()""",
    )
    assert result["kept"] == ["a.png"]
    assert result["now"] == [{"name": "b.png", "size": 4, "content_type": "image/png"}]
