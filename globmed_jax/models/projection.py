"""One linear projection that owns its kernel, optional bias, optional LoRA factors and their
logical axis names (the one place layers, HF I/O, LoRA merge and the decay mask agree on).

Parameter names inside a projection: ``kernel [*in, *out]``, ``bias [*out]``,
``lora_a [*in, r]``, ``lora_b [r, *out]``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]

KERNEL, BIAS, LORA_A, LORA_B = "kernel", "bias", "lora_a", "lora_b"


def param(rngs: nnx.Rngs, init: Initializer, shape, dtype, logical_axes) -> nnx.Param:
    """A Param drawn from ``init`` and tagged with its logical axes."""
    return nnx.Param(init(rngs.params(), shape, dtype), logical_axes=tuple(logical_axes))


def fan_in_init(fan_in: int) -> Initializer:
    """Normal with stddev ``1/sqrt(fan_in)``."""
    return jax.nn.initializers.normal(stddev=1.0 / math.sqrt(fan_in))


class Projection(nnx.Module):
    """``y = x . kernel (+ bias) (+ (alpha/r) (x . A) . B)``, contracting the last
    ``len(in_shape)`` axes of x; x ``[..., *in]`` -> y ``[..., *out]`` in ``compute_dtype``.

    LoRA ``B`` starts at zero, so an adapted projection starts equal to the base one.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], in_axes: Sequence[str],
                 out_axes: Sequence[str], *, use_bias: bool, param_dtype, compute_dtype,
                 lora_rank: int = 0, lora_alpha: float = 0.0, rngs: nnx.Rngs):
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        self.in_ndim = len(in_shape)
        self.compute_dtype = compute_dtype
        fan_in = math.prod(in_shape)
        self.kernel = param(rngs, fan_in_init(fan_in), (*in_shape, *out_shape), param_dtype,
                            (*in_axes, *out_axes))
        self.bias = (param(rngs, jax.nn.initializers.zeros, out_shape, param_dtype, out_axes)
                     if use_bias else None)
        self.lora_scale = lora_alpha / lora_rank if lora_rank > 0 else 0.0
        if lora_rank > 0:
            a = fan_in_init(fan_in)(rngs.params(), (*in_shape, lora_rank), param_dtype)
            self.lora_a = nnx.LoRAParam(a, logical_axes=(*in_axes, "lora_rank"))
            self.lora_b = nnx.LoRAParam(jnp.zeros((lora_rank, *out_shape), param_dtype),
                                        logical_axes=("lora_rank", *out_axes))
        else:
            self.lora_a = self.lora_b = None

    def __call__(self, x: jax.Array) -> jax.Array:
        dt = self.compute_dtype
        y = jnp.tensordot(x, self.kernel[...].astype(dt), axes=self.in_ndim)
        if self.lora_a is not None:
            low = jnp.tensordot(x, self.lora_a[...].astype(dt), axes=self.in_ndim)
            y = y + jnp.tensordot(low, self.lora_b[...].astype(dt), axes=1) * self.lora_scale
        if self.bias is not None:
            y = y + self.bias[...].astype(dt)
        return y
