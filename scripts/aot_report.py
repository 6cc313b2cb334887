"""TPU ahead-of-time report: flops, bytes and temporary memory of OUR train step, prefill and
decode step, compiled by libtpu on this (CPU) machine for a named slice, against the ideal.

    pip install --target ~/libtpu "libtpu==0.0.42.*"      # the compiler only (see docs/performance.md)
    python scripts/aot_report.py --libtpu ~/libtpu/libtpu/libtpu.so --topology v6e:1x1
    python scripts/aot_report.py --topology v5p:2x2x1 --preset qwen3_1p7b --train-seqs 2048,4096,8192

What is compiled (nothing is allocated: abstract model, ``ShapeDtypeStruct`` inputs):

* train: ``training.step.make_train_step`` (the loop's step: chunked loss, AdamW, fp32 master
  weights, bf16 compute), ``--train-layers`` layers, batch ``--train-batch``, remat ``none``
  unless ``--remat``; ideal flops = ``training.metrics.flops_per_token`` x tokens (6 x params +
  causal attention).
* prefill: ``decode._prefill`` (left-padded prompt -> filled cache + first token).
* decode: ``decode.decode_step`` (one greedy step, the body of the decode while-loop) with the
  cache donated, layers unrolled as the Decoder runs them; ideal bytes = the weights and the KV
  cache read once (per device).

``cost_analysis()`` of an executable with loops counts a loop body once, so everything here is
compiled unrolled where it matters (the decode step; train with ``scan_layers=False``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from typing import Any

GB = 1e9
GIB = 1024**3


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topology", default="v6e:1x1", help="e.g. v6e:1x1, v6e:2x4, v5p:2x2x1")
    p.add_argument("--libtpu", default="", help="path to libtpu.so (default: the installed libtpu package)")
    p.add_argument("--preset", default="qwen3_1p7b")
    p.add_argument("--decode-batches", default="1,32")
    p.add_argument("--cache", type=int, default=1024, help="decode cache length (slots)")
    p.add_argument("--prefill", default="1x512", help="BATCHxLEN of the prefill rows ('' to skip)")
    p.add_argument("--train-seqs", default="2048,8192")
    p.add_argument("--train-layers", type=int, default=4)
    p.add_argument("--train-batch", type=int, default=1)
    p.add_argument("--remat", default="none")
    p.add_argument("--attention", default="", help="force ModelConfig.attention_impl (e.g. xla)")
    p.add_argument("--loss-chunk", type=int, default=0,
                   help="train.loss_chunk (0: the training default); >= the sequence length leaves no "
                        "loop in the step, so cost_analysis counts the whole loss")
    p.add_argument("--skip", default="", help="comma list of sections to skip: train,prefill,decode")
    return p.parse_args(argv)


def configure_backend(args) -> None:
    """Before JAX starts: libtpu is only the compiler, the CPU stays the backend."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v6e-1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    if args.libtpu:
        os.environ["TPU_LIBRARY_PATH"] = args.libtpu


def tpu_devices(name: str) -> list:
    """Devices of a topology such as ``v6e:2x4`` (as MaxText's accelerator map spells them)."""
    from jax.experimental import topologies

    kind, _, dims = name.partition(":")
    shape = tuple(int(d) for d in dims.split("x"))
    bounds = tuple(min(d, c) for d, c in zip(shape + (1,) * (3 - len(shape)), (2, 2, 1)))
    chip = "megacore" if kind in ("v4", "v5p") else "default"
    topo = topologies.get_topology_desc(platform="tpu", topology_name=name, chip_config_name=chip,
                                        chips_per_host_bounds=bounds, num_slices=1, wrap=(False, False, False))
    return list(topo.devices)


def per_device_bytes(tree) -> int:
    import jax

    total = 0
    for x in jax.tree.leaves(tree):
        sh = getattr(x, "sharding", None)
        shape = sh.shard_shape(x.shape) if sh is not None else x.shape
        total += math.prod(shape) * x.dtype.itemsize
    return total


def figures(compiled) -> dict[str, float]:
    ca = compiled.cost_analysis() or {}
    ma = compiled.memory_analysis()
    return {"flops": float(ca.get("flops", float("nan"))), "bytes": float(ca.get("bytes accessed", float("nan"))),
            "temp": float(getattr(ma, "temp_size_in_bytes", float("nan"))),
            "args": float(getattr(ma, "argument_size_in_bytes", float("nan"))),
            "alias": float(getattr(ma, "alias_size_in_bytes", float("nan")))}


# ---------------------------------------------------------------------------------- sections


