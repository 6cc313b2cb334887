"""GlobMed-LLM recipe: full fine-tuning of Qwen3-8B on the GlobMed mixture (meshes: see
``globmed_jax.training.config.globmed_recipe``).
Base weights: `hf download Qwen/Qwen3-8B-Base --local-dir checkpoints/qwen3_8b` beforehand.
"""

from globmed_jax.training.config import globmed_recipe


# 128 x 2048 tokens in 2 microbatches: ~47 GiB per device on 8 devices (scripts/memory_plan.py);
# TPU v5p-8 needs --config.train.microbatches=4, v6e-8 16 (docs/scaling.md).
def get_config():
    return globmed_recipe("qwen3_8b", {"train.microbatches": 2})
