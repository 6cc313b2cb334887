"""The one attention function, with a kernel per platform.

``attention(q, k, v, q_segment_ids, kv_segment_ids, ...)`` is what every model layer calls. The
mask is never passed as an array: it is described by segment ids and causality, and each kernel
builds only what it needs from them.

* **TPU**: Pallas splash attention (causal mask + ``SegmentIds``, as MaxText uses it), for
  self-attention (training, prefill) whose length is a multiple of 128. Mosaic kernels cannot be
  partitioned by XLA, so on a mesh the kernel runs per shard under ``shard_map``, laid out as the
  rules table lays out the activations (``sharding.LOGICAL_AXIS_RULES``).
* **GPU**: cuDNN flash attention through ``jax.nn.dot_product_attention(implementation="cudnn")``
  for causal self-attention in bf16/fp16 with one segment per row (the masks that public path
  supports); anything else falls back to XLA.
* **CPU** (and every fallback, e.g. decoding against a cache): XLA einsums whose mask is the
  broadcast of ``[B,T,1] == [B,1,S]`` and a ``[T,S]`` causal comparison, fused into the
  ``where`` on the scores: no ``[B,N,T,S]`` mask is ever built.

Mask semantics (all kernels): query ``t`` (cache slot ``q_offset + t``) may attend key ``s`` iff
``q_segment_ids[b, t] == kv_segment_ids[b, s]`` and, when ``causal``, ``s <= q_offset + t``, and,
with a sliding ``window`` W that is on, ``q_offset + t - s < W`` (the query sees itself and the W-1
slots before it: Hugging Face's ``sliding_window`` convention, Mistral and Gemma 3 alike).
``window_on`` may be a traced boolean (a scanned layer's own type): XLA folds it into the mask;
splash and cuDNN, whose masks are static, run under a ``lax.cond`` between the windowed and the
full kernel.
Padding is segment 0 and real tokens a positive id, so a padding query attends only to padding
(at least itself) and never produces a softmax over nothing.

Shape letters: B batch, T queries, S keys, N query heads, K key/value heads, H head dim.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from globmed_jax.sharding import ShardingContext, spec_for_shape

Impl = Literal["xla", "cudnn", "splash"]
IMPLEMENTATIONS = ("xla", "cudnn", "splash")
# Splash's smallest block (a TPU vreg lane count); sequence lengths must be multiples of it.
SPLASH_MIN_BLOCK = 128
SPLASH_MAX_BLOCK = 512

__all__ = ["attention", "choose_impl", "xla_attention", "splash_attention", "sharded_splash_attention",
           "cudnn_attention", "IMPLEMENTATIONS"]


def choose_impl(requested: str | None, *, platform: str, self_attention: bool, t: int, dtype,
                head_dim: int, one_segment: bool) -> Impl:
    """The kernel ``attention`` runs.

    ``requested`` None picks per platform; "xla" forces XLA; "cudnn"/"splash" are used where they
    apply and otherwise fall back to XLA (so one config runs prefill, training and decoding).
    """
    if requested not in (None, *IMPLEMENTATIONS):
        raise ValueError(f"attention implementation must be None or one of {IMPLEMENTATIONS}, got {requested!r}")
    if requested == "xla" or not self_attention:
        return "xla"
    if platform == "tpu" and requested in (None, "splash") and t % SPLASH_MIN_BLOCK == 0:
        return "splash"
    if platform == "gpu" and requested in (None, "cudnn") and one_segment and \
            jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim <= 128 and head_dim % 8 == 0:
        return "cudnn"
    return "xla"


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    *,
    causal: bool = True,
    q_offset: int | jax.Array = 0,
    scale: float | None = None,
    impl: str | None = None,
    platform: str | None = None,
    shard: ShardingContext | None = None,
    window: int | None = None,
    window_on: bool | jax.Array = True,
) -> jax.Array:
    """Grouped-query attention.

    Args:
      q: ``[B,T,N,H]`` queries.
      k, v: ``[B,K,S,H]`` keys and values (heads-major: the cache's layout, so the dots read it
        without a transpose).
      q_segment_ids, kv_segment_ids: ``[B,T]`` / ``[B,S]`` int32, or both None (one segment).
      causal: restrict key slot ``s`` to ``s <= q_offset + t``.
      q_offset: cache slot of query 0 (int or traced int32 scalar); 0 for self-attention.
      scale: logit scale, default ``H ** -0.5``.
      impl: None (per platform), "xla", "cudnn" or "splash"; see ``choose_impl``.
      platform: defaults to the platform of ``shard``'s mesh, else the default backend's.
      shard: the model's mesh and rules; a kernel XLA cannot partition (splash) runs per shard.
      window: sliding-window size W (static), or None for no window.
      window_on: whether the window applies (a bool, or a traced bool scalar under scan).

    Returns:
      ``[B,T,N,H]`` in ``q.dtype``.
    """
    b, t, n, h = q.shape
    s = k.shape[2]
    if (q_segment_ids is None) != (kv_segment_ids is None):
        raise ValueError("pass both q_segment_ids and kv_segment_ids, or neither")
    scale = h**-0.5 if scale is None else scale
    self_attention = t == s and isinstance(q_offset, int) and q_offset == 0
    mesh = shard.mesh if shard is not None else None
    if platform is None:
        platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
    kind = choose_impl(impl, platform=platform, self_attention=self_attention,
                       t=t, dtype=q.dtype, head_dim=h, one_segment=q_segment_ids is None)
    if window is not None and window < 1:
        raise ValueError(f"sliding window must be >= 1, got {window}")
    if window is not None and not causal:
        raise ValueError("a sliding window is only defined for causal attention")
    if kind == "xla":
        return xla_attention(q, k, v, q_segment_ids, kv_segment_ids, causal=causal, q_offset=q_offset,
                             scale=scale, window=window, window_on=window_on)

    def run(w: int | None) -> jax.Array:
        if kind == "splash" and mesh is not None and mesh.size > 1:
            return sharded_splash_attention(q, k, v, q_segment_ids, kv_segment_ids, shard=shard,
                                            causal=causal, scale=scale, window=w)
        if kind == "splash":
            return splash_attention(q, k, v, q_segment_ids, kv_segment_ids, causal=causal, scale=scale,
                                    window=w)
        return cudnn_attention(q, k, v, causal=causal, scale=scale, window=w)

    if window is None or window >= s:  # the window cuts nothing off at this length
        return run(None)
    if isinstance(window_on, (bool, int)):
        return run(window if window_on else None)
    return jax.lax.cond(window_on, lambda: run(window), lambda: run(None))


# ------------------------------------------------------------------------------------- XLA


def allowed_mask(q_segment_ids, kv_segment_ids, *, t: int, s: int, causal: bool,
                 q_offset: int | jax.Array = 0, window: int | None = None,
                 window_on: bool | jax.Array = True) -> jax.Array | None:
    """Boolean ``[B or 1, T, S]`` (True = may attend), or None when everything is allowed.

    At most ``B*T*S`` booleans, never per head; XLA fuses it into the ``where`` on the scores."""
    allowed = None
    if q_segment_ids is not None:
        allowed = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    if causal:
        q_slots = q_offset + jnp.arange(t, dtype=jnp.int32)
        kv_slots = jnp.arange(s, dtype=jnp.int32)[None, :]
        c = kv_slots <= q_slots[:, None]
        if window is not None and window_on is not False:
            inside = q_slots[:, None] - kv_slots < window
            c = c & (inside | jnp.logical_not(window_on))  # window_on may be traced
        c = c[None]
        allowed = c if allowed is None else allowed & c
    return allowed


def xla_attention(q, k, v, q_segment_ids=None, kv_segment_ids=None, *, causal: bool = True,
                  q_offset: int | jax.Array = 0, scale: float | None = None, window: int | None = None,
                  window_on: bool | jax.Array = True) -> jax.Array:
    """Reference kernel: q ``[B,T,N,H]``, k/v ``[B,K,S,H]`` -> ``[B,T,N,H]``.

    The same numerics as ``jax.nn.dot_product_attention``'s XLA path: fp32 scores and softmax,
    probabilities cast to the value dtype for the second dot."""
    b, t, n, h = q.shape
    kh, s = k.shape[1], k.shape[2]
    scale = h**-0.5 if scale is None else scale
    qg = q.reshape(b, t, kh, n // kh, h)
    scores = jnp.einsum("btkgh,bksh->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    allowed = allowed_mask(q_segment_ids, kv_segment_ids, t=t, s=s, causal=causal, q_offset=q_offset,
                           window=window, window_on=window_on)
    if allowed is not None:
        big_neg = jnp.finfo(jnp.float32).min * 0.7  # as jax.nn: finite, so exp(.) is exactly 0
        scores = jnp.where(allowed[:, None, None], scores, big_neg)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bksh->btkgh", probs, v)
    return out.reshape(b, t, n, h).astype(q.dtype)


# ----------------------------------------------------------------------------------- splash


def _splash_block(length: int) -> int:
    for block in (SPLASH_MAX_BLOCK, 256, SPLASH_MIN_BLOCK):
        if length % block == 0:
            return block
    raise ValueError(f"splash attention needs a length divisible by {SPLASH_MIN_BLOCK}, got {length}")


@functools.lru_cache(maxsize=64)
def _splash_kernel(n: int, t: int, causal: bool, interpret: bool, window: int | None = None):
    """A splash MHA kernel for ``[N,T,H]`` queries (GQA: ``[K,T,H]`` keys); cached because
    building the mask info is host work proportional to ``T^2 / block^2``. ``window`` W: causal
    local mask, query ``i`` sees keys ``i-W+1 .. i``."""
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    if window is not None:
        base = sa.LocalMask((t, t), window_size=(window - 1, 0), offset=0)
    else:
        base = sa.CausalMask((t, t)) if causal else sa.FullMask((t, t))
    block = _splash_block(t)
    sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          block_q_dq=block, block_kv_dq=block)
    return sa.make_splash_mha(sa.MultiHeadMask([base] * n), head_shards=1, q_seq_shards=1,
                              block_sizes=sizes, interpret=interpret)


def splash_attention(q, k, v, q_segment_ids=None, kv_segment_ids=None, *, causal: bool = True,
                     scale: float | None = None, interpret: bool = False,
                     window: int | None = None) -> jax.Array:
    """Pallas TPU splash attention (self-attention, ``T == S``, ``T % 128 == 0``).

    q ``[B,T,N,H]``, k/v ``[B,K,T,H]`` -> ``[B,T,N,H]``. ``interpret=True`` runs the kernel in
    the Pallas interpreter (any backend; what the CPU tests use)."""
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    b, t, n, h = q.shape
    scale = h**-0.5 if scale is None else scale
    if window is not None and not causal:
        raise ValueError("a sliding window is only defined for causal attention")
    kernel = _splash_kernel(n, t, causal, interpret, window)
    qh = (q * jnp.asarray(scale, q.dtype)).transpose(0, 2, 1, 3)  # splash does not scale
    if q_segment_ids is None:
        out = jax.vmap(kernel)(qh, k, v)
    else:
        seg = sa.SegmentIds(q=q_segment_ids.astype(jnp.int32), kv=kv_segment_ids.astype(jnp.int32))
        out = jax.vmap(kernel)(qh, k, v, segment_ids=seg)
    return out.transpose(0, 2, 1, 3).astype(q.dtype)


def splash_specs(q_shape, k_shape, shard: ShardingContext) -> tuple[PartitionSpec, PartitionSpec, PartitionSpec]:
    """The ``shard_map`` specs of splash's q ``[B,T,N,H]``, k/v ``[B,K,T,H]`` and segment ids
    ``[B,T]``: batch and heads as the rules table shards activations, the sequence whole (the
    kernel sees every key of its rows). Query and key heads are split together or not at all, so
    each shard's query heads find their key/value group in the same shard."""
    q_spec = spec_for_shape(q_shape, ("activation_batch", None, "activation_heads", None), shard.mesh, shard.rules)
    k_spec = spec_for_shape(k_shape, ("activation_batch", "activation_kv_heads", None, None), shard.mesh, shard.rules)
    batch, q_heads, kv_heads = q_spec[0], q_spec[2], k_spec[1]
    if q_heads != kv_heads:
        q_heads = kv_heads = None
    return (PartitionSpec(batch, None, q_heads, None), PartitionSpec(batch, kv_heads, None, None),
            PartitionSpec(batch, None))


