"""Served models through an OpenAI-compatible /v1/completions server (tests/vllm_stub.py: real
HTTP on 127.0.0.1, real log-probabilities from a tiny HF torch model): the bench's log-likelihood
scores through it equal the local JAX scores of the same checkpoint on the same items."""

from __future__ import annotations

import json
import logging
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from globmed_jax.api_client import (  # noqa: E402
    APIConfig, APIError, CompletionsClient, ContinuationBoundaryError, LogprobsUnavailableError, PromptLogprobs,
    continuation_logprob,
)
from globmed_jax.data import mini  # noqa: E402
from globmed_jax.evaluation import bench_config, report, runner, scoring  # noqa: E402
from globmed_jax.evaluation.served import ServedBackend  # noqa: E402
from hf_utils import save_tiny_bench_checkpoint  # noqa: E402
from openai_stub import StubServer  # noqa: E402
from vllm_stub import CompletionsServer  # noqa: E402

CLOSED = ("mcqa", "yes_no_maybe", "nli")
# Latin and Ge'ez script: the tiny BPE splits Amharic characters into byte tokens (incremental
# detokenisation gives them ""), so offsets must count characters, not bytes.
LANGS = ("en", "am")
TRAIN = [r for r in mini.generate(mini.MiniConfig(), "train") if r.family in CLOSED]
TEST = [r for r in mini.generate(mini.MiniConfig(), "test") if r.family in CLOSED]
KEY_ENV = "GLOBMED_TEST_SERVED_KEY"
SECRET = "sk-served-0123456789-do-not-leak"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> pathlib.Path:
    return save_tiny_bench_checkpoint(tmp_path_factory.mktemp("tiny_served"), TRAIN)[0]


def _client(server, **kw) -> CompletionsClient:
    fmt = kw.pop("logprobs_format", "auto")
    kw.setdefault("backoff_s", 0.01)
    return CompletionsClient(APIConfig(base_url=server.base_url, model="tiny", **kw), logprobs_format=fmt,
                             sleep=lambda s: None)


def test_served_loglik_equals_local_scores(ckpt, tmp_path):
    """The key acceptance test: the same checkpoint as a local model and behind the server, one
    bench run, both formulations; every choice's summed log-prob agrees."""
    with CompletionsServer(str(ckpt)) as server:
        c = bench_config.default_config()
        c.out_dir = str(tmp_path / "bench")
        c.progress = False
        c.batch_size = 8
        c.bootstrap_resamples = 50
        c.data.languages = LANGS
        c.data.max_per_cell = 2
        c.data.datasets = tuple(mini.dataset_name(f) for f in CLOSED)
        c.formulations = ("letter", "cloze")
        c.models.local = bench_config.model_spec(str(ckpt), dtype="float32", param_dtype="float32")
        c.models.served = bench_config.model_spec("served:tiny", base_url=server.base_url, tokenizer=str(ckpt),
                                                  max_concurrency=4)
        out = runner.run(c)
        assert len(out["done"]) == 2 * 3 * len(LANGS)
        first_run_requests = server.num_requests
        assert first_run_requests > 0 and all(r.get("echo") for r in server.requests)  # detected: echo first

    preds = runner.read_predictions(c.out_dir)
    local = {(p["dataset"], p["language"], p["record_id"]): p for p in preds["local"]}
    served = {(p["dataset"], p["language"], p["record_id"]): p for p in preds["served"]}
    assert local.keys() == served.keys() and len(local) == 2 * 3 * len(LANGS)
    diffs, n_scores = [], 0
    for key, lp in local.items():
        sp = served[key]
        assert lp["formulations"].keys() == sp["formulations"].keys()
        for form, entry in lp["formulations"].items():
            a, b = np.asarray(entry["scores"]), np.asarray(sp["formulations"][form]["scores"])
            assert a.shape == b.shape and a.size >= 2
            diffs.append(np.max(np.abs(a - b)))
            n_scores += a.size
            assert int(np.argmax(a)) == int(np.argmax(b)), key
        assert lp["predicted"] == sp["predicted"]
    max_diff = float(max(diffs))
    print(f"served vs local loglik: max |diff| = {max_diff:.2e} over {n_scores} choice scores, {len(local)} items")
    assert max_diff < 1e-3  # fp32 JAX vs fp32 torch; a misplaced token would be off by whole nats
    rows = runner.read_results(c.out_dir)
    backends = {r["model"]: r["backend"] for r in rows}
    assert backends["local"] == {"kind": "local", "loglik_available": True}
    assert backends["served"]["kind"] == "served" and backends["served"]["loglik_available"] is True
    assert backends["served"]["logprobs_format"] == "echo"
    fields = next(r for r in rows if r["model"] == "served")["fingerprint"]["fields"]
    assert fields["model.kind"] == "served" and fields["tokenizer.files"]
    board = report.leaderboard_markdown(report.summarize(c.out_dir))
    assert "| served | served (/completions) | available (echo) |" in board

    # A rerun against no server at all: every cell is reused, nothing is asked.
    again = runner.run(c)
    assert not again["done"] and len(again["skipped"]) == 2 * 3 * len(LANGS)


