"""Model configuration: one frozen dataclass for every supported decoder-only architecture.

Supported Hugging Face ``model_type`` values: ``qwen3`` (q/k RMSNorm), ``llama`` (Llama 2/3.x,
SmolLM2; RoPE scaling ``llama3``), ``qwen2`` (Qwen2/2.5: bias on q/k/v), ``mistral`` (Llama layout
with an optional sliding window on every layer) and ``gemma3_text`` (Gemma 3 / MedGemma text:
GeGLU, ``(1 + w)`` RMSNorm, pre- and post-norms, q/k norm, scaled embeddings, a cycle of sliding
and full layers with their own RoPE bases). A ``gemma3`` (Gemma3ForConditionalGeneration) config
is read as its ``text_config``: the language model only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES = ("qwen3", "llama", "qwen2", "mistral", "gemma3_text")
HIDDEN_ACTS = ("silu", "gelu_pytorch_tanh")
LAYER_KINDS = ("sliding", "full")
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
class LinearRopeScaling:
    """Position interpolation (HF ``rope_type == "linear"``): every inverse frequency / ``factor``."""

    factor: float = 8.0


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
    rope_scaling: RopeScaling | LinearRopeScaling | None = None
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
    # Gemma 3 / Mistral. The defaults are the Qwen3 / Llama / Qwen2 behaviour.
    hidden_act: str = "silu"  # the MLP gate: silu (SwiGLU) or gelu_pytorch_tanh (GeGLU)
    norm_unit_offset: bool = False  # RMSNorm multiplies by (1 + w) in fp32 (Gemma), not by w
    post_norms: bool = False  # RMSNorm on the attention and MLP outputs before each residual add
    embed_scale: bool = False  # embeddings times sqrt(hidden_size), in the compute dtype
    query_pre_attn_scalar: float | None = None  # attention scale s**-0.5; None: head_dim**-0.5
    final_logit_softcap: float | None = None  # logits = cap * tanh(logits / cap)
    sliding_window: int | None = None  # W: a sliding layer's query sees itself and W-1 slots before
    # Layer i is layer_pattern[i % len(layer_pattern)] ("sliding" or "full"): a repeating cycle, so
    # the pattern stays valid when num_layers changes (memory planner, tiny test models).
    layer_pattern: tuple[str, ...] = ("full",)
    local_rope_theta: float | None = None  # RoPE base of sliding layers (no scaling); None: as full

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
        if self.hidden_act not in HIDDEN_ACTS:
            raise UnsupportedModelError(f"hidden_act {self.hidden_act!r} is not supported; supported: {HIDDEN_ACTS}")
        if not self.layer_pattern or set(self.layer_pattern) - set(LAYER_KINDS):
            raise ValueError(f"layer_pattern must be a non-empty tuple of {LAYER_KINDS}, got {self.layer_pattern!r}")
        if "sliding" in self.layer_pattern and not (isinstance(self.sliding_window, int)
                                                      and self.sliding_window >= 1):
            raise ValueError(f"layer_pattern has sliding layers but sliding_window is {self.sliding_window!r}")
        for field in ("query_pre_attn_scalar", "final_logit_softcap", "local_rope_theta"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ValueError(f"{field} must be positive or None, got {value!r}")
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

    def layer_kinds(self) -> tuple[str, ...]:
        """Each layer's kind, ``"sliding"`` or ``"full"`` (``num_layers`` entries)."""
        return tuple(self.layer_pattern[i % len(self.layer_pattern)] for i in range(self.num_layers))

    @property
    def attention_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def num_params(self) -> int:
        """Parameter count (embedding counted once when tied)."""
        d, f, h, k, hd = (self.hidden_size, self.intermediate_size, self.num_heads,
                          self.num_kv_heads, self.head_dim)
        attn = d * h * hd * 2 + d * k * hd * 2
        if self.qkv_bias:
            attn += (h + 2 * k) * hd
        if self.qk_norm:
            attn += 2 * hd
        if self.o_bias:
            attn += d
        per_layer = attn + 3 * d * f + (4 if self.post_norms else 2) * d
        if self.mlp_bias:
            per_layer += 2 * f + d
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return self.num_layers * per_layer + self.vocab_size * d + d + head


# --------------------------------------------------------------------------------------------
# Hugging Face config.json <-> ModelConfig
# --------------------------------------------------------------------------------------------

