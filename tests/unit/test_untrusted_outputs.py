"""Executor-supplied data is untrusted: output URLs (RunPod's s3_url) are copied into our own
store by the backend only when safe (public address after resolution, https, no redirects, a
size cap; loopback only through the UNTRUSTED_FETCH_ALLOW knob), and served as attachments with
a content type from an allow-list."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from aws_lambda_powertools import Logger
from moto import mock_aws
from support.memory import MemoryPorts, connected_ports, key, stored_job

from comfyroute.aws.outputs import S3Outputs
from comfyroute.contenttypes import safe_content_type
from comfyroute.executors.base import ExecutorStatus, OutputFile
from comfyroute.jobs.follow import poll_job
from comfyroute.protocol import JobStatus
from comfyroute.untrusted import FetchRefused, check_url, fetch_untrusted, parse_networks

PORT = 32417
BODY = b"\x89PNG-from-runpod-bucket" * 10


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path.endswith(".html") else "image/png")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{PORT}"
    httpd.shutdown()
    httpd.server_close()


LOOPBACK = parse_networks("127.0.0.0/8")
Logger(service="comfyroute")  # the parent of the rules' child loggers


@pytest.fixture
def ports() -> MemoryPorts:
    return connected_ports()


def test_private_loopback_and_link_local_addresses_are_refused_after_resolution() -> None:
    for address in ("10.1.2.3", "127.0.0.1", "169.254.169.254", "::1", "::ffff:192.168.0.1", "100.64.0.1"):
        with pytest.raises(FetchRefused, match="non-public address"):
            check_url("https://bucket.example/x.png", resolver=lambda host, port, a=address: [a])
    check_url("https://bucket.example/x.png", resolver=lambda host, port: ["52.216.1.1"])


def test_only_https_and_no_credentials_in_urls() -> None:
    public = lambda host, port: ["52.216.1.1"]  # noqa: E731
    with pytest.raises(FetchRefused, match="only https"):
        check_url("http://bucket.example/x.png", resolver=public)
    with pytest.raises(FetchRefused, match="user:password"):
        check_url("https://u:p@bucket.example/x.png", resolver=public)
    with pytest.raises(FetchRefused, match="only http"):
        check_url("file:///etc/passwd", resolver=public)


def test_loopback_is_refused_unless_the_allow_list_names_it(server: str) -> None:
    with pytest.raises(FetchRefused, match="only https"):
        fetch_untrusted(f"{server}/out.png", max_bytes=10_000)
    data, ctype = fetch_untrusted(f"{server}/out.png", max_bytes=10_000, allow_networks=LOOPBACK)
    assert (data, ctype) == (BODY, "image/png")


def test_redirects_are_not_followed_and_sizes_are_capped(server: str) -> None:
    with pytest.raises(FetchRefused, match="redirect"):
        fetch_untrusted(f"{server}/redirect", max_bytes=10_000, allow_networks=LOOPBACK)
    with pytest.raises(FetchRefused, match="limit is 10"):
        fetch_untrusted(f"{server}/out.png", max_bytes=10, allow_networks=LOOPBACK)


def url_output(url: str, name: str = "ComfyUI_00001_.png") -> OutputFile:
    return OutputFile(
        node_id="runpod", output_name="images", kind="image", filename=name, content_type="image/png", url=url
    )


def test_an_s3_url_output_is_copied_so_clients_get_our_url_and_the_real_size(ports: MemoryPorts, server: str) -> None:
    ports.config = ports.config._replace(untrusted_fetch_allow="127.0.0.0/8")
    stored_job(ports, status=JobStatus.RUNNING)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.COMPLETED)]
    ports.executor.files = [url_output(f"{server}/out.png?X-Amz-Signature=abc")]
    poll_job(ports, key("j1"), 1)
    job = ports.jobs.records[key("j1")]
    assert job.status is JobStatus.COMPLETED
    (out,) = job.outputs
    assert (out.size, out.url) == (len(BODY), None)
    assert ports.outputs.objects[out.key or ""] == BODY
    assert ports.outputs.presign(out, 60) == f"memory://{out.key}?expires=60"


def test_an_output_url_into_a_private_network_fails_the_job_naming_the_file_not_the_query(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.COMPLETED)]
    ports.executor.files = [url_output("http://169.254.169.254/latest/meta-data/?token=s3cr3t", "x.png")]
    poll_job(ports, key("j1"), 1)
    job = ports.jobs.records[key("j1")]
    assert job.status is JobStatus.FAILED
    assert "'x.png'" in (job.error or "")
    assert "s3cr3t" not in (job.error or "")
    assert ports.outputs.objects == {}


def test_content_types_come_from_an_allow_list() -> None:
    assert safe_content_type("text/html; charset=utf-8", "page.html") == "application/octet-stream"
    assert safe_content_type("image/svg+xml", "x.svg") == "application/octet-stream"
    assert safe_content_type("IMAGE/PNG", "x.png") == "image/png"
    assert safe_content_type(None, "clip.mp4") == "video/mp4"


@mock_aws
def test_s3_objects_are_served_as_attachments_with_an_allowed_type() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="outs")
    store = S3Outputs("outs", client=s3)
    page = OutputFile(
        node_id="9", output_name="text", kind="file", filename="evil.html", content_type="text/html", data=b"<script>"
    )
    kept = store.put("k1", 0, page)
    assert s3.head_object(Bucket="outs", Key=kept.key or "")["ContentType"] == "application/octet-stream"
    query = parse_qs(urlsplit(store.presign(kept, 60) or "").query)
    assert query["response-content-disposition"] == ['attachment; filename="evil.html"']
    assert query["response-content-type"] == ["application/octet-stream"]
    assert store.presign(page.model_copy(update={"key": None, "url": "https://runpod.example/x"}), 60) is None
