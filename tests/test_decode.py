"""Greedy decoding and option scoring against Hugging Face ``generate`` / logits."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from globmed_jax import decode  # noqa: E402
from globmed_jax.decode import Decoder  # noqa: E402
from globmed_jax.models import from_pretrained  # noqa: E402

MAX_NEW = 20
PAD = 0
# Lengths 3..21 put prompts of one batch into different positions and both sides of the 16 bucket.
PROMPT_LENGTHS = (5, 21, 3, 12, 9)

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=PAD)
TINY_MODELS = {
    "qwen3_untied": ("Qwen3Config", dict(TINY, num_attention_heads=4, num_key_value_heads=2,
                                         head_dim=16, tie_word_embeddings=False)),
    "qwen3_tied": ("Qwen3Config", dict(TINY, num_attention_heads=4, num_key_value_heads=1,
                                       head_dim=16, tie_word_embeddings=True)),
    # original_max_position_embeddings=16 so the llama3 frequency scaling matters at these lengths.
    "llama3_rope": ("LlamaConfig", dict(
        TINY, num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5,
        tie_word_embeddings=False, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
}


def _build_hf(kind: str, seed: int = 0):
    """Tiny random fp32 HF model; weights are re-drawn larger than HF's init (0.02) so that
    greedy outputs vary from step to step instead of repeating one token."""
    cls_name, kwargs = TINY_MODELS[kind]
    config = getattr(transformers, cls_name)(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name.replace("Config", "ForCausalLM"))(config).eval().float()
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn_like(param)
            param.copy_(1.0 + 0.1 * noise if "norm" in name else 0.08 * noise)
    return model


def _prompts(lengths=PROMPT_LENGTHS, seed: int = 1, vocab: int = 256) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, size=n).tolist() for n in lengths]


def _hf_greedy(hf, prompt: list[int], max_new: int, eos: int | None) -> list[int]:
    """HF greedy continuation of one unpadded prompt, cut before the first EOS."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=max_new, min_new_tokens=0, eos_token_id=eos,
                          pad_token_id=PAD, temperature=None, top_p=None, top_k=None)
    new = out[0, len(prompt):].tolist()
    return new[:new.index(eos)] if eos is not None and eos in new else new


@pytest.fixture(scope="module")
def tiny_factory(tmp_path_factory):
    """kind -> (HF model, our model loaded from the HF checkpoint it saved); built once each."""
    built: dict[str, tuple] = {}

    def get(kind: str):
        if kind not in built:
            hf = _build_hf(kind)
            path = tmp_path_factory.mktemp(kind)
            hf.save_pretrained(path)
            built[kind] = hf, from_pretrained(path, dtype="float32", param_dtype="float32")[0]
        return built[kind]

    return get


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny(request, tiny_factory):
    return (request.param, *tiny_factory(request.param))


def test_tiny_models_match_hf_generate(tiny):
    _, hf, model = tiny
    prompts = _prompts()
    # Use as EOS a token the model really emits (row 0, 4th new token) so EOS stopping is tested.
    eos = _hf_greedy(hf, prompts[0], MAX_NEW, None)[3]
    ours = Decoder(model, pad_id=PAD).generate(prompts, max_new_tokens=MAX_NEW, eos_ids=eos, progress=False)
    ref = [_hf_greedy(hf, p, MAX_NEW, eos) for p in prompts]
    assert ours == ref
    assert len(ours[0]) <= 3 and eos not in ours[0]  # stopped early, EOS excluded
    assert any(len(r) == MAX_NEW for r in ours)  # others ran to max_new_tokens


def test_padded_batch_equals_rows_alone(tiny_factory):
    # One architecture is enough here: the HF parity test covers batching for all.
    _, model = tiny_factory("llama3_rope")
    prompts = _prompts(lengths=(5, 16, 3, 12, 9), seed=7)  # one prompt bucket: fewer compiles
    kw = dict(max_new_tokens=8, eos_ids=[2, 5], progress=False)
    dec = Decoder(model)
    batched = dec.generate(prompts, **kw)
    # batch_size=1: every prompt runs alone in its own (unpadded-batch) call of the loop.
    assert dec.generate(prompts, batch_size=1, **kw) == batched
    # Small batches (sorted by length, padded to one batch bucket) give the same, in order.
    assert dec.generate(prompts, batch_size=2, **kw) == batched


