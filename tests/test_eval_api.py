"""OpenAI-compatible client against a real HTTP server on 127.0.0.1 (tests/openai_stub.py)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from globmed_jax.data.schema import Record
from globmed_jax.api_client import APIConfig, APIError, ChatClient, request_key
from globmed_jax.evaluation.judge import judge_answers
from openai_stub import StubServer

KEY_ENV = "GLOBMED_TEST_API_KEY"
SECRET = "sk-test-0123456789-do-not-leak"


def echo(body):
    return "echo: " + body["messages"][-1]["content"]


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def client_for(server: StubServer, **kw) -> tuple[ChatClient, list[float]]:
    sleeps: list[float] = []
    kw.setdefault("backoff_s", 0.01)
    cfg = APIConfig(base_url=server.base_url, model="stub-model", **kw)
    return ChatClient(cfg, sleep=sleeps.append), sleeps


def test_retries_429_twice_then_succeeds():
    with StubServer(echo) as server:
        server.fail_next(2, 429)
        client, sleeps = client_for(server, max_retries=3)
        assert client.complete(conv("hi")) == "echo: hi"
        assert server.num_requests == 3
        assert client.stats["retries"] == 2
        assert sleeps == [0.01, 0.02]  # exponential backoff


def test_5xx_retry_after_header_and_exhaustion():
    with StubServer(echo) as server:
        server.fail_next(1, 503, retry_after=0.5)
        client, sleeps = client_for(server, max_retries=2)
        assert client.complete(conv("a")) == "echo: a"
        assert sleeps == [0.5]
        server.fail_next(3, 500)
        with pytest.raises(APIError, match="HTTP 500 after 3 attempts"):
            client.complete(conv("b"))
        assert server.num_requests == 2 + 3


def test_client_errors_are_not_retried():
    with StubServer(echo, api_key="right") as server:
        client, sleeps = client_for(server)  # sends no key -> 401
        with pytest.raises(APIError) as err:
            client.complete(conv("x"))
        assert err.value.status == 401
        assert server.num_requests == 1 and sleeps == []


def test_timeout_is_retried():
    with StubServer(echo) as server:
        server.stall_next(1, 1.5)
        client, sleeps = client_for(server, timeout_s=0.3, max_retries=2)
        assert client.complete(conv("slow")) == "echo: slow"
        assert server.num_requests == 2
        assert client.stats["retries"] == 1


def test_cache_resumes_without_requests(tmp_path):
    cache = tmp_path / "cache.jsonl"
    convs = [conv(f"q{i}") for i in range(5)] + [conv("q0")]  # one duplicate
    with StubServer(echo) as server:
        first, _ = client_for(server, cache_path=str(cache))
        out1 = first.complete_many(convs)
        assert out1 == [f"echo: q{i}" for i in range(5)] + ["echo: q0"]
        assert server.num_requests == 5  # the duplicate is asked once
        # A line cut short by an interrupted write is ignored, not fatal.
        with cache.open("a") as fh:
            fh.write('{"key": "abc", "resp')
        second, _ = client_for(server, cache_path=str(cache))
        assert second.complete_many(convs) == out1
        assert server.num_requests == 5  # zero new requests
        assert second.stats["cache_hits"] == 5
        # Different parameters are a different request.
        second.complete(conv("q0"), temperature=0.7)
        assert server.num_requests == 6
    keys = {json.loads(line)["key"] for line in cache.read_text().splitlines()[:5]}
    assert request_key("stub-model", conv("q1"), {"temperature": 0.0, "max_tokens": 256}) in keys


def test_bounded_concurrency():
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow(body):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return echo(body)

    with StubServer(slow) as server:
        client, _ = client_for(server, max_concurrency=3)
        out = client.complete_many([conv(str(i)) for i in range(9)])
    assert out == [f"echo: {i}" for i in range(9)]
    assert 2 <= state["max"] <= 3


def test_api_key_from_env_never_logged_or_cached(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache.jsonl"
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    with StubServer(echo, api_key=SECRET) as server:
        server.fail_next(1, 429)
        client, _ = client_for(server, api_key_env=KEY_ENV, cache_path=str(cache))
        assert client.complete(conv("secret?")) == "echo: secret?"
        assert server.auth_headers[-1] == f"Bearer {SECRET}"
        server.api_key = "rotated"
        with pytest.raises(APIError) as err:
            client.complete(conv("again"))
    assert "retry 1/" in caplog.text  # the retry was logged ...
    for text in (caplog.text, cache.read_text(), repr(client), str(err.value)):
        assert SECRET not in text  # ... without the key


def test_missing_key_env_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(APIError, match=KEY_ENV):
        ChatClient(APIConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=KEY_ENV))


def test_llm_judge_against_local_server():
    def grader(body):
        prompt = body["messages"][-1]["content"]
        assert "Score from 1 to 5" in prompt
        reference = prompt.split("Reference answer: ")[1].split("\n")[0]
        candidate = prompt.split("Candidate answer: ")[1].split("\n")[0]
        return "Score: 4" if reference.lower() in candidate.lower() else "1 - wrong"

    recs = [Record(id=f"r{i}", source_id=f"s{i}", dataset="oqa", language="en", split="test", family="open_qa",
                   question="First-line drug for anaphylaxis?", answer="epinephrine") for i in range(3)]
    with StubServer(grader) as server:
        client, _ = client_for(server)
        scores = judge_answers(client, recs, ["Epinephrine, intramuscular.", "Antihistamines.", None])
    assert scores == [4, 1, 1]
