"""AdamW with linear warmup + cosine decay, global-norm clipping and a weight-decay mask."""

from __future__ import annotations

from typing import Any

import jax
import optax


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


def make_optimizer(params: Any, *, peak_lr: float, warmup_steps: int, total_steps: int,
                   end_lr_ratio: float = 0.1, weight_decay: float = 0.1, b1: float = 0.9,
                   b2: float = 0.95, eps: float = 1e-8, clip_norm: float = 1.0,
                   decay_norms: bool = False, decay_biases: bool = False,
                   decay_embeddings: bool = False) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = learning_rate_schedule(peak_lr, warmup_steps, total_steps, end_lr_ratio)
    mask = decay_mask(params, decay_norms=decay_norms, decay_biases=decay_biases,
                      decay_embeddings=decay_embeddings)
    chain = []
    if clip_norm and clip_norm > 0:
        chain.append(optax.clip_by_global_norm(clip_norm))
    chain.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask))
    return optax.chain(*chain), schedule
