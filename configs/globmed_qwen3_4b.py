"""GlobMed-LLM recipe: full fine-tuning of Qwen3-4B on the GlobMed mixture (meshes: see
``globmed_jax.training.config.globmed_recipe``).
Base weights: `hf download Qwen/Qwen3-4B-Base --local-dir checkpoints/qwen3_4b` beforehand.
"""

from globmed_jax.training.config import globmed_recipe


def get_config():
    return globmed_recipe("qwen3_4b")