def test_prompt_logprobs_format_is_detected_and_agrees_with_echo(ckpt):
    records = [r for lang in ("en", "zh", "am") for r in [x for x in TEST if x.language == lang][::150][:2]]
    tok = transformers.AutoTokenizer.from_pretrained(ckpt)
    prompts = scoring.prompt_texts(tok, records)
    choices = [["A", "B"] if r.family == "mcqa" else ["yes", "no"] for r in records]
    with CompletionsServer(str(ckpt)) as both, CompletionsServer(str(ckpt), formats=("prompt_logprobs",)) as vllm_only:
        echo = ServedBackend(_client(both)).choice_logprobs(prompts, choices)
        client = _client(vllm_only)
        plp = ServedBackend(client).choice_logprobs(prompts, choices)
        assert client.detected == "prompt_logprobs"
        assert vllm_only.requests[0].get("echo")  # echo was tried first and refused (HTTP 400)
        assert all(r.get("prompt_logprobs") == 0 for r in vllm_only.requests[1:])
    np.testing.assert_allclose(np.concatenate(plp), np.concatenate(echo), atol=1e-6)
    assert all(np.all(s < 0) for s in echo)


def test_server_without_prompt_logprobs_is_an_explicit_error(ckpt):
    with CompletionsServer(str(ckpt), formats=()) as server:
        client = _client(server)
        with pytest.raises(LogprobsUnavailableError, match="echo: HTTP 400; prompt_logprobs: HTTP 400") as err:
            client.prompt_logprobs("Hello there")
        assert "mode='generate'" in str(err.value) and set(err.value.tried) == {"echo", "prompt_logprobs"}
        assert isinstance(client.complete("Hello", max_tokens=3), str)  # generation still works
        assert server.requests[-1]["max_tokens"] == 3 and "echo" not in server.requests[-1]


def test_continuation_located_by_offsets_and_boundary_inside_a_token_refused():
    lp = PromptLogprobs(tokens=("<s>", "Answer", ":", " Yes"), logprobs=(None, -1.0, -0.5, -0.25),
                        offsets=(0, 3, 9, 10))
    prompt = "<s>Answer: Yes"
    assert continuation_logprob(prompt, 10, lp) == (-0.25, 1)
    assert continuation_logprob(prompt, 9, lp) == (-0.75, 2)
    with pytest.raises(ContinuationBoundaryError, match=r"record r1 choice 'es'.*character 11.*' Yes' at 10"):
        continuation_logprob(prompt, 11, lp, where="record r1 choice 'es'")
    shifted = PromptLogprobs(tokens=lp.tokens, logprobs=lp.logprobs, offsets=(0, 3, 10, 11))  # off by one
    with pytest.raises(ContinuationBoundaryError, match="do not match"):
        continuation_logprob(prompt, 10, shifted)


def test_served_generation_equals_local_greedy(ckpt):
    from globmed_jax.decode import Decoder
    from globmed_jax.models import from_pretrained, load_tokenizer
    from globmed_jax.models.tokenizer import pad_id

    records = [r for r in TEST if r.language == "en"][:3]
    tok = load_tokenizer(ckpt)
    model, _ = from_pretrained(ckpt, dtype="float32", param_dtype="float32")
    local = scoring.predict(Decoder(model, pad_id=pad_id(tok)), tok, records, mode="generate", max_new_tokens=6)
    with CompletionsServer(str(ckpt)) as server:
        served = scoring.predict_with(ServedBackend(_client(server)), tok, records, mode="generate", max_new_tokens=6)
        assert all(r["max_tokens"] == 6 and r["temperature"] == 0.0 and "echo" not in r for r in server.requests)
    assert [p.text for p in served] == [p.text for p in local]
    assert all(p.text for p in served)


