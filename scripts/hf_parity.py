"""Parity table of our Gemma 3 / Mistral ports against Hugging Face PyTorch (fp32, CPU, offline).

For each family, on a tiny random checkpoint built here (the configs of
tests/test_models_gemma_mistral.py: a window of 6 shorter than the sequences; Gemma with a
2-sliding + 1-full cycle, linear RoPE scaling, query_pre_attn_scalar 24 and a logit soft-cap of 2):

* max abs error of the logits and of every hidden state, scanned and unrolled layers;
* greedy decoding through our KV cache vs ``transformers`` ``generate``: tokens that agree, and
  the same for a control decoder whose window is off (it should disagree).

    python scripts/hf_parity.py [--new-tokens 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WINDOW = 6
TINY = {
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=WINDOW, query_pre_attn_scalar=24,
        rope_scaling={"rope_type": "linear", "factor": 8.0}, final_logit_softcapping=2.0,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=512)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=1, head_dim=24, sliding_window=WINDOW, rope_theta=10000.0, rms_norm_eps=1e-5,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=512)),
}


def build(kind: str):
    """Tiny fp32 HF model, weights 0.08 N(0,1), norms around 1 (Gemma's (1 + w): w around 0)."""
    import torch
    import transformers

    config_cls, model_cls, kwargs = TINY[kind]
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p)
            p.copy_(((0.0 if kind == "gemma3" else 1.0) + 0.1 * noise) if "norm" in name else 0.08 * noise)
    return model.eval().float()


def parity(hf, path, tokens) -> dict[str, float]:
    import jax.numpy as jnp
    import numpy as np
    import torch

    from globmed_jax.models import from_pretrained

    with torch.no_grad():
        ref = hf(torch.as_tensor(tokens, dtype=torch.long), output_hidden_states=True)
    ref_logits = ref.logits.numpy()
    ref_hidden = [h.numpy() for h in ref.hidden_states]
    model, cfg = from_pretrained(path, dtype="float32")
    row: dict[str, float] = {"logit_scale": float(np.abs(ref_logits).max())}
    for scan in (True, False):
        out = model.forward(jnp.asarray(tokens), return_hidden_states=True, scan_layers=scan)
        hidden = [np.abs(np.asarray(out.hidden_states[i]) - ref_hidden[i]).max() for i in range(cfg.num_layers)]
        hidden.append(np.abs(np.asarray(out.hidden) - ref_hidden[cfg.num_layers]).max())
        tag = "scan" if scan else "unrolled"
        row[f"logits_{tag}"] = float(np.abs(np.asarray(out.logits) - ref_logits).max())
        row[f"hidden_{tag}"] = float(max(hidden))
    return row


def decode(hf, path, prompts, new_tokens: int) -> dict[str, int]:
    import torch

    from globmed_jax.decode import Decoder
    from globmed_jax.models import from_pretrained

    ref = []
    for p in prompts:
        ids = torch.tensor([p])
        with torch.no_grad():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0, temperature=None,
                              top_p=None, top_k=None)
        ref.append(out[0, len(p):].tolist())
    row = {"tokens": sum(len(r) for r in ref)}
    for tag, overrides in (("agree", {}), ("control_no_window_agree", {"sliding_window": 10_000})):
        model, _ = from_pretrained(path, dtype="float32", **overrides)
        ours = Decoder(model, pad_id=0).generate(prompts, max_new_tokens=new_tokens, eos_ids=None, progress=False)
        row[tag] = sum(a == b for o, r in zip(ours, ref) for a, b in zip(o, r))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=100, help="greedy tokens per prompt")
    parser.add_argument("--json", default="", help="also write the table here")
    args = parser.parse_args(argv)

    import numpy as np

    tokens = np.random.default_rng(0).integers(3, 256, size=(2, 20)).astype(np.int32)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(3, 256, size=n).tolist() for n in (4, 9)]
    table = {}
    for kind in TINY:
        hf = build(kind)
        with tempfile.TemporaryDirectory() as path:
            hf.save_pretrained(path)
            table[kind] = {**parity(hf, path, tokens), **decode(hf, path, prompts, args.new_tokens)}
    print(f"fp32, window {WINDOW}, 2 x 20 tokens (parity), prompts of 4 and 9 tokens + {args.new_tokens} greedy")
    print("| family | max abs logits (scan / unrolled) | max abs hidden (scan / unrolled) | logit scale "
          "| greedy agree | control without window |")
    print("|---|---|---|---|---|---|")
    for kind, r in table.items():
        print(f"| {kind} | {r['logits_scan']:.1e} / {r['logits_unrolled']:.1e} | {r['hidden_scan']:.1e} / "
              f"{r['hidden_unrolled']:.1e} | {r['logit_scale']:.2f} | {r['agree']}/{r['tokens']} | "
              f"{r['control_no_window_agree']}/{r['tokens']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
