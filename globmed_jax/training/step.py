"""The jitted, sharded SFT train step (gradient accumulation over microbatches, donated state).

Batches follow the pipeline contract: ``inputs``, ``targets``, ``loss_mask``, ``segment_ids``,
``positions``, ``language_ids``, each ``[global_batch, seq_len]``.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax.traverse_util import flatten_dict
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from globmed_jax.models.transformer import CausalLM
from globmed_jax.sharding import spec_for_shape, variable_logical_axes
from globmed_jax.training.loss import LossSums, chunked_cross_entropy

@flax.struct.dataclass
class StepMetrics:
    """One step's metrics (``[]`` float32 unless noted), replicated on every device."""
    loss: jax.Array  # mean NLL over answer tokens
    grad_norm: jax.Array
    learning_rate: jax.Array  # the rate this step's update used
    loss_tokens: jax.Array  # answer tokens in the global batch
    token_accuracy: jax.Array
    lang_loss_sum: jax.Array  # [num_languages] NLL sums
    lang_tokens: jax.Array  # [num_languages]
    finite: jax.Array  # bool: False when the update was non-finite (and skipped if configured)


BATCH_KEYS = ("inputs", "targets", "loss_mask", "segment_ids", "positions", "language_ids")
BATCH_AXES = ("activation_batch", "activation_length")


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs besides the data iterator.

    params: trainable parameters (all of them, or only LoRA factors), nested dict.
    frozen: parameters that are not trained (the base weights under LoRA), nested dict.
    """

    step: jax.Array
    params: Any
    frozen: Any
    opt_state: Any


class ModelTemplate:
    """Splits a model into graph + trainable/frozen pure dicts and merges them back in jit."""

    def __init__(self, model: CausalLM, trainable: Any = nnx.Param):
        self.cfg = model.cfg
        self.trainable_filter = trainable
        self.graphdef, trainable_state, frozen_state = nnx.split(model, trainable, ...)
        self.abstract_trainable = jax.tree.map(_abstract, trainable_state, is_leaf=_is_var)
        self.abstract_frozen = jax.tree.map(_abstract, frozen_state, is_leaf=_is_var)
        self.initial_params = nnx.to_pure_dict(trainable_state)
        self.initial_frozen = nnx.to_pure_dict(frozen_state)

    def merge(self, params: Any, frozen: Any) -> CausalLM:
        trainable = _fill(self.abstract_trainable, params)
        rest = _fill(self.abstract_frozen, frozen)
        return nnx.merge(self.graphdef, trainable, rest)

    def shardings(self, mesh: Mesh) -> tuple[Any, Any]:
        """NamedShardings (pure-dict trees) for trainable and frozen parameters."""
        return _pure_shardings(self.abstract_trainable, mesh), _pure_shardings(self.abstract_frozen, mesh)


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def _abstract(v):
    return v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype)) if isinstance(v, nnx.Variable) else v


def _fill(abstract_state, pure: Any):
    flat_values = flatten_dict(pure) if pure else {}
    filled = [(path, var.replace(flat_values[path])) for path, var in nnx.to_flat_state(abstract_state)]
    return nnx.from_flat_state(filled)


def _pure_shardings(abstract_state, mesh: Mesh) -> Any:
    def to_sharding(v):
        axes = v.get_metadata().get("logical_axes")
        spec = PartitionSpec() if axes is None else spec_for_shape(v.shape, variable_logical_axes(v), mesh)
        return v.replace(NamedSharding(mesh, spec))

    return nnx.to_pure_dict(jax.tree.map(to_sharding, abstract_state, is_leaf=_is_var))


def batch_sharding(mesh: Mesh, shape: tuple[int, int]) -> NamedSharding:
    """Sharding of a ``[B, T]`` batch array: batch over the data-parallel axes (an axis that
    does not divide B is left out, as for parameters)."""
    return NamedSharding(mesh, spec_for_shape(shape, BATCH_AXES, mesh))


def state_shardings(template: ModelTemplate, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    param_sh, frozen_sh = template.shardings(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    abstract_opt = jax.eval_shape(tx.init, template.initial_params)
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract_opt, param_sh,
                                   transform_non_params=lambda _: replicated)
    return TrainState(step=replicated, params=param_sh, frozen=frozen_sh, opt_state=opt_sh)


def init_train_state(template: ModelTemplate, tx: optax.GradientTransformation,
                     shardings: TrainState) -> TrainState:
    """Places the model's parameters and a fresh optimizer state with the given shardings."""
    params = jax.device_put(template.initial_params, shardings.params)
    frozen = jax.device_put(template.initial_frozen, shardings.frozen)
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    return TrainState(step=step, params=params, frozen=frozen, opt_state=opt_state)


