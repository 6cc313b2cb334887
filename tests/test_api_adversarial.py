"""The API client against hostile servers on 127.0.0.1 (tests/openai_stub.ScriptedServer): it never
sends the key to another origin, never shows it (errors, logs, stdout/stderr, cache), never waits
past its deadline, never reads past its size limit, and never caches a reply that is not valid."""

from __future__ import annotations

import json
import logging
import pathlib
import time

import pytest

from globmed_jax.api_client import (APIConfig, APIError, APIRedirectError, APIResponseError,
                                    APIResponseTooLargeError, APITimeoutError, ChatClient, redact,
                                    request_key)
from openai_stub import ScriptedServer, chat_payload, drip, send_json, send_raw

KEY_ENV = "GLOBMED_ADVERSARIAL_KEY"
SECRET = "sk-adv-5f2c9e1b7a3d4c6e8f0a-do-not-leak"
HI = [{"role": "user", "content": "hi"}]


def ok(handler, body):
    send_json(handler, 200, chat_payload("fine"))


def client_for(server: ScriptedServer, tmp_path: pathlib.Path | None = None, **kw) -> ChatClient:
    kw.setdefault("max_retries", 0)
    kw.setdefault("backoff_s", 0.0)
    kw.setdefault("timeout_s", 1.0)
    if tmp_path is not None:
        kw.setdefault("cache_path", str(tmp_path / "run" / "api_cache" / "m.jsonl"))
    return ChatClient(APIConfig(base_url=server.base_url, model="m", **kw), sleep=lambda s: None)


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return KEY_ENV


def assert_nowhere(texts, tmp_path: pathlib.Path | None = None) -> None:
    """Neither the key nor a 10-character piece of it in any text or file."""
    pieces = [SECRET] + [SECRET[i:i + 10] for i in range(0, len(SECRET) - 10, 5)]
    files = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()] if tmp_path else []
    for text in [*texts, *files]:
        for piece in pieces:
            assert piece not in text


# ------------------------------------------------------------------------------ redirects

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("other_host", ["127.0.0.1", "127.0.0.2"])  # another port; another host
def test_redirect_to_another_origin_is_refused_and_sends_no_key(key, status, other_host):
    with ScriptedServer(ok, host=other_host) as other:
        def redirect(handler, body):
            send_json(handler, status, {}, {"Location": other.base_url + "/chat/completions"})

        with ScriptedServer(redirect) as server:
            client = client_for(server, api_key_env=key)
            with pytest.raises(APIRedirectError, match="another origin") as err:
                client.complete(HI)
            assert server.auth_headers == [f"Bearer {SECRET}"]  # the key went to base_url only
    assert other.num_requests == 0 and other.auth_headers == []
    assert err.value.status == status
    assert_nowhere([str(err.value)])


def test_redirect_http_to_https_same_host_is_another_origin(key):
    def redirect(handler, body):
        host, port = handler.server.server_address[:2]
        send_json(handler, 301, {}, {"Location": f"https://{host}:{port}/v1/chat/completions"})

    with ScriptedServer(redirect) as server:
        with pytest.raises(APIRedirectError, match="another origin"):
            client_for(server, api_key_env=key).complete(HI)
        assert server.num_requests == 1


def test_same_origin_redirect_is_not_followed(key):
    def redirect(handler, body):
        if handler.path.startswith("/v2"):
            return ok(handler, body)
        send_json(handler, 307, {}, {"Location": "/v2/chat/completions?token=abc"})

    with ScriptedServer(redirect) as server:
        with pytest.raises(APIRedirectError, match="/v2/chat/completions not followed") as err:
            client_for(server, api_key_env=key).complete(HI)
        assert server.paths == ["POST /v1/chat/completions"]  # /v2 never asked
    assert "token=abc" not in str(err.value)  # a query (possibly a credential) is not echoed


# ---------------------------------------------------------------------- echoed credentials

