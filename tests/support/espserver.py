"""A fake email service provider's HTTP API for tests: http.server on 127.0.0.1, port chosen by the OS, in a thread.

It stands in for Postmark's `POST /email` (the API django-anymail's Postmark
backend calls when POSTMARK_API_URL points here). It records every request
(`requests`: path, headers, JSON body) and answers from a script: `replies`
(consumed in order) holds (HTTP status, JSON body); when empty, Postmark's
success answer for the request's To. `before_reply`, when set, is called with
each request before it is answered (an ESP that reports on a message while its
API's answer is still on the way).
"""
from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class EspRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class EspState:
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    requests: list[EspRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    before_reply: Callable[[EspRequest], None] | None = None


def postmark_ok(body: dict[str, Any]) -> dict[str, Any]:
    """Postmark's answer to an accepted /email request ("To" only when the request had one: not for Bcc-only)."""
    answer = {"SubmittedAt": "2026-11-27T20:00:00Z", "MessageID": str(uuid.uuid4()), "ErrorCode": 0, "Message": "OK"}
    return {"To": body["To"], **answer} if body.get("To") else answer


def postmark_inactive(addresses: list[str]) -> tuple[int, dict[str, Any]]:
    """Postmark's 422 for recipients marked inactive (hard bounce or spam complaint): ErrorCode 406."""
    message = (
        "You tried to send to recipient(s) that have been marked as inactive.\n"
        f"Found inactive addresses: {', '.join(addresses)}.\n"
        "Inactive recipients are ones that have generated a hard bounce or a spam complaint."
    )
    return 422, {"ErrorCode": 406, "Message": message}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        state = self.server.state
        request = EspRequest(self.path, dict(self.headers.items()), body)
        with state.lock:
            state.requests.append(request)
            status, answer = state.replies.pop(0) if state.replies else (200, postmark_ok(body))
        if state.before_reply:
            state.before_reply(request)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test asserts on `requests`


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = EspState()


class EspServer:
    def __init__(self) -> None:
        self.server = _Server()
        self.thread = threading.Thread(target=self.server.serve_forever, name="esp-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    @property
    def requests(self) -> list[EspRequest]:
        return self.server.state.requests

    @property
    def replies(self) -> list[tuple[int, dict[str, Any]]]:
        return self.server.state.replies

    @property
    def state(self) -> EspState:
        return self.server.state

    def start(self) -> EspServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def esp_server(settings) -> Iterator[EspServer]:
    """A running fake Postmark; the Anymail Postmark backend is configured to call it."""
    server = EspServer().start()
    settings.MAIL_ANYMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "test-server-token", "POSTMARK_API_URL": server.url,
                        "REQUESTS_TIMEOUT": 5}
    try:
        yield server
    finally:
        server.stop()
