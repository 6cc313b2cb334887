"""Device mesh and the ONE table that maps logical axis names to mesh axes.

Models annotate every parameter (``logical_axes`` metadata) and every block-boundary activation
with *logical* names such as ``embed`` or ``activation_batch``; only this module knows the mesh
axes ``('data', 'fsdp', 'tensor')``. Changing a parallelism strategy means editing
``LOGICAL_AXIS_RULES`` (or passing other rules), never a model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axis, tuple of mesh axes, or None (replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    # parameters
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
    # LoRA adapters: the low rank is never sharded
    ("lora_rank", None),
    # activations at block boundaries
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    # KV cache
    ("cache_layers", None),
    ("cache_batch", ("data", "fsdp")),
    ("cache_length", None),
    ("cache_kv_heads", "tensor"),
    ("cache_head_dim", None),
)


def mesh_shape(data: int, fsdp: int, tensor: int, num_devices: int) -> tuple[int, int, int]:
    """The ``(data, fsdp, tensor)`` sizes on ``num_devices`` devices, a -1 resolved to the rest.

    The one check of mesh sizes: config validation calls it with a device count before any
    device exists, ``make_mesh`` with the real devices. Raises ValueError naming the sizes.
    """
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh sizes must be positive or -1, got data={data} fsdp={fsdp} tensor={tensor}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(
                f"cannot fill mesh data={data} fsdp={fsdp} tensor={tensor}: "
                f"{num_devices} devices are not divisible by {known}"
            )
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} "
            f"devices, but {num_devices} are available"
        )
    return sizes[0], sizes[1], sizes[2]


def make_mesh(
    data: int = 1,
    fsdp: int = -1,
    tensor: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A ``('data', 'fsdp', 'tensor')`` mesh; one size may be -1 to take the remaining devices.

    Raises ValueError naming the sizes when they do not multiply to the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(data, fsdp, tensor, len(devices))
    device_grid = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(device_grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def _rules_dict(rules: Iterable[tuple[str, Any]] | None) -> dict[str, Any]:
    return dict(LOGICAL_AXIS_RULES if rules is None else rules)


def logical_to_spec(
    logical_axes: Sequence[str | None],
    rules: Iterable[tuple[str, Any]] | None = None,
) -> PartitionSpec:
    """Maps logical names to a PartitionSpec through the rules table (unknown name -> error)."""
    table = _rules_dict(rules)
    spec, used = [], set()
    for name in logical_axes:
        if name is None:
            spec.append(None)
            continue
        if name not in table:
            raise KeyError(f"logical axis {name!r} has no rule in the sharding rules table")
        target = table[name]
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used)  # a mesh axis may shard one dim only
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def spec_for_shape(
    shape: Sequence[int],
    logical_axes: Sequence[str | None],
    mesh: Mesh,
    rules: Iterable[tuple[str, Any]] | None = None,
) -> PartitionSpec:
    """Like ``logical_to_spec`` but drops mesh axes that do not divide the dimension.

    This keeps odd shapes (e.g. 3 KV heads on a 2-way tensor axis) correct by replicating
    that dimension instead of failing.
    """
    if len(shape) != len(logical_axes):
        raise ValueError(f"shape {tuple(shape)} and logical axes {tuple(logical_axes)} differ in rank")
    spec = logical_to_spec(logical_axes, rules)
    fitted = []
    for dim, entry in zip(shape, spec):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
        kept, size = [], 1
        for axis in axes:
            if dim % (size * mesh.shape[axis]) == 0:
                kept.append(axis)
                size *= mesh.shape[axis]
        fitted.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*fitted)


@dataclasses.dataclass(frozen=True)
class ShardingContext:
    """What a model needs to constrain activations: a mesh and the rules (hashable, static)."""

    mesh: Mesh | None = None
    rules: tuple[tuple[str, Any], ...] = LOGICAL_AXIS_RULES

    def constrain(self, x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
        """``with_sharding_constraint`` by logical names; identity when no mesh is set."""
        if self.mesh is None:
            return x
        spec = spec_for_shape(x.shape, logical_axes, self.mesh, self.rules)
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    def sharding(self, shape: Sequence[int], logical_axes: Sequence[str | None]) -> NamedSharding:
        if self.mesh is None:
            raise ValueError("no mesh set")
        return NamedSharding(self.mesh, spec_for_shape(shape, logical_axes, self.mesh, self.rules))


def variable_logical_axes(variable: nnx.Variable) -> tuple[str | None, ...]:
    axes = variable.get_metadata().get("logical_axes")
    if axes is None:
        raise ValueError(f"variable of shape {variable.shape} carries no logical_axes metadata")
    return tuple(axes)


def state_shardings(
    state: Any, mesh: Mesh, rules: Iterable[tuple[str, Any]] | None = None
) -> Any:
    """NamedSharding for every Variable of an ``nnx.State`` (same tree structure)."""
    rules = tuple(LOGICAL_AXIS_RULES if rules is None else rules)

    def to_sharding(v):
        if isinstance(v, nnx.Variable):
            if v.get_metadata().get("logical_axes") is None:
                return v.replace(NamedSharding(mesh, PartitionSpec()))  # e.g. RNG counters
            spec = spec_for_shape(v.shape, variable_logical_axes(v), mesh, rules)
            return v.replace(NamedSharding(mesh, spec))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(to_sharding, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh, rules: Iterable[tuple[str, Any]] | None = None) -> None:
    """Moves every parameter of ``model`` onto ``mesh`` as the rules table says (in place)."""
    state = nnx.state(model)
    shardings = state_shardings(state, mesh, rules)
    nnx.update(model, jax.device_put(state, shardings))
