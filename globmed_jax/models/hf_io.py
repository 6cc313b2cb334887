"""Hugging Face checkpoint interop: safetensors in, safetensors out.

``from_pretrained`` validates the whole checkpoint against the expected parameter table first
(every missing, unexpected and mis-shaped tensor is reported together), then streams one tensor
at a time into its (sharded) device array. Stacked layer parameters are filled slice by slice
with a donated in-place update, so host memory never holds more than one layer's tensor.
No pickle, no remote code: only ``config.json`` and ``*.safetensors`` are read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding
from safetensors import safe_open
from safetensors.numpy import save_file

from globmed_jax.models.config import ModelConfig, UnsupportedModelError, from_hf_config, to_hf_config
from globmed_jax.models.hub import resolve_checkpoint
from globmed_jax.models.projection import BIAS, KERNEL
from globmed_jax.models.transformer import CausalLM
from globmed_jax.sharding import ShardingContext, spec_for_shape, variable_logical_axes

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray, ModelConfig], np.ndarray]


class CheckpointError(ValueError):
    """A checkpoint that does not match the architecture; the message lists every problem."""


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """How one of our parameters maps to a Hugging Face tensor.

    ``hf_name`` contains ``{i}`` for per-layer tensors (stacked along our leading axis).
    ``to_ours`` maps the HF array to our layout, ``to_hf`` back.
    """

    path: tuple[str, ...]
    hf_name: str
    hf_shape: Callable[[ModelConfig], tuple[int, ...]]
    to_ours: Transform
    to_hf: Transform

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.hf_name


def _same(x, cfg):
    return x


def _t(x, cfg):
    return x.T


def _heads_in(heads: Callable[[ModelConfig], int]) -> tuple[Transform, Transform]:
    """HF ``[heads*H, D]`` <-> ours ``[D, heads, H]``."""

    def to_ours(x, cfg):
        return x.reshape(heads(cfg), cfg.head_dim, cfg.hidden_size).transpose(2, 0, 1)

    def to_hf(x, cfg):
        return x.transpose(1, 2, 0).reshape(heads(cfg) * cfg.head_dim, cfg.hidden_size)

    return to_ours, to_hf


def _heads_bias(heads: Callable[[ModelConfig], int]) -> tuple[Transform, Transform]:
    return (lambda x, cfg: x.reshape(heads(cfg), cfg.head_dim),
            lambda x, cfg: x.reshape(heads(cfg) * cfg.head_dim))


def _o_proj() -> tuple[Transform, Transform]:
    """HF ``[D, N*H]`` <-> ours ``[N, H, D]``."""
    return (lambda x, cfg: x.T.reshape(cfg.num_heads, cfg.head_dim, cfg.hidden_size),
            lambda x, cfg: x.reshape(cfg.num_heads * cfg.head_dim, cfg.hidden_size).T)


def param_table(cfg: ModelConfig) -> list[ParamSpec]:
    """Every parameter of ``CausalLM(cfg)`` with its HF name, shape and layout transforms."""
    d, f, v, hd = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim
    n = lambda c: c.num_heads  # noqa: E731
    k = lambda c: c.num_kv_heads  # noqa: E731
    layer = "model.layers.{i}."
    specs = [
        ParamSpec(("embed",), "model.embed_tokens.weight", lambda c: (v, d), _same, _same),
        ParamSpec(("final_norm", "scale"), "model.norm.weight", lambda c: (d,), _same, _same),
        ParamSpec(("layers", "input_norm", "scale"), layer + "input_layernorm.weight",
                  lambda c: (d,), _same, _same),
        ParamSpec(("layers", "post_attn_norm", "scale"), layer + "post_attention_layernorm.weight",
                  lambda c: (d,), _same, _same),
        ParamSpec(("layers", "attn", "q_proj", KERNEL), layer + "self_attn.q_proj.weight",
                  lambda c: (c.num_heads * hd, d), *_heads_in(n)),
        ParamSpec(("layers", "attn", "k_proj", KERNEL), layer + "self_attn.k_proj.weight",
                  lambda c: (c.num_kv_heads * hd, d), *_heads_in(k)),
        ParamSpec(("layers", "attn", "v_proj", KERNEL), layer + "self_attn.v_proj.weight",
                  lambda c: (c.num_kv_heads * hd, d), *_heads_in(k)),
        ParamSpec(("layers", "attn", "o_proj", KERNEL), layer + "self_attn.o_proj.weight",
                  lambda c: (d, c.num_heads * hd), *_o_proj()),
        ParamSpec(("layers", "mlp", "gate_proj", KERNEL), layer + "mlp.gate_proj.weight", lambda c: (f, d), _t, _t),
        ParamSpec(("layers", "mlp", "up_proj", KERNEL), layer + "mlp.up_proj.weight", lambda c: (f, d), _t, _t),
        ParamSpec(("layers", "mlp", "down_proj", KERNEL), layer + "mlp.down_proj.weight", lambda c: (d, f), _t, _t),
    ]
    if cfg.qkv_bias:
        specs += [
            ParamSpec(("layers", "attn", "q_proj", BIAS), layer + "self_attn.q_proj.bias",
                      lambda c: (c.num_heads * hd,), *_heads_bias(n)),
            ParamSpec(("layers", "attn", "k_proj", BIAS), layer + "self_attn.k_proj.bias",
                      lambda c: (c.num_kv_heads * hd,), *_heads_bias(k)),
            ParamSpec(("layers", "attn", "v_proj", BIAS), layer + "self_attn.v_proj.bias",
                      lambda c: (c.num_kv_heads * hd,), *_heads_bias(k)),
        ]
    if cfg.o_bias:
        specs.append(ParamSpec(("layers", "attn", "o_proj", BIAS), layer + "self_attn.o_proj.bias",
                               lambda c: (d,), _same, _same))
    if cfg.qk_norm:
        specs += [
            ParamSpec(("layers", "attn", "q_norm", "scale"), layer + "self_attn.q_norm.weight",
                      lambda c: (hd,), _same, _same),
            ParamSpec(("layers", "attn", "k_norm", "scale"), layer + "self_attn.k_norm.weight",
                      lambda c: (hd,), _same, _same),
        ]
    if cfg.mlp_bias:
        specs += [
            ParamSpec(("layers", "mlp", "gate_proj", BIAS), layer + "mlp.gate_proj.bias", lambda c: (f,), _same, _same),
            ParamSpec(("layers", "mlp", "up_proj", BIAS), layer + "mlp.up_proj.bias", lambda c: (f,), _same, _same),
            ParamSpec(("layers", "mlp", "down_proj", BIAS), layer + "mlp.down_proj.bias", lambda c: (d,), _same, _same),
        ]
    if not cfg.tie_word_embeddings:
        specs.append(ParamSpec(("lm_head",), "lm_head.weight", lambda c: (v, d), _t, _t))
    return specs


# Tensors some exporters write that carry no parameters of ours.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


# --------------------------------------------------------------------------------- reading


class _SafetensorsIndex:
    """Tensor name -> file, shape and dtype, from headers only (no tensor data read)."""

    def __init__(self, directory: Path):
        index_file = directory / "model.safetensors.index.json"
        single = directory / "model.safetensors"
        if index_file.exists():
            weight_map = json.loads(index_file.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        elif single.exists():
            files = ["model.safetensors"]
        else:
            found = sorted(p.name for p in directory.glob("*.safetensors"))
            if not found:
                extra = sorted(p.name for p in directory.glob("*.bin")) + sorted(
                    p.name for p in directory.glob("*.pt*"))
                hint = f" (found {extra}: pickle-based weights are not loaded; convert to safetensors)" if extra else ""
                raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {directory}{hint}")
            files = found
        self.directory = directory
        self.meta: dict[str, tuple[str, tuple[int, ...]]] = {}
        for name in files:
            path = directory / name
            if not path.exists():
                raise FileNotFoundError(f"{index_file} lists {name}, which does not exist")
            with safe_open(path, framework="numpy") as fh:
                for key in fh.keys():
                    self.meta[key] = (name, tuple(fh.get_slice(key).get_shape()))
        self._handles: dict[str, Any] = {}

    def read(self, name: str) -> np.ndarray:
        file = self.meta[name][0]
        if file not in self._handles:
            self._handles[file] = safe_open(self.directory / file, framework="numpy")
        return self._handles[file].get_tensor(name)

    def close(self):
        self._handles.clear()


def _check_checkpoint(cfg: ModelConfig, index: _SafetensorsIndex, source: Path) -> None:
    expected: dict[str, tuple[int, ...]] = {}
    for spec in param_table(cfg):
        names = ([spec.hf_name.format(i=i) for i in range(cfg.num_layers)] if spec.per_layer
                 else [spec.hf_name])
        for name in names:
            expected[name] = spec.hf_shape(cfg)
    missing = sorted(n for n in expected if n not in index.meta)
    misshaped = sorted(
        f"{n}: expected {expected[n]}, found {index.meta[n][1]}"
        for n in expected if n in index.meta and index.meta[n][1] != expected[n])
    tolerated = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    unexpected = sorted(
        n for n in index.meta
        if n not in expected and n not in tolerated and not n.endswith(_IGNORED_SUFFIXES))
    if missing or misshaped or unexpected:
        parts = [f"checkpoint {source} does not match {cfg.model_type} "
                 f"({cfg.num_layers} layers, hidden {cfg.hidden_size}):"]
        for title, items in (("missing", missing), ("mis-shaped", misshaped), ("unexpected", unexpected)):
            if items:
                shown = items[:50] + ([f"... and {len(items) - 50} more"] if len(items) > 50 else [])
                parts.append(f"  {len(items)} {title} tensor(s):\n    " + "\n    ".join(shown))
        raise CheckpointError("\n".join(parts))


def load_config(path: str | os.PathLike, **overrides: Any) -> ModelConfig:
    """Reads ``config.json`` from a checkpoint directory (or hub id) into a ModelConfig."""
    config_file = resolve_checkpoint(path) / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} does not exist (expected a Hugging Face checkpoint directory)")
    try:
        hf = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    try:
        return from_hf_config(hf, **{k: v for k, v in overrides.items() if v is not None})
    except UnsupportedModelError as err:
        raise UnsupportedModelError(f"{config_file}: {err}") from None
    except KeyError as err:
        raise ValueError(f"{config_file}: required field {err} is missing") from None


def abstract_model(cfg: ModelConfig, mesh: Mesh | None = None) -> CausalLM:
    """The model with ShapeDtypeStruct leaves: no memory allocated."""
    shard = ShardingContext(mesh)
    return nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0), shard=shard))


def _target_sharding(var: nnx.Variable, mesh: Mesh | None):
    if mesh is None:
        return SingleDeviceSharding(jax.devices()[0])
    return NamedSharding(mesh, spec_for_shape(var.shape, variable_logical_axes(var), mesh))


def _slice_sharding(sharding) -> Any:
    """The sharding of one layer slice of a stacked ``[L, ...]`` array."""
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(*tuple(sharding.spec)[1:]))
    return sharding


def from_pretrained(
    path: str | os.PathLike,
    *,
    dtype: Any = None,
    param_dtype: Any = None,
    mesh: Mesh | None = None,
    **config_overrides: Any,
) -> tuple[CausalLM, ModelConfig]:
    """Loads an HF checkpoint into a (sharded) ``CausalLM``.

    Args:
      path: directory with ``config.json`` and ``model.safetensors`` or a sharded index, or a
        hub id ``org/name[@revision]`` (resolved by ``hub.resolve_checkpoint``: safetensors only).
      dtype: compute dtype (default: the config default, bfloat16).
      param_dtype: storage dtype of the weights (default: float32).
      mesh: when given, parameters are placed as ``globmed_jax.sharding`` rules say.
      config_overrides: other ModelConfig fields (e.g. ``scan_layers=False``).
    """
    path = resolve_checkpoint(path)
    dtype = None if dtype is None else jnp.dtype(dtype).name
    param_dtype = None if param_dtype is None else jnp.dtype(param_dtype).name
    cfg = load_config(path, dtype=dtype, param_dtype=param_dtype, **config_overrides)
    index = _SafetensorsIndex(path)
    _check_checkpoint(cfg, index, path)

    abstract = abstract_model(cfg, mesh)
    graphdef, abs_state = nnx.split(abstract)
    flat_abs = dict(nnx.to_flat_state(abs_state))
    loaded: dict[tuple, Any] = {}
    storage = cfg.weight_dtype
    for spec in param_table(cfg):
        var = flat_abs[spec.path]
        sharding = _target_sharding(var, mesh)
        if spec.per_layer:
            array = _stream_stacked(index, spec, cfg, var.shape, storage, sharding)
        else:
            host = spec.to_ours(index.read(spec.hf_name), cfg).astype(storage)
            array = jax.device_put(host, sharding)
        loaded[spec.path] = var.replace(array)
    index.close()
    unfilled = sorted(".".join(map(str, p)) for p in flat_abs if p not in loaded)
    if unfilled:
        raise CheckpointError(f"internal: parameters without a checkpoint mapping: {unfilled}")
    state = nnx.from_flat_state([(p, loaded[p]) for p in flat_abs])
    model = nnx.merge(graphdef, state)
    log.info("loaded %s (%s, %.1fM params) from %s", cfg.model_type, storage.name, cfg.num_params() / 1e6, path)
    return model, cfg


def _stream_stacked(index, spec: ParamSpec, cfg, shape, storage, sharding) -> jax.Array:
    """Builds a stacked ``[L, ...]`` array one layer at a time (donated in-place updates)."""
    stacked = jax.jit(lambda: jnp.zeros(shape, storage), out_shardings=sharding)()
    put_layer = jax.jit(lambda a, x, i: jax.lax.dynamic_update_index_in_dim(a, x, i, 0),
                        donate_argnums=0, out_shardings=sharding)
    layer_sharding = _slice_sharding(sharding)
    for i in range(cfg.num_layers):
        host = spec.to_ours(index.read(spec.hf_name.format(i=i)), cfg).astype(storage)
        stacked = put_layer(stacked, jax.device_put(host, layer_sharding), i)
    return stacked


# --------------------------------------------------------------------------------- writing


def _to_host(x: jax.Array) -> np.ndarray:
    if not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def _hf_tensors(model: CausalLM, dtype) -> Iterator[tuple[str, np.ndarray]]:
    cfg = model.cfg
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for spec in param_table(cfg):
        value = flat[spec.path][...]
        if spec.per_layer:
            for i in range(cfg.num_layers):
                layer = _to_host(value[i])
                yield spec.hf_name.format(i=i), np.ascontiguousarray(spec.to_hf(layer, cfg).astype(dtype))
        else:
            yield spec.hf_name, np.ascontiguousarray(spec.to_hf(_to_host(value), cfg).astype(dtype))


def write_safetensors(
    tensors: Iterator[tuple[str, np.ndarray]],
    out: Path,
    *,
    max_shard_bytes: int = 5 * 1024**3,
    writer: bool = True,
) -> list[str]:
    """Writes named tensors as ``model.safetensors`` or as HF-style shards plus
    ``model.safetensors.index.json``. Each shard is written as soon as it fills, so host
    memory holds at most one shard. Returns the written file names."""
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        for stale in list(out.glob("model*.safetensors")) + list(out.glob("model.safetensors.index.json")):
            stale.unlink()
    metadata = {"format": "pt"}
    written: list[tuple[str, list[str], int]] = []  # (temporary file, tensor names, bytes)
    pending: dict[str, np.ndarray] = {}
    pending_bytes = 0

    def flush():
        nonlocal pending, pending_bytes
        if pending and writer:
            tmp = f"model-part{len(written):05d}.tmp"
            save_file(pending, out / tmp, metadata=metadata)
            written.append((tmp, list(pending), pending_bytes))
        pending, pending_bytes = {}, 0

    for name, array in tensors:
        if pending and pending_bytes + array.nbytes > max_shard_bytes:
            flush()
        pending[name] = np.ascontiguousarray(array)
        pending_bytes += array.nbytes
    flush()
    if not writer:
        return []
    if len(written) == 1:
        (out / written[0][0]).rename(out / "model.safetensors")
        return ["model.safetensors"]
    weight_map, total, names = {}, 0, []
    for j, (tmp, tensor_names, nbytes) in enumerate(written):
        fname = f"model-{j + 1:05d}-of-{len(written):05d}.safetensors"
        (out / tmp).rename(out / fname)
        weight_map.update({n: fname for n in tensor_names})
        total += nbytes
        names.append(fname)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


def save_pretrained(
    model: CausalLM,
    out_dir: str | os.PathLike,
    *,
    dtype: Any = None,
    max_shard_bytes: int = 5 * 1024**3,
    tokenizer: Any = None,
) -> Path:
    """Writes ``config.json`` and safetensors (sharded above ``max_shard_bytes``) that
    ``transformers.AutoModelForCausalLM.from_pretrained(out_dir)`` loads.

    ``dtype`` is the stored dtype (default: the model's ``param_dtype``). Only process 0 writes
    when running multi-host; every process must call this (arrays are gathered collectively).
    """
    out = Path(out_dir)
    cfg = model.cfg
    dtype = jnp.dtype(dtype or cfg.param_dtype)
    writer = jax.process_index() == 0
    write_safetensors(_hf_tensors(model, dtype), out, max_shard_bytes=max_shard_bytes, writer=writer)
    if writer:
        hf_config = to_hf_config(cfg.replace(param_dtype=dtype.name))
        (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
    return out
