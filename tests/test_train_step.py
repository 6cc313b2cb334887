"""The train step: sharded == single device, accumulation == big batch, overfitting, LoRA."""

import re

import jax
import numpy as np
import optax
from flax import nnx

from globmed_jax import sharding
from globmed_jax.models import CausalLM, get_preset
from globmed_jax.models.lora import add_lora
from globmed_jax.training.loss import chunked_cross_entropy
from globmed_jax.training.config import OptimConfig
from globmed_jax.training.optim import decay_mask, make_optimizer
from globmed_jax.training.step import (
    ModelTemplate, init_train_state, jit_train_step, make_train_step, state_shardings,
)

NUM_LANGUAGES = 3


def tiny_model(seed=0, **overrides):
    cfg = get_preset("qwen3_0p6b", vocab_size=128, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, dtype="float32", **overrides)
    return CausalLM(cfg, rngs=nnx.Rngs(seed))


def make_batch(rows=8, seq=16, seed=0):
    """Packed rows: two segments per row, loss on the second half of each segment."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 128, (rows, seq + 1)).astype(np.int32)
    half = seq // 2
    segment_ids = np.concatenate([np.ones((rows, half)), 2 * np.ones((rows, seq - half))], 1).astype(np.int32)
    positions = np.concatenate([np.arange(half), np.arange(seq - half)])[None].repeat(rows, 0).astype(np.int32)
    loss_mask = (positions >= half // 2).astype(np.float32)
    language_ids = rng.integers(0, NUM_LANGUAGES, (rows, 1)).repeat(seq, 1).astype(np.int32)
    return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": loss_mask,
            "segment_ids": segment_ids, "positions": positions, "language_ids": language_ids}


def run_steps(model, mesh, batches, microbatches=1, lr=1e-2, trainable=nnx.Param, optimizer=None):
    template = ModelTemplate(model, trainable)
    tx, schedule = optimizer or make_optimizer(template.initial_params, OptimConfig(
        peak_lr=lr, warmup_steps=0, total_steps=100, weight_decay=0.01))
    shardings = state_shardings(template, tx, mesh)
    state = init_train_state(template, tx, shardings)
    rows, seq = batches[0]["inputs"].shape
    step = jit_train_step(make_train_step(template, tx, schedule, num_languages=NUM_LANGUAGES,
                                          microbatches=microbatches, loss_chunk=5),
                          shardings, mesh, rows, seq)
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics.loss))
    return state, metrics, losses


FP32_EPS = float(np.finfo(np.float32).eps)
# Sharding changes only the order of fp32 reductions: a sum of n terms then differs by about
# sqrt(n) ulps of its magnitude. 64 ulps of the largest value bounds that for these sizes
# (n <= 4096 terms per reduction) with room to spare, and is still ~1e4x stricter than a bug.
REDUCTION_ULPS = 64


def sharded_loss_and_grads(model, mesh, batch):
    """Answer-token loss and its gradient, computed with the step's shardings on ``mesh``."""
    template = ModelTemplate(model)
    params = jax.device_put(template.initial_params, template.shardings(mesh)[0])

    def loss(params):
        m = template.merge(params, template.initial_frozen)
        out = m.forward(batch["inputs"], positions=batch["positions"], segment_ids=batch["segment_ids"],
                        compute_logits=False)
        sums = chunked_cross_entropy(m.logits_from_hidden, out.hidden, batch["targets"], batch["loss_mask"],
                                     batch["language_ids"], NUM_LANGUAGES, 5)
        return sums.loss_sum / sums.weight_sum

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    return float(value), jax.tree.map(np.asarray, grads)


def assert_close_to_reduction_order(actual, expected, scale=None):
    """Equal up to the reduction-order error of fp32 at the magnitude ``scale`` (default: the
    largest magnitude in ``expected``)."""
    expected = np.asarray(expected)
    scale = np.abs(expected).max() if scale is None else scale
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=REDUCTION_ULPS * FP32_EPS * scale)


