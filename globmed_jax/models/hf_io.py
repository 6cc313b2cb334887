"""Hugging Face checkpoint interop: safetensors in, safetensors out.

``from_pretrained`` validates the whole checkpoint against the expected parameter table first
(every missing, unexpected and mis-shaped tensor is reported together), then streams one tensor
at a time into its (sharded) device array. Stacked layer parameters are filled slice by slice
with a donated in-place update, so host memory never holds more than one layer's tensor.
No pickle, no remote code: only ``config.json`` and ``*.safetensors`` are read.

Weight files are treated as hostile input: every safetensors header is parsed and checked by us
(length, JSON, dtypes, offsets inside the file and not overlapping) before the library opens it,
index entries must name files inside the checkpoint directory, float parameters must be stored
as floats, and every tensor is checked finite as it is read. Each problem is one
``WeightFileError`` naming the file and the tensor.
"""

from __future__ import annotations

import dataclasses
import functools
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


class WeightFileError(CheckpointError):
    """A weight file (or index) that is malformed, escapes its directory, or holds values we refuse
    (integer or non-finite weights); the message names the file and, where known, the tensor."""


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


def param_table(cfg: ModelConfig, layout: "Layout | None" = None) -> list[ParamSpec]:
    """Every parameter of ``CausalLM(cfg)`` with its HF name, shape and layout transforms.

    Names are those of the ``*ForCausalLM`` checkpoints, or of ``layout`` (the language model
    inside a Gemma3ForConditionalGeneration checkpoint) when given."""
    specs = _causal_lm_table(cfg)
    if layout is None:
        return specs
    return [dataclasses.replace(spec, hf_name=layout.rename(spec.hf_name)) for spec in specs]


