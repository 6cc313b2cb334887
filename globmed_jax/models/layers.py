"""Shared transformer building blocks: RMSNorm, RoPE, grouped-query attention, SwiGLU MLP.

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
from globmed_jax.models.config import ModelConfig, RopeScaling
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
    """``x * rsqrt(mean(x^2) + eps) * scale``, statistics in fp32 (as HF does)."""

    def __init__(self, dim: int, eps: float, param_dtype, logical_axis: str, *, rngs: nnx.Rngs):
        self.eps = eps
        self.scale = param(rngs, jax.nn.initializers.ones, (dim,), param_dtype, (logical_axis,))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed.astype(x.dtype) * self.scale[...].astype(x.dtype)).astype(x.dtype)


# ----------------------------------------------------------------------------------- RoPE


def rope_inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None) -> np.ndarray:
    """Inverse frequencies ``[H/2]`` in fp32, with Llama-3.1 frequency-dependent scaling."""
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (1.0 / (np.float32(theta) ** exponents)).astype(np.float32)
    if scaling is None:
        return inv_freq
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
    """Rotates ``x [B,T,heads,H]`` by ``positions [B,T]`` (HF "rotate_half" layout)."""
    inv_freq = jnp.asarray(np.asarray(inv_freq, dtype=np.float32))
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
    """Grouped-query attention with optional q/k RMSNorm (Qwen3) and q/k/v bias (Qwen2)."""

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
            self.q_norm = RMSNorm(h, cfg.rms_norm_eps, pd, "head_dim", rngs=rngs)
            self.k_norm = RMSNorm(h, cfg.rms_norm_eps, pd, "head_dim", rngs=rngs)
        # A tuple, not an array: module attributes that are not Variables must be hashable.
        self.inv_freq = tuple(rope_inverse_frequencies(h, cfg.rope_theta, cfg.rope_scaling).tolist())

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        segments: tuple[jax.Array, jax.Array] | None,
        cache: LayerCache | None = None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """x ``[B,T,D]``, positions ``[B,T]``; ``segments`` = (q ``[B,T]``, kv ``[B,S]``) int32
        segment ids (``models.attention`` semantics) or None for one causal segment per row.

        With ``cache`` the new keys/values are written IN PLACE into the stacked cache at
        ``(cache.layer, :, :, cache.index : cache.index+T)`` (one dynamic_update_slice per layer;
        under donation XLA reuses the buffer) and the stacked ``(k, v)`` come back.
        """
        cfg, dt = self.cfg, self.cfg.compute_dtype
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, positions, self.inv_freq), apply_rope(k, positions, self.inv_freq)
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
        out = attention(q, k, v, q_seg, kv_seg, causal=True, q_offset=offset, scale=cfg.head_dim**-0.5,
                        impl=cfg.attention_impl, shard=self.shard)  # [B,T,N,H]
        return self.o_proj(out), new_cache


class MLP(nnx.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, cfg: ModelConfig, shard: ShardingContext, *, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.cfg, self.shard = cfg, shard
        self.gate_proj = _projection(cfg, "gate_proj", (d,), (f,), ("embed",), ("mlp",), cfg.mlp_bias, rngs)
        self.up_proj = _projection(cfg, "up_proj", (d,), (f,), ("embed",), ("mlp",), cfg.mlp_bias, rngs)
        self.down_proj = _projection(cfg, "down_proj", (f,), (d,), ("mlp",), ("embed",), cfg.mlp_bias, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = jax.nn.silu(self.gate_proj(x)) * self.up_proj(x)
        hidden = self.shard.constrain(hidden, ("activation_batch", "activation_length", "activation_mlp"))
        return self.down_proj(hidden)


class DecoderLayer(nnx.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, cfg: ModelConfig, shard: ShardingContext, *, rngs: nnx.Rngs):
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.weight_dtype, "norm", rngs=rngs)
        self.attn = Attention(cfg, shard, rngs=rngs)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.weight_dtype, "norm", rngs=rngs)
        self.mlp = MLP(cfg, shard, rngs=rngs)
        self.shard = shard

    def __call__(self, x, positions, segments, cache: LayerCache | None = None):
        attn_out, new_cache = self.attn(self.input_norm(x), positions, segments, cache)
        x = x + attn_out
        x = x + self.mlp(self.post_attn_norm(x))
        x = self.shard.constrain(x, ("activation_batch", "activation_length", "activation_embed"))
        return x, new_cache