def sharded_splash_attention(q, k, v, q_segment_ids=None, kv_segment_ids=None, *, shard: ShardingContext,
                             causal: bool = True, scale: float | None = None, window: int | None = None,
                             interpret: bool = False) -> jax.Array:
    """``splash_attention`` per shard of ``shard.mesh`` (same shapes and result)."""
    q_spec, kv_spec, seg_spec = splash_specs(q.shape, k.shape, shard)
    kernel = functools.partial(splash_attention, causal=causal, scale=scale, window=window, interpret=interpret)
    if q_segment_ids is None:
        return jax.shard_map(kernel, mesh=shard.mesh, in_specs=(q_spec, kv_spec, kv_spec), out_specs=q_spec,
                             check_vma=False)(q, k, v)
    return jax.shard_map(kernel, mesh=shard.mesh, in_specs=(q_spec, kv_spec, kv_spec, seg_spec, seg_spec),
                         out_specs=q_spec, check_vma=False)(q, k, v, q_segment_ids, kv_segment_ids)


# ------------------------------------------------------------------------------------ cuDNN


def cudnn_attention(q, k, v, *, causal: bool = True, scale: float | None = None,
                    window: int | None = None) -> jax.Array:
    """cuDNN flash attention, one segment per row: q ``[B,T,N,H]``, k/v ``[B,K,S,H]``; ``window``
    W keeps keys ``i-W+1 .. i`` (jax's ``local_window_size=(W-1, 0)``)."""
    h = q.shape[-1]
    scale = h**-0.5 if scale is None else scale
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # cuDNN wants BSKH (or BKSH per head)
    local = None if window is None else (window - 1, 0)
    return jax.nn.dot_product_attention(q, kt, vt, scale=scale, is_causal=causal, local_window_size=local,
                                        implementation="cudnn")