_ARCHITECTURES = {"qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                  "mistral": "MistralForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}

# transformers' Gemma3TextConfig defaults, for keys a public config.json leaves out (the 4B+
# checkpoints' text_config lists only what differs from them).
_GEMMA3_DEFAULTS: dict[str, Any] = dict(
    vocab_size=262_208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
    num_attention_heads=8, num_key_value_heads=4, head_dim=256, hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=131_072, rms_norm_eps=1e-6, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    tie_word_embeddings=True, attention_bias=False, query_pre_attn_scalar=256, sliding_window=4096,
    final_logit_softcapping=None, attn_logit_softcapping=None, use_bidirectional_attention=False,
    rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, sliding_window_pattern=6,
)
# transformers' MistralConfig defaults for absent keys (notably sliding_window=4096).
_MISTRAL_DEFAULTS: dict[str, Any] = dict(sliding_window=4096, rms_norm_eps=1e-6, rope_theta=10_000.0,
                                         max_position_embeddings=4096 * 32, bos_token_id=1, eos_token_id=2)


def _rope_scaling_from(merged: Mapping[str, Any]) -> RopeScaling | LinearRopeScaling | None:
    """The scaling a merged HF RoPE dict describes (``rope_type`` or the older ``type``)."""
    rope_type = merged.get("rope_type", merged.get("type", "default"))
    if rope_type in (None, "default"):
        return None
    if rope_type == "llama3":
        return RopeScaling(
            factor=float(merged["factor"]),
            low_freq_factor=float(merged["low_freq_factor"]),
            high_freq_factor=float(merged["high_freq_factor"]),
            original_max_position_embeddings=int(merged["original_max_position_embeddings"]),
        )
    if rope_type == "linear":
        return LinearRopeScaling(factor=float(merged["factor"]))
    raise UnsupportedModelError(f"RoPE type {rope_type!r} is not supported (supported: default, llama3, linear)")


