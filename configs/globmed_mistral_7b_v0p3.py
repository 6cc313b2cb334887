"""GlobMed-LLM recipe: full fine-tuning of Mistral-7B-v0.3 on the GlobMed mixture, with the
microbatching of configs/globmed_llama3p1_8b.py (meshes: ``globmed_jax.training.config.globmed_recipe``).
Base weights: `hf download mistralai/Mistral-7B-v0.3 --local-dir checkpoints/mistral_7b_v0p3` beforehand.
"""

from globmed_jax.training.config import globmed_recipe


def get_config():
    return globmed_recipe("mistral_7b_v0p3", {"train.microbatches": 2})
