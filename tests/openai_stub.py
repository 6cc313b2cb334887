"""A minimal OpenAI-compatible chat-completions server for tests (http.server in a thread).

``StubServer(responder)`` serves ``POST /v1/chat/completions`` on 127.0.0.1 (a free port);
``responder(body) -> str`` produces the assistant text from the request JSON. It can be told to
fail the next N requests with a status (``fail_next``) or to stall them past the client's
timeout (``stall_next``), checks the bearer key when ``api_key`` is set, and records every
request (``requests``: the parsed bodies; ``auth_headers``) so tests can count them.

``ScriptedServer(script)`` is the hostile counterpart: every request (any method, any path) is
answered by ``script(handler, body)``, which writes whatever it likes to ``handler`` (helpers:
``send_json``, ``send_raw``, ``drip``); it records ``auth_headers``, ``paths`` and ``peers`` (the
client's port per request, to see connection reuse).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any, Callable, Iterable


class ThreadedServer:
    """A ``ThreadingHTTPServer`` on ``host`` (a free port) served from a daemon thread while the
    object is entered; subclasses build their handler class and call ``_serve``."""

    _lock: threading.Lock

    def _serve(self, handler: type, host: str = "127.0.0.1") -> None:
        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out or hung up mid-reply: what these tests provoke

        self._httpd = Server((host, 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def _count(self) -> list:
        return self.requests

    @property
    def num_requests(self) -> int:
        with self._lock:
            return len(self._count())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class StubServer(ThreadedServer):
    def __init__(self, responder: Callable[[dict[str, Any]], str], *, api_key: str | None = None):
        self.responder = responder
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self._lock = threading.Lock()
        self._failures: list[tuple[int, float | None]] = []
        self._stalls: list[float] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                send_json(self, status, payload, headers)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    server.requests.append(body)
                    server.auth_headers.append(self.headers.get("Authorization"))
                    failure = server._failures.pop(0) if server._failures else None
                    stall = server._stalls.pop(0) if server._stalls and failure is None else None
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if failure is not None:
                    status, retry_after = failure
                    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
                    return self._send(status, {"error": {"message": f"scripted {status}"}}, headers)
                if stall is not None:
                    time.sleep(stall)
                text = server.responder(body)
                self._send(200, {"id": "stub", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})

        self._serve(Handler)

    def fail_next(self, n: int, status: int = 429, retry_after: float | None = None) -> None:
        with self._lock:
            self._failures += [(status, retry_after)] * n

    def stall_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._stalls += [seconds] * n



def chat_payload(content: Any, **choice: Any) -> dict[str, Any]:
    """A chat-completion body whose first message content is ``content`` (any JSON value)."""
    return {"id": "stub", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}, **choice}]}


def send_raw(handler: Any, status: int, data: bytes, headers: dict[str, str] | None = None,
             *, length: bool = True) -> None:
    """One response; ``length=False`` omits Content-Length and closes the connection after it."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    if length:
        handler.send_header("Content-Length", str(len(data)))
    else:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


def send_json(handler: Any, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    send_raw(handler, status, json.dumps(payload).encode(), headers)


def drip(handler: Any, chunks: Iterable[bytes], interval_s: float, stop: threading.Event) -> None:
    """Writes ``chunks`` one at a time, ``interval_s`` apart, until done, stopped or the client left."""
    try:
        for chunk in chunks:
            if stop.wait(interval_s):
                return
            handler.wfile.write(chunk)
            handler.wfile.flush()
    except OSError:
        handler.close_connection = True  # the client gave up: what the test wants


class ScriptedServer(ThreadedServer):
    """Answers every request with ``script(handler, body_bytes)`` (see the module docstring)."""

    def __init__(self, script: Callable[[Any, bytes], None], host: str = "127.0.0.1"):
        self.script = script
        self.auth_headers: list[str | None] = []
        self.paths: list[str] = []
        self.peers: list[int] = []
        self.stop = threading.Event()  # set on exit: dripping handlers stop writing
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                with server._lock:
                    server.auth_headers.append(self.headers.get("Authorization"))
                    server.paths.append(f"{self.command} {self.path}")
                    server.peers.append(self.client_address[1])
                server.script(self, body)

            do_GET = do_POST = do_PUT = _handle  # noqa: N815 - http.server API

        self._serve(Handler, host)
        self._httpd.stop = self.stop  # scripts reach it as handler.server.stop

    def _count(self) -> list:
        return self.paths

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        super().__exit__(*exc)
