"""Logit and hidden-state parity with Hugging Face PyTorch at fp32, plus the HF round trip."""

import numpy as np
import pytest

import jax.numpy as jnp

from globmed_jax.models import from_pretrained, save_pretrained
from hf_utils import TINY_CONFIGS, build_hf_model, hf_logits_and_hidden, relative_max_error

TOL = 1e-4  # max abs error relative to the logit scale


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(0, 256, size=(2, 24)).astype(np.int32)


@pytest.mark.parametrize("kind", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("scan_layers", [True, False])
def test_logits_and_hidden_states_match_transformers(kind, scan_layers, tokens, tmp_path):
    hf_model = build_hf_model(kind)
    hf_model.save_pretrained(tmp_path)
    ref_logits, ref_hidden = hf_logits_and_hidden(hf_model, tokens)

    model, cfg = from_pretrained(tmp_path, dtype="float32", param_dtype="float32", scan_layers=scan_layers)
    out = model.forward(jnp.asarray(tokens), return_hidden_states=True)

    assert out.logits.dtype == jnp.float32
    assert out.logits.shape == ref_logits.shape
    logit_err = relative_max_error(out.logits, ref_logits)
    assert logit_err < TOL, f"{kind}: logits relative error {logit_err:.2e}"
    # HF: [embeddings, layer 1 .. layer L-1 outputs, final-norm(layer L output)].
    for layer in range(cfg.num_layers):
        err = relative_max_error(out.hidden_states[layer], ref_hidden[layer])
        assert err < TOL, f"{kind}: hidden state {layer} relative error {err:.2e}"
    final_err = relative_max_error(out.hidden, ref_hidden[cfg.num_layers])
    assert final_err < TOL, f"{kind}: final normed hidden relative error {final_err:.2e}"


def test_model_call_with_tokens_only_returns_float32_logits(tmp_path, tokens):
    build_hf_model("qwen3_untied_gqa2").save_pretrained(tmp_path)
    model, cfg = from_pretrained(tmp_path)  # defaults: fp32 params, bf16 compute
    assert cfg.param_dtype == "float32" and cfg.dtype == "bfloat16"
    logits = model(jnp.asarray(tokens))
    assert logits.shape == (2, 24, cfg.vocab_size) and logits.dtype == jnp.float32
    assert model.layers.attn.q_proj.kernel[...].dtype == jnp.float32


def test_bf16_compute_stays_close_to_fp32(tmp_path, tokens):
    hf_model = build_hf_model("llama31_rope_scaling")
    hf_model.save_pretrained(tmp_path)
    ref_logits, _ = hf_logits_and_hidden(hf_model, tokens)
    model, _ = from_pretrained(tmp_path, dtype="bfloat16")
    err = relative_max_error(model(jnp.asarray(tokens)), ref_logits)
    assert err < 3e-2, f"bf16 compute drifted: {err:.2e}"
    assert err > 0  # bf16 really was used


@pytest.mark.parametrize("kind", ["qwen3_tied_gqa1_odd", "llama31_rope_scaling", "qwen2_bias"])
def test_round_trip_through_save_pretrained(kind, tokens, tmp_path):
    import torch
    import transformers

    hf_model = build_hf_model(kind)
    hf_model.save_pretrained(tmp_path / "src")
    ref_logits, _ = hf_logits_and_hidden(hf_model, tokens)
    model, _ = from_pretrained(tmp_path / "src", dtype="float32")
    save_pretrained(model, tmp_path / "out")

    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    assert type(reloaded) is type(hf_model)
    rt_logits, _ = hf_logits_and_hidden(reloaded, tokens)
    assert relative_max_error(rt_logits, ref_logits) < 1e-6
    ours_again, _ = from_pretrained(tmp_path / "out", dtype="float32")
    np.testing.assert_array_equal(np.asarray(ours_again(jnp.asarray(tokens))), np.asarray(model(jnp.asarray(tokens))))


def test_sharded_save_writes_index_and_reloads(tokens, tmp_path):
    import torch
    import transformers

    hf_model = build_hf_model("qwen3_untied_gqa2")
    hf_model.save_pretrained(tmp_path / "src")
    model, _ = from_pretrained(tmp_path / "src", dtype="float32")
    save_pretrained(model, tmp_path / "out", max_shard_bytes=100_000)
    files = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    assert len(files) > 1 and (tmp_path / "out" / "model.safetensors.index.json").exists()
    assert not list((tmp_path / "out").glob("*.tmp"))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    ref, _ = hf_logits_and_hidden(hf_model, tokens)
    got, _ = hf_logits_and_hidden(reloaded, tokens)
    assert relative_max_error(got, ref) < 1e-6
    ours, _ = from_pretrained(tmp_path / "out", dtype="float32")  # our loader reads the index too
    assert relative_max_error(ours(jnp.asarray(tokens)), ref) < TOL
