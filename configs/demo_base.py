"""Stage 1 of `make demo`: the BASE model. A tiny Qwen3-architecture model pretrained from scratch
with plain next-token loss on the synthetic base corpus (globmed_jax/data/base_corpus.py):
GlobMed-mini's facts stated as plain sentences in several phrasings in the eight high-resource
languages, 10% of the facts in one phrasing in each low-resource language, plus neutral
arithmetic filler. No questions, no chat template, no test phrasing.

    python -m globmed_jax.train --config configs/demo_base.py      # -> runs/demo/base/hf_export
"""

from globmed_jax.training.config import configured

# The model of configs/demo.py (the from-scratch demo), so the two demos compare like for like.
TINY_QWEN3 = dict(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=32,
                  tie_word_embeddings=True, max_position_embeddings=1024, rope_theta=10000.0)


def get_config():
    return configured({
        "run_dir": "runs/demo/base",
        "model.init": "scratch",
        "model.preset": "qwen3_0p6b",
        "model.overrides": dict(TINY_QWEN3),
        "model.dtype": "float32",  # CPU: bf16 matmuls are emulated and slower
        "tokenizer.kind": "bpe", "tokenizer.vocab_size": 2048,  # trained on the base corpus
        "data.mixture": "base_corpus", "data.objective": "lm",
        "data.seq_len": 256,
        "train.steps": 200, "train.global_batch_size": 16, "train.peak_lr": 3e-3,
        "train.warmup_steps": 20, "train.weight_decay": 0.1,
        "checkpoint.every_steps": 100, "log.every_steps": 10,
        "eval.max_items_per_language": 0,  # nothing to evaluate here: the report evaluates the model
    })
