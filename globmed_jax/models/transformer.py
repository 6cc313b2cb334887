"""Decoder-only causal LM (Qwen3 / Llama 3.x / Qwen2 / Mistral / Gemma 3 text) as one Flax NNX module.

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
from globmed_jax.models.layers import DecoderLayer, LayerCache, make_norm
from globmed_jax.models.projection import param
from globmed_jax.sharding import ShardingContext


@flax.struct.dataclass
class KVCache:
    """Preallocated key/value cache for all layers.

    k, v: ``[L, B, K, S, H]`` (heads before slots: the attention dots read a layer's slice as
    it lies, without a transpose); valid: ``[B, S]`` True where a slot holds a real (non-pad)
    token; index: int32 scalar, the next slot to write (all rows advance together, so batches
    are left-padded). ``forward`` writes new tokens in place (one dynamic_update_slice per layer
    into these stacked arrays), so a donated cache is never copied.
    """

    k: jax.Array
    v: jax.Array
    valid: jax.Array
    index: jax.Array

    @property
    def max_length(self) -> int:
        return self.k.shape[3]


@flax.struct.dataclass
class ModelOutput:
    """What ``CausalLM.forward`` returns (a pytree, so jitted functions can return it)."""

    logits: jax.Array | None  # [B, T, V] float32
    hidden: jax.Array  # [B, T, D] after the final norm
    cache: KVCache | None = None
    hidden_states: jax.Array | None = None  # [L+1, B, T, D]: embeddings then each layer's output


CACHE_AXES = ("cache_layers", "cache_batch", "cache_kv_heads", "cache_length", "cache_head_dim")

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
        self.final_norm = make_norm(cfg, cfg.hidden_size, "norm", rngs)
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
        shape = (cfg.num_layers, batch_size, cfg.num_kv_heads, max_length, cfg.head_dim)
        axes = CACHE_AXES
        zeros = jnp.zeros(shape, dtype)
        if self.shard.mesh is not None:
            zeros = jax.device_put(zeros, self.shard.sharding(shape, axes))
        return KVCache(k=zeros, v=zeros, valid=jnp.zeros((batch_size, max_length), bool),
                       index=jnp.zeros((), jnp.int32))

    def logits_from_hidden(self, hidden: jax.Array) -> jax.Array:
        """Final projection ``[..., D] -> [..., V]`` accumulated in fp32, soft-capped in fp32
        (``cap * tanh(logits / cap)``) when ``cfg.final_logit_softcap`` is set."""
        dt = self.cfg.compute_dtype
        if self.cfg.tie_word_embeddings:
            logits = jnp.einsum("...d,vd->...v", hidden.astype(dt), self.embed[...].astype(dt),
                                preferred_element_type=jnp.float32)
        else:
            logits = jnp.einsum("...d,dv->...v", hidden.astype(dt), self.lm_head[...].astype(dt),
                                preferred_element_type=jnp.float32)
        cap = self.cfg.final_logit_softcap
        return logits if cap is None else cap * jnp.tanh(logits / cap)

    def embed_tokens(self, tokens: jax.Array) -> jax.Array:
        """``[B,T]`` int32 -> ``[B,T,D]`` in the compute dtype; Gemma multiplies by sqrt(D) in
        the compute dtype (as HF does in the weights' dtype: in bf16 sqrt(3072) is 55.5)."""
        dt = self.cfg.compute_dtype
        x = jnp.take(self.embed[...], tokens, axis=0).astype(dt)
        if self.cfg.embed_scale:
            x = x * jnp.asarray(self.cfg.hidden_size**0.5, dt)
        return x

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
        fresh_cache: bool = False,
        scan_layers: bool | None = None,
    ) -> ModelOutput:
        """Runs the model.

        Args:
          tokens: ``[B,T]`` int32.
          positions: ``[B,T]`` RoPE positions; derived from ``segment_ids`` (packing),
            ``attention_mask`` (padding) or the cache when omitted.
          segment_ids: ``[B,T]`` packed-sequence ids; tokens attend only within their segment.
          attention_mask: ``[B,T]`` 1 for real tokens, 0 for padding.
          cache: a ``KVCache``; the new tokens are written in place at ``cache.index`` and attend
            to every valid slot before them.
          fresh_cache: the caller guarantees ``cache`` holds nothing yet (``index == 0``, as
            ``init_cache`` makes it): attention then runs over the new tokens only (the
            self-attention kernels, not the whole cache), which is what a prefill needs.
          scan_layers: overrides ``cfg.scan_layers`` for this call (inference picks what measures
            best, see docs/performance.md).
        """
        cfg = self.cfg
        b, t = tokens.shape
        segments, positions, new_valid = self._segments_and_positions(
            b, t, positions, segment_ids, attention_mask, cache)

        x = self.embed_tokens(tokens)
        x = self.shard.constrain(x, ("activation_batch", "activation_length", "activation_embed"))
        embeds = x
        scan = cfg.scan_layers if scan_layers is None else scan_layers
        x, layer_caches, per_layer = self._run_layers(x, positions, segments, cache, fresh_cache, scan,
                                                      return_hidden_states)
        hidden = self.final_norm(x)

        new_cache = None
        if cache is not None:
            new_cache = KVCache(k=layer_caches[0], v=layer_caches[1], valid=new_valid,
                                index=cache.index + t)
        hidden_states = None
        if return_hidden_states:  # [0] is what enters layer 0 (scaled embeddings for Gemma)
            hidden_states = jnp.concatenate([embeds[None], per_layer], axis=0)
        logits = None
        if compute_logits:
            logits = self.logits_from_hidden(hidden)
            logits = self.shard.constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))
        return ModelOutput(logits=logits, hidden=hidden, cache=new_cache, hidden_states=hidden_states)

    # ---------------------------------------------------------------------------- internals

    def _segments_and_positions(self, b, t, positions, segment_ids, attention_mask, cache):
        """Returns (q ``[B,T]``, kv ``[B,S]``) segment ids (``models.attention`` semantics: 0 =
        padding) or None, positions ``[B,T]`` and the cache's new ``valid [B,S]``. No mask array
        is built here: each attention kernel derives what it needs from the segment ids."""
        mask = None if attention_mask is None else attention_mask.astype(bool)
        if cache is None:
            if segment_ids is not None:
                seg = segment_ids.astype(jnp.int32) + 1  # so padding (0) is a segment of its own
                seg = seg if mask is None else jnp.where(mask, seg, 0)
                if positions is None:
                    positions = segment_positions(segment_ids)
            else:
                seg = None if mask is None else mask.astype(jnp.int32)
            if positions is None:
                positions = (jnp.broadcast_to(jnp.arange(t), (b, t)) if mask is None
                             else padding_positions(mask))
            return (None if seg is None else (seg, seg)), positions, None
        if segment_ids is not None:
            raise ValueError("segment_ids (packing) cannot be combined with a KV cache")
        if mask is None:
            mask = jnp.ones((b, t), bool)
        s = cache.max_length
        slots = jnp.arange(s)[None, :]
        written = (slots >= cache.index) & (slots < cache.index + t)  # [1,S]
        new_tokens_valid = jax.lax.dynamic_update_slice(jnp.zeros((b, s), bool), mask, (0, cache.index))
        valid = jnp.where(written, new_tokens_valid, cache.valid)
        if positions is None:
            seen = jnp.sum(cache.valid.astype(jnp.int32), axis=1, keepdims=True)
            positions = jnp.maximum(seen + jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)
        return (mask.astype(jnp.int32), valid.astype(jnp.int32)), positions, valid

    def _run_layers(self, x, positions, segments, cache, fresh, scan, keep_hidden):
        graphdef, layer_state = nnx.split(self.layers)
        use_cache = cache is not None

        def one_layer(x, state, k, v, i):
            layer = nnx.merge(graphdef, state)
            lc = LayerCache(k, v, i, cache.index, fresh) if use_cache else None
            x, new_kv = layer(x, positions, segments, lc, i)
            return x, new_kv

        if self.cfg.remat_policy != "none" and not use_cache:  # remat only matters under grad
            one_layer = jax.checkpoint(one_layer, policy=_REMAT_POLICIES[self.cfg.remat_policy],
                                       prevent_cse=not scan)

        # The stacked caches are CARRIED through the layers (not scanned over and re-stacked):
        # each layer updates its slots in place and nothing copies the whole cache.
        ks = cache.k if use_cache else None
        vs = cache.v if use_cache else None
        if scan:
            def body(carry, xs):
                x, ks, vs = carry
                state, i = xs
                x, new_kv = one_layer(x, state, ks, vs, i)
                if use_cache:
                    ks, vs = new_kv
                return (x, ks, vs), (x if keep_hidden else None)

            idx = jnp.arange(self.cfg.num_layers, dtype=jnp.int32)
            (x, ks, vs), per_layer = jax.lax.scan(body, (x, ks, vs), (layer_state, idx))
        else:
            outs = []
            for i in range(self.cfg.num_layers):
                state = jax.tree.map(lambda a: a[i], layer_state)
                x, new_kv = one_layer(x, state, ks, vs, i)
                if use_cache:
                    ks, vs = new_kv
                outs.append(x)
            per_layer = jnp.stack(outs) if keep_hidden and outs else None
        return x, ((ks, vs) if use_cache else None), per_layer
