"""GlobMed-LLM recipe: full fine-tuning of MedGemma 4B's language model on the GlobMed mixture
(meshes: ``globmed_jax.training.config.globmed_recipe``).
Base weights: `hf download google/medgemma-4b-pt --local-dir checkpoints/medgemma_4b` beforehand
(gated: accept the Health AI Developer Foundations terms on the hub first). The checkpoint is a
Gemma3ForConditionalGeneration: only its language model is loaded and trained (the vision tower is
skipped), and the export is a text-only Gemma3ForCausalLM.
"""

from globmed_jax.training.config import globmed_recipe


def get_config():
    return globmed_recipe("medgemma_4b")
