"""GlobMed-LLM recipe: full fine-tuning of Qwen3-1.7B on the GlobMed mixture.

Meshes (override with --config.mesh.*):
  * 8x H100 (one node):  data=1, fsdp=8, tensor=1   (default below)
  * TPU v5p-8 / v6e-8:   data=1, fsdp=-1, tensor=1  (the same; -1 takes every chip)
  * multi-node GPU:      data=<nodes>, fsdp=8, tensor=1 (FSDP inside a node, data parallel across)
Base weights: `hf download Qwen/Qwen3-1.7B-Base --local-dir checkpoints/qwen3_1p7b` beforehand.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from globmed_base import globmed_recipe  # noqa: E402


def get_config():
    return globmed_recipe(checkpoint="checkpoints/qwen3_1p7b", run_dir="runs/globmed_qwen3_1p7b",
                          mesh=(1, -1, 1), remat="full")