def abstract_train_state(template: ModelTemplate, tx: optax.GradientTransformation,
                         shardings: TrainState) -> TrainState:
    """The train state as ShapeDtypeStructs carrying their shardings: enough to compile the step
    (dry runs, memory plans) without allocating anything, also for an abstract template."""
    def attach(x, sh):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh)

    return TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32, sharding=shardings.step),
        params=jax.tree.map(attach, template.initial_params, shardings.params),
        frozen=jax.tree.map(attach, template.initial_frozen, shardings.frozen),
        opt_state=jax.tree.map(attach, jax.eval_shape(tx.init, template.initial_params), shardings.opt_state))


def _split_microbatches(x: jax.Array, k: int) -> jax.Array:
    """``[G, ...] -> [k, G/k, ...]`` taking rows k apart, so every device holds a slice of every
    microbatch (a contiguous split would put whole microbatches on single devices)."""
    g = x.shape[0]
    return jnp.swapaxes(x.reshape(g // k, k, *x.shape[1:]), 0, 1)


def make_train_step(
    template: ModelTemplate,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    num_languages: int,
    microbatches: int = 1,
    loss_chunk: int = 512,
    skip_nonfinite: bool = True,
    prompt_loss_weight: float = 0.0,
    remat_loss: bool | None = None,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns ``step(state, batch) -> (state, metrics)`` (not yet jitted).

    Gradients of the *summed* token loss are accumulated over ``microbatches`` and divided once
    by the global number of loss tokens, so k microbatches of b rows give the same update as
    one batch of k*b rows. A non-finite loss or gradient leaves params and optimizer state
    unchanged when ``skip_nonfinite`` (the metrics report it either way).
    ``prompt_loss_weight`` > 0 adds that weight of next-token loss on the non-answer tokens of
    every segment (a from-scratch model learns the language from them); reported losses stay
    answer-only. ``remat_loss`` (default: whenever the model's ``remat_policy`` is not ``none``)
    recomputes the loss chunks' logits in the backward pass (``loss.chunked_cross_entropy``):
    with remat ``none`` nothing is recomputed, so the step's flops are the model's.
    """
    if remat_loss is None:
        remat_loss = template.cfg.remat_policy != "none"

    def loss_fn(params, frozen, mb):
        model = template.merge(params, frozen)
        out = model.forward(mb["inputs"], positions=mb["positions"], segment_ids=mb["segment_ids"],
                            compute_logits=False)
        extra = None
        if prompt_loss_weight:
            in_segment = (mb["segment_ids"] > 0).astype(jnp.float32)
            extra = prompt_loss_weight * in_segment * (1.0 - mb["loss_mask"])
        sums = chunked_cross_entropy(model.logits_from_hidden, out.hidden, mb["targets"],
                                     mb["loss_mask"], mb["language_ids"], num_languages, loss_chunk,
                                     extra_weights=extra, remat=remat_loss)
        return sums.objective_sum, sums

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, StepMetrics]:
        micro = {k: _split_microbatches(batch[k], microbatches) for k in BATCH_KEYS}

        def accumulate(carry, mb):
            grads_acc, sums_acc = carry
            grads, sums = grad_fn(state.params, state.frozen, mb)
            return (jax.tree.map(jnp.add, grads_acc, grads), sums_acc + sums), None

        zero_grads = jax.tree.map(jnp.zeros_like, state.params)
        (grads, sums), _ = jax.lax.scan(accumulate, (zero_grads, LossSums.zeros(num_languages)), micro)

        tokens = jnp.maximum(sums.weight_sum, 1.0)
        grads = jax.tree.map(lambda g: g / jnp.maximum(sums.objective_weight_sum, 1.0), grads)
        loss = sums.loss_sum / tokens
        grad_norm = optax.global_norm(grads)
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if skip_nonfinite:
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
            new_params = keep(new_params, state.params)
            new_opt_state = keep(new_opt_state, state.opt_state)
        new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt_state)
        metrics = StepMetrics(loss=loss, grad_norm=grad_norm, learning_rate=schedule(state.step),
                              loss_tokens=sums.weight_sum, token_accuracy=sums.correct_sum / tokens,
                              lang_loss_sum=sums.lang_loss_sum, lang_tokens=sums.lang_weight_sum,
                              finite=finite)
        return new_state, metrics

    return step


def jit_train_step(step_fn, shardings: TrainState, mesh: Mesh, global_batch: int, seq_len: int):
    """``jax.jit`` with explicit in/out shardings and the state donated."""
    data_sh = batch_sharding(mesh, (global_batch, seq_len))
    batch_sh = {k: data_sh for k in BATCH_KEYS}
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(step_fn, in_shardings=(shardings, batch_sh),
                   out_shardings=(shardings, replicated), donate_argnums=(0,))