def test_retries_cache_and_key_hygiene(ckpt, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache.jsonl"
    texts = ["The first-line drug is epinephrine", "Yes or no? yes"]
    with CompletionsServer(str(ckpt), api_key=SECRET) as server:
        server.fail_next(2)  # 503 twice: retried
        first = _client(server, api_key_env=KEY_ENV, cache_path=str(cache), max_retries=3)
        lps = first.prompt_logprobs_many(texts)
        assert first.stats["retries"] == 2 and server.auth_headers[-1] == f"Bearer {SECRET}"
        asked = server.num_requests
        second = _client(server, api_key_env=KEY_ENV, cache_path=str(cache))
        assert second.prompt_logprobs_many(texts) == lps
        assert server.num_requests == asked and second.detected == "echo"  # detected from the cache
        server.api_key = "rotated"
        with pytest.raises(APIError) as err:
            second.prompt_logprobs("not cached")
        assert err.value.status == 401
    for text in (caplog.text, cache.read_text(), repr(second), str(err.value)):
        assert SECRET not in text
    entries = [json.loads(line) for line in cache.read_text().splitlines()]
    assert {e["model"] for e in entries} == {"tiny"} and all(json.loads(e["response"])["offsets"][0] == 0
                                                               for e in entries)


def test_chat_only_api_stays_generation_only_and_says_so(tmp_path):
    """An api: model (and a served: one without a tokenizer) in a loglik run is generated, and the
    row and the leaderboard say log-likelihood was unavailable."""
    with StubServer(lambda body: "A") as server:
        c = bench_config.default_config()
        c.out_dir = str(tmp_path / "bench")
        c.progress = False
        c.bootstrap_resamples = 20
        c.mode = "loglik"
        c.data.languages = ("en",)
        c.data.max_per_cell = 2
        c.data.datasets = (mini.dataset_name("mcqa"),)
        c.models.chat = bench_config.model_spec("api:chat-1", base_url=server.base_url)
        c.models.vllm_chat = bench_config.model_spec("served:some-model", base_url=server.base_url)
        runner.run(c)
        assert server.num_requests == 4  # 2 items x 2 models, each through /chat/completions
    rows = {r["model"]: r for r in runner.read_results(c.out_dir)}
    for name, kind in (("chat", "api"), ("vllm_chat", "served")):
        assert rows[name]["setting"]["mode"] == "generate"
        assert rows[name]["backend"]["kind"] == kind and rows[name]["backend"]["loglik_available"] is False
    board = report.leaderboard_markdown(report.summarize(c.out_dir))
    assert "| chat | api (/chat/completions) | unavailable: generation only" in board


BAD_ECHO = [
    ("choices[0].logprobs", {"text": "ab"}),
    ("choices[0].logprobs.text_offset", {"text": "ab", "logprobs": {"tokens": ["a", "b"], "token_logprobs": [None, -1.0]}}),
    ("choices[0].logprobs", {"text": "ab", "logprobs": {"tokens": ["a", "b"], "token_logprobs": [None],
                                                       "text_offset": [0, 1]}}),
    ("choices[0].logprobs.text_offset[1]", {"text": "ab", "logprobs": {"tokens": ["a", "b"],
                                                                      "token_logprobs": [None, -1.0],
                                                                      "text_offset": [1, 0]}}),
    ("choices[0].logprobs.token_logprobs[1]", {"text": "ab", "logprobs": {"tokens": ["a", "b"],
                                                                         "token_logprobs": [None, "NaN"],
                                                                         "text_offset": [0, 1]}}),
]


@pytest.mark.parametrize("field,choice", BAD_ECHO, ids=[f for f, _ in BAD_ECHO])
def test_malformed_logprobs_reply_names_the_field_and_is_not_cached(field, choice, tmp_path):
    from openai_stub import ScriptedServer, send_json

    cache = tmp_path / "cache.jsonl"
    with ScriptedServer(lambda h, body: send_json(h, 200, {"choices": [choice]})) as server:
        client = _client(server, cache_path=str(cache), logprobs_format="echo")
        with pytest.raises(APIError) as err:
            client.prompt_logprobs("ab")
    assert getattr(err.value, "field", None) == field
    assert not cache.exists() or not cache.read_text().strip()


def test_served_spec_errors_name_the_model_and_key(ckpt, tmp_path):
    c = bench_config.default_config()
    c.out_dir = str(tmp_path / "bench")
    c.progress = False
    c.data.languages = ("en",)
    c.data.max_per_cell = 1
    c.data.datasets = (mini.dataset_name("mcqa"),)
    c.models.srv = bench_config.model_spec("served:m", base_url="http://127.0.0.1:9/v1", tokenizer=str(tmp_path / "no"))
    with pytest.raises(runner.MissingCheckpointError, match="'srv': tokenizer directory"):
        runner.run(c)
    c.models.srv = bench_config.model_spec("served:m", tokenizer=str(ckpt))
    with pytest.raises(ValueError, match=r"models\.srv\.base_url"):
        runner.run(c)
    assert not (tmp_path / "bench" / "results.jsonl").exists()
