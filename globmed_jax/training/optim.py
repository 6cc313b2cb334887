"""AdamW with linear warmup + cosine decay, global-norm clipping and a weight-decay mask."""

from __future__ import annotations

from typing import Any

import jax
import optax

from globmed_jax.training.config import OptimConfig


def learning_rate_schedule(peak: float, warmup_steps: int, total_steps: int,
                           end_ratio: float = 0.1) -> optax.Schedule:
    """Linear warmup from 0 to ``peak``, then cosine decay to ``end_ratio * peak`` at ``total_steps``."""
    warmup_steps = max(0, min(warmup_steps, total_steps))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1), end_value=peak * end_ratio)


def decay_mask(params: Any, *, decay_norms: bool = False, decay_biases: bool = False,
               decay_embeddings: bool = False) -> Any:
    """True for leaves that get weight decay. By default norms, biases and embeddings don't.

    ``params`` is a nested dict keyed by parameter path (``nnx.to_pure_dict`` layout).
    """
    def wants_decay(path, _leaf) -> bool:
        names = [str(getattr(k, "key", k)) for k in path]
        joined = "/".join(names)
        if "norm" in joined:
            return decay_norms
        if names[-1] == "bias":  # projection.BIAS
            return decay_biases
        if names[-1] in ("embed", "lm_head"):
            return decay_embeddings
        return True

    return jax.tree_util.tree_map_with_path(wants_decay, params)


def make_optimizer(params: Any, optim: OptimConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW (decay masked by ``decay_mask``) after optional global-norm clipping, and its schedule."""
    o = optim
    schedule = learning_rate_schedule(o.peak_lr, o.warmup_steps, o.total_steps, o.end_lr_ratio)
    mask = decay_mask(params, decay_norms=o.decay_norms, decay_biases=o.decay_biases,
                      decay_embeddings=o.decay_embeddings)
    chain = []
    if o.clip_norm and o.clip_norm > 0:
        chain.append(optax.clip_by_global_norm(o.clip_norm))
    chain.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=mask))
    return optax.chain(*chain), schedule
