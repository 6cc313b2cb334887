"""Flax NNX ports of Qwen3, Llama 3.x, Qwen2, Mistral and Gemma 3 (text) with Hugging Face safetensors interop."""

from globmed_jax.models.config import (
    PRESETS,
    LinearRopeScaling,
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
    "PRESETS", "LinearRopeScaling", "ModelConfig", "RopeScaling", "UnsupportedModelError", "from_hf_config", "get_preset",
    "to_hf_config", "CheckpointError", "WeightFileError", "from_pretrained", "load_config", "save_pretrained",
    "Projection", "load_tokenizer", "CausalLM", "KVCache", "ModelOutput",
]