def test_score_options_matches_hf_log_softmax(tiny):
    _, hf, model = tiny
    prompts = _prompts(seed=3)
    options = [7, 42, 199, 255]
    dec = Decoder(model)
    ours = dec.score_next(prompts, options, batch_size=2, progress=False)
    assert ours.shape == (len(prompts), len(options))
    for i, p in enumerate(prompts):
        with torch.no_grad():
            logits = hf(torch.tensor([p])).logits[0, -1].double()
        ref = torch.log_softmax(logits, -1)[options].numpy()
        np.testing.assert_allclose(ours[i], ref, atol=2e-5, rtol=1e-5)
    # Per-prompt options: [N, O].
    per_row = np.tile(np.asarray(options)[::-1], (len(prompts), 1))
    np.testing.assert_allclose(dec.score_next(prompts, per_row, batch_size=2, progress=False),
                               ours[:, ::-1], atol=1e-6)


def test_sharded_decode_matches_unsharded(tmp_path):
    from globmed_jax.sharding import make_mesh

    hf = _build_hf("qwen3_untied", seed=4)
    hf.save_pretrained(tmp_path)
    plain, _ = from_pretrained(tmp_path, dtype="float32", param_dtype="float32")
    mesh = make_mesh(2, 2, 2)
    sharded, _ = from_pretrained(tmp_path, dtype="float32", param_dtype="float32", mesh=mesh)
    assert sharded.shard.mesh is mesh
    prompts = _prompts(lengths=(5, 21, 3, 12, 9, 7), seed=5)
    plain, sharded = Decoder(plain), Decoder(sharded)
    want = plain.generate(prompts, max_new_tokens=10, eos_ids=2, progress=False)
    got = sharded.generate(prompts, max_new_tokens=10, eos_ids=2, progress=False)
    assert got == want
    assert sum(map(len, got)) > 0
    np.testing.assert_allclose(sharded.score_next(prompts, [3, 4, 5], progress=False),
                               plain.score_next(prompts, [3, 4, 5], progress=False), atol=1e-5)


def test_bucketing_avoids_recompiles(tiny_factory):
    _, model = tiny_factory("qwen3_untied")
    kw = dict(eos_ids=2, batch_size=4, progress=False)
    dec = Decoder(model)
    dec.generate( _prompts(lengths=(4, 6, 8, 10)), max_new_tokens=9, **kw)  # may compile
    start = dec.compile_count
    # Other lengths in the same prompt bucket (<= 16), batch bucket (3-4 rows -> 4) and cache
    # bucket (16 + max_new <= 32), including other max_new_tokens: nothing new to compile.
    for lengths, max_new in (((1, 16, 9), 9), ((11, 2, 13, 5), 9), ((2, 3, 7), 12), ((16, 1, 1), 16)):
        dec.generate(_prompts(lengths=lengths), max_new_tokens=max_new, **kw)
    assert dec.compile_count == start
    # The many batches of one run (the last one short) share the executables too.
    dec.generate(_prompts(lengths=tuple(range(1, 16))), max_new_tokens=9, **kw)
    assert dec.compile_count == start
    # A longer prompt needs the 32 bucket: exactly one new prefill and one new loop.
    dec.generate(_prompts(lengths=(17, 3, 4, 5)), max_new_tokens=9, **kw)
    assert dec.compile_count == start + 2


def test_bucket_helpers():
    assert [decode.bucket_length(n) for n in (1, 16, 17, 33)] == [16, 16, 32, 64]
    assert decode.bucket_length(5, minimum=1) == 8
    assert [decode.batch_bucket(n, 4) for n in (1, 3, 5, 8)] == [4, 4, 8, 8]
    assert decode.batch_bucket(5, 6) == 12


def test_argument_checks(tiny_factory):
    _, model = tiny_factory("qwen3_tied")
    dec = Decoder(model)
    with pytest.raises(ValueError, match="empty"):
        dec.generate([[1, 2], []], max_new_tokens=2, eos_ids=2)
    with pytest.raises(ValueError, match="outside"):
        dec.generate([[1, 999]], max_new_tokens=2, eos_ids=2)
    with pytest.raises(ValueError, match="tokenizer"):
        dec.generate([[1, 2]], max_new_tokens=2, eos_ids=2, stop_strings=["x"])
    assert dec.generate([[1, 2], [3]], max_new_tokens=0, eos_ids=2) == [[], []]
    assert dec.generate([], max_new_tokens=4, eos_ids=2) == []


# ------------------------------------------------------------------------- real SmolLM2 weights

