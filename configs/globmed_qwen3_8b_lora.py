"""Qwen3-8B with LoRA (rank 16 on every projection) on ONE 80 GB GPU; exports merged weights.

bf16 frozen base weights (16 GB) + fp32 adapters and their AdamW state, full remat.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from globmed_base import globmed_recipe  # noqa: E402


def get_config():
    c = globmed_recipe(checkpoint="checkpoints/qwen3_8b", run_dir="runs/globmed_qwen3_8b_lora",
                       mesh=(1, 1, 1), global_batch=32, remat="full")
    c.model.param_dtype = "bfloat16"  # frozen base weights; adapters are trained in this dtype too
    c.lora.rank = 16
    c.lora.alpha = 32.0
    c.train.peak_lr = 1e-4
    c.train.microbatches = 4
    return c
