"""Training configuration: ml_collections defaults every config file starts from, and the
validation that runs before anything is compiled (clear messages instead of XLA errors)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import ml_collections

from globmed_jax import sharding
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
    c.data.temperature = 1.0  # mixture temperature for data.jsonl_dir / arrayrecord_dir (mT5: n ** (1/T))
    c.data.arrayrecord_dir = ""  # TFDS ArrayRecord build (data_pipelines.build --tfds): read by index, per shard
    c.data.mini_train_variants = 6  # GlobMed-mini: training items per fact and language
    c.data.mcqa_answer = "letter"  # multiple choice: reply with the "letter" or the "option_text"
    c.data.objective = "sft"  # "sft" (chat-formatted records) or "lm" (plain text, e.g. base_corpus)

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
    # Recompute the loss chunks' logits in the backward pass (memory: one [B, chunk, V] fp32 block)
    # or keep them (flops: no second output projection): "auto" = whenever the model rematerialises.
    c.train.loss_remat = "auto"
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


# Dtype names a training config may ask for (jnp.dtype accepts far more, e.g. int8, that no
# parameter or activation should be stored in).
DTYPES = ("float32", "bfloat16", "float16")


LOSS_REMAT = {"auto": None, "on": True, "off": False}


def _fail(condition: bool, message: str) -> None:
    if condition:
        raise ConfigError(message)


def _finite(key: str, value: float, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> None:
    """``value`` is a finite number within the bounds; the message names ``key``.
    NaN fails every comparison, so it is checked first rather than slipping through."""
    _fail(not math.isfinite(value), f"{key} must be a finite number, got {value!r}")
    if low is not None:
        _fail(value <= low if low_open else value < low,
              f"{key} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None:
        _fail(value >= high if high_open else value > high,
              f"{key} must be {'<' if high_open else '<='} {high}, got {value!r}")


def _at_least(key: str, value: int, low: int) -> None:
    _fail(value < low, f"{key} must be >= {low}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelSection:
    init: str
    checkpoint: str
    preset: str
    overrides: dict
    dtype: str
    param_dtype: str
    remat_policy: str
    scan_layers: bool

    def __post_init__(self):
        _fail(self.init not in ("pretrained", "scratch"),
              f"model.init must be 'pretrained' or 'scratch', got {self.init!r}")
        _fail(self.init == "pretrained" and not self.checkpoint,
              "model.checkpoint must name a Hugging Face checkpoint directory when model.init='pretrained'")
        _fail(self.init == "scratch" and self.preset not in PRESETS,
              f"model.preset {self.preset!r} is unknown; known: {sorted(PRESETS)}")
        unknown = set(self.overrides) - _MODEL_FIELDS
        _fail(bool(unknown), f"model.overrides has unknown field(s) {sorted(unknown)}; "
                             f"ModelConfig fields: {sorted(_MODEL_FIELDS)}")
        _fail(self.remat_policy not in REMAT_POLICIES,
              f"model.remat_policy {self.remat_policy!r} not in {REMAT_POLICIES}")
        for key in ("dtype", "param_dtype"):
            _fail(getattr(self, key) not in DTYPES,
                  f"model.{key} must be one of {DTYPES}, got {getattr(self, key)!r}")


@dataclasses.dataclass(frozen=True)
class TokenizerSection:
    kind: str
    path: str
    vocab_size: int

    def __post_init__(self):
        _fail(self.kind not in ("pretrained", "path", "bpe", "qwen3"),
              f"tokenizer.kind {self.kind!r} not in pretrained/path/bpe/qwen3")
        _at_least("tokenizer.vocab_size", self.vocab_size, 1)


@dataclasses.dataclass(frozen=True)
class LoraSection:
    rank: int
    alpha: float
    targets: tuple

    def __post_init__(self):
        _fail(bool(set(self.targets) - set(LORA_TARGETS)),
              f"lora.targets {tuple(self.targets)} must be among {LORA_TARGETS}")
        _at_least("lora.rank", self.rank, 0)  # 0: full fine-tuning
        _finite("lora.alpha", self.alpha, low=0.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class DataSection:
    mixture: str
    languages: tuple
    seq_len: int
    packing: bool
    shuffle_seed: int
    num_packing_bins: int
    jsonl_dir: str
    temperature: float
    mini_train_variants: int
    mcqa_answer: str
    arrayrecord_dir: str = ""
    objective: str = "sft"  # "sft" (chat-formatted answers) or "lm" (plain next-token loss)

    def __post_init__(self):
        bad = [lang for lang in self.languages if lang not in LANGUAGES]
        _fail(bool(bad), f"data.languages has unknown code(s) {bad}")
        _fail(self.mcqa_answer not in MCQA_ANSWER_FORMATS,
              f"data.mcqa_answer must be one of {MCQA_ANSWER_FORMATS}, got {self.mcqa_answer!r}")
        _fail(self.seq_len <= 0, f"data.seq_len must be positive, got {self.seq_len}")
        _at_least("data.num_packing_bins", self.num_packing_bins, 0)  # 0: the pipeline's default
        _finite("data.temperature", self.temperature, low=0.0, low_open=True)
        _at_least("data.mini_train_variants", self.mini_train_variants, 1)
        _fail(self.objective not in ("sft", "lm"), f"data.objective must be 'sft' or 'lm', got {self.objective!r}")
        _fail(bool(self.arrayrecord_dir and self.jsonl_dir), "set data.arrayrecord_dir or data.jsonl_dir, not both")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with global-norm clipping and a warmup + cosine schedule over ``total_steps``."""
    peak_lr: float
    warmup_steps: int
    total_steps: int
    end_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    clip_norm: float = 1.0
    decay_norms: bool = False
    decay_biases: bool = False
    decay_embeddings: bool = False


