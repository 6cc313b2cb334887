"""Flax NNX ports of Qwen3, Llama 3.x and Qwen2 with Hugging Face safetensors interop."""

from globmed_jax.models.config import (
    PRESETS,
    ModelConfig,
    RopeScaling,
    UnsupportedModelError,
    from_hf_config,
    get_preset,
    to_hf_config,
)
from globmed_jax.models.hf_io import (
    CheckpointError, WeightFileError, from_pretrained, load_config, save_pretrained,
)
from globmed_jax.models.projection import Projection
from globmed_jax.models.tokenizer import load_tokenizer
from globmed_jax.models.transformer import CausalLM, KVCache, ModelOutput

__all__ = [
    "PRESETS", "ModelConfig", "RopeScaling", "UnsupportedModelError", "from_hf_config", "get_preset",
    "to_hf_config", "CheckpointError", "WeightFileError", "from_pretrained", "load_config", "save_pretrained",
    "Projection", "load_tokenizer", "CausalLM", "KVCache", "ModelOutput",
]
