"""LoRA merge-and-export, remat policies and the compile-time out-of-memory message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from globmed_jax.models import CausalLM, get_preset, save_pretrained
from globmed_jax.models.lora import add_lora, merge_lora
from hf_utils import relative_max_error


def tiny(**overrides):
    cfg = get_preset("qwen3_0p6b", vocab_size=96, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                     num_kv_heads=2, head_dim=8, dtype="float32", **overrides)
    return CausalLM(cfg, rngs=nnx.Rngs(0))


def test_merged_lora_export_matches_the_adapted_model(tmp_path):
    import torch
    import transformers

    model = add_lora(tiny(), rank=4, alpha=8.0, targets=("q_proj", "o_proj", "gate_proj", "down_proj"))
    state = nnx.state(model, nnx.LoRAParam)
    for i, (path, var) in enumerate(nnx.to_flat_state(state)):  # B = 0 at init: make the adapters matter
        var[...] = 0.2 * jax.random.normal(jax.random.key(i), var.shape)
    nnx.update(model, state)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 96, (2, 10)), jnp.int32)
    adapted = model(tokens)
    merged = merge_lora(model)
    assert merged.cfg.lora_rank == 0 and not jax.tree.leaves(nnx.state(merged, nnx.LoRAParam))
    assert relative_max_error(merged(tokens), adapted) < 1e-5
    assert relative_max_error(merged(tokens), tiny()(tokens)) > 1e-2  # the adapters changed the function
    save_pretrained(merged, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.numpy()
    assert relative_max_error(ref, adapted) < 1e-5


@pytest.mark.parametrize("policy", ["full", "dots", "dots_with_no_batch_dims"])
@pytest.mark.parametrize("scan", [True, False])
def test_remat_policies_change_memory_not_gradients(policy, scan):
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 96, (2, 12)), jnp.int32)

    def grads(model):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss = lambda p: jnp.mean(nnx.merge(graphdef, p, rest)(tokens) ** 2)  # noqa: E731
        return jax.grad(loss)(params)

    reference = grads(tiny(scan_layers=scan))
    rematted = grads(tiny(scan_layers=scan, remat_policy=policy))
    for a, b in zip(jax.tree.leaves(rematted), jax.tree.leaves(reference)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_compile_out_of_memory_becomes_a_clear_error():
    from globmed_jax import sharding
    from globmed_jax.training.loop import CompileOutOfMemoryError, compile_step

    class Lowered:
        def compile(self):
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 81.2GiB.")

    class Jitted:
        def lower(self, *args):
            return Lowered()

    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    with pytest.raises(CompileOutOfMemoryError, match="(?s)does not fit in device memory.*81.2GiB.*dry_run"):
        compile_step(Jitted(), state=None, global_batch=2, seq_len=8, mesh=mesh)