@dataclasses.dataclass(frozen=True)
class TrainSection:
    steps: int
    global_batch_size: int
    microbatches: int
    peak_lr: float
    warmup_steps: int
    end_lr_ratio: float
    weight_decay: float
    b1: float
    b2: float
    eps: float
    clip_norm: float
    decay_norms: bool
    decay_biases: bool
    decay_embeddings: bool
    loss_chunk: int
    loss_remat: str
    prompt_loss_weight: float
    on_nonfinite: str
    peak_tflops_per_device: float

    @property
    def remat_loss(self) -> bool | None:
        """``make_train_step``'s ``remat_loss`` (None: follow the model's remat policy)."""
        return LOSS_REMAT[self.loss_remat]

    def __post_init__(self):
        _fail(self.on_nonfinite not in ("skip", "stop"),
              f"train.on_nonfinite must be 'skip' or 'stop', got {self.on_nonfinite!r}")
        for key in ("steps", "global_batch_size", "microbatches"):
            _fail(getattr(self, key) <= 0, f"train.{key} must be positive, got {getattr(self, key)}")
        _fail(self.global_batch_size % self.microbatches != 0,
              f"train.global_batch_size ({self.global_batch_size}) is not divisible by "
              f"train.microbatches ({self.microbatches})")
        _at_least("train.loss_chunk", self.loss_chunk, 1)
        _fail(self.loss_remat not in LOSS_REMAT,
              f"train.loss_remat must be one of {tuple(LOSS_REMAT)}, got {self.loss_remat!r}")
        _at_least("train.warmup_steps", self.warmup_steps, 0)
        _fail(self.warmup_steps >= self.steps,
              f"train.warmup_steps ({self.warmup_steps}) must be < train.steps ({self.steps}): "
              "the learning rate would never reach train.peak_lr")
        _finite("train.peak_lr", self.peak_lr, low=0.0, low_open=True)
        _finite("train.end_lr_ratio", self.end_lr_ratio, low=0.0, high=1.0)
        _finite("train.weight_decay", self.weight_decay, low=0.0)
        _finite("train.b1", self.b1, low=0.0, high=1.0, high_open=True)
        _finite("train.b2", self.b2, low=0.0, high=1.0, high_open=True)
        _finite("train.eps", self.eps, low=0.0, low_open=True)
        _finite("train.clip_norm", self.clip_norm, low=0.0)  # 0: no clipping
        _finite("train.prompt_loss_weight", self.prompt_loss_weight, low=0.0)
        _finite("train.peak_tflops_per_device", self.peak_tflops_per_device, low=0.0)  # 0: datasheet

    @property
    def optim(self) -> OptimConfig:
        """The optimizer's fields of this section; the schedule spans ``steps``."""
        names = {f.name for f in dataclasses.fields(OptimConfig)} - {"total_steps"}
        return OptimConfig(total_steps=self.steps, **{n: getattr(self, n) for n in names})