def _rope_from_hf(hf: Mapping[str, Any], default_theta: float = 10000.0
                  ) -> tuple[float, RopeScaling | LinearRopeScaling | None]:
    """Reads RoPE settings from either the transformers-5 ``rope_parameters`` dict or the older
    ``rope_theta`` + ``rope_scaling`` pair used by the public Qwen3/Llama-3.1 config files."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", default_theta))
    return float(theta), _rope_scaling_from({**scaling, **params})


def _rope_to_hf(theta: float, scaling: RopeScaling | LinearRopeScaling | None) -> dict[str, Any]:
    if scaling is None:
        return {"rope_type": "default", "rope_theta": theta}
    if isinstance(scaling, LinearRopeScaling):
        return {"rope_type": "linear", "rope_theta": theta, "factor": scaling.factor}
    return {"rope_type": "llama3", "rope_theta": theta, **dataclasses.asdict(scaling)}


def _as_id_tuple(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


def _shortest_cycle(kinds: list[str]) -> tuple[str, ...]:
    """The shortest prefix p with ``kinds[i] == p[i % len(p)]`` for every layer."""
    for period in range(1, len(kinds) + 1):
        if all(kinds[i] == kinds[i % period] for i in range(len(kinds))):
            return tuple(kinds[:period])
    return tuple(kinds)


def _refuse_unimplemented(hf: Mapping[str, Any]) -> None:
    """Settings that change the math and that we do not implement: refused, never ignored."""
    if hf.get("attn_logit_softcapping") is not None:
        raise UnsupportedModelError(
            f"attn_logit_softcapping={hf['attn_logit_softcapping']} (Gemma 2 style attention-score "
            "soft-capping) is not implemented; refusing the config rather than ignoring it")
    if hf.get("use_bidirectional_attention"):
        raise UnsupportedModelError("use_bidirectional_attention=true (non-causal text attention) is not supported")
    if hf.get("use_sliding_window"):
        raise UnsupportedModelError("use_sliding_window=true (Qwen2 per-layer sliding windows) is not supported")


def _gemma3_from_hf(hf: Mapping[str, Any]) -> dict[str, Any]:
    g = {**_GEMMA3_DEFAULTS, **{k: v for k, v in hf.items() if v is not None or k in (
        "final_logit_softcapping", "attn_logit_softcapping", "sliding_window", "pad_token_id", "bos_token_id",
        "eos_token_id")}}
    _refuse_unimplemented(g)
    if g.get("hidden_activation") not in HIDDEN_ACTS:
        raise UnsupportedModelError(f"hidden_activation {g.get('hidden_activation')!r} is not supported; "
                                    f"supported: {HIDDEN_ACTS}")
    if g.get("layer_types"):
        names = {"sliding_attention": "sliding", "full_attention": "full"}
        unknown = sorted(set(g["layer_types"]) - set(names))
        if unknown or len(g["layer_types"]) != int(g["num_hidden_layers"]):
            raise UnsupportedModelError(f"layer_types must list num_hidden_layers entries of {sorted(names)}, "
                                        f"got {g['layer_types']!r}")
        pattern = _shortest_cycle([names[t] for t in g["layer_types"]])
    else:  # older configs: every sliding_window_pattern-th layer is full
        every = int(g.get("_sliding_window_pattern") or g["sliding_window_pattern"])
        pattern = tuple("sliding" if (i + 1) % every else "full" for i in range(every))
    params = dict(g.get("rope_parameters") or {})
    if "full_attention" in params or "sliding_attention" in params:  # transformers 5, per layer type
        full, local = dict(params.get("full_attention") or {}), dict(params.get("sliding_attention") or {})
        full.update(dict(g.get("rope_scaling") or {}))  # as transformers merges a legacy rope_scaling
    else:  # older: rope_theta + rope_scaling for full layers, rope_local_base_freq for sliding ones
        full, local = {**dict(g.get("rope_scaling") or {}), **params}, {}
    full.setdefault("rope_theta", g["rope_theta"])
    local.setdefault("rope_theta", g["rope_local_base_freq"])
    if _rope_scaling_from(local) is not None:
        raise UnsupportedModelError(f"sliding layers with RoPE scaling {local} are not supported")
    heads = int(g["num_attention_heads"])
    bias = bool(g.get("attention_bias", False))
    return dict(
        model_type="gemma3_text",
        vocab_size=int(g["vocab_size"]), hidden_size=int(g["hidden_size"]),
        intermediate_size=int(g["intermediate_size"]), num_layers=int(g["num_hidden_layers"]),
        num_heads=heads, num_kv_heads=int(g.get("num_key_value_heads") or heads),
        head_dim=int(g.get("head_dim") or int(g["hidden_size"]) // heads),
        rms_norm_eps=float(g["rms_norm_eps"]),
        rope_theta=float(full["rope_theta"]), rope_scaling=_rope_scaling_from(full),
        local_rope_theta=float(local["rope_theta"]),
        tie_word_embeddings=bool(g["tie_word_embeddings"]), qk_norm=True, qkv_bias=bias, o_bias=bias,
        max_position_embeddings=int(g["max_position_embeddings"]),
        bos_token_id=g.get("bos_token_id"), eos_token_ids=_as_id_tuple(g.get("eos_token_id")),
        pad_token_id=g.get("pad_token_id"),
        hidden_act=g["hidden_activation"], norm_unit_offset=True, post_norms=True, embed_scale=True,
        query_pre_attn_scalar=float(g["query_pre_attn_scalar"]),
        final_logit_softcap=(None if g.get("final_logit_softcapping") is None
                             else float(g["final_logit_softcapping"])),
        sliding_window=None if g.get("sliding_window") is None else int(g["sliding_window"]),
        layer_pattern=pattern,
    )


def from_hf_config(hf: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """Builds a ModelConfig from a parsed HF ``config.json``.

    A ``gemma3`` (Gemma3ForConditionalGeneration, e.g. MedGemma 4B) config gives the config of
    its language model (``text_config``); the vision tower is not part of our model."""
    model_type = hf.get("model_type")
    if model_type == "gemma3":
        text = hf.get("text_config")
        if not isinstance(text, Mapping):
            raise UnsupportedModelError("model_type 'gemma3' config.json has no text_config object")
        if text.get("final_logit_softcapping") is not None:
            # transformers' Gemma3ForConditionalGeneration never applies it (Gemma3ForCausalLM
            # does): which one the checkpoint means is ambiguous, so refuse. Public Gemma 3 have none.
            raise UnsupportedModelError(
                "gemma3 (ConditionalGeneration) text_config sets final_logit_softcapping, which "
                "transformers' Gemma3ForConditionalGeneration ignores; refusing the ambiguous config")
        # Special ids and tying may sit at the top level only (the hub's -it configs).
        top = {k: hf[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings") if k in hf}
        hf = {**top, **text, "model_type": "gemma3_text"}
        model_type = "gemma3_text"
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"config.json has model_type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES} (and gemma3)"
        )
    if model_type == "gemma3_text":
        kwargs = _gemma3_from_hf(hf)
        kwargs.update(overrides)
        return ModelConfig(**kwargs)
    if model_type == "mistral":
        hf = {**_MISTRAL_DEFAULTS, **hf}
    _refuse_unimplemented(hf)
    if hf.get("final_logit_softcapping") is not None:
        raise UnsupportedModelError(f"{model_type}: final_logit_softcapping is not part of this architecture")
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"hidden_act {hf.get('hidden_act')!r} is not supported (only silu)")
    theta, scaling = _rope_from_hf(hf)
    if isinstance(scaling, LinearRopeScaling):
        raise UnsupportedModelError(f"{model_type}: linear RoPE scaling is not supported (only for gemma3)")
    heads = int(hf["num_attention_heads"])
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    attention_bias = bool(hf.get("attention_bias", False))
    window = hf.get("sliding_window") if model_type == "mistral" else None
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
        sliding_window=None if window is None else int(window),
        layer_pattern=("full",) if window is None else ("sliding",),
    )
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


_GEMMA_FLAGS = ("norm_unit_offset", "post_norms", "embed_scale", "qk_norm")
_GEMMA_ONLY = ("norm_unit_offset", "post_norms", "embed_scale", "query_pre_attn_scalar", "final_logit_softcap",
               "local_rope_theta")


def _check_family(cfg: ModelConfig) -> None:
    """Refuses to export a config whose settings the HF class of its model_type cannot express."""
    kinds = set(cfg.layer_kinds())
    if cfg.model_type == "gemma3_text":
        off = [f for f in _GEMMA_FLAGS if not getattr(cfg, f)]
        if off:
            raise UnsupportedModelError(f"gemma3_text always has {_GEMMA_FLAGS}; this config turns off {off}")
        return
    set_gemma = [f for f in _GEMMA_ONLY if getattr(cfg, f) not in (None, False)]
    if set_gemma or cfg.hidden_act != "silu":
        raise UnsupportedModelError(f"{cfg.model_type} cannot express {set_gemma or ['hidden_act']} (Gemma 3 only)")
    if cfg.model_type == "mistral":
        if len(kinds) > 1:
            raise UnsupportedModelError("mistral applies its sliding window to every layer or to none")
        if cfg.qkv_bias or cfg.o_bias or cfg.mlp_bias or cfg.qk_norm:
            raise UnsupportedModelError("mistral has no biases and no q/k norm")
    elif "sliding" in kinds:
        raise UnsupportedModelError(f"{cfg.model_type} has no sliding-window layers")
    if isinstance(cfg.rope_scaling, LinearRopeScaling):
        raise UnsupportedModelError(f"{cfg.model_type}: linear RoPE scaling is not supported (only for gemma3)")


def _int_if_whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _gemma3_to_hf(cfg: ModelConfig, common: dict[str, Any]) -> dict[str, Any]:
    full = _rope_to_hf(cfg.rope_theta, cfg.rope_scaling)
    local = (dict(full) if cfg.local_rope_theta is None
             else {"rope_type": "default", "rope_theta": cfg.local_rope_theta})
    if _rope_scaling_from(local) is not None:
        raise UnsupportedModelError("gemma3_text sliding layers cannot have RoPE scaling: set local_rope_theta")
    return {
        **common,
        "hidden_activation": cfg.hidden_act,
        "query_pre_attn_scalar": _int_if_whole(cfg.query_pre_attn_scalar or cfg.head_dim),  # HF: an int
        "sliding_window": cfg.sliding_window,
        "layer_types": [f"{kind}_attention" for kind in cfg.layer_kinds()],
        "rope_parameters": {"full_attention": full, "sliding_attention": local},
        "final_logit_softcapping": cfg.final_logit_softcap,
        "attn_logit_softcapping": None,
        "use_bidirectional_attention": False,
        "attention_bias": cfg.qkv_bias,
    }


def to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
    """The ``config.json`` dict that transformers loads back into the equivalent HF model."""
    _check_family(cfg)
    rope = _rope_to_hf(cfg.rope_theta, cfg.rope_scaling)
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
        "rms_norm_eps": cfg.rms_norm_eps,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "max_position_embeddings": cfg.max_position_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        "pad_token_id": cfg.pad_token_id,
        "torch_dtype": cfg.param_dtype,
    }
    if cfg.model_type == "gemma3_text":
        if cfg.qkv_bias != cfg.o_bias or cfg.mlp_bias:
            raise UnsupportedModelError("gemma3_text: attention_bias covers q, k, v and o alike; no MLP bias")
        return _gemma3_to_hf(cfg, hf)
    hf.update({
        "hidden_act": "silu",
        "rope_parameters": rope,
        # Older readers (and tools parsing config.json themselves) look for these two keys.
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None if cfg.rope_scaling is None else dict(rope),
    })
    if cfg.model_type == "mistral":
        hf["sliding_window"] = cfg.sliding_window if "sliding" in cfg.layer_kinds() else None
        return hf
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


# Gemma 3 (google/gemma-3-*-pt, text part) and MedGemma. Shared by every size: head_dim 256 (27B:
# 128), cycle of 5 sliding layers then 1 full, local RoPE base 10k, global 1M, q/k norm, tied
# embeddings, no soft-capping (Gemma 3 dropped it). eos 1 is the pretrained models' <eos>; the
# instruction-tuned ones also stop on 106 (<end_of_turn>): taken from the -it configs as we recall
# them, not re-read from the hub in this environment.
_GEMMA3 = dict(model_type="gemma3_text", head_dim=256, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
               local_rope_theta=10_000.0, qk_norm=True, tie_word_embeddings=True, hidden_act="gelu_pytorch_tanh",
               norm_unit_offset=True, post_norms=True, embed_scale=True, query_pre_attn_scalar=256.0,
               layer_pattern=("sliding",) * 5 + ("full",), sliding_window=1024, max_position_embeddings=131072,
               bos_token_id=2, eos_token_ids=(1,), pad_token_id=0, vocab_size=262_208,
               rope_scaling=LinearRopeScaling(factor=8.0))
_GEMMA3_4B = dict(_GEMMA3, hidden_size=2560, intermediate_size=10240, num_layers=34, num_heads=8, num_kv_heads=4)
_GEMMA3_27B = dict(_GEMMA3, hidden_size=5376, intermediate_size=21504, num_layers=62, num_heads=32,
                   num_kv_heads=16, head_dim=128, query_pre_attn_scalar=168.0)

PRESETS.update({
    # 1B: text-only, 262144 tokens (no image tokens), window 512, no RoPE scaling, 32k context.
    "gemma3_1b": ModelConfig(**{**_GEMMA3, "vocab_size": 262_144, "sliding_window": 512, "rope_scaling": None,
                                "max_position_embeddings": 32768}, hidden_size=1152, intermediate_size=6912,
                             num_layers=26, num_heads=4, num_kv_heads=1),
    "gemma3_4b": ModelConfig(**_GEMMA3_4B),
    "gemma3_12b": ModelConfig(**_GEMMA3, hidden_size=3840, intermediate_size=15360, num_layers=48, num_heads=16,
                              num_kv_heads=8),
    "gemma3_27b": ModelConfig(**_GEMMA3_27B),
    # google/medgemma-4b-it (Gemma3ForConditionalGeneration): the Gemma 3 4B language model.
    "medgemma_4b": ModelConfig(**{**_GEMMA3_4B, "eos_token_ids": (1, 106)}),
    # google/medgemma-27b-text-it (Gemma3ForCausalLM): text-only, so 262144 tokens, without the 64
    # image-token rows the multimodal checkpoints add (transformers' convert_gemma3_weights.py adds
    # them only with the vision tower; keras-hub's parameter count for this preset, 27,009,002,240,
    # is gemma3_27b_text's, i.e. 262144 x 5376 embeddings). Not read from the hub file itself.
    "medgemma_27b_text": ModelConfig(**{**_GEMMA3_27B, "vocab_size": 262_144, "eos_token_ids": (1, 106)}),
    # mistralai/Mistral-7B-v0.3: Llama layout, 32768-token vocab, no sliding window (v0.1 had 4096).
    "mistral_7b_v0p3": ModelConfig(model_type="mistral", vocab_size=32768, hidden_size=4096,
                                   intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8,
                                   head_dim=128, rms_norm_eps=1e-5, rope_theta=1_000_000.0,
                                   tie_word_embeddings=False, max_position_embeddings=32768,
                                   bos_token_id=1, eos_token_ids=(2,), sliding_window=None),
})


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
