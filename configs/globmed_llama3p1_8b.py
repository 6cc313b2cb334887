"""GlobMed-LLM recipe: full fine-tuning of Llama-3.1-8B on the GlobMed mixture.

Meshes (override with --config.mesh.*):
  * 8x H100 (one node):  data=1, fsdp=8, tensor=1   (default below)
  * TPU v5p-8 / v6e-8:   data=1, fsdp=-1, tensor=1  (the same; -1 takes every chip)
  * multi-node GPU:      data=<nodes>, fsdp=8, tensor=1 (FSDP inside a node, data parallel across)
Base weights: `hf download meta-llama/Llama-3.1-8B --local-dir checkpoints/llama3p1_8b` beforehand.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from globmed_base import globmed_recipe  # noqa: E402


def get_config():
    c = globmed_recipe(checkpoint="checkpoints/llama3p1_8b", run_dir="runs/globmed_llama3p1_8b",
                       mesh=(1, -1, 1), remat="full")
    # 128 x 2048 tokens in 2 microbatches: ~47 GiB per device on 8 devices (scripts/memory_plan.py);
    # TPU v5p-8 needs --config.train.microbatches=4, v6e-8 16 (docs/scaling.md).
    c.train.microbatches = 2
    return c