def _abstract(cfg, mesh):
    from flax import nnx

    from globmed_jax.models.hf_io import abstract_model

    model = abstract_model(cfg, mesh)
    graphdef, state = nnx.split(model)
    return model, graphdef, state


def _sds(shape, dtype, sharding):
    import jax

    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def decode_rows(cfg, mesh, batches, cache_len) -> list[dict[str, Any]]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from globmed_jax import decode
    from globmed_jax.models.transformer import CACHE_AXES

    cfg = cfg.replace(dtype="bfloat16", param_dtype="bfloat16")  # inference: bf16 weights
    model, graphdef, state = _abstract(cfg, mesh)
    rows = []
    for b in batches:
        cache = jax.eval_shape(lambda: model.init_cache(b, cache_len))
        cache_sh = model.shard.sharding(cache.k.shape, CACHE_AXES)
        rep = model.shard.sharding((b,), ("activation_batch",))
        cache = type(cache)(k=_sds(cache.k.shape, cache.k.dtype, cache_sh),
                            v=_sds(cache.v.shape, cache.v.dtype, cache_sh),
                            valid=_sds(cache.valid.shape, bool, model.shard.sharding(cache.valid.shape, ("activation_batch", None))),
                            index=_sds((), jnp.int32, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())))

        def step(state, cache, last):
            return decode.decode_step(nnx.merge(graphdef, state), cache, last)

        t0 = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=(1,)).lower(state, cache, _sds((b,), jnp.int32, rep)).compile()
        f = figures(compiled)
        ideal = per_device_bytes(state) + per_device_bytes((cache.k, cache.v))
        rows.append(dict(section="decode step", shape=f"batch {b}, cache {cache_len}", **f, ideal_bytes=ideal,
                         ideal_flops=float("nan"), compile_s=time.perf_counter() - t0))
    return rows


def prefill_rows(cfg, mesh, spec: str) -> list[dict[str, Any]]:
    import functools

    import jax
    import jax.numpy as jnp

    from globmed_jax import decode

    b, p = (int(x) for x in spec.split("x"))
    cfg = cfg.replace(dtype="bfloat16", param_dtype="bfloat16", scan_layers=False)  # see the docstring
    model, graphdef, state = _abstract(cfg, mesh)
    tok_sh = model.shard.sharding((b, p), ("activation_batch", "activation_length"))
    s = decode.bucket_length(2 * p)
    fn = jax.jit(functools.partial(decode._prefill, graphdef, cache_length=s))
    t0 = time.perf_counter()
    compiled = fn.lower(state, _sds((b, p), jnp.int32, tok_sh), _sds((b, p), jnp.int32, tok_sh)).compile()
    f = figures(compiled)
    cache_bytes = 2 * cfg.num_layers * b * cfg.num_kv_heads * s * cfg.head_dim * 2
    from globmed_jax.training.metrics import flops_per_token

    return [dict(section="prefill", shape=f"batch {b} x {p} (cache {s})", **f,
                 ideal_bytes=per_device_bytes(state) + cache_bytes / len(mesh.devices.flat),
                 ideal_flops=flops_per_token(cfg, p) / 3 * b * p / len(mesh.devices.flat),
                 compile_s=time.perf_counter() - t0)]


