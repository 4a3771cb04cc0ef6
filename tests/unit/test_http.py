"""The executors' HTTP session: timeouts, bounded retries, capped Retry-After."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from comfyroute import http


class _Server:
    """A loopback server answering a scripted list of statuses, recording each method."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.seen.append(self.command)
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(script):
        s = _Server(script)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_get_is_retried_on_503_then_succeeds(server_factory):
    srv = server_factory([(503, {}), (503, {})])
    session = http.make_session(backoff_factor=0)
    assert session.get(srv.url).status_code == 200
    assert srv.seen == ["GET", "GET", "GET"]


def test_post_is_not_retried_on_503_unless_asked(server_factory):
    srv = server_factory([(503, {})])
    assert http.make_session(backoff_factor=0).post(srv.url, json={}).status_code == 503
    assert srv.seen == ["POST"]
    srv2 = server_factory([(429, {})])
    assert http.make_session(backoff_factor=0, retry_post=True).post(srv2.url, json={}).status_code == 200
    assert srv2.seen == ["POST", "POST"]


def test_retries_are_bounded(server_factory):
    srv = server_factory([(503, {})] * 10)
    assert http.make_session(retries=2, backoff_factor=0).get(srv.url).status_code == 503
    assert len(srv.seen) == 3


def test_retry_after_is_capped(monkeypatch):
    monkeypatch.setattr(http, "MAX_RETRY_AFTER_SECONDS", 0.0)
    retry = http.CappedRetry(total=1)

    class Resp:
        headers = {"Retry-After": "3600"}

        def getheader(self, name):
            return self.headers.get(name)

    assert retry.get_retry_after(Resp()) == 0.0


def test_every_request_has_a_timeout(server_factory):
    srv = server_factory([])
    session = http.make_session(timeout=(0.5, 0.5))
    seen = {}
    original = requests.Session.send

    def spy(self, request, **kwargs):
        seen["timeout"] = kwargs.get("timeout")
        return original(self, request, **kwargs)

    requests.Session.send = spy
    try:
        session.get(srv.url)
    finally:
        requests.Session.send = original
    assert seen["timeout"] == (0.5, 0.5)


def test_connection_refused_raises_after_bounded_retries():
    session = http.make_session(retries=1, backoff_factor=0, timeout=(0.5, 0.5))
    with pytest.raises(requests.ConnectionError):
        session.get("http://127.0.0.1:9/")
