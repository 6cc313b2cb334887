"""Decoder-only causal LM (Qwen3 / Llama 3.x / Qwen2) as one Flax NNX module.

Layer parameters are stored stacked along a leading ``layers`` axis (``nnx.vmap`` at
construction). ``cfg.scan_layers`` chooses between ``lax.scan`` over that axis (fast compile) and
an unrolled Python loop (lets XLA fuse across layers); the checkpoint layout is the same.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from globmed_jax.models.config import ModelConfig
from globmed_jax.models.layers import RMSNorm, DecoderLayer
from globmed_jax.models.projection import param
from globmed_jax.sharding import ShardingContext


@flax.struct.dataclass
class KVCache:
    """Preallocated key/value cache for all layers.

    k, v: ``[L, B, S, K, H]``; valid: ``[B, S]`` True where a slot holds a real (non-pad) token;
    index: int32 scalar, the next slot to write (all rows advance together, so batches are
    left-padded).
    """

    k: jax.Array
    v: jax.Array
    valid: jax.Array
    index: jax.Array

    @property
    def max_length(self) -> int:
        return self.k.shape[2]


@flax.struct.dataclass
class ModelOutput:
    """What ``CausalLM.forward`` returns (a pytree, so jitted functions can return it)."""

    logits: jax.Array | None  # [B, T, V] float32
    hidden: jax.Array  # [B, T, D] after the final norm
    cache: KVCache | None = None
    hidden_states: jax.Array | None = None  # [L+1, B, T, D]: embeddings then each layer's output


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """Positions that restart at 0 at every segment boundary. ``[B,T] -> [B,T]``."""
    idx = jnp.arange(segment_ids.shape[1])[None, :]
    is_start = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
    )
    start = jax.lax.cummax(jnp.where(is_start, idx, 0), axis=1)
    return idx - start


def padding_positions(attention_mask: jax.Array) -> jax.Array:
    """Positions for left- or right-padded rows: count of real tokens before, ``[B,T]``."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1, 0)


