"""Shared transformer building blocks: RMSNorm, RoPE, grouped-query attention, gated MLP
(SwiGLU or GeGLU), and the decoder layer with optional Gemma-style post-norms.

Shape letters: B batch, T query length, S key/cache length, D hidden, N query heads,
K key/value heads, H head dim, F MLP width, V vocabulary.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from globmed_jax.models.attention import attention
from globmed_jax.models.config import LinearRopeScaling, ModelConfig, RopeScaling
from globmed_jax.models.projection import Projection, param
from globmed_jax.sharding import ShardingContext


def _projection(cfg: ModelConfig, name: str, in_shape, out_shape, in_axes, out_axes, use_bias: bool,
                rngs: nnx.Rngs) -> Projection:
    """The projection ``name``, with LoRA factors when ``cfg`` targets it."""
    rank = cfg.lora_rank if name in cfg.lora_targets else 0
    return Projection(in_shape, out_shape, in_axes, out_axes, use_bias=use_bias,
                      param_dtype=cfg.weight_dtype, compute_dtype=cfg.compute_dtype,
                      lora_rank=max(rank, 0), lora_alpha=cfg.lora_alpha, rngs=rngs)


class RMSNorm(nnx.Module):
    """``x * rsqrt(mean(x^2) + eps) * scale``, statistics in fp32 (as HF does).

    ``unit_offset`` (Gemma): the stored weight w is an offset, the factor is ``(1 + w)`` and the
    product is taken in fp32 before the cast back (HF Gemma3RMSNorm; Llama casts first)."""

    def __init__(self, dim: int, eps: float, param_dtype, logical_axis: str, *, rngs: nnx.Rngs,
                 unit_offset: bool = False):
        self.eps = eps
        self.unit_offset = unit_offset
        init = jax.nn.initializers.zeros if unit_offset else jax.nn.initializers.ones
        self.scale = param(rngs, init, (dim,), param_dtype, (logical_axis,))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        if self.unit_offset:
            return (normed * (1.0 + self.scale[...].astype(jnp.float32))).astype(x.dtype)
        return (normed.astype(x.dtype) * self.scale[...].astype(x.dtype)).astype(x.dtype)


def make_norm(cfg: ModelConfig, dim: int, logical_axis: str, rngs: nnx.Rngs) -> RMSNorm:
    return RMSNorm(dim, cfg.rms_norm_eps, cfg.weight_dtype, logical_axis, rngs=rngs,
                   unit_offset=cfg.norm_unit_offset)


# ----------------------------------------------------------------------------------- RoPE


def rope_inverse_frequencies(head_dim: int, theta: float,
                             scaling: RopeScaling | LinearRopeScaling | None) -> np.ndarray:
    """Inverse frequencies ``[H/2]`` in fp32, with Llama-3.1 frequency-dependent scaling or linear
    position interpolation (every frequency / factor)."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (1.0 / (np.float32(theta) ** exponents)).astype(np.float32)
    if scaling is None:
        return inv_freq
    if isinstance(scaling, LinearRopeScaling):
        return (inv_freq / np.float32(scaling.factor)).astype(np.float32)
    low_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
    wavelen = 2 * np.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(is_medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq) -> jax.Array:
    """Rotates ``x [B,T,heads,H]`` by ``positions [B,T]`` (HF "rotate_half" layout); ``inv_freq``
    ``[H/2]`` is a tuple or a (traced) fp32 array."""
    inv_freq = jnp.asarray(inv_freq, dtype=jnp.float32)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B,T,H/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # [B,T,1,H]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


# ------------------------------------------------------------------------------ Attention


@dataclasses.dataclass(frozen=True)
class LayerCache:
    """What one layer needs of the KV cache: the STACKED ``k, v [L,B,K,S,H]`` (updated in place,
    never sliced out and stacked again), its layer ``layer`` (int when unrolled, traced int32
    under scan), the write slot ``index`` (int32 scalar) and ``fresh``: True when the cache is
    known to hold nothing yet (prefill), so attention runs over the new tokens only."""

    k: jax.Array
    v: jax.Array
    layer: int | jax.Array
    index: jax.Array
    fresh: bool = False


