"""Per-device memory plan of a training config: the train step compiled abstractly, no weights.

The model is built under ``nnx.eval_shape`` and the train state is ``ShapeDtypeStruct``s carrying
their shardings, so planning Qwen3-8B needs no more host memory than the compiler itself. The
step, its shardings and the compile come from ``globmed_jax.training`` (the same functions the
training loop runs). Prints XLA's per-device ``memory_analysis()``, the analytic per-device bytes
of parameters / gradients / optimizer state, and the shardings of the 10 largest arrays.

    # 8 simulated CPU devices (XLA:CPU buffer sizes; GPU/TPU fusion differs, see docs/performance.md)
    python scripts/memory_plan.py --devices 8 --config.model.preset=qwen3_8b \\
        --config.data.seq_len=4096 --config.train.global_batch_size=8 --config.model.remat_policy=full
    # TPU v5p-8 ahead-of-time compile on this CPU machine (needs `pip install libtpu`)
    python scripts/memory_plan.py --topology v5p-8 --config.model.preset=qwen3_8b ...
    # a config file + overrides, as for training
    python scripts/memory_plan.py --config configs/demo.py --config.train.global_batch_size=64

Without ``--config`` the defaults of ``globmed_jax.training.config`` are used with
``model.init='scratch'`` (the preset's architecture). A ``pretrained`` config whose checkpoint
directory exists reads only its ``config.json``. ``--layers N`` compiles N and 2N layers and
extrapolates linearly to the full depth (for machines where a full compile is too slow).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

GIB = 1024**3

# Cloud TPU slices: name -> get_topology_desc arguments (as MaxText's accelerator_to_spec_map).
TPU_TOPOLOGIES: dict[str, dict[str, Any]] = {
    "v5p-8": dict(topology_name="v5p:2x2x1", chip_config_name="megacore", chips_per_host_bounds=(2, 2, 1)),
    "v5p-16": dict(topology_name="v5p:2x2x2", chip_config_name="megacore", chips_per_host_bounds=(2, 2, 1)),
    "v6e-8": dict(topology_name="v6e:2x4", chip_config_name="default", chips_per_host_bounds=(2, 2, 1)),
    "v6e-1": dict(topology_name="v6e:1x1", chip_config_name="default", chips_per_host_bounds=(1, 1, 1)),
    "v6e-4": dict(topology_name="v6e:2x2", chip_config_name="default", chips_per_host_bounds=(2, 2, 1)),
    "v5litepod-8": dict(topology_name="v5e:2x4", chip_config_name="default", chips_per_host_bounds=(2, 2, 1)),
}


# ------------------------------------------------------------------------------ arguments


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Own options; everything else (``--config``, ``--config.a.b=v``) goes to ml_collections."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--devices", type=int, default=0,
                       help="compile for N simulated CPU devices (default: the devices JAX sees)")
    where.add_argument("--topology", choices=sorted(TPU_TOPOLOGIES),
                       help="ahead-of-time compile for a Cloud TPU slice (needs libtpu installed)")
    parser.add_argument("--libtpu", default="", help="path to libtpu.so (default: the installed libtpu package)")
    parser.add_argument("--layers", type=int, default=0,
                        help="compile N and 2N layers and extrapolate linearly to the full depth")
    parser.add_argument("--model-override", action="append", default=[], metavar="FIELD=VALUE",
                        help="set a ModelConfig field in model.overrides (repeatable), e.g. num_layers=4")
    parser.add_argument("--top", type=int, default=10, help="how many of the largest arrays to list")
    parser.add_argument("--json", dest="json_out", default="", help="also write the plan as JSON here")
    return parser.parse_known_args(argv)


def configure_backend(args: argparse.Namespace) -> None:
    """Must run before JAX creates a backend: simulated CPU devices, or libtpu for AOT only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.topology:
        # The TPU backend is never started (this machine has no TPU); libtpu is only the compiler.
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", args.topology)
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
        if args.libtpu:
            os.environ["TPU_LIBRARY_PATH"] = args.libtpu
    elif args.devices:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