def test_sharded_step_equals_single_device_step():
    """What sharding must preserve: the loss, the gradients and an update linear in them (SGD).
    Adam is left out on purpose: its first steps move each weight by ~lr * sign(g), which turns
    ulp-level differences of near-zero gradients into differences of order lr."""
    batches = [make_batch(seed=s) for s in range(2)]
    single_mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    full_mesh = sharding.make_mesh(2, 2, 2)

    loss1, grads1 = sharded_loss_and_grads(tiny_model(), single_mesh, batches[0])
    loss8, grads8 = sharded_loss_and_grads(tiny_model(), full_mesh, batches[0])
    assert_close_to_reduction_order(loss8, loss1)
    for g8, g1 in zip(jax.tree.leaves(grads8), jax.tree.leaves(grads1)):
        assert_close_to_reduction_order(g8, g1)

    lr = 1e-2
    sgd = (optax.sgd(lr), optax.constant_schedule(lr))
    s1, m1, l1 = run_steps(tiny_model(), single_mesh, batches, optimizer=sgd)
    s8, m8, l8 = run_steps(tiny_model(), full_mesh, batches, optimizer=sgd)
    assert_close_to_reduction_order(l8, l1)
    assert_close_to_reduction_order(float(m8.grad_norm), float(m1.grad_norm))
    for p8, p1 in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params)):
        assert_close_to_reduction_order(p8, p1)
    gate = s8.params["layers"]["mlp"]["gate_proj"]["kernel"]
    assert gate.sharding.spec == sharding.spec_for_shape(gate.shape, ("layers", "embed", "mlp"), gate.sharding.mesh)


def test_accumulating_microbatches_equals_one_big_batch():
    batches = [make_batch(rows=8, seed=3)]
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    big, mb, _ = run_steps(tiny_model(), mesh, batches, microbatches=1)
    acc, ma, _ = run_steps(tiny_model(), mesh, batches, microbatches=4)
    np.testing.assert_allclose(float(ma.loss), float(mb.loss), rtol=1e-6)
    np.testing.assert_allclose(float(ma.loss_tokens), float(mb.loss_tokens))
    for a, b in zip(jax.tree.leaves(acc.params), jax.tree.leaves(big.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0.02 * 1e-2)


def test_tiny_model_overfits_a_tiny_set():
    batch = make_batch(rows=4, seed=5)
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    _, metrics, losses = run_steps(tiny_model(), mesh, [batch] * 60, lr=3e-2)
    assert losses[0] > 4.0  # ~ln(128) at init
    assert losses[-1] < 0.5, losses[-10:]
    per_lang = np.asarray(metrics.lang_loss_sum).sum()
    np.testing.assert_allclose(per_lang, float(metrics.loss) * float(metrics.loss_tokens), rtol=1e-4)


def test_lora_trains_only_adapters():
    base = tiny_model()
    base_q = np.asarray(base.layers.attn.q_proj.kernel[...])  # the step donates (reuses) these buffers
    model = add_lora(base, rank=4, alpha=8.0, targets=("q_proj", "v_proj", "down_proj"))
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    state, _, losses = run_steps(model, mesh, [make_batch(rows=4, seed=6)] * 20, lr=3e-2,
                                 trainable=nnx.LoRAParam)
    assert {(p, n) for p, factors in state.params["layers"]["attn"].items() for n in factors} == {
        ("q_proj", "lora_a"), ("q_proj", "lora_b"), ("v_proj", "lora_a"), ("v_proj", "lora_b")}
    assert losses[-1] < losses[0] - 0.5
    np.testing.assert_array_equal(np.asarray(state.frozen["layers"]["attn"]["q_proj"]["kernel"]), base_q)


def test_nonfinite_loss_skips_the_update():
    batch = make_batch(rows=4, seed=7)
    batch["loss_mask"] = batch["loss_mask"] * np.float32(np.nan)
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    model = tiny_model()
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    state, metrics, _ = run_steps(model, mesh, [batch])
    assert not bool(metrics.finite)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weight_decay_mask_excludes_norms_biases_embeddings():
    params = nnx.to_pure_dict(nnx.state(tiny_model(), nnx.Param))
    mask = decay_mask(params)
    assert mask["layers"]["mlp"]["gate_proj"]["kernel"] and mask["layers"]["attn"]["q_proj"]["kernel"]
    assert not mask["embed"] and not mask["final_norm"]["scale"] and not mask["layers"]["attn"]["q_norm"]["scale"]
    assert decay_mask(params, decay_embeddings=True)["embed"]


def test_prompt_loss_weight_equals_reweighted_mask_and_reports_answer_loss():
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    batch = make_batch(rows=4, seed=8)
    reweighted = dict(batch)
    in_segment = (batch["segment_ids"] > 0).astype(np.float32)
    reweighted["loss_mask"] = batch["loss_mask"] + 0.25 * in_segment * (1 - batch["loss_mask"])

    def one_step(b, prompt_weight):
        template = ModelTemplate(tiny_model())
        tx, schedule = make_optimizer(template.initial_params, OptimConfig(peak_lr=1e-2, warmup_steps=0, total_steps=10))
        shardings = state_shardings(template, tx, mesh)
        step = jit_train_step(make_train_step(template, tx, schedule, num_languages=NUM_LANGUAGES,
                                              prompt_loss_weight=prompt_weight), shardings, mesh, 4, 16)
        return step(init_train_state(template, tx, shardings), b)

    state_a, metrics_a = one_step(batch, 0.25)
    state_b, metrics_b = one_step(reweighted, 0.0)
    for a, b in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-7)
    # The reported loss stays the answer-token loss.
    _, metrics_plain = one_step(batch, 0.0)
    np.testing.assert_allclose(float(metrics_a.loss), float(metrics_plain.loss), rtol=1e-6)
    assert float(metrics_a.loss_tokens) == float(batch["loss_mask"].sum())