class Attention(nnx.Module):
    """Grouped-query attention with optional q/k RMSNorm (Qwen3, Gemma 3), q/k/v bias (Qwen2) and
    per-layer sliding windows with their own RoPE base (Mistral, Gemma 3).

    The layer's kind comes from its index: a Python int when the layers are unrolled (static
    choice), a traced int32 under scan, where the kind, the window and the RoPE frequencies are
    selected as data (``jnp.where`` / the mask), so one scanned body serves every layer."""

    def __init__(self, cfg: ModelConfig, shard: ShardingContext, *, rngs: nnx.Rngs):
        d, n, k, h, pd = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.weight_dtype
        self.cfg, self.shard = cfg, shard
        self.q_proj = _projection(cfg, "q_proj", (d,), (n, h), ("embed",), ("heads", "head_dim"),
                                  cfg.qkv_bias, rngs)
        self.k_proj = _projection(cfg, "k_proj", (d,), (k, h), ("embed",), ("kv_heads", "head_dim"),
                                  cfg.qkv_bias, rngs)
        self.v_proj = _projection(cfg, "v_proj", (d,), (k, h), ("embed",), ("kv_heads", "head_dim"),
                                  cfg.qkv_bias, rngs)
        self.o_proj = _projection(cfg, "o_proj", (n, h), (d,), ("heads", "head_dim"), ("embed",),
                                  cfg.o_bias, rngs)
        if cfg.qk_norm:
            self.q_norm = make_norm(cfg, h, "head_dim", rngs)
            self.k_norm = make_norm(cfg, h, "head_dim", rngs)
        # Tuples, not arrays: module attributes that are not Variables must be hashable.
        self.inv_freq = tuple(rope_inverse_frequencies(h, cfg.rope_theta, cfg.rope_scaling).tolist())
        self.local_inv_freq = (self.inv_freq if cfg.local_rope_theta is None else
                               tuple(rope_inverse_frequencies(h, cfg.local_rope_theta, None).tolist()))
        self.sliding_layers = tuple(kind == "sliding" for kind in cfg.layer_kinds())

    def is_sliding(self, layer: int | jax.Array) -> bool | jax.Array:
        """Whether layer ``layer`` is a sliding one: a bool when that is known statically."""
        flags = self.sliding_layers
        if all(flags) or not any(flags):
            return bool(flags[0])
        if isinstance(layer, (int, np.integer)):
            return flags[int(layer)]
        return jnp.asarray(flags)[layer]

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        segments: tuple[jax.Array, jax.Array] | None,
        cache: LayerCache | None = None,
        layer: int | jax.Array = 0,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """x ``[B,T,D]``, positions ``[B,T]``, ``layer`` this layer's index (int or traced int32,
        it picks the sliding/full kind); ``segments`` = (q ``[B,T]``, kv ``[B,S]``) int32
        segment ids (``models.attention`` semantics) or None for one causal segment per row.

        With ``cache`` the new keys/values are written IN PLACE into the stacked cache at
        ``(cache.layer, :, :, cache.index : cache.index+T)`` (one dynamic_update_slice per layer;
        under donation XLA reuses the buffer) and the stacked ``(k, v)`` come back.
        """
        cfg, dt = self.cfg, self.cfg.compute_dtype
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        sliding = self.is_sliding(layer)
        if isinstance(sliding, bool):
            inv_freq = self.local_inv_freq if sliding else self.inv_freq
        else:
            inv_freq = jnp.where(sliding, jnp.asarray(self.local_inv_freq, jnp.float32),
                                 jnp.asarray(self.inv_freq, jnp.float32))
        q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
        q = self.shard.constrain(q, ("activation_batch", "activation_length", "activation_heads", None))
        # Heads-major [B,K,T,H]: the cache's layout, which the attention dots read untransposed.
        k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
        q_seg, kv_seg = segments if segments is not None else (None, None)
        new_cache = None
        offset: int | jax.Array = 0
        if cache is not None:
            start = (cache.layer, 0, 0, cache.index, 0)
            k_all = jax.lax.dynamic_update_slice(cache.k, k[None].astype(cache.k.dtype), start)
            v_all = jax.lax.dynamic_update_slice(cache.v, v[None].astype(cache.v.dtype), start)
            new_cache = (k_all, v_all)
            if not cache.fresh:  # attend over the whole cache (what the slots before hold)
                k = jax.lax.dynamic_index_in_dim(k_all, cache.layer, 0, keepdims=False).astype(dt)
                v = jax.lax.dynamic_index_in_dim(v_all, cache.layer, 0, keepdims=False).astype(dt)
                offset = cache.index
            elif q_seg is not None:  # a fresh cache holds nothing before: self-attention only
                kv_seg = q_seg
        # The kernel follows the devices the model is laid out on (an AOT compile for a TPU
        # from a CPU host must pick splash), else the default backend.
        window = cfg.sliding_window if any(self.sliding_layers) else None
        out = attention(q, k, v, q_seg, kv_seg, causal=True, q_offset=offset, scale=cfg.attention_scale,
                        impl=cfg.attention_impl, shard=self.shard, window=window,
                        window_on=sliding)  # [B,T,N,H]
        return self.o_proj(out), new_cache


