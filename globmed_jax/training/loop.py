"""The training run: build mesh, tokenizer, model, data and state; resume; train; evaluate; export.

Rerunning the same command resumes from the newest intact checkpoint (params, optimizer,
step and the data iterator; corrupt steps are set aside, see ``training.checkpoint``). SIGTERM
(e.g. TPU preemption) saves a checkpoint and exits 0. A run whose last loss is not finite
records it in ``summary.json`` and raises ``NonFiniteLossError`` (the CLI exits non-zero).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from globmed_jax import sharding
from globmed_jax.models import (
    CausalLM, from_pretrained, get_preset, load_config, load_tokenizer, save_pretrained,
)
from globmed_jax.models.hf_io import abstract_model
from globmed_jax.models.hub import resolve_checkpoint
from globmed_jax.models.lora import add_lora, merge_lora
from globmed_jax.data.tasks import Mixture
from globmed_jax.training import checkpoint as ckpt
from globmed_jax.training import data as train_data
from globmed_jax.training.config import ConfigError, TrainingConfig, model_config_overrides, validate
from globmed_jax.training.metrics import (
    MetricsWriter, Throughput, datasheet_peak_flops, flops_per_token, per_language_losses,
)
from globmed_jax.training.optim import make_optimizer
from globmed_jax.training.step import (
    BATCH_KEYS, ModelTemplate, TrainState, abstract_train_state, batch_sharding, init_train_state,
    jit_train_step, make_train_step, state_shardings,
)

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss or gradient became NaN/inf and the config says to stop."""


class CompileOutOfMemoryError(RuntimeError):
    """The train step does not fit in device memory."""


class _Preemption:
    """Turns SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            log.warning("SIGTERM received: saving a checkpoint and exiting")
            self.requested = True

        self._previous = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._previous)


# --------------------------------------------------------------------------- building blocks


def build_tokenizer(config: TrainingConfig, run_dir: Path, corpus: Callable[[], Any] | None):
    kind = config.tokenizer.kind
    if kind == "qwen3":
        from globmed_jax.models.tokenizer import build_qwen3_tokenizer

        return build_qwen3_tokenizer()
    if kind == "bpe":
        from globmed_jax.training.bpe import load_or_train_bpe

        if corpus is None:
            raise ConfigError("tokenizer.kind='bpe' needs a text corpus from the data mixture")
        return load_or_train_bpe(run_dir / "tokenizer", corpus(), config.tokenizer.vocab_size)
    path = config.tokenizer.path or config.model.checkpoint
    if not path:
        raise ConfigError("tokenizer.path (or model.checkpoint) must name a tokenizer directory")
    return load_tokenizer(path)


def special_token_ids(tokenizer) -> dict[str, Any]:
    """bos/eos/pad ids of a tokenizer, for models trained from scratch with it."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(end_of_text, int) and end_of_text != tokenizer.unk_token_id and end_of_text not in eos:
        eos.append(end_of_text)
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_ids": tuple(eos), "pad_token_id": tokenizer.pad_token_id}


def build_model(config: TrainingConfig, mesh, vocab_size: int | None,
                special_ids: dict[str, Any] | None = None, *, abstract: bool = False) -> CausalLM:
    """The model to train; ``abstract=True`` (dry runs) builds ShapeDtypeStruct leaves only."""
    overrides = model_config_overrides(config)
    if config.model.init == "pretrained":
        checkpoint = resolve_checkpoint(config.model.checkpoint)  # a directory or a hub id
        if not (checkpoint / "config.json").exists():
            raise FileNotFoundError(
                f"base checkpoint {checkpoint} not found (no config.json); download it first, e.g. "
                f"`hf download <repo> --local-dir {checkpoint}`")
        if abstract:
            cfg = load_config(checkpoint, **overrides)
        else:
            model, _ = from_pretrained(checkpoint, mesh=mesh, **overrides)
    else:
        if vocab_size is not None and "vocab_size" not in overrides:
            overrides["vocab_size"] = vocab_size
        for key, value in (special_ids or {}).items():
            overrides.setdefault(key, value)
        cfg = get_preset(config.model.preset, **overrides)
        if not abstract:
            model = CausalLM(cfg, rngs=nnx.Rngs(config.seed), shard=sharding.ShardingContext(mesh))
            sharding.shard_model(model, mesh)
    if abstract:  # shapes and dtypes only: what a dry run compiles against
        if config.lora.rank > 0:
            cfg = cfg.replace(lora_rank=config.lora.rank, lora_alpha=config.lora.alpha,
                              lora_targets=tuple(config.lora.targets))
        return abstract_model(cfg, mesh)
    if config.lora.rank > 0:
        model = add_lora(model, config.lora.rank, config.lora.alpha, tuple(config.lora.targets), seed=config.seed)
        sharding.shard_model(model, mesh)
    return model


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def compile_step(jitted, state: TrainState, global_batch: int, seq_len: int, mesh):
    """Compiles ahead of time so memory problems surface with an estimate, not a traceback."""
    data_sh = batch_sharding(mesh, (global_batch, seq_len))
    batch = {k: jax.ShapeDtypeStruct((global_batch, seq_len), np.float32 if k == "loss_mask" else np.int32,
                                     sharding=data_sh) for k in BATCH_KEYS}
    try:
        compiled = jitted.lower(state, batch).compile()
    except Exception as err:  # XLA raises XlaRuntimeError; match on its status text
        if "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower():
            raise CompileOutOfMemoryError(
                f"the train step does not fit in device memory: {str(err).splitlines()[0]}\n"
                "Try a smaller train.global_batch_size / data.seq_len, more train.microbatches, "
                "model.remat_policy='full', a larger mesh.fsdp, or LoRA (lora.rank > 0). "
                "`--config.dry_run=True` prints the per-device estimate.") from None
        raise
    return compiled