def load_config(rest: list[str], model_overrides: list[str] = ()):
    """The training config from ``--config`` (+ overrides) or the defaults (scratch init)."""
    from absl import flags
    from ml_collections import config_flags

    from globmed_jax.cli import parse_flags
    from globmed_jax.training.config import default_config

    if not any(a == "--config" or a.startswith("--config=") for a in rest):
        base = default_config()
        base.model.init = "scratch"
        base.tokenizer.kind = "qwen3"
        try:  # config_flags applies --config.* overrides of a dict default while defining the flag
            config_flags.DEFINE_config_dict("config", base)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise SystemExit(f"error: invalid --config override ({err}); the keys are those of "
                             "globmed_jax/training/config.py:default_config()") from None
    else:
        config_flags.DEFINE_config_file("config", None, "training config file")
    if parse_flags([sys.argv[0], *rest]) is None:
        raise SystemExit(2)
    config = flags.FLAGS.config
    with config.unlocked():
        for item in model_overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"error: --model-override expects FIELD=VALUE, got {item!r}")
            try:
                config.model.overrides[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):  # a bare word: a string field such as attention_impl
                config.model.overrides[key] = value
    return config


# -------------------------------------------------------------------------------- devices


def target_devices(args: argparse.Namespace) -> tuple[list, str]:
    import jax

    if not args.topology:
        devices = jax.devices()
        if args.devices and len(devices) != args.devices:
            raise SystemExit(f"error: asked for {args.devices} devices, JAX sees {len(devices)} "
                             "(XLA_FLAGS was set before this script ran?)")
        return devices, f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})"
    from jax.experimental import topologies

    if not args.libtpu and "TPU_LIBRARY_PATH" not in os.environ:
        try:
            import libtpu  # noqa: F401  (jax finds libtpu.so through this package)
        except ImportError:
            raise SystemExit("error: --topology needs libtpu: `pip install libtpu` (about 210 MB) or --libtpu PATH")
    spec = TPU_TOPOLOGIES[args.topology]
    topo = topologies.get_topology_desc(platform="tpu", num_slices=1, wrap=(False, False, False), **spec)
    devices = list(topo.devices)
    return devices, f"{args.topology}: {len(devices)} x {devices[0].device_kind} (AOT, libtpu)"


# ------------------------------------------------------------------------------ the model


def preset_name(config) -> str:
    """The preset whose shapes stand in for the model: ``model.preset``, or for a pretrained
    checkpoint that is not downloaded, the preset its directory is named after
    (``checkpoints/qwen3_8b`` -> ``qwen3_8b``, ``Qwen3-8B`` -> ``qwen3_8b``) when there is one."""
    from globmed_jax.models import PRESETS

    if config.model.init == "pretrained" and config.model.checkpoint:
        name = Path(config.model.checkpoint).name.lower().replace("-", "_").replace(".", "p")
        if name in PRESETS:
            return name
    return config.model.preset


def model_config(config) -> Any:
    """The ModelConfig the run would build, without reading any weights."""
    from globmed_jax.models import get_preset, load_config as load_hf_config
    from globmed_jax.training.config import model_config_overrides

    overrides = model_config_overrides(config)
    checkpoint = Path(config.model.checkpoint or "")
    if config.model.init == "pretrained" and (checkpoint / "config.json").exists():
        cfg = load_hf_config(checkpoint, **overrides)
    else:  # scratch, or a checkpoint not downloaded yet: the preset has the same shapes
        if (config.model.init == "scratch" and config.tokenizer.kind == "bpe"
                and "vocab_size" not in overrides):  # the loop pads the trained BPE's size to 128
            overrides["vocab_size"] = -(-config.tokenizer.vocab_size // 128) * 128
        cfg = get_preset(preset_name(config), **overrides)
    if config.lora.rank > 0:
        cfg = cfg.replace(lora_rank=config.lora.rank, lora_alpha=config.lora.alpha,
                          lora_targets=tuple(config.lora.targets))
    return cfg


def model_template(cfg, mesh):
    """``ModelTemplate`` of an abstract model (ShapeDtypeStruct leaves, no allocation)."""
    from flax import nnx

    from globmed_jax.models.hf_io import abstract_model
    from globmed_jax.training.step import ModelTemplate

    trainable = nnx.LoRAParam if cfg.lora_rank > 0 else nnx.Param
    return ModelTemplate(abstract_model(cfg, mesh), trainable)


def make_optimizer_for(config, params):
    from globmed_jax.training.optim import make_optimizer

    from globmed_jax.training.config import typed_config

    return make_optimizer(params, typed_config(config).train.optim)


def per_device_bytes(x) -> int:
    """Bytes one device holds of an array with a NamedSharding."""
    shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) is not None else x.shape
    return math.prod(shape) * x.dtype.itemsize


