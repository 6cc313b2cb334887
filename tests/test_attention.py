"""The attention function: every kernel against a dense-mask reference (CPU; splash interpreted)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from globmed_jax.models import attention as attn

B, N, K, H = 2, 4, 2, 64


def _qkv(t: int, s: int | None = None, seed: int = 0, dtype=jnp.float32):
    s = t if s is None else s
    kq, kk, kv = jax.random.split(jax.random.PRNGKey(seed), 3)
    q = jax.random.normal(kq, (B, t, N, H), dtype)
    k = jax.random.normal(kk, (B, K, s, H), dtype)
    v = jax.random.normal(kv, (B, K, s, H), dtype)
    return q, k, v


def _dense_reference(q, k, v, allowed):
    """Plain GQA softmax attention with an explicit ``[B,T,S]`` mask (heads repeated)."""
    g = q.shape[2] // k.shape[1]
    kr, vr = jnp.repeat(k, g, axis=1), jnp.repeat(v, g, axis=1)  # [B,N,S,H]
    scores = jnp.einsum("btnh,bnsh->bnts", q, kr) * q.shape[-1] ** -0.5
    scores = jnp.where(allowed[:, None], scores, -jnp.inf)
    return jnp.einsum("bnts,bnsh->btnh", jax.nn.softmax(scores, axis=-1), vr)


def _packed_and_padded(t: int) -> np.ndarray:
    """Row 0: three packed segments then padding (0); row 1: left padding then one sequence."""
    seg = np.zeros((B, t), np.int32)
    a, b = t // 3, (2 * t) // 3
    seg[0, :a], seg[0, a:b], seg[0, b:t - 5] = 1, 2, 3
    seg[1, t // 4:] = 1
    return seg


def _allowed(seg_q, seg_kv, t, s, offset=0):
    causal = np.arange(s)[None, :] <= (offset + np.arange(t))[:, None]
    return (seg_q[:, :, None] == seg_kv[:, None, :]) & causal[None]


@pytest.mark.parametrize("with_segments", [False, True])
def test_xla_matches_dense_reference(with_segments):
    t = 24
    q, k, v = _qkv(t)
    seg = _packed_and_padded(t) if with_segments else np.ones((B, t), np.int32)
    args = (jnp.asarray(seg), jnp.asarray(seg)) if with_segments else (None, None)
    out = attn.attention(q, k, v, *args, causal=True, impl="xla")
    ref = _dense_reference(q, k, v, jnp.asarray(_allowed(seg, seg, t, t)))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_packed_segments_never_attend_across():
    t = 24
    q, k, v = _qkv(t)
    seg = jnp.asarray(_packed_and_padded(t))
    out = attn.xla_attention(q, k, v, seg, seg)
    # Change keys/values of every token outside segment 2 of row 0: segment 2's outputs must not move.
    outside = (seg != 2)[:, None, :, None]
    out2 = attn.xla_attention(q, jnp.where(outside, k * 3 + 1, k), jnp.where(outside, -v, v), seg, seg)
    in_seg2 = np.asarray(seg[0] == 2)
    np.testing.assert_allclose(out2[0, in_seg2], out[0, in_seg2], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out2[0, ~in_seg2], out[0, ~in_seg2])  # the perturbation did something


def test_xla_with_cache_offset():
    """Queries at cache slots ``offset..offset+T`` over a longer cache, left padding in it."""
    t, s, offset = 3, 16, 7
    q, k, v = _qkv(t, s)
    kv_seg = np.ones((B, s), np.int32)
    kv_seg[1, :4] = 0  # row 1 was left-padded by 4
    q_seg = np.ones((B, t), np.int32)
    out = attn.attention(q, k, v, jnp.asarray(q_seg), jnp.asarray(kv_seg), q_offset=jnp.int32(offset))
    ref = _dense_reference(q, k, v, jnp.asarray(_allowed(q_seg, kv_seg, t, s, offset)))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [256, 384])  # one 256 block; three 128 blocks
def test_splash_interpret_matches_xla(t):
    q, k, v = _qkv(t, seed=3)
    seg = jnp.asarray(_packed_and_padded(t))
    out = attn.splash_attention(q, k, v, seg, seg, interpret=True)
    ref = attn.xla_attention(q, k, v, seg, seg)
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3)


def test_splash_interpret_gradients_match_xla():
    t = 256
    q, k, v = _qkv(t, seed=4)
    seg = jnp.asarray(_packed_and_padded(t))
    w = jax.random.normal(jax.random.PRNGKey(9), (B, t, N, H))

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v) * w)

    splash = jax.grad(loss(lambda q, k, v: attn.splash_attention(q, k, v, seg, seg, interpret=True)),
                      argnums=(0, 1, 2))(q, k, v)
    xla = jax.grad(loss(lambda q, k, v: attn.xla_attention(q, k, v, seg, seg)), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(splash, xla):
        np.testing.assert_allclose(a, b, rtol=5e-3, atol=5e-3)


def test_splash_without_segments_is_plain_causal():
    t = 256
    q, k, v = _qkv(t, seed=5)
    out = attn.splash_attention(q, k, v, interpret=True)
    np.testing.assert_allclose(out, attn.xla_attention(q, k, v), rtol=2e-3, atol=2e-3)


def _mesh_context(fsdp: int, tensor: int):
    from globmed_jax.sharding import ShardingContext, make_mesh

    return ShardingContext(make_mesh(1, fsdp, tensor, devices=jax.devices()[:fsdp * tensor]))


@pytest.mark.parametrize("packed,t", [(True, 256), (False, 128)])
def test_sharded_splash_matches_xla_on_a_mesh(packed, t):
    """Mosaic kernels cannot be partitioned by XLA (a v5p-8 compile failed without this): on a
    2 x 2 (fsdp x tensor) mesh the kernel runs per shard and equals the unsharded reference."""
    from jax.sharding import NamedSharding

    shard = _mesh_context(2, 2)
    q, k, v = _qkv(t, seed=6)
    seg = jnp.asarray(_packed_and_padded(t)) if packed else None
    q_spec, kv_spec, seg_spec = attn.splash_specs(q.shape, k.shape, shard)
    assert "fsdp" in q_spec[0] and q_spec[2] == kv_spec[1] == "tensor"  # batch and heads really split
    put = lambda x, spec: jax.device_put(x, NamedSharding(shard.mesh, spec))  # noqa: E731
    args = (put(q, q_spec), put(k, kv_spec), put(v, kv_spec))
    segs = (put(seg, seg_spec), put(seg, seg_spec)) if packed else (None, None)
    out = jax.jit(lambda q, k, v, *s: attn.sharded_splash_attention(q, k, v, *s, shard=shard, interpret=True))(
        *args, *segs)
    np.testing.assert_allclose(out, attn.xla_attention(q, k, v, seg, seg), rtol=2e-3, atol=2e-3)


def test_splash_specs_split_query_and_key_heads_together():
    # 4 query heads split 4 ways but 2 key/value heads cannot be: neither is split, so every
    # shard's query heads still find their key/value group.
    q_spec, kv_spec, _ = attn.splash_specs((B, 256, N, H), (B, K, 256, H), _mesh_context(1, 4))
    assert q_spec[2] is None and kv_spec[1] is None
    assert q_spec[1] is None and kv_spec[2] is None  # the sequence is never split


def test_choose_impl_routes_by_platform():
    common = dict(self_attention=True, dtype=jnp.bfloat16, head_dim=128, one_segment=True)
    assert attn.choose_impl(None, platform="tpu", t=2048, **common) == "splash"
    assert attn.choose_impl(None, platform="tpu", t=100, **common) == "xla"  # not a block multiple
    assert attn.choose_impl(None, platform="tpu", t=2048, **{**common, "self_attention": False}) == "xla"
    assert attn.choose_impl(None, platform="gpu", t=2048, **common) == "cudnn"
    assert attn.choose_impl(None, platform="gpu", t=2048, **{**common, "one_segment": False}) == "xla"
    assert attn.choose_impl(None, platform="gpu", t=2048, **{**common, "dtype": jnp.float32}) == "xla"
    assert attn.choose_impl(None, platform="cpu", t=2048, **common) == "xla"
    assert attn.choose_impl("xla", platform="tpu", t=2048, **common) == "xla"
    with pytest.raises(ValueError):
        attn.choose_impl("flash", platform="cpu", t=8, **common)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs an NVIDIA GPU")
def test_cudnn_matches_xla():  # pragma: no cover - runs only where a GPU is present
    q, k, v = _qkv(256, dtype=jnp.bfloat16)
    out = attn.cudnn_attention(q, k, v).astype(jnp.float32)
    ref = attn.xla_attention(q, k, v).astype(jnp.float32)
    np.testing.assert_allclose(out, ref, rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------------- sliding windows


def _windowed(allowed: np.ndarray, window: int, t: int, s: int, offset: int = 0) -> np.ndarray:
    """HF's sliding window on top of a mask: key slot > query slot - window."""
    q_slots = offset + np.arange(t)
    return allowed & (np.arange(s)[None, :] > q_slots[:, None] - window)[None]


