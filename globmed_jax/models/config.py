"""Model configuration: one frozen dataclass for every supported decoder-only architecture.

Supported Hugging Face ``model_type`` values: ``qwen3`` (q/k RMSNorm), ``llama`` (Llama 2/3.x,
SmolLM2; RoPE scaling ``llama3``) and ``qwen2`` (Qwen2/2.5: bias on q/k/v).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES = ("qwen3", "llama", "qwen2")
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims", "minimal")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class UnsupportedModelError(ValueError):
    """Raised for a checkpoint whose architecture this project does not implement."""


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama-3.1-style frequency-dependent RoPE scaling (HF ``rope_type == "llama3"``)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture plus numerics of a decoder-only transformer.

    ``dtype`` is the compute dtype (matmuls, activations); ``param_dtype`` the storage dtype of
    the weights. Softmax, RMSNorm statistics and the final logits are always computed in fp32.
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    qk_norm: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    max_position_embeddings: int = 32768
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    dtype: str = "bfloat16"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_layers: bool = True
    # None: let jax.nn.dot_product_attention pick (cuDNN on GPU when it can, else XLA).
    attention_impl: str | None = None
    # LoRA adapters (rank 0 = off) on the named projections; see globmed_jax/models/lora.py.
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"model_type {self.model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"remat_policy {self.remat_policy!r} not in {REMAT_POLICIES}")
        if self.attention_impl not in (None, "xla", "cudnn"):
            raise ValueError(f"attention_impl must be None, 'xla' or 'cudnn', got {self.attention_impl!r}")
        unknown_targets = set(self.lora_targets) - set(LORA_TARGETS)
        if unknown_targets:
            raise ValueError(f"unknown lora_targets {sorted(unknown_targets)}; choose from {LORA_TARGETS}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, got {self.lora_rank}")
        for field in ("dtype", "param_dtype"):
            jnp.dtype(getattr(self, field))  # raises on an unknown dtype name
        special = {"bos_token_id": self.bos_token_id, "pad_token_id": self.pad_token_id,
                   **{f"eos_token_ids[{i}]": e for i, e in enumerate(self.eos_token_ids)}}
        outside = {k: v for k, v in special.items() if v is not None and not 0 <= v < self.vocab_size}
        if outside:
            raise ValueError(f"special token ids outside the vocabulary of {self.vocab_size}: {outside}")

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def weight_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        """Parameter count (embedding counted once when tied)."""
        d, f, h, k, hd = (self.hidden_size, self.intermediate_size, self.num_heads,
                          self.num_kv_heads, self.head_dim)
        attn = d * h * hd * 2 + d * k * hd * 2
        if self.qkv_bias:
            attn += (h + 2 * k) * hd
        if self.qk_norm:
            attn += 2 * hd
        per_layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return self.num_layers * per_layer + self.vocab_size * d + d + head


# --------------------------------------------------------------------------------------------
# Hugging Face config.json <-> ModelConfig
# --------------------------------------------------------------------------------------------

_ARCHITECTURES = {"qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def _rope_from_hf(hf: Mapping[str, Any]) -> tuple[float, RopeScaling | None]:
    """Reads RoPE settings from either the transformers-5 ``rope_parameters`` dict or the older
    ``rope_theta`` + ``rope_scaling`` pair used by the public Qwen3/Llama-3.1 config files."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    merged = {**scaling, **params}
    rope_type = merged.get("rope_type", merged.get("type", "default"))
    if rope_type in (None, "default"):
        return float(theta), None
    if rope_type == "llama3":
        return float(theta), RopeScaling(
            factor=float(merged["factor"]),
            low_freq_factor=float(merged["low_freq_factor"]),
            high_freq_factor=float(merged["high_freq_factor"]),
            original_max_position_embeddings=int(merged["original_max_position_embeddings"]),
        )
    raise UnsupportedModelError(f"RoPE type {rope_type!r} is not supported (supported: default, llama3)")


