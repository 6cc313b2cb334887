"""Qwen3-8B with LoRA (rank 16 on every projection) on ONE 80 GB GPU; exports merged weights.

bf16 frozen base weights (16 GB) + fp32 adapters and their AdamW state, full remat.
"""

from globmed_jax.training.config import globmed_recipe


def get_config():
    return globmed_recipe("qwen3_8b", {
        "run_dir": "runs/globmed_qwen3_8b_lora", "mesh.fsdp": 1, "train.global_batch_size": 32,
        "model.param_dtype": "bfloat16",  # frozen base weights; adapters are trained in this dtype too
        "lora.rank": 16, "lora.alpha": 32.0, "train.peak_lr": 1e-4, "train.microbatches": 4,
    })