def memory_report(compiled) -> dict[str, float]:
    """Per-device memory estimate from XLA (GiB), where the backend reports it."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        return {}
    if analysis is None:
        return {}
    gib = 1024**3
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
              "generated_code_size_in_bytes", "alias_size_in_bytes")
    out = {f.replace("_size_in_bytes", "_gib"): getattr(analysis, f, 0) / gib for f in fields}
    out["peak_estimate_gib"] = (out["argument_gib"] + out["output_gib"] + out["temp_gib"]
                                - out.get("alias_gib", 0.0))
    return out


def _to_global(local_batch: dict, mesh, global_batch: int, seq_len: int) -> dict:
    sh = batch_sharding(mesh, (global_batch, seq_len))
    return {k: jax.make_array_from_process_local_data(sh, np.asarray(local_batch[k])) for k in BATCH_KEYS}


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class TrainingRun:
    """Everything ``fit`` and ``finish`` need, built once by ``setup``."""
    config: TrainingConfig
    run_dir: Path
    mesh: Any
    languages: tuple[str, ...]
    tokenizer: Any
    iterator: Any
    template: ModelTemplate
    compiled: Callable  # (state, batch) -> (state, StepMetrics)
    state: Any  # TrainState: fit advances it
    start_step: int  # the restored checkpoint's step (0 for a fresh run)
    checkpointer: ckpt.TrainCheckpointer
    writer: MetricsWriter
    throughput: Throughput
    memory: dict
    eval_fn: Callable | None


@dataclasses.dataclass
class FitSummary:
    """What ``fit`` did: steps ``start_step + 1 .. final_step`` with their losses."""
    start_step: int
    final_step: int
    interrupted: bool  # SIGTERM: a checkpoint of final_step was saved, nothing else runs
    losses: dict[int, float]


class _StepLogger:
    """Reads one step's metrics on the host: non-finite handling, loss history, log rows, bar."""

    def __init__(self, run: TrainingRun, bar):
        self.run, self.bar = run, bar
        self.losses: dict[int, float] = {}

    def __call__(self, step_no: int, metrics, batch_langs: np.ndarray) -> None:
        run, t = self.run, self.run.config.train
        host = jax.device_get(metrics)
        if not bool(host.finite):
            present = sorted({run.languages[i] for i in np.unique(batch_langs) if i >= 0})
            message = f"non-finite loss at step {step_no} (batch languages: {', '.join(present)})"
            if t.on_nonfinite == "stop":
                raise NonFiniteLossError(message + "; update skipped, stopping (train.on_nonfinite='stop')")
            log.warning("%s; update skipped", message)
        loss = float(host.loss)
        self.losses[step_no] = loss
        run.throughput.tick()
        if step_no % run.config.log.every_steps == 0 or step_no == t.steps:
            row = {"loss": loss, "grad_norm": float(host.grad_norm),
                   "learning_rate": float(host.learning_rate),
                   "token_accuracy": float(host.token_accuracy),
                   "loss_tokens": float(host.loss_tokens),
                   **per_language_losses(host.lang_loss_sum, host.lang_tokens, run.languages),
                   **run.throughput.report()}
            run.writer.write(step_no, row)
            self.bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "tokens_per_s", "mfu") if k in row})


