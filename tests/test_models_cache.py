"""KV cache: prefill + one-token steps give the logits of a full forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from globmed_jax.models import from_pretrained
from hf_utils import build_hf_model, relative_max_error

TOL = 1e-4


@pytest.fixture(scope="module", params=["qwen3_untied_gqa2", "llama31_rope_scaling"])
def model(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    build_hf_model(request.param).save_pretrained(directory)
    model, _ = from_pretrained(directory, dtype="float32")
    return model


def test_prefill_then_steps_equals_full_forward(model):
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 256, (2, 20)), jnp.int32)
    full = model(tokens)
    step = jax.jit(lambda c, t: model.forward(t, cache=c))
    out = model.forward(tokens[:, :8], cache=model.init_cache(2, 32))
    pieces = [out.logits]
    cache = out.cache
    for t in range(8, 20):
        out = step(cache, tokens[:, t:t + 1])
        pieces.append(out.logits)
        cache = out.cache
    assert int(cache.index) == 20
    stitched = jnp.concatenate(pieces, axis=1)
    assert relative_max_error(stitched, full) < TOL


def test_left_padded_batch_matches_rows_run_alone(model):
    rng = np.random.default_rng(2)
    lengths = [5, 11, 8]
    prompts = [rng.integers(0, 256, n).astype(np.int32) for n in lengths]
    width, new = max(lengths), 6
    padded = np.zeros((3, width), np.int32)
    mask = np.zeros((3, width), np.int32)
    for i, p in enumerate(prompts):
        padded[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    continuation = rng.integers(0, 256, (3, new)).astype(np.int32)

    out = model.forward(jnp.asarray(padded), attention_mask=jnp.asarray(mask), cache=model.init_cache(3, 32))
    last_prompt_logits = out.logits[:, -1]
    cache, step_logits = out.cache, []
    for t in range(new):
        out = model.forward(jnp.asarray(continuation[:, t:t + 1]), cache=cache)
        step_logits.append(out.logits[:, 0])
        cache = out.cache

    for i, p in enumerate(prompts):
        alone = model(jnp.asarray(np.concatenate([p, continuation[i]])[None]))[0]
        assert relative_max_error(last_prompt_logits[i], alone[len(p) - 1]) < TOL
        for t in range(new):
            assert relative_max_error(step_logits[t][i], alone[len(p) + t]) < TOL


def test_full_forward_with_padding_mask_matches_unpadded(model):
    rng = np.random.default_rng(3)
    row = rng.integers(0, 256, 9).astype(np.int32)
    padded = np.concatenate([np.zeros(4, np.int32), row])[None]
    mask = np.concatenate([np.zeros(4, np.int32), np.ones(9, np.int32)])[None]
    got = model(jnp.asarray(padded), attention_mask=jnp.asarray(mask))[0, 4:]
    want = model(jnp.asarray(row[None]))[0]
    assert relative_max_error(got, want) < TOL


def test_packed_segments_do_not_attend_across(model):
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 256, 7).astype(np.int32), rng.integers(0, 256, 5).astype(np.int32)
    packed = np.concatenate([a, b])[None]
    segments = np.array([[1] * 7 + [2] * 5], np.int32)
    got = model(jnp.asarray(packed), segment_ids=jnp.asarray(segments))[0]
    assert relative_max_error(got[:7], model(jnp.asarray(a[None]))[0]) < TOL
    assert relative_max_error(got[7:], model(jnp.asarray(b[None]))[0]) < TOL