def _remat_count(template, remat_loss=None) -> int:
    """Rematerialised regions (``checkpoint`` / ``remat`` equations) in the step's jaxpr."""
    tx, schedule = make_optimizer(template.initial_params, OptimConfig(peak_lr=1e-3, warmup_steps=0, total_steps=10))
    step = make_train_step(template, tx, schedule, num_languages=NUM_LANGUAGES, loss_chunk=5, remat_loss=remat_loss)
    state = init_train_state(template, tx, state_shardings(template, tx, sharding.make_mesh(
        1, 1, 1, devices=jax.devices()[:1])))
    return len(re.findall(r"\b(?:remat2?|checkpoint)\[", str(jax.make_jaxpr(step)(state, make_batch()))))


def test_loss_recomputes_logits_only_when_the_model_rematerialises():
    """remat none: nothing is recomputed, so the compiled flops are the model's 6 x N x T; with a
    remat policy the loss chunks' logits are recomputed too (memory: one [B, chunk, V] block)."""
    assert _remat_count(ModelTemplate(tiny_model())) == 0
    assert _remat_count(ModelTemplate(tiny_model()), remat_loss=True) > 0
    assert _remat_count(ModelTemplate(tiny_model(remat_policy="full")), remat_loss=False) > 0  # the layers
    batch = make_batch()
    model = tiny_model()
    out = model.forward(batch["inputs"], positions=batch["positions"], segment_ids=batch["segment_ids"],
                        compute_logits=False)

    def loss(hidden, remat):
        sums = chunked_cross_entropy(model.logits_from_hidden, hidden, batch["targets"], batch["loss_mask"],
                                     batch["language_ids"], NUM_LANGUAGES, 5, remat=remat)
        return sums.loss_sum / sums.weight_sum

    kept, recomputed = (jax.value_and_grad(loss)(out.hidden, r) for r in (False, True))
    np.testing.assert_allclose(kept[0], recomputed[0], rtol=1e-6)
    np.testing.assert_allclose(kept[1], recomputed[1], rtol=1e-5, atol=1e-8)
