"""Helpers for tests that compare against Hugging Face PyTorch models built and saved locally."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            max_position_embeddings=512, rms_norm_eps=1e-6)

# name -> (HF config class name, config kwargs). Covers tied/untied, odd head counts and
# GQA ratios 1, 2 and 4, Llama-3.1 RoPE scaling, and Qwen2 q/k/v bias.
TINY_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen3_untied_gqa2": ("Qwen3Config", dict(TINY, num_attention_heads=4, num_key_value_heads=2,
                                              head_dim=16, tie_word_embeddings=False)),
    "qwen3_tied_gqa1_odd": ("Qwen3Config", dict(TINY, num_attention_heads=5, num_key_value_heads=5,
                                                head_dim=8, tie_word_embeddings=True)),
    "qwen3_gqa4_odd_kv": ("Qwen3Config", dict(TINY, num_attention_heads=12, num_key_value_heads=3,
                                              head_dim=8, tie_word_embeddings=False, rope_theta=1e6)),
    "llama31_rope_scaling": ("LlamaConfig", dict(
        TINY, num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5,
        tie_word_embeddings=False, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    "llama_plain_tied": ("LlamaConfig", dict(TINY, hidden_size=48, num_attention_heads=6,
                                             num_key_value_heads=3, tie_word_embeddings=True,
                                             rope_theta=10000.0)),
    "qwen2_bias": ("Qwen2Config", dict(TINY, num_attention_heads=4, num_key_value_heads=2,
                                       tie_word_embeddings=False)),
}


def build_hf_model(kind: str, seed: int = 0):
    """A tiny random HF model in fp32 with every weight perturbed (norms around 1), so that a
    wrong mapping of any tensor shows up in the logits."""
    import torch
    import transformers

    cls_name, kwargs = TINY_CONFIGS[kind]
    config = getattr(transformers, cls_name)(**kwargs)
    model_cls = getattr(transformers, cls_name.replace("Config", "ForCausalLM"))
    torch.manual_seed(seed)
    model = model_cls(config).eval().to(torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn_like(param)
            if "norm" in name:
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(0.08 * noise)
    return model


def save_hf_model(model, directory: pathlib.Path) -> pathlib.Path:
    model.save_pretrained(directory)
    return directory


def hf_logits_and_hidden(model, tokens: np.ndarray):
    import torch

    with torch.no_grad():
        out = model(torch.as_tensor(tokens, dtype=torch.long), output_hidden_states=True)
    return out.logits.float().numpy(), [h.float().numpy() for h in out.hidden_states]


def relative_max_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference| (the logit scale)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(ours - reference)) / max(np.max(np.abs(reference)), 1e-12))


def write_json(path: pathlib.Path, data: Any) -> None:
    path.write_text(json.dumps(data))


def save_tiny_bench_checkpoint(path: pathlib.Path, train_records) -> tuple[pathlib.Path, Any]:
    """A random fp32 Qwen3 (vocab 512, 2 layers) with a 512-token BPE tokenizer trained on every
    fifth of ``train_records``, saved to ``path``; weights larger than HF's init so the options of
    an item get clearly different scores. Returns (path, the torch model)."""
    import torch
    import transformers

    from globmed_jax.training.bpe import train_bpe_tokenizer

    texts = [f"{r.context or ''} {r.question} {' '.join(r.options.values())}" for r in train_records[::5]]
    tok = train_bpe_tokenizer(texts, vocab_size=512)
    cfg = transformers.Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                   max_position_embeddings=4096, tie_word_embeddings=False,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    hf = transformers.Qwen3ForCausalLM(cfg).eval().float()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return path, hf