@pytest.mark.parametrize("with_segments", [False, True])
def test_xla_sliding_window_matches_dense_reference(with_segments):
    t, window = 24, 5
    q, k, v = _qkv(t, seed=6)
    seg = _packed_and_padded(t) if with_segments else np.ones((B, t), np.int32)
    args = (jnp.asarray(seg), jnp.asarray(seg)) if with_segments else (None, None)
    ref = _dense_reference(q, k, v, jnp.asarray(_windowed(_allowed(seg, seg, t, t), window, t, t)))
    out = attn.attention(q, k, v, *args, impl="xla", window=window)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # window_on as data (a scanned layer's kind): on gives the window, off plain causal attention.
    traced = jax.jit(lambda on: attn.attention(q, k, v, *args, impl="xla", window=window, window_on=on))
    np.testing.assert_allclose(traced(jnp.bool_(True)), ref, rtol=1e-5, atol=1e-5)
    plain = attn.attention(q, k, v, *args, impl="xla")
    np.testing.assert_allclose(traced(jnp.bool_(False)), plain, rtol=1e-5, atol=1e-5)
    assert not np.allclose(plain, ref, atol=1e-3)  # the window cut something off


def test_xla_sliding_window_with_cache_offset():
    """Decode: queries at cache slots offset..offset+T see only the last W slots up to themselves."""
    t, s, offset, window = 3, 16, 9, 4
    q, k, v = _qkv(t, s, seed=7)
    kv_seg = np.ones((B, s), np.int32)
    kv_seg[1, :4] = 0
    q_seg = np.ones((B, t), np.int32)
    out = attn.attention(q, k, v, jnp.asarray(q_seg), jnp.asarray(kv_seg), q_offset=jnp.int32(offset),
                         window=window)
    allowed = _windowed(_allowed(q_seg, kv_seg, t, s, offset), window, t, s, offset)
    np.testing.assert_allclose(out, _dense_reference(q, k, v, jnp.asarray(allowed)), rtol=1e-5, atol=1e-5)


