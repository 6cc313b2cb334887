"""LoRA: add adapters to a loaded model, and merge them back into plain weights for export.

Adapters are ``nnx.LoRAParam`` variables inside the shared layers (``projection.Projection.lora_a/lora_b``),
so ``nnx.state(model, nnx.LoRAParam)`` selects exactly the trainable factors and the scanned,
stacked layer layout is kept. Implemented here rather than with qwix because qwix intercepts
einsum calls by module path, which does not see our layers when they are merged inside a scan.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from globmed_jax.models.config import ModelConfig
from globmed_jax.models.projection import KERNEL, LORA_A, LORA_B
from globmed_jax.models.transformer import CausalLM

def add_lora(model: CausalLM, rank: int, alpha: float, targets, *, seed: int = 0) -> CausalLM:
    """A copy of ``model`` with LoRA adapters (B = 0) on ``targets``; base weights are shared."""
    cfg = model.cfg.replace(lora_rank=rank, lora_alpha=alpha, lora_targets=tuple(targets))
    adapted = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(seed), shard=model.shard))
    graphdef, abstract_state = nnx.split(adapted)
    base = dict(nnx.to_flat_state(nnx.state(model)))
    lora_init = _init_lora_factors(cfg, seed)
    filled = []
    for path, var in nnx.to_flat_state(abstract_state):
        if path in base:
            filled.append((path, base[path]))
        else:
            filled.append((path, var.replace(lora_init[path])))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def _init_lora_factors(cfg: ModelConfig, seed: int) -> dict:
    """Initial LoRA factors only. The rank>0 model is built inside ``jit`` and only its
    ``LoRAParam`` state is returned, so XLA drops the unused base-weight initialisation and no
    second full-size copy of the base weights is allocated."""
    def build():
        model = CausalLM(cfg, rngs=nnx.Rngs(seed))
        return nnx.state(model, nnx.LoRAParam)

    state = jax.jit(build)()
    return {path: var[...] for path, var in nnx.to_flat_state(state)}


def merge_lora(model: CausalLM) -> CausalLM:
    """Folds ``(alpha/r) A @ B`` into every adapted weight; returns a model without adapters."""
    cfg = model.cfg
    if cfg.lora_rank <= 0:
        return model
    scale = cfg.lora_alpha / cfg.lora_rank
    flat = dict(nnx.to_flat_state(nnx.state(model)))
    plain_cfg = cfg.replace(lora_rank=0)
    plain = nnx.eval_shape(lambda: CausalLM(plain_cfg, rngs=nnx.Rngs(0), shard=model.shard))
    graphdef, abstract_state = nnx.split(plain)
    merged = []
    for path, var in nnx.to_flat_state(abstract_state):
        value = flat[path][...]
        a_path = (*path[:-1], LORA_A)
        if path[-1] == KERNEL and a_path in flat:
            a = flat[a_path][...].astype(jnp.float32)
            b = flat[(*path[:-1], LORA_B)][...].astype(jnp.float32)
            # Stacked layers: a [L, *in, r], b [L, r, *out] -> delta [L, *in, *out].
            delta = jax.vmap(lambda a_l, b_l: jnp.tensordot(a_l, b_l, axes=1))(a, b)
            value = (value.astype(jnp.float32) + scale * delta).astype(value.dtype)
        merged.append((path, var.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(merged))
