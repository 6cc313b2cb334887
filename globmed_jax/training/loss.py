"""Token cross-entropy over a large vocabulary without materialising fp32 logits for the batch.

The final hidden states are projected to the vocabulary one sequence chunk at a time inside a
``lax.scan``. With ``remat`` (the default, and what the train step uses whenever the model
rematerialises its layers) the body is rematerialised, so peak memory holds one ``[B, chunk, V]``
fp32 block in the forward and in the backward pass (a 152k vocabulary at B*T = 16k tokens would
otherwise need ~10 GB for the logits alone), at the cost of a second output projection in the
backward pass. Without it the chunks' logits are kept for the backward pass: no recomputation,
so the step's flops are the model's 6 x params x tokens (+ attention).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class LossSums:
    """Weighted sums over tokens; they add across microbatches and devices, ratios come last.

    Scalars are ``[]`` float32, the per-language sums ``[num_languages]`` float32.
    """
    objective_sum: jax.Array  # what is optimised (answer tokens plus any prompt-token weight)
    objective_weight_sum: jax.Array
    loss_sum: jax.Array  # answer tokens only: what is reported
    weight_sum: jax.Array
    correct_sum: jax.Array  # argmax hits on answer tokens
    lang_loss_sum: jax.Array
    lang_weight_sum: jax.Array

    @classmethod
    def zeros(cls, num_languages: int) -> "LossSums":
        scalar = jnp.zeros((), jnp.float32)
        lang = jnp.zeros((num_languages,), jnp.float32)
        return cls(scalar, scalar, scalar, scalar, scalar, lang, lang)

    def __add__(self, other: "LossSums") -> "LossSums":
        return jax.tree.map(jnp.add, self, other)


def chunked_cross_entropy(
    logits_fn: Callable[[jax.Array], jax.Array],
    hidden: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    language_ids: jax.Array,
    num_languages: int,
    chunk_size: int = 512,
    extra_weights: jax.Array | None = None,
    remat: bool = True,
) -> LossSums:
    """Sums of weighted next-token NLL.

    Args:
      logits_fn: ``[B, c, D] -> [B, c, V]`` float32 (the model's output projection).
      hidden: ``[B, T, D]`` final hidden states.
      targets: ``[B, T]`` int32 target ids.
      weights: ``[B, T]`` float32 loss weights (1 on answer tokens, 0 elsewhere).
      language_ids: ``[B, T]`` int32 language index per token (-1 = none).
      extra_weights: optional ``[B, T]`` weights added to ``weights`` for the objective only
        (e.g. a small LM loss on prompt tokens); the reported sums stay answer-only.
      remat: recompute each chunk's logits in the backward pass instead of keeping them.
    Returns:
      ``LossSums`` over all chunks.
    """
    if extra_weights is None:
        extra_weights = jnp.zeros_like(weights)
    b, t, d = hidden.shape
    chunk = min(chunk_size, t)
    n_chunks = -(-t // chunk)
    pad = n_chunks * chunk - t
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
        weights = jnp.pad(weights, ((0, 0), (0, pad)))
        language_ids = jnp.pad(language_ids, ((0, 0), (0, pad)), constant_values=-1)
        extra_weights = jnp.pad(extra_weights, ((0, 0), (0, pad)))

    def split(x):  # [B, n*c, ...] -> [n, B, c, ...]
        return jnp.moveaxis(x.reshape(b, n_chunks, chunk, *x.shape[2:]), 1, 0)

    def chunk_nll(h, tgt):
        logits = logits_fn(h).astype(jnp.float32)
        logz = jax.nn.logsumexp(logits, axis=-1)
        target_logit = jnp.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0]
        correct = (jnp.argmax(logits, axis=-1) == tgt).astype(jnp.float32)
        return logz - target_logit, correct

    chunk_loss = jax.checkpoint(chunk_nll) if remat else chunk_nll

    def body(carry, xs):
        h, tgt, w, lang, extra = xs
        nll, correct = chunk_loss(h, tgt)
        w = w.astype(jnp.float32)
        objective_w = w + extra.astype(jnp.float32)
        one_hot = jax.nn.one_hot(lang, num_languages, dtype=jnp.float32)  # -1 -> all zeros
        chunk_sums = LossSums(
            objective_sum=jnp.sum(nll * objective_w),
            objective_weight_sum=jnp.sum(objective_w),
            loss_sum=jnp.sum(nll * w),
            weight_sum=jnp.sum(w),
            correct_sum=jnp.sum(correct * w),
            lang_loss_sum=jnp.einsum("bc,bcl->l", nll * w, one_hot),
            lang_weight_sum=jnp.einsum("bc,bcl->l", w, one_hot),
        )
        return carry + chunk_sums, None

    sums, _ = jax.lax.scan(body, LossSums.zeros(num_languages), tuple(split(x) for x in (hidden, targets, weights, language_ids, extra_weights)))
    return sums