def test_splash_interpret_sliding_window_matches_xla(monkeypatch):
    """The TPU kernel with a local mask, called directly and through ``attention``'s dispatch
    with the layer's kind traced (``lax.cond`` between the windowed and the full kernel)."""
    t, window = 128, 50
    q, k, v = _qkv(t, seed=8)
    seg = jnp.asarray(_packed_and_padded(t))
    ref = attn.xla_attention(q, k, v, seg, seg, window=window)
    out = attn.splash_attention(q, k, v, seg, seg, interpret=True, window=window)
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3)

    monkeypatch.setattr(attn, "splash_attention", functools.partial(attn.splash_attention, interpret=True))
    run = jax.jit(lambda on: attn.attention(q, k, v, seg, seg, impl="splash", platform="tpu", window=window,
                                            window_on=on))
    np.testing.assert_allclose(run(jnp.bool_(True)), ref, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(run(jnp.bool_(False)), attn.xla_attention(q, k, v, seg, seg), rtol=2e-3, atol=2e-3)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs an NVIDIA GPU")
def test_cudnn_sliding_window_matches_xla():  # pragma: no cover - runs only where a GPU is present
    q, k, v = _qkv(256, dtype=jnp.bfloat16)
    out = attn.cudnn_attention(q, k, v, window=64).astype(jnp.float32)
    ref = attn.xla_attention(q, k, v, window=64).astype(jnp.float32)
    np.testing.assert_allclose(out, ref, rtol=2e-2, atol=2e-2)
