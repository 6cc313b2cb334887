"""GlobMed-LLM recipe: full fine-tuning of Llama-3.1-8B on the GlobMed mixture, with the
microbatching of configs/globmed_qwen3_8b.py (meshes: ``globmed_jax.training.config.globmed_recipe``).
Base weights: `hf download meta-llama/Llama-3.1-8B --local-dir checkpoints/llama3p1_8b` beforehand.
"""

from globmed_jax.training.config import globmed_recipe


def get_config():
    return globmed_recipe("llama3p1_8b", {"train.microbatches": 2})
