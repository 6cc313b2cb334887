"""Multi-process training check on one machine: N CPU processes form one device mesh.

Each process simulates ``--local-devices`` CPU devices, joins ``jax.distributed`` (through
``globmed_jax.distributed``, as the training entry point does) and runs a few steps of the real
train step (``globmed_jax.training.step``) on a tiny model. Every process feeds only the rows of
the global batch that its devices hold (``jax.make_array_from_process_local_data``); only
process 0 prints and writes the losses. The losses must equal a single-process run of the same
steps on the same mesh shape.

    python scripts/multiprocess_check.py                 # launches 2 x 4 devices + 1 x 8 and compares
    python scripts/multiprocess_check.py --worker --num-processes 2 --process-id 0 \\
        --coordinator 127.0.0.1:12345 --local-devices 4 --out losses.json   # one worker
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

MESH = (2, 2, 2)  # data, fsdp, tensor: every axis crosses or stays within a process
GLOBAL_BATCH, SEQ_LEN, VOCAB, NUM_LANGUAGES = 8, 16, 128, 3


# ------------------------------------------------------------------------------ the run


def synthetic_batch(step: int) -> dict[str, Any]:
    """The global batch of ``step``: deterministic, the same in every process, one of two
    (so a later step sees a batch again and its loss shows the training). Two packed segments
    per row, loss on the second half of each."""
    import numpy as np

    rng = np.random.default_rng(1000 + step % 2)
    ids = rng.integers(0, VOCAB, (GLOBAL_BATCH, SEQ_LEN + 1)).astype(np.int32)
    half = SEQ_LEN // 2
    segment_ids = np.repeat(np.concatenate([np.ones(half), 2 * np.ones(SEQ_LEN - half)])[None], GLOBAL_BATCH, 0)
    positions = np.repeat(np.concatenate([np.arange(half), np.arange(SEQ_LEN - half)])[None], GLOBAL_BATCH, 0)
    return {"inputs": ids[:, :-1], "targets": ids[:, 1:],
            "loss_mask": (positions >= half // 2).astype(np.float32),
            "segment_ids": segment_ids.astype(np.int32), "positions": positions.astype(np.int32),
            "language_ids": np.repeat(rng.integers(0, NUM_LANGUAGES, (GLOBAL_BATCH, 1)), SEQ_LEN, 1).astype(np.int32)}


def local_rows(sharding, global_shape: tuple[int, int]) -> slice:
    """The contiguous block of global rows that this process's devices hold."""
    starts, stops = [], []
    for index in sharding.addressable_devices_indices_map(global_shape).values():
        rows = index[0]
        starts.append(rows.start or 0)
        stops.append(global_shape[0] if rows.stop is None else rows.stop)
    return slice(min(starts), max(stops))


def train_losses(steps: int) -> list[float]:
    """Runs ``steps`` train steps on the global mesh (whatever processes exist) and returns the
    loss of each step (replicated, so every process can read it)."""
    import jax
    from flax import nnx

    from globmed_jax import sharding
    from globmed_jax.models import CausalLM, get_preset
    from globmed_jax.training.config import OptimConfig
    from globmed_jax.training.optim import make_optimizer
    from globmed_jax.training.step import (
        BATCH_KEYS, ModelTemplate, batch_sharding, init_train_state, jit_train_step, make_train_step,
        state_shardings,
    )

    mesh = sharding.make_mesh(*MESH)
    cfg = get_preset("qwen3_0p6b", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, dtype="float32")
    model = CausalLM(cfg, rngs=nnx.Rngs(0), shard=sharding.ShardingContext(mesh))  # same seed everywhere
    template = ModelTemplate(model, nnx.Param)
    tx, schedule = make_optimizer(template.initial_params, OptimConfig(peak_lr=1e-2, warmup_steps=0,
                                                                        total_steps=100, weight_decay=0.01))
    shardings = state_shardings(template, tx, mesh)
    state = init_train_state(template, tx, shardings)
    step_fn = jit_train_step(make_train_step(template, tx, schedule, num_languages=NUM_LANGUAGES, loss_chunk=8),
                             shardings, mesh, GLOBAL_BATCH, SEQ_LEN)
    data_sh = batch_sharding(mesh, (GLOBAL_BATCH, SEQ_LEN))
    rows = local_rows(data_sh, (GLOBAL_BATCH, SEQ_LEN))
    losses = []
    for i in range(steps):
        full = synthetic_batch(i)
        batch = {k: jax.make_array_from_process_local_data(data_sh, full[k][rows], (GLOBAL_BATCH, SEQ_LEN))
                 for k in BATCH_KEYS}
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics.loss))
    return losses


# ------------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> int:
    """One process: start-up, the steps, and (process 0 only) the report."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process CPU collectives
    from globmed_jax import distributed

    if args.num_processes > 1:
        settings = argparse.Namespace(mode="explicit", coordinator_address=args.coordinator,
                                      num_processes=args.num_processes, process_id=args.process_id)
        distributed.maybe_initialize(settings)
    losses = train_losses(args.steps)
    if jax.process_index() == 0:
        result = {"losses": losses, "process_count": jax.process_count(), "device_count": jax.device_count(),
                  "local_device_count": jax.local_device_count(),
                  "local_rows": str(local_rows_of_process())}
        print(json.dumps(result))
        if args.out:
            Path(args.out).write_text(json.dumps(result))
    return 0


def local_rows_of_process() -> slice:
    from globmed_jax import sharding
    from globmed_jax.training.step import batch_sharding

    return local_rows(batch_sharding(sharding.make_mesh(*MESH), (GLOBAL_BATCH, SEQ_LEN)), (GLOBAL_BATCH, SEQ_LEN))


# ------------------------------------------------------------------------------ launcher


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(local_devices: int) -> dict[str, str]:
    env = dict(os.environ)
    flags = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f)
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={local_devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def launch(num_processes: int, local_devices: int, steps: int, out: Path, timeout: float = 300) -> dict:
    """Starts ``num_processes`` workers on 127.0.0.1 and returns process 0's result."""
    coordinator = f"127.0.0.1:{free_port()}"
    procs = []
    for pid in range(num_processes):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--num-processes", str(num_processes),
               "--process-id", str(pid), "--coordinator", coordinator, "--local-devices", str(local_devices),
               "--steps", str(steps)] + (["--out", str(out)] if pid == 0 else [])
        procs.append(subprocess.Popen(cmd, env=child_env(local_devices), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        logs = "\n".join(f"--- process {i} ---\n{o[-3000:]}" for i, o in enumerate(outputs))
        raise RuntimeError(f"worker(s) failed {failed}:\n{logs}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help="run as one worker process")
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--coordinator", default="")
    parser.add_argument("--local-devices", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        multi = launch(args.num_processes, args.local_devices, args.steps, Path(tmp) / "multi.json")
        single = launch(1, args.num_processes * args.local_devices, args.steps, Path(tmp) / "single.json")
    print(f"{multi['process_count']} processes x {multi['local_device_count']} devices: {multi['losses']}")
    print(f"1 process  x {single['local_device_count']} devices: {single['losses']}")
    worst = max(abs(a - b) / abs(b) for a, b in zip(multi["losses"], single["losses"]))
    print(f"largest relative difference: {worst:.2e}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