@dataclasses.dataclass(frozen=True)
class MeshSection:
    data: int
    fsdp: int
    tensor: int


@dataclasses.dataclass(frozen=True)
class CheckpointSection:
    every_steps: int
    keep: int
    async_save: bool

    def __post_init__(self):
        _at_least("checkpoint.every_steps", self.every_steps, 1)
        _at_least("checkpoint.keep", self.keep, 1)  # orbax reads 0 as "keep everything"


@dataclasses.dataclass(frozen=True)
class LogSection:
    every_steps: int
    tensorboard: bool
    progress: bool

    def __post_init__(self):
        _at_least("log.every_steps", self.every_steps, 1)


@dataclasses.dataclass(frozen=True)
class EvalSection:
    """``every_steps=0`` is documented as "only at the end of the run" (the default)."""
    every_steps: int
    split: str
    max_items_per_language: int
    batch_size: int

    def __post_init__(self):
        _at_least("eval.every_steps", self.every_steps, 0)
        _at_least("eval.max_items_per_language", self.max_items_per_language, 0)  # 0: no held-out eval
        _at_least("eval.batch_size", self.batch_size, 1)


@dataclasses.dataclass(frozen=True)
class ExportSection:
    hf: bool


@dataclasses.dataclass(frozen=True)
class DistributedSection:
    mode: str
    coordinator_address: str
    num_processes: int
    process_id: int


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The typed, validated training config; attribute paths are those of the ConfigDict."""
    run_dir: str
    seed: int
    dry_run: bool
    model: ModelSection
    tokenizer: TokenizerSection
    lora: LoraSection
    data: DataSection
    train: TrainSection
    mesh: MeshSection
    checkpoint: CheckpointSection
    log: LogSection
    eval: EvalSection
    export: ExportSection
    distributed: DistributedSection


_SCALARS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "tuple": (tuple, list),
            "dict": (dict,)}


def _build(cls, values: dict, where: str):
    """``cls`` from a plain dict: unknown or missing keys and wrong types name the key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    _fail(bool(unknown), f"unknown config key(s) {[where + k for k in unknown]}; "
                         f"known in this section: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        key = where + name
        if name not in values:
            _fail(field.default is dataclasses.MISSING, f"config key {key!r} is missing")
            continue
        value = values[name]
        kinds = _SCALARS[field.type]  # a string: this module has postponed annotations
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        _fail(not ok, f"config key {key!r} must be {field.type}, got {value!r}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(TrainingConfig)}


def typed_config(config: ml_collections.ConfigDict) -> TrainingConfig:
    """The ConfigDict as frozen sections, each checked on its own (no device count needed)."""
    values = config.to_dict()
    sections = {name: globals()[kind] for name, kind in _SECTIONS.items() if kind.endswith("Section")}
    unknown = sorted(set(values) - set(_SECTIONS))
    _fail(bool(unknown), f"unknown config key(s) {unknown}")
    kwargs = {}
    for name, kind in _SECTIONS.items():
        _fail(name not in values, f"config key {name!r} is missing")
        if name in sections:
            kwargs[name] = _build(sections[name], values[name], name + ".")
        else:
            kwargs[name] = values[name]
    return TrainingConfig(**kwargs)


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int = 1) -> TrainingConfig:
    """The typed config; raises ConfigError naming the first offending key (before any compilation)."""
    typed = typed_config(config)
    t, m = typed.train, typed.mesh
    try:
        data, fsdp, _ = sharding.mesh_shape(m.data, m.fsdp, m.tensor, num_devices)
    except ValueError as e:
        raise ConfigError(f"mesh data={m.data} x fsdp={m.fsdp} x tensor={m.tensor} cannot be laid out on "
                          f"{num_devices} devices: {e}") from None
    micro = t.global_batch_size // t.microbatches
    _fail(micro % (data * fsdp) != 0,
          f"the microbatch of {micro} rows (train.global_batch_size / train.microbatches) is not "
          f"divisible by the data-parallel size data*fsdp = {data * fsdp}")
    _fail(t.global_batch_size % num_processes != 0,
          f"train.global_batch_size ({t.global_batch_size}) is not divisible by the {num_processes} processes")
    return typed


def model_config_overrides(config: "ml_collections.ConfigDict | TrainingConfig") -> dict:
    """ModelConfig fields set by the training config (numerics, remat, scan, overrides)."""
    out = {"dtype": config.model.dtype, "param_dtype": config.model.param_dtype,
           "remat_policy": config.model.remat_policy, "scan_layers": config.model.scan_layers}
    for key, value in config.model.overrides.items():
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def configured(overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """``default_config()`` with dotted-path overrides (``{"train.steps": 600}``), as config files set them.

    An unknown path raises ConfigError; a wrong type raises ml_collections' TypeError, as on the
    command line.
    """
    c = default_config()
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = c
        for name in parents:
            _fail(name not in node, f"unknown config key {path!r}")
            node = node[name]
        _fail(leaf not in node, f"unknown config key {path!r}")
        node[leaf] = value
    return c


def globmed_recipe(model: str, overrides: Mapping[str, Any] = ()) -> ml_collections.ConfigDict:
    """A GlobMed-LLM recipe: full fine-tuning of the HF checkpoint ``checkpoints/<model>``.

    The paper's hyper-parameters are not public; these are reasonable SFT defaults, all overridable:
        python -m globmed_jax.train --config configs/globmed_qwen3_8b.py --config.train.peak_lr=5e-6
    Meshes (override with --config.mesh.*):
      * 8x H100 (one node):  data=1, fsdp=8, tensor=1
      * TPU v5p-8 / v6e-8:   data=1, fsdp=-1, tensor=1  (the default; -1 takes every chip)
      * multi-node GPU:      data=<nodes>, fsdp=8, tensor=1 (FSDP inside a node, data parallel across)
    """
    return configured({
        "run_dir": f"runs/globmed_{model}",
        "model.init": "pretrained",
        "model.checkpoint": f"checkpoints/{model}",  # a local HF directory (no hub access at run time)
        "model.dtype": "bfloat16", "model.param_dtype": "float32", "model.remat_policy": "full",
        "tokenizer.kind": "pretrained",
        # GlobMed JSONL built by `python -m data_pipelines.build --format globmed ...`; one task per
        # (dataset, language) and an mT5-style temperature mixture that up-weights scarce languages.
        "data.jsonl_dir": "data/globmed_jsonl", "data.mixture": "globmed_t3", "data.temperature": 3.0,
        "data.seq_len": 2048, "data.packing": True,
        "train.global_batch_size": 128, "train.steps": 4000, "train.peak_lr": 1e-5,
        "train.warmup_steps": 100, "train.end_lr_ratio": 0.1, "train.weight_decay": 0.1,
        "train.loss_chunk": 512,  # never materialise [B, T, 152k] fp32 logits
        "mesh.data": 1, "mesh.fsdp": -1, "mesh.tensor": 1,
        "checkpoint.every_steps": 250, "checkpoint.keep": 3,
        "eval.every_steps": 500, "eval.max_items_per_language": 300, "log.every_steps": 10,
        **dict(overrides),
    })