def echo_authorization(status: int):
    def script(handler, body):
        auth = handler.headers.get("Authorization") or ""
        payload = {"error": {"message": f"invalid credentials: {auth}", "headers": dict(handler.headers),
                             "key_json": json.dumps(auth)}}
        send_json(handler, status, payload, {"X-Echo-Authorization": auth, "WWW-Authenticate": auth})
    return script


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_echoed_key_is_absent_from_errors_logs_output_and_cache(key, status, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # httpcore's DEBUG trace prints response headers
    with ScriptedServer(echo_authorization(status)) as server:
        client = client_for(server, tmp_path, api_key_env=key, max_retries=1)
        with pytest.raises(APIError) as err:
            client.complete_many([HI, [{"role": "user", "content": "other"}]])
        assert server.auth_headers[0] == f"Bearer {SECRET}"
    assert f"HTTP {status}" in str(err.value)
    assert "invalid credentials: Bearer [REDACTED]" in str(err.value)  # the body is still quoted
    assert "X-Echo-Authorization" in caplog.text  # the headers were logged (redacted), so checked
    out = capsys.readouterr()
    assert_nowhere([str(err.value), repr(err.value), caplog.text, out.out, out.err, repr(client)], tmp_path)


def test_key_cut_by_the_quote_limit_leaves_no_piece(key):
    def script(handler, body):  # the bare key (no "Bearer ") straddles the 300th character
        auth = handler.headers.get("Authorization").removeprefix("Bearer ")
        send_raw(handler, 400, ('{"pad": "' + "p" * 262 + '", "auth": "' + auth + '"}').encode())

    with ScriptedServer(script) as server:
        with pytest.raises(APIError) as err:
            client_for(server, api_key_env=key).complete(HI)
    assert err.value.status == 400
    assert_nowhere([str(err.value)])


def test_key_echoed_in_a_reply_is_neither_returned_nor_cached(key, tmp_path):
    def script(handler, body):
        send_json(handler, 200, chat_payload(f"you sent {handler.headers.get('Authorization')}"))

    with ScriptedServer(script) as server:
        text = client_for(server, tmp_path, api_key_env=key).complete(HI)
    assert text == "you sent Bearer [REDACTED]"
    assert_nowhere([text], tmp_path)


def test_a_key_pasted_into_api_key_env_is_not_echoed(monkeypatch):
    with pytest.raises(APIError, match="NAME of an environment variable") as err:
        ChatClient(APIConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=SECRET))
    assert_nowhere([str(err.value)])


def test_redact():
    assert redact(f"k={SECRET} h=bearer abc.def", [SECRET]) == "k=[REDACTED] h=Bearer [REDACTED]"
    assert redact("the bearer of news", []) == "the Bearer [REDACTED] news"  # errors/logs only
    assert redact("nothing here", [SECRET]) == "nothing here"


# ------------------------------------------------------------------------ deadline, size

def drip_body(handler, body):
    data = json.dumps(chat_payload("x" * 100)).encode()  # ~150 bytes at 0.2 s each: 30 s
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.flush()
    drip(handler, [data[i:i + 1] for i in range(len(data))], 0.2, handler.server.stop)


def drip_headers(handler, body):
    data = json.dumps(chat_payload("x")).encode()
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data
    drip(handler, [raw[i:i + 1] for i in range(len(raw))], 0.2, handler.server.stop)
    handler.close_connection = True


@pytest.mark.parametrize("script", [drip_body, drip_headers], ids=["body", "headers"])
def test_slow_drip_fails_at_the_deadline(script, tmp_path):
    # Each byte comes well inside the 1 s timeout, so only a total deadline can stop this.
    with ScriptedServer(script) as server:
        client = client_for(server, tmp_path, max_retries=1)
        start = time.monotonic()
        with pytest.raises(APITimeoutError, match="deadline after 2 attempts"):
            client.complete(HI)
        elapsed = time.monotonic() - start
        assert server.num_requests == 2  # a timeout is retried, each attempt with its own deadline
    assert elapsed < 10, elapsed  # the drip alone would take 60 s
    assert not (tmp_path / "run").exists()  # nothing cached


@pytest.mark.parametrize("declare_length", [True, False])
def test_oversize_reply_is_aborted_and_not_cached(declare_length, tmp_path):
    big = json.dumps(chat_payload("a" * (4 << 20))).encode()

    def script(handler, body):
        try:
            send_raw(handler, 200, big, length=declare_length)
        except OSError:
            pass  # the client hung up: expected

    with ScriptedServer(script) as server:
        client = client_for(server, tmp_path, max_response_bytes=64 * 1024)
        for _ in range(2):
            with pytest.raises(APIResponseTooLargeError, match="max_response_bytes=65536"):
                client.complete(HI)
        assert server.num_requests == 2  # not cached
        assert client_for(server, max_response_bytes=len(big)).complete(HI) == "a" * (4 << 20)