def analytic_bytes(state) -> dict[str, float]:
    """Per-device GiB of what lives through the step: params, their gradients (same dtype and
    sharding), frozen weights and the optimizer state."""
    import jax

    def total(tree):
        return sum(per_device_bytes(x) for x in jax.tree.leaves(tree)) / GIB

    params = total(state.params)
    out = {"params_gib": params, "grads_gib": params, "frozen_gib": total(state.frozen),
           "optimizer_gib": total(state.opt_state)}
    out["state_and_grads_gib"] = sum(out.values())
    return out


def largest_arrays(state, top: int) -> list[dict[str, Any]]:
    import jax

    rows = []
    for path, x in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
        rows.append({"array": name, "shape": list(x.shape), "dtype": str(x.dtype),
                     "spec": str(x.sharding.spec), "global_gib": math.prod(x.shape) * x.dtype.itemsize / GIB,
                     "per_device_gib": per_device_bytes(x) / GIB})
    rows.sort(key=lambda r: -r["global_gib"])
    return rows[:top]


def compile_plan(config, cfg, devices) -> dict[str, Any]:
    """Compiles the real train step for ``devices`` and returns the memory figures."""
    from globmed_jax import sharding
    from globmed_jax.training.config import LOSS_REMAT
    from globmed_jax.training.loop import compile_step, memory_report
    from globmed_jax.training.step import abstract_train_state, jit_train_step, make_train_step, state_shardings

    t = config.train
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=devices)
    template = model_template(cfg, mesh)
    tx, schedule = make_optimizer_for(config, template.initial_params)
    shardings = state_shardings(template, tx, mesh)
    step_fn = make_train_step(template, tx, schedule, num_languages=len(config.data.languages),
                              microbatches=t.microbatches, loss_chunk=t.loss_chunk, skip_nonfinite=True,
                              prompt_loss_weight=t.prompt_loss_weight, remat_loss=LOSS_REMAT[t.loss_remat])
    jitted = jit_train_step(step_fn, shardings, mesh, t.global_batch_size, config.data.seq_len)
    state = abstract_train_state(template, tx, shardings)
    t0 = time.perf_counter()
    compiled = compile_step(jitted, state, t.global_batch_size, config.data.seq_len, mesh)
    return {"compile_s": time.perf_counter() - t0, "xla": memory_report(compiled),
            "analytic": analytic_bytes(state), "state": state,
            "mesh": {k: int(v) for k, v in mesh.shape.items()}}


def extrapolate(small: dict[str, float], large: dict[str, float], n_small: int, n_large: int,
                n_full: int) -> dict[str, float]:
    """Linear in the number of layers through the two compiled depths."""
    return {k: small[k] + (large[k] - small[k]) * (n_full - n_small) / (n_large - n_small)
            for k in small if k in large}


def plan(config, devices, description: str, layers: int = 0, top: int = 10) -> dict[str, Any]:
    from globmed_jax.training.config import validate

    validate(config, len(devices), 1)
    cfg = model_config(config)
    result: dict[str, Any] = {
        "target": description, "model": model_description(config),
        "params_b": cfg.num_params() / 1e9, "num_layers": cfg.num_layers,
        "global_batch": config.train.global_batch_size, "seq_len": config.data.seq_len,
        "microbatches": config.train.microbatches, "remat_policy": cfg.remat_policy,
        "dtype": cfg.dtype, "param_dtype": cfg.param_dtype, "lora_rank": cfg.lora_rank,
    }
    if layers and layers * 2 < cfg.num_layers:
        a = compile_plan(config, cfg.replace(num_layers=layers), devices)
        b = compile_plan(config, cfg.replace(num_layers=2 * layers), devices)
        full_state = abstract_train_state_for(config, cfg, devices)
        result.update(compiled_layers=[layers, 2 * layers], compile_s=a["compile_s"] + b["compile_s"],
                      mesh=a["mesh"], extrapolated=True,
                      xla=extrapolate(a["xla"], b["xla"], layers, 2 * layers, cfg.num_layers))
        result["analytic"] = analytic_bytes(full_state)
        result["largest"] = largest_arrays(full_state, top)
    else:
        full = compile_plan(config, cfg, devices)
        result.update(compiled_layers=[cfg.num_layers], compile_s=full["compile_s"], mesh=full["mesh"],
                      extrapolated=False, xla=full["xla"], analytic=full["analytic"],
                      largest=largest_arrays(full["state"], top))
    return result