def train_rows(cfg, devices, seqs, batch, remat, loss_chunk: int = 0) -> list[dict[str, Any]]:
    from globmed_jax import sharding
    from globmed_jax.training.config import default_config, typed_config
    from globmed_jax.training.loop import CompileOutOfMemoryError, compile_step
    from globmed_jax.training.metrics import flops_per_token
    from globmed_jax.training.optim import make_optimizer
    from globmed_jax.training.step import (ModelTemplate, abstract_train_state, jit_train_step,
                                           make_train_step, state_shardings)
    from globmed_jax.models.hf_io import abstract_model
    from flax import nnx

    cfg = cfg.replace(remat_policy=remat, scan_layers=False)  # unrolled: cost_analysis sees every layer
    mesh = sharding.make_mesh(1, -1, 1, devices=devices)
    config = default_config()
    config.model.init, config.tokenizer.kind = "scratch", "qwen3"
    if loss_chunk:
        config.train.loss_chunk = loss_chunk
    rows = []
    for seq in seqs:
        template = ModelTemplate(abstract_model(cfg, mesh), nnx.Param)
        train = typed_config(config).train
        tx, schedule = make_optimizer(template.initial_params, train.optim)
        shardings = state_shardings(template, tx, mesh)
        step_fn = make_train_step(template, tx, schedule, num_languages=len(config.data.languages),
                                  microbatches=1, loss_chunk=config.train.loss_chunk, skip_nonfinite=True,
                                  prompt_loss_weight=config.train.prompt_loss_weight,
                                  remat_loss=train.remat_loss)
        gb = batch * len(devices)
        jitted = jit_train_step(step_fn, shardings, mesh, gb, seq)
        state = abstract_train_state(template, tx, shardings)
        t0 = time.perf_counter()
        try:
            f = figures(compile_step(jitted, state, gb, seq, mesh))
        except CompileOutOfMemoryError as err:  # report what the compiler said it needed
            need = re.search(r"HLO temporaries \(([0-9.]+)G\)", str(err))
            f = dict(flops=float("nan"), bytes=float("nan"), args=float("nan"), alias=float("nan"),
                     temp=float(need.group(1)) * GIB if need else float("nan"))
            print(f"train seq {seq}: does not fit ({str(err).splitlines()[0][:160]})", flush=True)
        # The XLA attention path computes every score and masks it: its ideal is full attention
        # (twice the causal term of flops_per_token); splash skips the masked blocks.
        causal = flops_per_token(cfg, seq) * batch * seq
        full_attention = causal + 6 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq * batch * seq
        rows.append(dict(section=f"train ({cfg.num_layers} layers, remat {remat}, {cfg.attention_impl or 'platform'} attention, "
                                 f"loss chunk {config.train.loss_chunk})",
                         shape=f"batch {batch}/device x {seq}", **f, ideal_bytes=float("nan"),
                         ideal_flops=causal, ideal_flops_full_attention=full_attention,
                         compile_s=time.perf_counter() - t0))
    return rows


# ------------------------------------------------------------------------------------ output


def _ratio(a: float, b: float) -> str:
    return "-" if not (b == b and a == a) or b == 0 else f"{a / b:.2f}x"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| section | shape | GFLOP | ideal GFLOP | flops / ideal | GB accessed | ideal GB | bytes / ideal "
             "| temp GiB | compile s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['section']} | {r['shape']} | {r['flops'] / 1e9:.1f} | {r['ideal_flops'] / 1e9:.1f} "
                     f"| {_ratio(r['flops'], r['ideal_flops'])} | {r['bytes'] / GB:.3f} | {r['ideal_bytes'] / GB:.3f} "
                     f"| {_ratio(r['bytes'], r['ideal_bytes'])} | {r['temp'] / GIB:.3f} | {r['compile_s']:.0f} |")
    train = [r for r in rows if r["section"].startswith("train")]
    for r in train:
        lines.append(f"\n{r['section']}, {r['shape']}: flops / (6 x params x tokens + full attention) = "
                     f"{_ratio(r['flops'], r['ideal_flops_full_attention'])}; / (... + causal attention) = "
                     f"{_ratio(r['flops'], r['ideal_flops'])}")
    if len(train) >= 2:
        lines.append("")
        lines.append(f"train temp memory {train[0]['shape']} -> {train[-1]['shape']}: "
                     f"{train[0]['temp'] / GIB:.3f} -> {train[-1]['temp'] / GIB:.3f} GiB "
                     f"({_ratio(train[-1]['temp'], train[0]['temp'])})")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_backend(args)
    if not args.libtpu and "TPU_LIBRARY_PATH" not in os.environ:
        try:
            import libtpu  # noqa: F401
        except ImportError:
            raise SystemExit("error: needs libtpu (`pip install libtpu`) or --libtpu PATH")
    from globmed_jax import sharding
    from globmed_jax.models import get_preset

    devices = tpu_devices(args.topology)
    skip = set(filter(None, args.skip.split(",")))
    cfg = get_preset(args.preset)
    if args.attention:
        cfg = cfg.replace(attention_impl=args.attention)
    print(f"{args.topology}: {len(devices)} x {devices[0].device_kind} (libtpu AOT); {args.preset}, bf16 compute")
    mesh = sharding.make_mesh(1, -1, 1, devices=devices)
    rows: list[dict[str, Any]] = []
    if "decode" not in skip:
        rows += decode_rows(cfg, mesh, [int(b) for b in args.decode_batches.split(",")], args.cache)
        print(table(rows), flush=True)
    if "prefill" not in skip and args.prefill:
        rows += prefill_rows(cfg, mesh, args.prefill)
    if "train" not in skip:
        rows += train_rows(cfg.replace(num_layers=args.train_layers), devices,
                           [int(s) for s in args.train_seqs.split(",")], args.train_batch, args.remat,
                           args.loss_chunk)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