MEDICAL_QUESTIONS = (
    "What is the first-line drug treatment for type 2 diabetes? Answer in one word.",
    "Name the vitamin deficiency that causes scurvy.",
    "A 60-year-old man has crushing chest pain radiating to the left arm. What is the most "
    "likely diagnosis?",
    "List two symptoms of iron deficiency anaemia.",
)


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    """(HF model, tokenizer, checkpoint dir): the real SmolLM2-135M-Instruct weights as the run's
    shared safetensors conversion (conftest.smollm2_dir), loaded by transformers for the
    reference. (Conversion itself is checked against transformers' GGUF reader in
    tests/test_models_smollm2.py.)"""
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return hf, tokenizer, smollm2_dir


def _chat_ids(tokenizer, question: str) -> list[int]:
    enc = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                        add_generation_prompt=True)
    return list(enc["input_ids"] if not isinstance(enc, list) else enc)


@pytest.mark.slow
def test_smollm2_matches_hf_generate_and_stop_strings(smollm2):
    hf, tokenizer, path = smollm2
    model, cfg = from_pretrained(path, dtype="float32", param_dtype="float32")
    prompts = [_chat_ids(tokenizer, q) for q in MEDICAL_QUESTIONS]
    assert len({len(p) for p in prompts}) > 1
    eos = tokenizer.eos_token_id
    max_new = 16
    dec = Decoder(model, pad_id=tokenizer.pad_token_id or 0)
    ours = dec.generate(prompts, max_new_tokens=max_new, eos_ids=[eos], progress=False)
    ref = [_hf_greedy(hf, p, max_new, eos) for p in prompts]
    assert ours == ref
    assert any(len(r) < max_new for r in ours)  # at least one answer ended with <|im_end|>

    # Stop strings are applied to the finished text: cut before the stop string, never into it.
    # (All prompts again, so the batch reuses the executables compiled above.)
    text = tokenizer.decode(ours[1])
    stop = text[len(text) // 2:len(text) // 2 + 4]
    cut_rows = dec.generate(prompts, max_new_tokens=max_new, eos_ids=eos,
                            stop_strings=["@@never@@", stop], tokenizer=tokenizer, progress=False)
    assert [r for i, r in enumerate(cut_rows) if stop not in tokenizer.decode(ours[i])] == [
        r for i, r in enumerate(ours) if stop not in tokenizer.decode(ours[i])]
    cut = cut_rows[1]
    assert cut == ours[1][:len(cut)] and len(cut) < len(ours[1])
    cut_text = tokenizer.decode(cut)
    assert stop not in cut_text and text.startswith(cut_text)
    assert len(tokenizer.decode(ours[1][:len(cut) + 1])) > text.index(stop)  # longest such prefix

    # Option scoring on real weights: log-probs of answer letters after a prompt.
    letters = [tokenizer.convert_tokens_to_ids(c) for c in ("A", "B", "C", "D")]
    scores = dec.score_next(prompts, letters, progress=False)
    with torch.no_grad():
        logits = hf(torch.tensor([prompts[2]])).logits[0, -1].double()
    np.testing.assert_allclose(scores[2], torch.log_softmax(logits, -1)[letters].numpy(), atol=1e-4)


def test_decode_step_updates_the_donated_cache_in_place():
    """The compiled decode step aliases the whole donated cache (no per-step copy of it) and
    writes the new token's keys exactly at ``cache.index`` of every layer, nothing else."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from globmed_jax.models import CausalLM, ModelConfig

    cfg = ModelConfig(model_type="qwen3", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=3,
                      num_heads=4, num_kv_heads=2, head_dim=8, qk_norm=True, dtype="float32")
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    prompt = jnp.asarray([[5, 6, 7, 8], [0, 0, 9, 10]], jnp.int32)
    mask = jnp.asarray([[1, 1, 1, 1], [0, 0, 1, 1]], jnp.int32)
    cache = model.forward(prompt, attention_mask=mask, cache=model.init_cache(2, 16), fresh_cache=True).cache

    def step(state, cache, last):
        return decode.decode_step(nnx.merge(graphdef, state), cache, last)

    last = jnp.asarray([3, 4], jnp.int32)
    compiled = jax.jit(step, donate_argnums=(1,)).lower(state, cache, last).compile()
    cache_bytes = cache.k.nbytes + cache.v.nbytes
    assert compiled.memory_analysis().alias_size_in_bytes >= cache_bytes
    before_k = np.asarray(cache.k)
    _, new = compiled(state, cache, last)
    after_k = np.asarray(new.k)
    changed = np.any(after_k != before_k, axis=(1, 2, 4))  # [L, S]
    assert changed[:, 4].all() and not np.delete(changed, 4, axis=1).any()
    assert int(new.index) == 5