def test_connection_error_is_retried_then_reported():
    def hang_up(handler, body):
        handler.close_connection = True  # closes without a status line

    with ScriptedServer(hang_up) as server:
        with pytest.raises(APIError, match="connection error.*after 3 attempts"):
            client_for(server, max_retries=2).complete(HI)
        assert server.num_requests == 3


def test_connections_are_reused():
    with ScriptedServer(ok) as server:
        client = client_for(server)
        for i in range(3):
            client.complete([{"role": "user", "content": str(i)}])
        assert len(server.peers) == 3 and len(set(server.peers)) == 1
        client.close()


# ---------------------------------------------------------------------- invalid replies

def with_logprobs(logprobs):
    return json.dumps(chat_payload("ok", logprobs=logprobs)).encode()


INVALID = {
    "content_number": (json.dumps(chat_payload(42)).encode(), "choices[0].message.content"),
    "content_zero": (json.dumps(chat_payload(0)).encode(), "choices[0].message.content"),
    "content_list": (json.dumps(chat_payload([{"type": "text", "text": "hi"}])).encode(),
                     "choices[0].message.content"),
    "content_null": (json.dumps(chat_payload(None)).encode(), "choices[0].message.content"),
    "choices_missing": (b'{"id": "x"}', "choices"),
    "choices_empty": (b'{"choices": []}', "choices"),
    "choice_not_object": (b'{"choices": ["text"]}', "choices[0]"),
    "message_missing": (b'{"choices": [{"index": 0}]}', "choices[0].message"),
    "not_json": (b"<html>gateway</html>", "body"),
    "not_an_object": (b"[1, 2]", "body"),
    "logprobs_not_object": (with_logprobs([1]), "choices[0].logprobs"),
    "logprobs_content_not_list": (with_logprobs({"content": "x"}), "choices[0].logprobs.content"),
    "logprob_token_number": (with_logprobs({"content": [{"token": 1, "logprob": -0.1}]}),
                             "choices[0].logprobs.content[0].token"),
    "logprob_string": (with_logprobs({"content": [{"token": "a", "logprob": -0.1},
                                                  {"token": "b", "logprob": "low"}]}),
                       "choices[0].logprobs.content[1].logprob"),
    "top_logprob_malformed": (with_logprobs({"content": [{"token": "a", "logprob": -0.1,
                                                          "top_logprobs": [{"token": "a"}]}]}),
                              "choices[0].logprobs.content[0].top_logprobs[0].logprob"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_reply_names_the_field_and_is_never_cached(name, tmp_path):
    payload, field = INVALID[name]
    replies = [payload, payload]

    def script(handler, body):
        send_raw(handler, 200, replies.pop(0) if replies else json.dumps(chat_payload("good")).encode())

    with ScriptedServer(script) as server:
        client = client_for(server, tmp_path, max_retries=3)
        for attempt in (1, 2):
            with pytest.raises(APIResponseError) as err:
                client.complete(HI)
            assert err.value.field == field and f"invalid reply: {field} " in str(err.value)
            assert server.num_requests == attempt  # not retried, not cached: asked again next time
        assert client.complete(HI) == "good"
        assert server.num_requests == 3
    lines = (tmp_path / "run" / "api_cache" / "m.jsonl").read_text().splitlines()
    assert [json.loads(line)["response"] for line in lines] == ["good"]


def test_well_formed_logprobs_are_accepted():
    logprobs = {"content": [{"token": "ok", "logprob": -0.01, "bytes": [111, 107],
                             "top_logprobs": [{"token": "ok", "logprob": -0.01}, {"token": "no", "logprob": -5}]}]}
    with ScriptedServer(lambda h, b: send_raw(h, 200, with_logprobs(logprobs))) as server:
        assert client_for(server).complete(HI) == "ok"


def test_cached_non_text_reply_from_an_older_client_is_asked_again(tmp_path, caplog):
    cache = tmp_path / "run" / "api_cache" / "m.jsonl"
    cache.parent.mkdir(parents=True)
    key = request_key("m", HI, {"temperature": 0.0, "max_tokens": 256})
    cache.write_text(json.dumps({"key": key, "model": "m", "response": 42}) + "\n")
    with ScriptedServer(ok) as server:
        assert client_for(server, tmp_path).complete(HI) == "fine"
        assert server.num_requests == 1
    assert "ignored 1 entries whose reply is not text" in caplog.text
