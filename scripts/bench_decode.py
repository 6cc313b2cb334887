"""Greedy decode speed: prefill time, ms per new token and tokens/s for one batch.

Defaults are a tiny random model that runs in seconds on a CPU:

    python scripts/bench_decode.py
    python scripts/bench_decode.py --preset qwen3_0p6b --batch 8 --prompt-len 256 --max-new 128
    python scripts/bench_decode.py --checkpoint /path/to/hf_dir --dtype bfloat16
    python scripts/bench_decode.py --preset smollm2_135m --mesh 1,-1,1   # batch over all devices

EOS stopping is disabled so every row produces exactly ``--max-new`` tokens. Compilation happens
in an untimed warm-up run (reported separately).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np
from flax import nnx

from globmed_jax.decode import Decoder
from globmed_jax.models import CausalLM, ModelConfig, from_pretrained, get_preset
from globmed_jax.sharding import ShardingContext, make_mesh, shard_model

TINY = ModelConfig(model_type="qwen3", vocab_size=4096, hidden_size=256, intermediate_size=768,
                   num_layers=4, num_heads=4, num_kv_heads=2, head_dim=64, qk_norm=True,
                   tie_word_embeddings=True)


def build_model(args) -> CausalLM:
    mesh = None
    if args.mesh:
        data, fsdp, tensor = (int(x) for x in args.mesh.split(","))
        mesh = make_mesh(data, fsdp, tensor)
    if args.checkpoint:
        model, _ = from_pretrained(args.checkpoint, dtype=args.dtype, param_dtype=args.param_dtype,
                                   mesh=mesh)
        return model
    cfg = get_preset(args.preset) if args.preset else TINY
    cfg = cfg.replace(dtype=args.dtype, param_dtype=args.param_dtype)
    model = CausalLM(cfg, rngs=nnx.Rngs(args.seed), shard=ShardingContext(mesh))  # random weights
    if mesh is not None:
        shard_model(model, mesh)
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a globmed_jax.models preset, with random weights")
    source.add_argument("--checkpoint", help="a local HF checkpoint directory")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--max-new", type=int, default=32)
    parser.add_argument("--dtype", default="float32", help="compute dtype (bfloat16 is slow on CPU)")
    parser.add_argument("--param-dtype", default="float32")
    parser.add_argument("--mesh", help="data,fsdp,tensor sizes (one may be -1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    model = build_model(args)
    cfg = model.cfg
    print(f"model: {args.checkpoint or args.preset or 'tiny'} ({cfg.model_type}, "
          f"{cfg.num_params() / 1e6:.1f}M params, {cfg.num_layers} layers, dtype {cfg.dtype}) "
          f"built in {time.perf_counter() - t0:.1f}s on {jax.device_count()} x {jax.devices()[0].platform}")

    rng = np.random.default_rng(args.seed)
    # Prompt lengths spread over the upper half of --prompt-len, as a real batch would be.
    lengths = rng.integers(max(1, args.prompt_len // 2), args.prompt_len + 1, size=args.batch)
    lengths[0] = args.prompt_len
    prompts = [rng.integers(0, cfg.vocab_size, size=n).tolist() for n in lengths]

    runs = []
    decoder = Decoder(model)
    for i in range(args.repeats):
        _, stats = decoder.timed_generate(prompts, max_new_tokens=args.max_new, eos_ids=None)
        if i == 0:
            print(f"buckets: batch {stats['batch_bucket']}, prompt {stats['prompt_bucket']}, "
                  f"cache {stats['cache_bucket']}; warm-up (incl. {stats['compiles']} compiles) "
                  f"{stats['warmup_s']:.2f}s")
        runs.append(stats)
    prefill = statistics.median(r["prefill_s"] for r in runs)
    decode = statistics.median(r["decode_s"] for r in runs)
    steps = runs[0]["steps"]
    loop_tokens = max(steps - 1, 1)  # the first new token comes out of the prefill
    total_tokens = args.batch * steps
    print(f"batch {args.batch}, prompt <= {args.prompt_len}, {steps} new tokens/row "
          f"(median of {args.repeats} runs)")
    print(f"prefill: {prefill * 1e3:.1f} ms ({args.batch * int(lengths.mean()) / prefill:.0f} prompt tok/s)")
    print(f"decode: {decode / loop_tokens * 1e3:.2f} ms/new token (batch step), "
          f"{args.batch * loop_tokens / decode:.0f} tokens/s")
    print(f"end to end: {total_tokens / (prefill + decode):.0f} new tokens/s")


if __name__ == "__main__":
    main()