_ACTIVATIONS = {"silu": jax.nn.silu,
                # HF "gelu_pytorch_tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True)}


class MLP(nnx.Module):
    """Gated MLP: ``down(act(gate(x)) * up(x))``; SwiGLU (silu) or GeGLU (tanh gelu, Gemma)."""

    def __init__(self, cfg: ModelConfig, shard: ShardingContext, *, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.cfg, self.shard = cfg, shard
        self.gate_proj = _projection(cfg, "gate_proj", (d,), (f,), ("embed",), ("mlp",), cfg.mlp_bias, rngs)
        self.up_proj = _projection(cfg, "up_proj", (d,), (f,), ("embed",), ("mlp",), cfg.mlp_bias, rngs)
        self.down_proj = _projection(cfg, "down_proj", (f,), (d,), ("mlp",), ("embed",), cfg.mlp_bias, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = _ACTIVATIONS[self.cfg.hidden_act](self.gate_proj(x)) * self.up_proj(x)
        hidden = self.shard.constrain(hidden, ("activation_batch", "activation_length", "activation_mlp"))
        return self.down_proj(hidden)


class DecoderLayer(nnx.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    ``post_attn_norm`` is the norm BEFORE the MLP (HF Llama's ``post_attention_layernorm``,
    Gemma's ``pre_feedforward_layernorm``). With ``cfg.post_norms`` (Gemma) the attention and MLP
    outputs are normed too before their residual adds: ``attn_out_norm`` (Gemma's
    ``post_attention_layernorm``) and ``mlp_out_norm`` (``post_feedforward_layernorm``)."""

    def __init__(self, cfg: ModelConfig, shard: ShardingContext, *, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.input_norm = make_norm(cfg, d, "norm", rngs)
        self.attn = Attention(cfg, shard, rngs=rngs)
        self.post_attn_norm = make_norm(cfg, d, "norm", rngs)
        self.mlp = MLP(cfg, shard, rngs=rngs)
        if cfg.post_norms:
            self.attn_out_norm = make_norm(cfg, d, "norm", rngs)
            self.mlp_out_norm = make_norm(cfg, d, "norm", rngs)
        self.post_norms = cfg.post_norms
        self.shard = shard

    def __call__(self, x, positions, segments, cache: LayerCache | None = None, layer: int | jax.Array = 0):
        attn_out, new_cache = self.attn(self.input_norm(x), positions, segments, cache, layer)
        if self.post_norms:
            attn_out = self.attn_out_norm(attn_out)
        x = x + attn_out
        mlp_out = self.mlp(self.post_attn_norm(x))
        if self.post_norms:
            mlp_out = self.mlp_out_norm(mlp_out)
        x = x + mlp_out
        x = self.shard.constrain(x, ("activation_batch", "activation_length", "activation_embed"))
        return x, new_cache