class CausalLM(nnx.Module):
    """``model(tokens [B,T] int32) -> logits [B,T,V] float32``; ``model.forward`` for more."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, shard: ShardingContext | None = None):
        self.cfg = cfg
        self.shard = shard or ShardingContext()
        pd = cfg.weight_dtype
        self.embed = param(rngs, jax.nn.initializers.normal(0.02), (cfg.vocab_size, cfg.hidden_size),
                            pd, ("vocab", "embed"))

        @nnx.split_rngs(splits=cfg.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0,
                  transform_metadata={nnx.PARTITION_NAME: None, "logical_axes": "layers"})
        def make_layers(layer_rngs):
            return DecoderLayer(cfg, self.shard, rngs=layer_rngs)

        self.layers = make_layers(rngs)
        self.final_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pd, "norm", rngs=rngs)
        if not cfg.tie_word_embeddings:
            self.lm_head = param(rngs, jax.nn.initializers.normal(cfg.hidden_size**-0.5),
                                  (cfg.hidden_size, cfg.vocab_size), pd, ("embed", "vocab"))

    # ---------------------------------------------------------------------------- API

    def __call__(self, tokens: jax.Array, **kwargs: Any) -> jax.Array:
        return self.forward(tokens, **kwargs).logits

    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> KVCache:
        """An empty cache; ``dtype`` defaults to the compute dtype."""
        cfg = self.cfg
        dtype = cfg.compute_dtype if dtype is None else dtype
        shape = (cfg.num_layers, batch_size, max_length, cfg.num_kv_heads, cfg.head_dim)
        axes = ("cache_layers", "cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim")
        zeros = jnp.zeros(shape, dtype)
        if self.shard.mesh is not None:
            zeros = jax.device_put(zeros, self.shard.sharding(shape, axes))
        return KVCache(k=zeros, v=zeros, valid=jnp.zeros((batch_size, max_length), bool),
                       index=jnp.zeros((), jnp.int32))

    def logits_from_hidden(self, hidden: jax.Array) -> jax.Array:
        """Final projection ``[..., D] -> [..., V]`` accumulated in fp32."""
        dt = self.cfg.compute_dtype
        if self.cfg.tie_word_embeddings:
            return jnp.einsum("...d,vd->...v", hidden.astype(dt), self.embed[...].astype(dt),
                              preferred_element_type=jnp.float32)
        return jnp.einsum("...d,dv->...v", hidden.astype(dt), self.lm_head[...].astype(dt),
                          preferred_element_type=jnp.float32)

    def forward(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        cache: KVCache | None = None,
        return_hidden_states: bool = False,
        compute_logits: bool = True,
    ) -> ModelOutput:
        """Runs the model.

        Args:
          tokens: ``[B,T]`` int32.
          positions: ``[B,T]`` RoPE positions; derived from ``segment_ids`` (packing),
            ``attention_mask`` (padding) or the cache when omitted.
          segment_ids: ``[B,T]`` packed-sequence ids; tokens attend only within their segment.
          attention_mask: ``[B,T]`` 1 for real tokens, 0 for padding.
          cache: a ``KVCache``; the new tokens are appended at ``cache.index``.
        """
        cfg = self.cfg
        b, t = tokens.shape
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), bool)
        attention_mask = attention_mask.astype(bool)
        mask, positions, new_valid = self._mask_and_positions(
            b, t, positions, segment_ids, attention_mask, cache)

        x = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.compute_dtype)
        x = self.shard.constrain(x, ("activation_batch", "activation_length", "activation_embed"))
        x, layer_caches, per_layer = self._run_layers(x, positions, mask, cache, return_hidden_states)
        hidden = self.final_norm(x)

        new_cache = None
        if cache is not None:
            new_cache = KVCache(k=layer_caches[0], v=layer_caches[1], valid=new_valid,
                                index=cache.index + t)
        hidden_states = None
        if return_hidden_states:
            embeds = jnp.take(self.embed[...], tokens, axis=0).astype(cfg.compute_dtype)
            hidden_states = jnp.concatenate([embeds[None], per_layer], axis=0)
        logits = None
        if compute_logits:
            logits = self.logits_from_hidden(hidden)
            logits = self.shard.constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))
        return ModelOutput(logits=logits, hidden=hidden, cache=new_cache, hidden_states=hidden_states)

    # ---------------------------------------------------------------------------- internals

    def _mask_and_positions(self, b, t, positions, segment_ids, attention_mask, cache):
        """Returns mask ``[B,1,T,S]``, positions ``[B,T]`` and the cache's new ``valid [B,S]``."""
        if cache is None:
            q_idx = jnp.arange(t)[:, None]
            k_idx = jnp.arange(t)[None, :]
            mask = (k_idx <= q_idx)[None] & attention_mask[:, None, :]
            if segment_ids is not None:
                mask &= segment_ids[:, :, None] == segment_ids[:, None, :]
                if positions is None:
                    positions = segment_positions(segment_ids)
            if positions is None:
                positions = padding_positions(attention_mask)
            # Every query sees at least itself, so fully padded rows never softmax over nothing.
            mask |= (k_idx == q_idx)[None]
            return mask[:, None], positions, None
        if segment_ids is not None:
            raise ValueError("segment_ids (packing) cannot be combined with a KV cache")
        s = cache.max_length
        slots = jnp.arange(s)[None, :]
        q_slots = cache.index + jnp.arange(t)  # [T]
        written = (slots >= cache.index) & (slots < cache.index + t)  # [1,S]
        new_tokens_valid = jax.lax.dynamic_update_slice(
            jnp.zeros((b, s), bool), attention_mask, (0, cache.index))
        valid = jnp.where(written, new_tokens_valid, cache.valid)
        mask = valid[:, None, :] & (slots[None] <= q_slots[None, :, None])  # [B,T,S]
        mask |= slots[None] == q_slots[None, :, None]
        if positions is None:
            seen = jnp.sum(cache.valid.astype(jnp.int32), axis=1, keepdims=True)
            positions = seen + jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1
            positions = jnp.maximum(positions, 0)
        return mask[:, None], positions, valid

    def _run_layers(self, x, positions, mask, cache, keep_hidden):
        graphdef, layer_state = nnx.split(self.layers)
        use_cache = cache is not None
        cache_index = cache.index if use_cache else None

        def one_layer(x, state, k, v):
            layer = nnx.merge(graphdef, state)
            x, new_kv = layer(x, positions, mask, (k, v) if use_cache else None, cache_index)
            return x, new_kv

        if self.cfg.remat_policy != "none":
            one_layer = jax.checkpoint(one_layer, policy=_REMAT_POLICIES[self.cfg.remat_policy],
                                       prevent_cse=not self.cfg.scan_layers)

        def body(x, xs):
            state, k, v = xs
            x, new_kv = one_layer(x, state, k, v)
            return x, (new_kv, x if keep_hidden else None)

        ks = cache.k if use_cache else None
        vs = cache.v if use_cache else None
        if self.cfg.scan_layers:
            x, (new_kv, per_layer) = jax.lax.scan(body, x, (layer_state, ks, vs))
        else:
            outs = []
            for i in range(self.cfg.num_layers):
                xs = jax.tree.map(lambda a: a[i], (layer_state, ks, vs))
                x, out = body(x, xs)
                outs.append(out)
            new_kv, per_layer = jax.tree.map(lambda *a: jnp.stack(a), *outs) if outs else (None, None)
        return x, new_kv, per_layer