def _as_id_tuple(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


def from_hf_config(hf: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Builds a ModelConfig from a parsed HF ``config.json``."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"config.json has model_type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES}"
        )
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"hidden_act {hf.get('hidden_act')!r} is not supported (only silu)")
    theta, scaling = _rope_from_hf(hf)
    heads = int(hf["num_attention_heads"])
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    attention_bias = bool(hf.get("attention_bias", False))
    kwargs = dict(
        model_type=model_type,
        vocab_size=int(hf["vocab_size"]),
        hidden_size=int(hf["hidden_size"]),
        intermediate_size=int(hf["intermediate_size"]),
        num_layers=int(hf["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(head_dim),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qk_norm=model_type == "qwen3",
        qkv_bias=model_type == "qwen2" or attention_bias,
        o_bias=model_type != "qwen2" and attention_bias,
        mlp_bias=bool(hf.get("mlp_bias", False)),
        max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_ids=_as_id_tuple(hf.get("eos_token_id")),
        pad_token_id=hf.get("pad_token_id"),
    )
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
    """The ``config.json`` dict that transformers loads back into the equivalent HF model."""
    if cfg.rope_scaling is None:
        rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    else:
        rope = {"rope_type": "llama3", "rope_theta": cfg.rope_theta,
                **dataclasses.asdict(cfg.rope_scaling)}
    eos = list(cfg.eos_token_ids)
    hf: dict[str, Any] = {
        "architectures": [_ARCHITECTURES[cfg.model_type]],
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": rope,
        # Older readers (and tools parsing config.json themselves) look for these two keys.
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None if cfg.rope_scaling is None else dict(rope),
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "max_position_embeddings": cfg.max_position_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        "pad_token_id": cfg.pad_token_id,
        "torch_dtype": cfg.param_dtype,
    }
    if cfg.model_type == "qwen2":
        if cfg.o_bias or cfg.mlp_bias or not cfg.qkv_bias:
            raise UnsupportedModelError("qwen2 checkpoints have bias on q/k/v only")
    else:
        if cfg.qkv_bias != cfg.o_bias:
            raise UnsupportedModelError(f"{cfg.model_type}: attention_bias must cover q, k, v and o alike")
        hf["attention_bias"] = cfg.qkv_bias
    if cfg.model_type == "llama":
        hf["mlp_bias"] = cfg.mlp_bias
    elif cfg.mlp_bias:
        raise UnsupportedModelError(f"{cfg.model_type} has no MLP bias")
    if (cfg.model_type == "qwen3") != cfg.qk_norm:
        raise UnsupportedModelError("q/k normalisation is exactly what distinguishes qwen3")
    return hf


# --------------------------------------------------------------------------------------------
# Named presets (public Hugging Face configs)
# --------------------------------------------------------------------------------------------

_QWEN3 = dict(model_type="qwen3", vocab_size=151936, head_dim=128, rms_norm_eps=1e-6,
              rope_theta=1_000_000.0, qk_norm=True, max_position_embeddings=40960,
              bos_token_id=151643, eos_token_ids=(151645,), pad_token_id=151643)
_LLAMA32_ROPE = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                            original_max_position_embeddings=8192)
_LLAMA3 = dict(model_type="llama", vocab_size=128256, rms_norm_eps=1e-5, rope_theta=500_000.0,
               max_position_embeddings=131072, bos_token_id=128000,
               eos_token_ids=(128001, 128008, 128009))

PRESETS: dict[str, ModelConfig] = {
    "qwen3_0p6b": ModelConfig(**_QWEN3, hidden_size=1024, intermediate_size=3072, num_layers=28,
                              num_heads=16, num_kv_heads=8, tie_word_embeddings=True),
    "qwen3_1p7b": ModelConfig(**_QWEN3, hidden_size=2048, intermediate_size=6144, num_layers=28,
                              num_heads=16, num_kv_heads=8, tie_word_embeddings=True),
    "qwen3_4b": ModelConfig(**_QWEN3, hidden_size=2560, intermediate_size=9728, num_layers=36,
                            num_heads=32, num_kv_heads=8, tie_word_embeddings=True),
    "qwen3_8b": ModelConfig(**_QWEN3, hidden_size=4096, intermediate_size=12288, num_layers=36,
                            num_heads=32, num_kv_heads=8, tie_word_embeddings=False),
    "llama3p1_8b": ModelConfig(**_LLAMA3, hidden_size=4096, intermediate_size=14336, num_layers=32,
                               num_heads=32, num_kv_heads=8, head_dim=128, tie_word_embeddings=False,
                               rope_scaling=RopeScaling()),
    "llama3p2_1b": ModelConfig(**_LLAMA3, hidden_size=2048, intermediate_size=8192, num_layers=16,
                               num_heads=32, num_kv_heads=8, head_dim=64, tie_word_embeddings=True,
                               rope_scaling=_LLAMA32_ROPE),
    "llama3p2_3b": ModelConfig(**_LLAMA3, hidden_size=3072, intermediate_size=8192, num_layers=28,
                               num_heads=24, num_kv_heads=8, head_dim=128, tie_word_embeddings=True,
                               rope_scaling=_LLAMA32_ROPE),
    "smollm2_135m": ModelConfig(model_type="llama", vocab_size=49152, hidden_size=576,
                                intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3,
                                head_dim=64, rms_norm_eps=1e-5, rope_theta=100_000.0,
                                tie_word_embeddings=True, max_position_embeddings=8192,
                                bos_token_id=1, eos_token_ids=(2,), pad_token_id=2),
    "qwen2p5_0p5b": ModelConfig(model_type="qwen2", vocab_size=151936, hidden_size=896,
                                intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2,
                                head_dim=64, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
                                tie_word_embeddings=True, qkv_bias=True,
                                max_position_embeddings=32768, bos_token_id=151643,
                                eos_token_ids=(151645,), pad_token_id=151643),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset, optionally with fields replaced (e.g. ``dtype="float32"``).

    Shrinking ``vocab_size`` (tiny test or demo models) clears the preset's special token ids
    that no longer fit, unless they are overridden too.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    preset = PRESETS[name]
    vocab = overrides.get("vocab_size", preset.vocab_size)
    fits = lambda i: i is not None and i < vocab  # noqa: E731
    defaults = {"bos_token_id": preset.bos_token_id if fits(preset.bos_token_id) else None,
                "pad_token_id": preset.pad_token_id if fits(preset.pad_token_id) else None,
                "eos_token_ids": tuple(e for e in preset.eos_token_ids if fits(e))}
    return dataclasses.replace(preset, **{**defaults, **overrides})
