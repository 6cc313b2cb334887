"""Training configuration: ml_collections defaults every config file starts from, and the
validation that runs before anything is compiled (clear messages instead of XLA errors)."""

from __future__ import annotations

import dataclasses
import math

import ml_collections

from globmed_jax.data.languages import DEFAULT_LANGUAGES, LANGUAGES
from globmed_jax.data.prompts import MCQA_ANSWER_FORMATS
from globmed_jax.models.config import LORA_TARGETS, REMAT_POLICIES, ModelConfig, PRESETS


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key."""


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.run_dir = "runs/default"
    c.seed = 0
    c.dry_run = False  # compile the step for the configured mesh and report memory, then stop

    c.model = ml_collections.ConfigDict()
    c.model.init = "pretrained"  # "pretrained" (HF directory) or "scratch" (preset + overrides)
    c.model.checkpoint = ""
    c.model.preset = "qwen3_1p7b"
    c.model.overrides = ml_collections.ConfigDict()  # ModelConfig fields for "scratch"
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "float32"
    c.model.remat_policy = "none"
    c.model.scan_layers = True

    c.tokenizer = ml_collections.ConfigDict()
    c.tokenizer.kind = "pretrained"  # "pretrained" (model.checkpoint or path), "path", "bpe", "qwen3"
    c.tokenizer.path = ""
    c.tokenizer.vocab_size = 2048  # for "bpe"

    c.lora = ml_collections.ConfigDict()
    c.lora.rank = 0
    c.lora.alpha = 16.0
    c.lora.targets = LORA_TARGETS

    c.data = ml_collections.ConfigDict()
    c.data.mixture = "globmed_mini"
    c.data.languages = DEFAULT_LANGUAGES
    c.data.seq_len = 1024
    c.data.packing = True
    c.data.shuffle_seed = 0
    c.data.num_packing_bins = 0  # 0: the pipeline's default
    c.data.jsonl_dir = ""  # normalized GlobMed JSONL (data_pipelines.build output) for real runs
    c.data.temperature = 1.0  # mixture temperature for data.jsonl_dir (mT5: n ** (1/T))
    c.data.mini_train_variants = 6  # GlobMed-mini: training items per fact and language
    c.data.mcqa_answer = "letter"  # multiple choice: reply with the "letter" or the "option_text"

    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000
    c.train.global_batch_size = 32
    c.train.microbatches = 1
    c.train.peak_lr = 1e-5
    c.train.warmup_steps = 100
    c.train.end_lr_ratio = 0.1
    c.train.weight_decay = 0.1
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.eps = 1e-8
    c.train.clip_norm = 1.0
    c.train.decay_norms = False
    c.train.decay_biases = False
    c.train.decay_embeddings = False
    c.train.loss_chunk = 512
    c.train.prompt_loss_weight = 0.0  # >0: also learn the prompt tokens at this weight ("train on inputs")
    c.train.on_nonfinite = "skip"  # "skip" the update and log, or "stop" the run
    c.train.peak_tflops_per_device = 0.0  # 0: datasheet value for known accelerators

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500
    c.checkpoint.keep = 3
    c.checkpoint.async_save = True

    c.log = ml_collections.ConfigDict()
    c.log.every_steps = 10
    c.log.tensorboard = True
    c.log.progress = True

    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 0  # 0: only at the end
    c.eval.split = "test"
    c.eval.max_items_per_language = 200
    c.eval.batch_size = 32

    c.export = ml_collections.ConfigDict()
    c.export.hf = True

    c.distributed = ml_collections.ConfigDict()
    c.distributed.mode = "auto"  # "auto" (Cloud TPU / SLURM / env), "off", or "explicit"
    c.distributed.coordinator_address = ""
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    return c


_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> None:
    """Raises ConfigError naming the first offending key (before any compilation)."""
    m, t, d = config.model, config.train, config.data
    if m.init not in ("pretrained", "scratch"):
        raise ConfigError(f"model.init must be 'pretrained' or 'scratch', got {m.init!r}")
    if m.init == "pretrained" and not m.checkpoint:
        raise ConfigError("model.checkpoint must name a Hugging Face checkpoint directory when model.init='pretrained'")
    if m.init == "scratch" and m.preset not in PRESETS:
        raise ConfigError(f"model.preset {m.preset!r} is unknown; known: {sorted(PRESETS)}")
    unknown = set(m.overrides.keys()) - _MODEL_FIELDS
    if unknown:
        raise ConfigError(f"model.overrides has unknown field(s) {sorted(unknown)}; ModelConfig fields: {sorted(_MODEL_FIELDS)}")
    if m.remat_policy not in REMAT_POLICIES:
        raise ConfigError(f"model.remat_policy {m.remat_policy!r} not in {REMAT_POLICIES}")
    if config.tokenizer.kind not in ("pretrained", "path", "bpe", "qwen3"):
        raise ConfigError(f"tokenizer.kind {config.tokenizer.kind!r} not in pretrained/path/bpe/qwen3")
    if set(config.lora.targets) - set(LORA_TARGETS):
        raise ConfigError(f"lora.targets {tuple(config.lora.targets)} must be among {LORA_TARGETS}")
    bad_langs = [lang for lang in d.languages if lang not in LANGUAGES]
    if bad_langs:
        raise ConfigError(f"data.languages has unknown code(s) {bad_langs}")
    if t.on_nonfinite not in ("skip", "stop"):
        raise ConfigError(f"train.on_nonfinite must be 'skip' or 'stop', got {t.on_nonfinite!r}")
    for key in ("steps", "global_batch_size", "microbatches"):
        if t[key] <= 0:
            raise ConfigError(f"train.{key} must be positive, got {t[key]}")
    if d.mcqa_answer not in MCQA_ANSWER_FORMATS:
        raise ConfigError(f"data.mcqa_answer must be one of {MCQA_ANSWER_FORMATS}, got {d.mcqa_answer!r}")
    if d.seq_len <= 0:
        raise ConfigError(f"data.seq_len must be positive, got {d.seq_len}")

    sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.tensor]
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh sizes must be positive with at most one -1, got data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]}")
    known = math.prod(s for s in sizes if s != -1)
    if num_devices % known or (-1 not in sizes and known != num_devices):
        raise ConfigError(
            f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} cannot be laid out on {num_devices} devices")
    if -1 in sizes:
        sizes[sizes.index(-1)] = num_devices // known
    data_parallel = sizes[0] * sizes[1]
    if t.global_batch_size % t.microbatches:
        raise ConfigError(f"train.global_batch_size ({t.global_batch_size}) is not divisible by "
                          f"train.microbatches ({t.microbatches})")
    micro = t.global_batch_size // t.microbatches
    if micro % data_parallel:
        raise ConfigError(f"the microbatch of {micro} rows (train.global_batch_size / train.microbatches) is not "
                          f"divisible by the data-parallel size data*fsdp = {data_parallel}")
    if t.global_batch_size % num_processes:
        raise ConfigError(f"train.global_batch_size ({t.global_batch_size}) is not divisible by the "
                          f"{num_processes} processes")


def model_config_overrides(config: ml_collections.ConfigDict) -> dict:
    """ModelConfig fields set by the training config (numerics, remat, scan, overrides)."""
    out = {"dtype": config.model.dtype, "param_dtype": config.model.param_dtype,
           "remat_policy": config.model.remat_policy, "scan_layers": config.model.scan_layers}
    for key, value in config.model.overrides.items():
        out[key] = tuple(value) if isinstance(value, list) else value
    return out