def _causal_lm_table(cfg: ModelConfig) -> list[ParamSpec]:
    d, f, v, hd = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim
    n = lambda c: c.num_heads  # noqa: E731
    k = lambda c: c.num_kv_heads  # noqa: E731
    layer = "model.layers.{i}."
    specs = [
        ParamSpec(("embed",), "model.embed_tokens.weight", lambda c: (v, d), _same, _same),
        ParamSpec(("final_norm", "scale"), "model.norm.weight", lambda c: (d,), _same, _same),
        ParamSpec(("layers", "input_norm", "scale"), layer + "input_layernorm.weight",
                  lambda c: (d,), _same, _same),
        # Our pre-MLP norm: Llama's post_attention_layernorm, Gemma's pre_feedforward_layernorm.
        ParamSpec(("layers", "post_attn_norm", "scale"),
                  layer + ("pre_feedforward_layernorm.weight" if cfg.post_norms
                           else "post_attention_layernorm.weight"),
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
    if cfg.post_norms:  # Gemma: norms on the attention and MLP outputs
        specs += [
            ParamSpec(("layers", "attn_out_norm", "scale"), layer + "post_attention_layernorm.weight",
                      lambda c: (d,), _same, _same),
            ParamSpec(("layers", "mlp_out_norm", "scale"), layer + "post_feedforward_layernorm.weight",
                      lambda c: (d,), _same, _same),
        ]
    if not cfg.tie_word_embeddings:
        specs.append(ParamSpec(("lm_head",), "lm_head.weight", lambda c: (v, d), _t, _t))
    return specs


# Tensors some exporters write that carry no parameters of ours.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a multimodal checkpoint keeps its language model: ``model.`` and ``lm_head.`` names
    of the causal-LM table move under these prefixes; tensors under ``ignored`` (the vision tower
    and its projector) are not part of our model and are skipped, with a log line."""

    model_prefix: str
    lm_head_prefix: str
    ignored: tuple[str, ...]

    def rename(self, name: str) -> str:
        if name.startswith("model."):
            return self.model_prefix + name[len("model."):]
        if name.startswith("lm_head."):
            return self.lm_head_prefix + name[len("lm_head."):]
        return name


# Gemma3ForConditionalGeneration (MedGemma 4B): the hub's and save_pretrained's layout, and the
# in-memory module layout some exporters write.
_MULTIMODAL_LAYOUTS = (
    Layout("language_model.model.", "language_model.lm_head.", ("vision_tower.", "multi_modal_projector.")),
    Layout("model.language_model.", "lm_head.", ("model.vision_tower.", "model.multi_modal_projector.")),
)


def detect_layout(cfg: ModelConfig, names) -> Layout | None:
    """The multimodal layout whose embedding tensor the checkpoint holds, else None (causal LM)."""
    names = set(names)
    if cfg.model_type != "gemma3_text" or "model.embed_tokens.weight" in names:
        return None
    for layout in _MULTIMODAL_LAYOUTS:
        if layout.rename("model.embed_tokens.weight") in names:
            return layout
    return None


# --------------------------------------------------------------------------------- reading


# safetensors dtype tag -> bytes per element (the format's full list as of safetensors 0.5).
_ST_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
# What a float parameter may be stored as (and numpy can read).
_FLOAT_TAGS = ("F16", "BF16", "F32", "F64")
_MAX_HEADER_BYTES = 100 * 1024**2  # the safetensors library's own limit


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor's header entry: the file (relative to the checkpoint directory), dtype tag, shape."""
    file: str
    dtype: str
    shape: tuple[int, ...]


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Parses and checks one file's header without trusting it: returns tensor name -> info.

    Raises ``WeightFileError`` naming the file (and tensor) for a bad length, bad JSON, an
    unknown dtype, a shape that disagrees with its byte range, offsets outside the file,
    overlapping tensors, or a file truncated before its last tensor ends."""
    def fail(message: str) -> None:
        raise WeightFileError(f"{path}: {message}")

    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            fail(f"not a safetensors file ({size} bytes, shorter than the 8-byte header length)")
        n = int.from_bytes(prefix, "little")
        if n > _MAX_HEADER_BYTES or 8 + n > size:
            fail(f"header length {n} is impossible for a file of {size} bytes")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        fail(f"header is not valid JSON ({err})")
    if not isinstance(header, dict):
        fail(f"header is a JSON {type(header).__name__}, not an object")
    data_bytes = size - 8 - n
    out: dict[str, TensorInfo] = {}
    ranges: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        out[name], span = _header_entry(path, name, entry, data_bytes)
        ranges.append((*span, name))
    ranges.sort()
    for (_, end_a, a), (begin_b, _, b) in zip(ranges, ranges[1:]):
        if begin_b < end_a:
            fail(f"tensors {a!r} and {b!r} overlap (byte {begin_b} < {end_a})")
    return out


def _header_entry(path: Path, name: str, entry: Any, data_bytes: int) -> tuple[TensorInfo, tuple[int, int]]:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise WeightFileError(f"{where}: header entry must have dtype, shape and data_offsets, got {entry!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _ST_ITEMSIZE:
        raise WeightFileError(f"{where}: unknown dtype {dtype!r}")
    ints = lambda xs: isinstance(xs, list) and all(type(x) is int and x >= 0 for x in xs)  # noqa: E731
    if not ints(shape) or not ints(offsets) or len(offsets) != 2:
        raise WeightFileError(f"{where}: shape {shape!r} / data_offsets {offsets!r} must be non-negative integers")
    begin, end = offsets
    expected = int(np.prod(shape, dtype=np.int64)) * _ST_ITEMSIZE[dtype] if shape else _ST_ITEMSIZE[dtype]
    if end < begin or end - begin != expected:
        raise WeightFileError(f"{where}: data_offsets {offsets} hold {end - begin} bytes, but {dtype} "
                              f"{tuple(shape)} needs {expected}")
    if end > data_bytes:
        raise WeightFileError(f"{where}: data ends at byte {end} but the file has only {data_bytes} data "
                              "bytes (truncated?)")
    return TensorInfo(path.name, dtype, tuple(shape)), (begin, end)


def _index_files(directory: Path, index_file: Path) -> tuple[list[str], dict[str, str]]:
    """The shard names an index lists, each a file inside ``directory`` (no ``..``, no absolute
    path, no symlink out of it)."""
    try:
        weight_map = json.loads(index_file.read_text())["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise WeightFileError(f"{index_file}: not a safetensors index with a 'weight_map' ({err!r})") from None
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise WeightFileError(f"{index_file}: 'weight_map' must map tensor names to file names")
    root = directory.resolve()
    for tensor, name in weight_map.items():
        target = (directory / name).resolve()
        if Path(name).is_absolute() or ".." in Path(name).parts or target.parent != root:
            raise WeightFileError(f"{index_file}: tensor {tensor!r} points to {name!r}, outside {directory}")
        if not name.endswith(".safetensors"):
            raise WeightFileError(f"{index_file}: tensor {tensor!r} points to {name!r}, not a .safetensors file")
    return sorted(set(weight_map.values())), weight_map


class _SafetensorsIndex:
    """Tensor name -> file, shape and dtype, from headers only (no tensor data read)."""

    def __init__(self, directory: Path):
        index_file = directory / "model.safetensors.index.json"
        single = directory / "model.safetensors"
        weight_map: dict[str, str] | None = None
        if index_file.exists():
            files, weight_map = _index_files(directory, index_file)
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
        self.infos: dict[str, TensorInfo] = {}
        for name in files:
            path = directory / name
            if not path.exists():
                raise FileNotFoundError(f"{index_file} lists {name}, which does not exist")
            for key, info in read_safetensors_header(path).items():
                if key in self.infos:
                    raise WeightFileError(f"tensor {key!r} is in both {directory / self.infos[key].file} "
                                          f"and {path}")
                self.infos[key] = info
        for key, name in (weight_map or {}).items():
            if key not in self.infos or self.infos[key].file != name:
                raise WeightFileError(f"{index_file}: tensor {key!r} is listed in {name}, which does not hold it")
        self.meta = {k: (i.file, i.shape) for k, i in self.infos.items()}
        self._handles: dict[str, Any] = {}

    def read(self, name: str) -> np.ndarray:
        """The tensor as numpy; any library error becomes a WeightFileError naming file and tensor."""
        file = self.infos[name].file
        try:
            if file not in self._handles:
                self._handles[file] = safe_open(self.directory / file, framework="numpy")
            return self._handles[file].get_tensor(name)
        except Exception as err:  # safetensors raises SafetensorError / OSError / ValueError
            raise WeightFileError(f"{self.directory / file}: tensor {name!r} cannot be read: {err}") from None

    def close(self):
        self._handles.clear()


def _check_checkpoint(cfg: ModelConfig, index: _SafetensorsIndex, source: Path,
                      layout: Layout | None = None) -> None:
    expected: dict[str, tuple[int, ...]] = {}
    for spec in param_table(cfg, layout):
        names = ([spec.hf_name.format(i=i) for i in range(cfg.num_layers)] if spec.per_layer
                 else [spec.hf_name])
        for name in names:
            expected[name] = spec.hf_shape(cfg)
    missing = sorted(n for n in expected if n not in index.meta)
    misshaped = sorted(
        f"{n}: expected {expected[n]}, found {index.meta[n][1]}"
        for n in expected if n in index.meta and index.meta[n][1] != expected[n])
    ignored = layout.ignored if layout is not None else ()
    skipped = sorted(n for n in index.meta if n not in expected and n.startswith(ignored)) if ignored else []
    if skipped:
        log.info("%s: ignoring %d vision-tower / projector tensor(s) of the multimodal checkpoint "
                 "(only the language model is loaded)", source, len(skipped))
    unexpected = sorted(n for n in index.meta if n not in expected and not n.endswith(_IGNORED_SUFFIXES)
                        and not (ignored and n.startswith(ignored)))
    head = "lm_head.weight" if layout is None else layout.rename("lm_head.weight")
    tied_conflict = cfg.tie_word_embeddings and head in index.meta
    if tied_conflict:
        # Which matrix the output layer would use is ambiguous: refuse rather than pick one.
        unexpected = [f"{head} (in {index.infos[head].file}; config.json sets "
                      "tie_word_embeddings=true: drop the tensor or set it false)"
                      if n == head else n for n in unexpected]
    not_float = sorted(f"{n}: {index.infos[n].dtype} in {index.infos[n].file}"
                       for n in expected if n in index.infos and index.infos[n].dtype not in _FLOAT_TAGS)
    if missing or misshaped or unexpected or not_float:
        parts = [f"checkpoint {source} does not match {cfg.model_type} "
                 f"({cfg.num_layers} layers, hidden {cfg.hidden_size}):"]
        for title, items in (("missing", missing), ("mis-shaped", misshaped), ("unexpected", unexpected),
                             (f"non-float (allowed: {', '.join(_FLOAT_TAGS)})", not_float)):
            if items:
                shown = items[:50] + ([f"... and {len(items) - 50} more"] if len(items) > 50 else [])
                parts.append(f"  {len(items)} {title} tensor(s):\n    " + "\n    ".join(shown))
        error = WeightFileError if not_float or tied_conflict else CheckpointError
        raise error("\n".join(parts))


def generation_eos_ids(checkpoint_dir: Path) -> tuple[int, ...] | None:
    """The stop tokens of ``generation_config.json``, when the checkpoint has one that sets them.

    transformers' ``generate`` stops on these, not on config.json's ``eos_token_id`` (Qwen3 and
    Llama 3.1 instruct models list more there, e.g. ``<|im_end|>`` and ``<|endoftext|>``), so greedy
    decoding reads them too to stop where ``generate`` does."""
    file = checkpoint_dir / "generation_config.json"
    if not file.exists():
        return None
    try:
        eos = json.loads(file.read_text()).get("eos_token_id")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{file}: not a JSON object ({err})") from None
    if eos is None:
        return None
    ids = eos if isinstance(eos, list) else [eos]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"{file}: field eos_token_id must be a token id or a list of them, got {eos!r}")
    return tuple(ids)


def load_config(path: str | os.PathLike, **overrides: Any) -> ModelConfig:
    """Reads ``config.json`` from a checkpoint directory (or hub id) into a ModelConfig; stop tokens
    come from ``generation_config.json`` when it sets them (as transformers' ``generate``)."""
    config_file = resolve_checkpoint(path) / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} does not exist (expected a Hugging Face checkpoint directory)")
    try:
        hf = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "eos_token_ids" not in overrides and (stops := generation_eos_ids(config_file.parent)) is not None:
        overrides["eos_token_ids"] = stops
    try:
        return from_hf_config(hf, **overrides)
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
    allow_nonfinite: bool = False,
    **config_overrides: Any,
) -> tuple[CausalLM, ModelConfig]:
    """Loads an HF checkpoint into a (sharded) ``CausalLM``.

    Args:
      path: directory with ``config.json`` and ``model.safetensors`` or a sharded index, or a
        hub id ``org/name[@revision]`` (resolved by ``hub.resolve_checkpoint``: safetensors only).
      dtype: compute dtype (default: the config default, bfloat16).
      param_dtype: storage dtype of the weights (default: float32).
      mesh: when given, parameters are placed as ``globmed_jax.sharding`` rules say.
      allow_nonfinite: load NaN/inf weights instead of raising ``WeightFileError`` (debugging only).
      config_overrides: other ModelConfig fields (e.g. ``scan_layers=False``).
    """
    path = resolve_checkpoint(path)
    dtype = None if dtype is None else jnp.dtype(dtype).name
    param_dtype = None if param_dtype is None else jnp.dtype(param_dtype).name
    cfg = load_config(path, dtype=dtype, param_dtype=param_dtype, **config_overrides)
    index = _SafetensorsIndex(path)
    layout = detect_layout(cfg, index.meta)
    _check_checkpoint(cfg, index, path, layout)
    storage = cfg.weight_dtype
    read = index.read if allow_nonfinite else functools.partial(_read_finite, index, storage=storage)

    abstract = abstract_model(cfg, mesh)
    graphdef, abs_state = nnx.split(abstract)
    flat_abs = dict(nnx.to_flat_state(abs_state))
    loaded: dict[tuple, Any] = {}
    for spec in param_table(cfg, layout):
        var = flat_abs[spec.path]
        sharding = _target_sharding(var, mesh)
        if spec.per_layer:
            array = _stream_stacked(read, spec, cfg, var.shape, storage, sharding)
        else:
            host = spec.to_ours(read(spec.hf_name), cfg).astype(storage)
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


def _read_finite(index: _SafetensorsIndex, name: str, storage: Any = None) -> np.ndarray:
    """The tensor, refused when it holds NaN or inf, or values that become inf in the storage
    dtype (a float64 1e300 cast to float32): either would silently poison every logit."""
    array = index.read(name)
    where = f"{index.directory / index.infos[name].file}: tensor {name!r}"
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise WeightFileError(f"{where} has {bad} non-finite value(s) of {array.size} (NaN/inf); "
                              f"pass allow_nonfinite=True to load it anyway")
    if storage is not None and array.size and np.issubdtype(array.dtype, np.floating):
        limit = float(jnp.finfo(storage).max)
        largest = float(np.max(np.abs(array)))
        if largest > limit:
            raise WeightFileError(f"{where} holds {largest:.3g}, beyond the largest {jnp.dtype(storage).name} "
                                  f"({limit:.3g}): it would load as inf; pass allow_nonfinite=True to load it anyway")
    return array


def _stream_stacked(read: Callable[[str], np.ndarray], spec: ParamSpec, cfg, shape, storage,
                    sharding) -> jax.Array:
    """Builds a stacked ``[L, ...]`` array one layer at a time (donated in-place updates)."""
    stacked = jax.jit(lambda: jnp.zeros(shape, storage), out_shardings=sharding)()
    put_layer = jax.jit(lambda a, x, i: jax.lax.dynamic_update_index_in_dim(a, x, i, 0),
                        donate_argnums=0, out_shardings=sharding)
    layer_sharding = _slice_sharding(sharding)
    for i in range(cfg.num_layers):
        host = spec.to_ours(read(spec.hf_name.format(i=i)), cfg).astype(storage)
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
    ``transformers.AutoModelForCausalLM.from_pretrained(out_dir)`` loads. Always a causal-LM
    checkpoint: a model loaded from a Gemma3ForConditionalGeneration checkpoint (MedGemma 4B) is
    written as the Gemma3ForCausalLM of its language model (we never held the vision tower).

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