def model_description(config) -> str:
    checkpoint = Path(config.model.checkpoint or "")
    if config.model.init != "pretrained":
        return f"{config.model.preset} (scratch)"
    if (checkpoint / "config.json").exists():
        return f"{checkpoint} (config.json)"
    return f"{checkpoint} not downloaded: shapes of preset {preset_name(config)}"


def abstract_train_state_for(config, cfg, devices):
    """The full-depth abstract state (shapes and shardings only, no compile)."""
    from globmed_jax import sharding
    from globmed_jax.training.step import abstract_train_state, state_shardings

    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=devices)
    template = model_template(cfg, mesh)
    tx, _ = make_optimizer_for(config, template.initial_params)
    return abstract_train_state(template, tx, state_shardings(template, tx, mesh))


# -------------------------------------------------------------------------------- output


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def format_plan(result: dict[str, Any]) -> str:
    x, a = result["xla"], result["analytic"]
    mesh = " x ".join(f"{k}={v}" for k, v in result["mesh"].items())
    how = (f"compiled {result['compiled_layers'][0]} and {result['compiled_layers'][1]} layers, "
           f"extrapolated linearly to {result['num_layers']}" if result["extrapolated"]
           else f"compiled all {result['num_layers']} layers")
    lines = [
        f"target: {result['target']}   mesh: {mesh}",
        f"model: {result['model']} ({_count(result['params_b'] * 1e9)} params), batch {result['global_batch']} x "
        f"{result['seq_len']} tokens, {result['microbatches']} microbatch(es), remat={result['remat_policy']}, "
        f"compute {result['dtype']}, params {result['param_dtype']}, lora_rank={result['lora_rank']}",
        f"{how}; compile {result['compile_s']:.1f}s",
        "",
        "per device (GiB)            XLA memory_analysis   |  analytic",
        f"  arguments                 {x.get('argument_gib', float('nan')):10.2f}          |  params   {a['params_gib']:8.2f}",
        f"  outputs                   {x.get('output_gib', float('nan')):10.2f}          |  grads    {a['grads_gib']:8.2f}",
        f"  aliased (donated)         {x.get('alias_gib', float('nan')):10.2f}          |  frozen   {a['frozen_gib']:8.2f}",
        f"  temporaries               {x.get('temp_gib', float('nan')):10.2f}          |  optimizer{a['optimizer_gib']:8.2f}",
        f"  peak estimate             {x.get('peak_estimate_gib', float('nan')):10.2f}          |  total    {a['state_and_grads_gib']:8.2f}",
        "",
        f"{len(result['largest'])} largest arrays of the train state:",
        f"  {'array':<44} {'shape':<22} {'dtype':<9} {'spec':<34} {'GiB/dev':>8}",
    ]
    for r in result["largest"]:
        lines.append(f"  {r['array'][:44]:<44} {str(tuple(r['shape'])):<22} {r['dtype']:<9} "
                     f"{r['spec'][:34]:<34} {r['per_device_gib']:8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    configure_backend(args)
    config = load_config(rest, args.model_override)
    devices, description = target_devices(args)
    from globmed_jax.training.config import ConfigError
    from globmed_jax.training.loop import CompileOutOfMemoryError

    try:
        result = plan(config, devices, description, layers=args.layers, top=args.top)
    except (ConfigError, CompileOutOfMemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_plan(result))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
