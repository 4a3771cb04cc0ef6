"""RunPod webhook groundwork: per-job secret, callback URL, constant-time check, the body as a hint,
and the verdict of a callback; plus the loopback FakeRunPod POSTing a real callback to a route
built from these pieces."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from fakes import FakeRunPod

from comfyroute.executors.runpod import RunPodExecutor
from comfyroute.executors.runpod_webhook import (
    CALLBACK_PATH,
    CallbackHint,
    JobView,
    RunPodTimings,
    Verdict,
    base_path,
    callback_base,
    callback_url,
    judge,
    new_secret,
    parse_callback_path,
    parse_hint,
    run_body_with_webhook,
    secret_digest,
    secret_matches,
    timings,
)

BASE = "https://abc123.lambda-url.us-east-1.on.aws"
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hook"}},
}


# --------------------------------------------------------------------------- the secret


def test_secrets_are_fresh_url_safe_and_256_bits() -> None:
    made = {new_secret() for _ in range(200)}
    assert len(made) == 200
    for secret in made:
        assert len(secret) == 43
        assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_the_record_keeps_a_digest_that_only_the_secret_matches() -> None:
    secret = new_secret()
    digest = secret_digest(secret)
    assert digest.startswith("sha256:")
    assert secret not in digest
    assert secret_matches(secret, digest)
    assert not secret_matches(new_secret(), digest)
    assert not secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), digest)
    assert not secret_matches(digest, digest)  # the digest is not a key


@pytest.mark.parametrize("presented", [None, "", "x" * 10_000])
def test_missing_empty_or_absurd_secrets_never_match(presented: str | None) -> None:
    assert not secret_matches(presented, secret_digest(new_secret()))


@pytest.mark.parametrize("stored", [None, "", "md5:abc", "plain-secret"])
def test_a_record_without_a_proper_digest_matches_nothing(stored: str | None) -> None:
    assert not secret_matches("plain-secret", stored)


def test_the_check_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    secret = new_secret()
    assert secret_matches(secret, secret_digest(secret))
    assert not secret_matches("short", secret_digest(secret))
    # Both comparisons went through compare_digest, always on digests of the same length.
    assert len(calls) == 2
    assert all(len(a) == len(b) for a, b in calls)


# --------------------------------------------------------------------------- the URL


def test_callback_url_shape_and_its_path_parses_back() -> None:
    secret = new_secret()
    url = callback_url(BASE + "/", "job-42", secret)
    assert url == f"{BASE}{CALLBACK_PATH}/job-42/{secret}"
    assert parse_callback_path(f"{CALLBACK_PATH}/job-42/{secret}") == ("job-42", secret)


def test_a_base_with_a_stage_path_is_kept_and_parsed_with_its_prefix() -> None:
    secret = new_secret()
    url = callback_url("https://api.example.com/prod", "j1", secret)
    assert url == f"https://api.example.com/prod{CALLBACK_PATH}/j1/{secret}"
    prefix = base_path("https://api.example.com/prod/")
    assert prefix == "/prod"
    assert parse_callback_path(f"/prod{CALLBACK_PATH}/j1/{secret}", prefix) == ("j1", secret)
    assert parse_callback_path(f"{CALLBACK_PATH}/j1/{secret}", prefix) is None


@pytest.mark.parametrize(
    "base",
    [
        "http://api.example.com",  # the URL is the credential: never in clear text off the machine
        "ftp://api.example.com",
        "https://",
        "https://user:pw@api.example.com",
        "https://api.example.com/?token=1",
        "https://api.example.com/#x",
    ],
)
def test_unsafe_bases_are_refused(base: str) -> None:
    with pytest.raises(ValueError, match="callback base URL"):
        callback_base(base)


@pytest.mark.parametrize("base", ["http://127.0.0.1:24001", "http://localhost:24001", "http://[::1]:24001"])
def test_plain_http_is_allowed_on_loopback_for_the_dev_stack(base: str) -> None:
    assert callback_base(base) == base


@pytest.mark.parametrize(("job_id", "secret"), [("../etc", None), ("a/b", None), ("ok", "short"), ("ok", "x" * 44)])
def test_unsafe_job_ids_and_foreign_secrets_do_not_make_urls(job_id: str, secret: str | None) -> None:
    with pytest.raises(ValueError, match="job id|secret"):
        callback_url(BASE, job_id, secret or new_secret())


@pytest.mark.parametrize(
    "path",
    [
        "/",
        CALLBACK_PATH,
        f"{CALLBACK_PATH}/job-1",
        f"{CALLBACK_PATH}/job-1/",
        f"{CALLBACK_PATH}/job-1/{'a' * 42}",
        f"{CALLBACK_PATH}/job-1/{'a' * 43}/extra",
        f"{CALLBACK_PATH}/.hidden/{'a' * 43}",
        f"{CALLBACK_PATH}/job%2F1/{'a' * 43}",
        f"/other{CALLBACK_PATH}/job-1/{'a' * 43}",
        f"{CALLBACK_PATH}/job-1/{'a' * 42}=",
    ],
)
def test_anything_but_an_exact_callback_path_is_not_one(path: str) -> None:
    assert parse_callback_path(path) is None


def test_the_run_body_gains_the_webhook_and_keeps_the_rest() -> None:
    executor = RunPodExecutor("test-key", "endpoint-1", execution_timeout_ms=60_000)
    body = executor.run_body(PROMPT)
    url = callback_url(BASE, "j1", new_secret())
    with_hook = run_body_with_webhook(body, url)
    assert with_hook == {**body, "webhook": url}
    assert with_hook["policy"] == {"executionTimeout": 60_000}
    assert "webhook" not in body  # the original is not changed
    with pytest.raises(ValueError, match="https"):
        run_body_with_webhook(body, "http://example.com/hook")
    with pytest.raises(ValueError, match="absolute"):
        run_body_with_webhook(body, "/runpod/callback/x")


# --------------------------------------------------------------------------- the body


def status_object(**extra: Any) -> dict[str, Any]:
    return {
        "id": "rp-123-u1",
        "status": "COMPLETED",
        "delayTime": 812,
        "executionTime": 4_071,
        "workerId": "w-9",
        "output": {"images": [{"filename": "a.png", "type": "base64", "data": "iVBOR" * 1000}]},
        **extra,
    }


def test_the_hint_reads_the_status_fields_and_not_the_output() -> None:
    hint = parse_hint(json.dumps(status_object()).encode())
    assert hint == CallbackHint(id="rp-123-u1", status="COMPLETED", delayTime=812, executionTime=4071, workerId="w-9")
    assert hint is not None
    assert hint.terminal
    assert "output" not in hint.model_dump()


@pytest.mark.parametrize("body", [None, b"", b"not json", b"[1, 2]", b'"COMPLETED"', b"\xff\xfe"])
def test_bodies_without_an_object_give_no_hint(body: bytes | None) -> None:
    assert parse_hint(body) is None


def test_a_wrongly_typed_field_is_dropped_alone() -> None:
    hint = parse_hint(json.dumps({"id": "rp-1", "status": "FAILED", "delayTime": "soon", "workerId": 7}))
    assert hint == CallbackHint(id="rp-1", status="FAILED")


@pytest.mark.parametrize(("status", "terminal"), [("COMPLETED", True), ("timed_out", True), ("IN_PROGRESS", False)])
def test_terminal_statuses(status: str, terminal: bool) -> None:
    assert CallbackHint(status=status).terminal is terminal


def test_timings_from_a_status_object() -> None:
    assert timings(status_object()) == RunPodTimings(delay_ms=812, execution_ms=4071)
    assert timings({"delayTime": -1, "executionTime": True}) == RunPodTimings()
    assert timings({"delayTime": float("nan"), "executionTime": "9"}) == RunPodTimings()
    assert timings({}) == RunPodTimings()


# --------------------------------------------------------------------------- the verdict


SECRET = new_secret()
JOB = JobView(secret_digest=secret_digest(SECRET), executor_job_id="rp-123-u1", terminal=False)


def body_of(**extra: Any) -> bytes:
    return json.dumps(status_object(**extra)).encode()


def test_a_right_callback_wakes_the_job_with_a_small_task_output() -> None:
    decision = judge("POST", SECRET, body_of(), JOB)
    assert (decision.verdict, decision.http_status) == (Verdict.WAKE, 200)
    output = decision.task_output()
    assert output == {"woken_by": "runpod_webhook", "hint_status": "COMPLETED"}
    assert len(json.dumps(output)) < 200  # never the body's megabytes of base64


@pytest.mark.parametrize(
    ("secret", "job"),
    [
        (None, JOB),  # the path was not a callback path
        (new_secret(), JOB),  # wrong secret
        (SECRET, None),  # no such job
        (SECRET, JobView(secret_digest=None, executor_job_id="rp-123-u1", terminal=False)),  # no webhook armed
    ],
)
def test_everything_not_provably_ours_gets_the_same_404(secret: str | None, job: JobView | None) -> None:
    decision = judge("POST", secret, body_of(), job)
    assert (decision.verdict, decision.http_status, decision.reason) == (Verdict.REJECT, 404, "no such callback")


def test_only_post_is_a_callback() -> None:
    assert judge("GET", SECRET, None, JOB).http_status == 405


def test_a_body_naming_another_runpod_job_is_acknowledged_and_ignored() -> None:
    decision = judge("POST", SECRET, body_of(id="rp-999"), JOB)
    assert (decision.verdict, decision.http_status) == (Verdict.IGNORE, 200)


def test_a_callback_for_a_job_already_over_is_acknowledged_and_ignored() -> None:
    over = JobView(secret_digest=JOB.secret_digest, executor_job_id=JOB.executor_job_id, terminal=True)
    assert judge("POST", SECRET, body_of(), over).verdict is Verdict.IGNORE


@pytest.mark.parametrize("body", [None, b"garbage", body_of(status="IN_PROGRESS")])
def test_the_right_secret_wakes_even_with_an_odd_body_since_status_is_confirmed(body: bytes | None) -> None:
    decision = judge("POST", SECRET, body, JOB)
    assert (decision.verdict, decision.http_status) == (Verdict.WAKE, 200)


def test_reasons_never_carry_the_secret_or_the_body() -> None:
    for decision in (
        judge("POST", SECRET, body_of(), JOB),
        judge("POST", "x", body_of(), JOB),
        judge("POST", SECRET, body_of(id="rp-999"), JOB),
    ):
        assert SECRET not in decision.reason
        assert "iVBOR" not in decision.reason


# --------------------------------------------------------------------------- with the fake RunPod


class _Route(BaseHTTPRequestHandler):
    """The callback route as the handler will be: parse the path, read the job, judge."""

    jobs: dict[str, JobView]
    decisions: list[Any]

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size)
        parsed = parse_callback_path(self.path)
        job = self.jobs.get(parsed[0]) if parsed else None
        decision = judge("POST", parsed[1] if parsed else None, body, job)
        self.decisions.append((parsed[0] if parsed else None, decision))
        self.send_response(decision.http_status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def wait_for_deliveries(runpod: FakeRunPod, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(runpod.webhooks) < count:
        assert time.monotonic() < deadline, f"RunPod made {len(runpod.webhooks)} of {count} webhook calls"
        time.sleep(0.01)


@pytest.fixture
def route() -> Iterator[tuple[str, type[_Route]]]:
    handler = type("Route", (_Route,), {"jobs": {}, "decisions": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_fake_runpod_calls_back_once_and_the_route_wakes_the_job(route: tuple[str, type[_Route]]) -> None:
    base, handler = route
    secret = new_secret()
    with FakeRunPod(queue_seconds=0.02, run_seconds=0.05) as runpod:
        executor = RunPodExecutor("test-key", "ep-1", base_url=runpod.url)
        body = run_body_with_webhook(executor.run_body(PROMPT), callback_url(base, "job-7", secret))
        answer = requests.post(
            f"{runpod.url}/ep-1/run", json=body, headers={"Authorization": "Bearer test-key"}, timeout=5
        )
        rp_id = answer.json()["id"]
        handler.jobs["job-7"] = JobView(secret_digest=secret_digest(secret), executor_job_id=rp_id, terminal=False)
        assert runpod.wait_for(rp_id) == "COMPLETED"
        wait_for_deliveries(runpod, 1)
        status = executor.status(rp_id)
    assert runpod.webhooks == [(callback_url(base, "job-7", secret), 200)]  # 200 at once: no retry
    ((job_id, decision),) = handler.decisions
    assert job_id == "job-7"
    assert decision.verdict is Verdict.WAKE
    assert decision.hint is not None
    assert (decision.hint.id, decision.hint.status) == (rp_id, "COMPLETED")
    assert status.state.value == "completed"  # what the confirming look will find


def test_a_guessed_url_is_refused_and_runpod_gives_up_after_its_retries(route: tuple[str, type[_Route]]) -> None:
    base, handler = route
    with FakeRunPod(queue_seconds=0.01, run_seconds=0.02, webhook_retry_seconds=0.01) as runpod:
        executor = RunPodExecutor("test-key", "ep-1", base_url=runpod.url)
        # A webhook whose secret the route does not know (as if someone guessed at the URL).
        body = run_body_with_webhook(executor.run_body(PROMPT), callback_url(base, "job-8", new_secret()))
        handler.jobs["job-8"] = JobView(secret_digest=secret_digest(new_secret()), executor_job_id=None, terminal=False)
        answer = requests.post(
            f"{runpod.url}/ep-1/run", json=body, headers={"Authorization": "Bearer test-key"}, timeout=5
        )
        runpod.wait_for(answer.json()["id"])
        wait_for_deliveries(runpod, 3)
    assert [status for _, status in runpod.webhooks] == [404, 404, 404]
    assert all(d.verdict is Verdict.REJECT for _, d in handler.decisions)