def setup(config: ml_collections.ConfigDict, *, eval_fn: Callable | None = None,
          data_factory: Callable | None = None, mixture: Mixture | None = None) -> TrainingRun | dict[str, Any]:
    """Validates, builds tokenizer, data, model and the compiled step, restores the newest
    checkpoint. A dry run returns its memory report (a dict) instead of a run. ``mixture``
    defaults to the one ``config.data`` names (resolved here, once)."""
    run_dir = Path(config.run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    typed = validate(config, jax.device_count(), jax.process_count())
    mesh = sharding.make_mesh(typed.mesh.data, typed.mesh.fsdp, typed.mesh.tensor)
    t = typed.train
    languages = tuple(typed.data.languages)
    if jax.process_index() == 0:
        (run_dir / "config.json").write_text(config.to_json_best_effort(indent=2))

    started = time.perf_counter()
    mixture = mixture or train_data.resolve_mixture(typed.data, typed.seed)
    tokenizer = build_tokenizer(
        typed, run_dir, lambda: train_data.corpus_texts(typed.data, mixture))
    log.info("tokenizer ready: %d tokens (%.1f s)", len(tokenizer), time.perf_counter() - started)
    if data_factory is not None:
        iterator = data_factory(config, tokenizer, jax.process_index(), jax.process_count())
    else:
        pipeline = train_data.pipeline_config(typed.data, mixture, t.global_batch_size // jax.process_count())
        iterator = train_data.globmed_iterator(pipeline, tokenizer, jax.process_index(), jax.process_count())
    vocab = len(tokenizer) if typed.model.init == "scratch" else None
    if vocab is not None:
        vocab = -(-vocab // 128) * 128  # pad the embedding to a multiple of 128 (TPU/GPU tiles)
    model = build_model(typed, mesh, vocab, special_token_ids(tokenizer), abstract=typed.dry_run)
    cfg = model.cfg
    if cfg.vocab_size < len(tokenizer):
        raise ConfigError(f"the model's vocabulary ({cfg.vocab_size}) is smaller than the tokenizer's "
                          f"({len(tokenizer)}): token ids would index past the embedding")
    trainable = nnx.LoRAParam if typed.lora.rank > 0 else nnx.Param
    template = ModelTemplate(model, trainable)
    del model  # its buffers are donated to the train state
    tx, schedule = make_optimizer(template.initial_params, typed.train.optim)
    shardings = state_shardings(template, tx, mesh)
    step_fn = make_train_step(template, tx, schedule, num_languages=len(languages),
                              microbatches=t.microbatches, loss_chunk=t.loss_chunk, skip_nonfinite=True,
                              prompt_loss_weight=t.prompt_loss_weight, remat_loss=t.remat_loss)
    seq_len = typed.data.seq_len
    jitted = jit_train_step(step_fn, shardings, mesh, t.global_batch_size, seq_len)

    if typed.dry_run:
        abstract_state = abstract_train_state(template, tx, shardings)
        compiled = compile_step(jitted, abstract_state, t.global_batch_size, seq_len, mesh)
        report = memory_report(compiled)
        log.info("dry run: %s", json.dumps(report))
        return {"dry_run": True, "memory": report, "params": cfg.num_params()}

    state = init_train_state(template, tx, shardings)
    checkpointer = ckpt.TrainCheckpointer(run_dir / "checkpoints", keep=typed.checkpoint.keep,
                                          every_steps=typed.checkpoint.every_steps,
                                          async_save=typed.checkpoint.async_save)
    start = 0
    restored = checkpointer.restore_latest(shardings, _abstract(state), iterator)
    if restored is not None:
        state, start = restored
    compile_start = time.perf_counter()
    compiled = compile_step(jitted, state, t.global_batch_size, seq_len, mesh)
    log.info("model %s with %.2fM parameters on mesh %s; train step compiled in %.1f s",
             cfg.model_type, cfg.num_params() / 1e6, dict(mesh.shape), time.perf_counter() - compile_start)
    mem = memory_report(compiled)
    if mem:
        log.info("per-device memory estimate: %.2f GiB", mem["peak_estimate_gib"])

    writer = MetricsWriter(run_dir, tensorboard=typed.log.tensorboard)
    peak = t.peak_tflops_per_device * 1e12 or datasheet_peak_flops()
    trainable_fraction = 1.0 if typed.lora.rank == 0 else 0.0
    throughput = Throughput(t.global_batch_size * seq_len, flops_per_token(cfg, seq_len, trainable_fraction),
                            jax.device_count(), peak)
    return TrainingRun(config=typed, run_dir=run_dir, mesh=mesh, languages=languages, tokenizer=tokenizer,
                       iterator=iterator, template=template, compiled=compiled, state=state, start_step=start,
                       checkpointer=checkpointer, writer=writer, throughput=throughput, memory=mem,
                       eval_fn=eval_fn)


def fit(run: TrainingRun) -> FitSummary:
    """Steps from the restored checkpoint to ``train.steps``, checkpointing as configured; on
    SIGTERM saves the current step and stops. Metrics are read one step late so the device
    never waits for the host."""
    config, t = run.config, run.config.train
    seq_len = config.data.seq_len
    bar = tqdm(total=t.steps, initial=run.start_step, desc="train", dynamic_ncols=True,
               disable=not config.log.progress or jax.process_index() != 0)
    log_step = _StepLogger(run, bar)
    pending = None  # (step, metrics, languages of the batch)
    interrupted = False
    with _Preemption() as preemption:
        try:
            for step_no in range(run.start_step + 1, t.steps + 1):
                local = next(run.iterator)
                batch = _to_global(local, run.mesh, t.global_batch_size, seq_len)
                run.state, metrics = run.compiled(run.state, batch)
                if pending is not None:
                    log_step(*pending)
                pending = (step_no, metrics, np.asarray(local["language_ids"]))
                bar.update(1)
                run.checkpointer.save(step_no, run.state, run.iterator)
                if preemption.requested:
                    log_step(*pending)
                    pending = None
                    run.checkpointer.wait()
                    if run.checkpointer.latest_step() != step_no:
                        run.checkpointer.save(step_no, run.state, run.iterator, force=True)
                    interrupted = True
                    break
                if run.eval_fn and config.eval.every_steps and step_no % config.eval.every_steps == 0:
                    log_step(*pending)
                    pending = None
                    metrics = run.eval_fn(run.template.merge(run.state.params, run.state.frozen), run.tokenizer,
                                          step_no)
                    run.writer.write(step_no, metrics.flat(), kind="eval")
            if pending is not None:
                log_step(*pending)
        finally:
            bar.close()
            run.checkpointer.wait()
    final_step = int(jax.device_get(run.state.step))
    return FitSummary(start_step=run.start_step, final_step=final_step, interrupted=interrupted,
                      losses=log_step.losses)


def finish(run: TrainingRun, fitted: FitSummary) -> dict[str, Any]:
    """Final checkpoint, then (unless interrupted) held-out eval, HF export and summary.json."""
    config, final_step = run.config, fitted.final_step
    last_loss = fitted.losses[max(fitted.losses)] if fitted.losses else None
    summary: dict[str, Any] = {"start_step": fitted.start_step, "losses": fitted.losses,
                               "final_step": final_step, "interrupted": fitted.interrupted,
                               "memory": run.memory,
                               "final_loss_finite": last_loss is None or math.isfinite(last_loss)}
    if not fitted.interrupted and run.checkpointer.latest_step() != final_step:
        run.checkpointer.save(final_step, run.state, run.iterator, force=True)
    run.checkpointer.close()
    # Stop grain's prefetch threads now: left to interpreter shutdown they print a traceback.
    if hasattr(run.iterator, "close"):
        run.iterator.close()
    if fitted.interrupted:
        run.writer.close()
        return summary
    model = run.template.merge(run.state.params, run.state.frozen)
    if run.eval_fn is not None:
        summary["eval"] = run.eval_fn(model, run.tokenizer, final_step)
        run.writer.write(final_step, summary["eval"].flat(), kind="eval")
    if config.export.hf:
        exported = merge_lora(model) if config.lora.rank > 0 else model
        summary["export_dir"] = str(save_pretrained(exported, run.run_dir / "hf_export", tokenizer=run.tokenizer))
    run.writer.close()
    if jax.process_index() == 0:
        (run.run_dir / "summary.json").write_text(json.dumps(
            {k: v for k, v in summary.items() if k not in ("losses", "eval")}
            | {"last_loss": summary["losses"].get(final_step)}
            | ({"eval": summary["eval"].flat()} if "eval" in summary else {}),
            indent=2, default=str))
    if not summary["final_loss_finite"]:
        # Exiting 0 here would let a pipeline take a diverged run for a trained model.
        raise NonFiniteLossError(f"the run ended with a non-finite loss ({last_loss} at step {max(fitted.losses)}); "
                                 f"{run.run_dir / 'summary.json'} records final_loss_finite=false")
    return summary


def train(config: ml_collections.ConfigDict, *, eval_fn: Callable | None = None,
          data_factory: Callable | None = None, mixture: Mixture | None = None) -> dict[str, Any]:
    """Runs (or resumes) training as ``config`` says: ``setup``, ``fit``, ``finish``. Returns a
    summary dict (``eval`` a ``HeldoutMetrics``).

    ``data_factory(config, tokenizer, process_index, process_count) -> iterator``
    overrides the GlobMed pipeline (tests use it); ``mixture`` is the resolved data mixture
    (default: the one ``config.data`` names); ``eval_fn(model, tokenizer, step)`` returns
    ``HeldoutMetrics`` and is called every ``eval.every_steps`` and at the end.
    """
    run = setup(config, eval_fn=eval_fn, data_factory=data_factory, mixture=mixture)
    if isinstance(run, dict):  # dry run
        return run
    return finish(run, fit(run))
