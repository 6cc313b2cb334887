"""grain input pipeline for supervised fine-tuning on a task mixture.

Per task: records -> ``MapDataset.shuffle(seed)`` -> ``repeat`` -> shard (``ds[i::n]``, by JAX
process unless given) -> SFT formatting. Then ``IterDataset.mix`` by the mixture shares ->
first-fit packing (or padding) -> batch -> prefetch.

SFT formatting: prompt = the chat template over ``prompts.build_messages`` with
``add_generation_prompt=True``; completion = ``prompts.answer_target`` + the end-of-turn token.
``ids = prompt + completion``; per example ``inputs = ids[:-1]``, ``targets = ids[1:]`` (computed
before packing, so no target ever crosses into another example) and ``loss_mask`` is 1 exactly
where the target is a completion token. Over-long examples keep their completion and lose
prompt tokens from the left; they are counted in ``TruncationStats`` and logged, never dropped.

Batch contract (all ``[B, T]`` numpy arrays): ``inputs`` int32, ``targets`` int32,
``loss_mask`` float32, ``segment_ids`` int32 (1, 2, .. per packed example, 0 = padding),
``positions`` int32 (restart at 0 per segment), ``language_ids`` int32 (index into
``PipelineConfig.languages``, -1 on padding).

Plain next-token mode (``PipelineConfig.objective="lm"``, the base corpus of
``data.base_corpus``): each task yields documents with ``text`` and ``language`` instead of
Records; no chat template; ``ids = encode(text) + [end-of-text]``; ``loss_mask`` is 1 on every
target (documents longer than ``seq_len + 1`` tokens are cut from the right and counted). Mixing,
packing and the batch contract are the same.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import zlib
from typing import Any, Mapping, Sequence

import grain
import numpy as np
from grain._src.python.dataset.transformations import mix as grain_mix  # subclassed below (pinned grain < 0.3)
from transformers import PreTrainedTokenizerFast

from globmed_jax.data import prompts, tasks
from globmed_jax.data.languages import DEFAULT_LANGUAGES
from globmed_jax.data.prompts import PromptConfig
from globmed_jax.data.schema import Record
from globmed_jax.models.tokenizer import pad_id as tokenizer_pad_id

log = logging.getLogger(__name__)

OBJECTIVES = ("sft", "lm")
BATCH_KEYS = ("inputs", "targets", "loss_mask", "segment_ids", "positions", "language_ids")
_PACKED_KEYS = ("inputs", "targets", "loss_mask", "language_ids")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """``seq_len`` is T (tokens per row fed to the model); ``batch_size`` is B per process.

    ``mixture`` is the ``tasks.Mixture`` to draw from. ``num_epochs=None`` repeats every task
    forever (a finite value ends the mixed stream when the first task runs out, as grain's mix
    does). ``num_packing_bins`` defaults to ``batch_size``. ``worker_count > 0`` uses grain
    multiprocess prefetch (needs a ``__main__`` guard); otherwise a thread prefetches
    ``prefetch_buffer_size`` batches. ``read_threads > 0`` formats each task's examples in that
    many threads (default 0: records are in memory, and grain's default of 16 threads with a
    500-element buffer per task makes dozens of tasks thrash). ``end_of_turn`` defaults to
    ``tokenizer.eos_token``."""

    mixture: tasks.Mixture = dataclasses.field(default_factory=tasks.globmed_mini)
    split: str = "train"
    seq_len: int = 512
    batch_size: int = 8
    seed: int = 0
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    packing: bool = True
    num_packing_bins: int | None = None
    shuffle: bool = True
    num_epochs: int | None = None
    drop_remainder: bool = True
    prefetch_buffer_size: int = 2
    worker_count: int = 0
    read_threads: int = 0
    end_of_turn: str | None = None
    prompt: PromptConfig = PromptConfig()
    objective: str = "sft"  # "sft" (chat-formatted records, loss on answers) or "lm" (plain text)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")


# ---------------------------------------------------------------------------------------------
# Example-level formatting (shared with evaluation).
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SFTExample:
    """One formatted example. ``prompt_ids`` [P] / ``completion_ids`` [C] are int32 and already
    truncated to ``max_tokens``; ``num_truncated`` counts the tokens removed."""

    prompt: str
    target: str
    prompt_ids: np.ndarray
    completion_ids: np.ndarray
    num_truncated: int = 0

    @property
    def truncated(self) -> bool:
        return self.num_truncated > 0

    @property
    def ids(self) -> np.ndarray:
        """[P + C] int32."""
        return np.concatenate([self.prompt_ids, self.completion_ids])


def render_prompt(record: Record, tokenizer: Any, prompt_config: PromptConfig = PromptConfig()) -> str:
    """The chat-template text of the prompt, ending with the assistant generation header."""
    kwargs = {}
    if prompt_config.enable_thinking is not None:
        kwargs["enable_thinking"] = prompt_config.enable_thinking
    return tokenizer.apply_chat_template(
        prompts.build_messages(record, prompt_config), tokenize=False, add_generation_prompt=True, **kwargs)


def end_of_turn_id(tokenizer: Any, end_of_turn: str | None = None) -> int:
    token = end_of_turn or tokenizer.eos_token
    if not token:
        raise ValueError("tokenizer has no eos_token; pass end_of_turn explicitly")
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == getattr(tokenizer, "unk_token_id", object()):
        raise ValueError(f"end-of-turn token {token!r} is not a single token of this tokenizer")
    return int(token_id)


def encode(tokenizer: Any, text: str) -> list[int]:
    """``tokenizer.encode(text, add_special_tokens=False)``. For an HF fast tokenizer in its
    plain state (no backend truncation / padding, special tokens not split) this calls the Rust
    backend directly: the same ids without the ~0.3 ms of Python around each call."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if (isinstance(tokenizer, PreTrainedTokenizerFast)
            and type(tokenizer)._encode_plus is PreTrainedTokenizerFast._encode_plus
            and backend.truncation is None and backend.padding is None
            and backend.encode_special_tokens == bool(tokenizer.split_special_tokens)):
        return backend.encode(text, add_special_tokens=False).ids
    return tokenizer.encode(text, add_special_tokens=False)


def format_example(record: Record, tokenizer: Any, *, prompt_config: PromptConfig = PromptConfig(),
                   max_tokens: int | None = None, end_of_turn: str | None = None) -> SFTExample:
    """Prompt and completion token ids for ``record``.

    ``max_tokens`` bounds ``P + C``; when exceeded the prompt is trimmed from the left (at least
    one prompt token is kept so the first completion token still has a position predicting it)
    and, only if the completion alone is too long, the completion is cut from the right."""
    prompt = render_prompt(record, tokenizer, prompt_config)
    target = prompts.answer_target(record, prompt_config)
    prompt_ids = np.asarray(encode(tokenizer, prompt), np.int32)
    completion_ids = np.asarray(encode(tokenizer, target) + [end_of_turn_id(tokenizer, end_of_turn)], np.int32)
    removed = 0
    if max_tokens is not None:
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
        total = len(prompt_ids) + len(completion_ids)
        if total > max_tokens:
            if len(completion_ids) > max_tokens - 1:
                completion_ids = completion_ids[: max_tokens - 1]
            prompt_ids = prompt_ids[len(prompt_ids) - (max_tokens - len(completion_ids)):]
            removed = total - len(prompt_ids) - len(completion_ids)
    return SFTExample(prompt, target, prompt_ids, completion_ids, removed)


def example_features(example: SFTExample, language_id: int) -> dict[str, np.ndarray]:
    """Next-token features of one example, each [L - 1] with L = P + C: ``inputs``, ``targets``
    (int32), ``loss_mask`` (float32, 1 where the target is a completion token), ``language_ids``."""
    ids = example.ids
    is_completion = np.arange(len(ids)) >= len(example.prompt_ids)
    return {
        "inputs": ids[:-1],
        "targets": ids[1:],
        "loss_mask": is_completion[1:].astype(np.float32),
        "language_ids": np.full(len(ids) - 1, language_id, np.int32),
    }


class TruncationStats:
    """Counts truncated examples per task (in this process; with ``worker_count > 0`` the counts
    stay in the workers, use ``scan_truncation`` for an exact figure)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, task_name: str) -> None:
        with self._lock:
            n = self.counts[task_name] = self.counts.get(task_name, 0) + 1
        if n & (n - 1) == 0:  # log at 1, 2, 4, 8, ... so a long run does not flood the log
            log.warning("task %s: %d example(s) truncated so far (prompt trimmed from the left)", task_name, n)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __getstate__(self) -> dict[str, Any]:  # picklable for worker processes (lock recreated)
        return {"counts": dict(self.counts)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        self.counts = state["counts"]


@dataclasses.dataclass(frozen=True)
class _Formatter:
    """Record -> per-example features (a picklable callable for ``MapDataset.map``)."""

    tokenizer: Any
    task_name: str
    task_index: int
    language_id: int
    max_tokens: int
    prompt_config: PromptConfig
    end_of_turn: str | None
    stats: TruncationStats | None

    def __call__(self, record: Record) -> dict[str, np.ndarray]:
        ex = format_example(record, self.tokenizer, prompt_config=self.prompt_config,
                            max_tokens=self.max_tokens, end_of_turn=self.end_of_turn)
        if ex.truncated and self.stats is not None:
            self.stats.add(self.task_name)
        features = example_features(ex, self.language_id)
        features["task_index"] = np.int32(self.task_index)  # dropped by packing / padding
        return features


@dataclasses.dataclass(frozen=True)
class _LMFormatter:
    """Document -> plain next-token features: every target token carries loss (a picklable
    callable for ``MapDataset.map``)."""

    tokenizer: Any
    task_name: str
    task_index: int
    language_id: int
    max_tokens: int
    end_of_turn: str | None
    stats: TruncationStats | None

    def __call__(self, document: Any) -> dict[str, np.ndarray]:
        features = lm_features(document.text, self.tokenizer, self.language_id, max_tokens=self.max_tokens,
                               end_of_text=self.end_of_turn)
        if features.pop("truncated") and self.stats is not None:
            self.stats.add(self.task_name)
        features["task_index"] = np.int32(self.task_index)
        return features


def lm_features(text: str, tokenizer: Any, language_id: int, *, max_tokens: int | None = None,
                end_of_text: str | None = None) -> dict[str, np.ndarray]:
    """Next-token features of one plain-text document (no chat template): ``ids = encode(text) +
    [end_of_text]`` (default the tokenizer's eos), cut to ``max_tokens``; ``loss_mask`` is 1 on
    every target. Also ``truncated`` (a bool) for the caller's statistics."""
    ids = list(encode(tokenizer, text)) + [end_of_turn_id(tokenizer, end_of_text)]
    truncated = max_tokens is not None and len(ids) > max_tokens
    ids = np.asarray(ids[:max_tokens] if truncated else ids, np.int32)
    if len(ids) < 2:
        raise ValueError(f"document {text!r} has fewer than 2 tokens")
    return {
        "inputs": ids[:-1],
        "targets": ids[1:],
        "loss_mask": np.ones(len(ids) - 1, np.float32),
        "language_ids": np.full(len(ids) - 1, language_id, np.int32),
        "truncated": truncated,
    }


def scan_truncation(config: PipelineConfig, tokenizer: Any) -> dict[str, int]:
    """Exact number of over-long records per task of the mixture (formats every record once)."""
    out = {}
    for name, task in config.mixture.tasks().items():
        out[name] = sum(
            format_example(r, tokenizer, prompt_config=config.prompt, max_tokens=config.seq_len + 1,
                           end_of_turn=config.end_of_turn).truncated
            for r in task.records(config.split))
    return out


# ---------------------------------------------------------------------------------------------
# Datasets.
# ---------------------------------------------------------------------------------------------


def task_seed(seed: int, task_name: str) -> int:
    """A per-task shuffle seed, stable across runs and Python processes."""
    return (seed * 1_000_003 + zlib.crc32(task_name.encode())) % (2**31 - 1)


def _default_shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        import jax  # deferred: only the default path needs the JAX backend

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    return shard_index, shard_count


def task_records_dataset(task: tasks.Task, split: str, *, seed: int, shuffle: bool = True,
                         num_epochs: int | None = None, shard_index: int | None = None,
                         shard_count: int | None = None) -> grain.MapDataset:
    """Records of one task: shuffled (reshuffled each epoch), repeated, then this shard's slice.

    Sharding after repeat takes every ``shard_count``-th element of the global stream, so the
    shards of one epoch are disjoint and together are the whole epoch."""
    shard_index, shard_count = _default_shard(shard_index, shard_count)
    records = tasks.pipeline_records(task, split)  # random access (ArrayRecord) or in memory
    if not records:
        raise ValueError(f"task {task.name!r} has no {split} records")
    ds = grain.MapDataset.source(records)
    if shuffle:
        ds = ds.shuffle(seed=task_seed(seed, task.name))
    ds = ds.repeat(num_epochs)
    return ds[shard_index::shard_count]


def mixed_example_dataset(config: PipelineConfig, tokenizer: Any, *, shard_index: int | None = None,
                          shard_count: int | None = None, stats: TruncationStats | None = None) -> grain.IterDataset:
    """The mixed stream of per-example features (variable length, plus a scalar ``task_index``
    into ``config.mixture.task_names``), before packing."""
    shard_index, shard_count = _default_shard(shard_index, shard_count)
    all_shares = config.mixture.shares()
    by_name = config.mixture.tasks()
    lang_index = {lang: i for i, lang in enumerate(config.languages)}
    all_names = tuple(by_name)
    datasets, weights = [], []
    for name, share in all_shares.items():
        if share <= 0:
            continue
        task = by_name[name]
        if task.language not in lang_index:
            raise ValueError(f"task {name!r} has language {task.language!r}, not in config.languages {config.languages}")
        if config.objective == "lm":
            formatter = _LMFormatter(tokenizer, name, all_names.index(name), lang_index[task.language],
                                     config.seq_len + 1, config.end_of_turn, stats)
        else:
            formatter = _Formatter(tokenizer, name, all_names.index(name), lang_index[task.language],
                                   config.seq_len + 1, config.prompt, config.end_of_turn, stats)
        ds = task_records_dataset(task, config.split, seed=config.seed, shuffle=config.shuffle,
                                  num_epochs=config.num_epochs, shard_index=shard_index, shard_count=shard_count)
        read = grain.ReadOptions(num_threads=config.read_threads, prefetch_buffer_size=4 * config.read_threads)
        datasets.append(ds.map(formatter).to_iter_dataset(read))
        weights.append(share)
    if len(datasets) == 1:
        return datasets[0]
    return mix_datasets(datasets, weights)


# ---------------------------------------------------------------------------------------------
# Mixing: grain's IterDataset.mix with cheaper bookkeeping (the same elements and state).
# ---------------------------------------------------------------------------------------------

_MIX_BLOCK = 1024  # mixed positions whose source is computed at once


def mix_selection(start: int, count: int, proportions: Sequence[int]) -> np.ndarray:
    """[count] int: which parent grain's mix draws at positions ``start .. start + count - 1``,
    vectorised over positions (grain's per-position loop over the parents costs ~0.1 ms a draw
    with 150 tasks). The same integer recurrence as grain's ``_dataset_and_key_of_next_element``;
    tests/test_data_pipeline.py checks it against grain's."""
    total = sum(proportions)
    if (start + count + 1) * total >= 2**62:  # int64 products would overflow: grain's exact loop
        return np.asarray([grain_mix._dataset_and_key_of_next_element(k, tuple(proportions))[0]
                           for k in range(start, start + count)], np.int64)
    k = np.arange(start, start + count, dtype=np.int64)
    k1 = k + 1
    out = np.full(count, -1, np.int64)
    open_ = np.ones(count, bool)
    remaining = total
    for i, p in enumerate(proportions):
        nk, nk1 = k * (remaining - p) // remaining, k1 * (remaining - p) // remaining
        hit = open_ & ((k - nk) != (k1 - nk1))
        out[hit] = i
        open_ &= ~hit
        if not open_.any():
            break
        remaining -= p
        k, k1 = nk, nk1
    if open_.any():
        raise RuntimeError("mix_selection: a position matched no parent (grain's mix would fail too)")
    return out


class _MixIterator(grain_mix._MixedDatasetIterator):
    """grain's mix iterator with the same draws and ``get_state`` dict, but (1) parents chosen
    from a precomputed block of positions and (2) ``get_state`` re-reading only the parents that
    advanced since the last call: the packer takes the state after every element, and reading
    all 150 parents' states each time was ~10% of the pipeline's CPU."""

    def __init__(self, parents: Sequence[grain.DatasetIterator], proportions: Sequence[int]):
        super().__init__(list(parents), proportions)
        self._block_start, self._block = 0, np.zeros(0, np.int64)
        self._states: list[Any] | None = None  # cached parent states (None: read them all)
        self._dirty: set[int] = set()

    def _parent_at(self, k: int) -> int:
        if not self._block_start <= k < self._block_start + len(self._block):
            self._block_start, self._block = k, mix_selection(k, _MIX_BLOCK, self._proportions)
        return int(self._block[k - self._block_start])

    def __next__(self):
        if self._stop:  # as grain: once a parent ran out, draw nothing more
            raise StopIteration
        i = self._parent_at(self._index)
        self._index += 1
        self._dirty.add(i)
        try:
            return next(self._parents[i])
        except Exception as e:
            self._stop = True
            e.add_note(f"Exception caught while processing dataset @ input_index={i}")
            raise

    def get_state(self) -> dict[str, Any]:
        if self._states is None:
            self._states = [p.get_state() for p in self._parents]
        else:
            for i in self._dirty:
                self._states[i] = self._parents[i].get_state()
        self._dirty.clear()
        return {"parents": list(self._states), "index": self._index, "stop": self._stop}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._states, self._dirty = None, set()


class _MixDataset(grain_mix.MixedIterDataset):
    def __iter__(self) -> grain.DatasetIterator:
        return _MixIterator([p.__iter__() for p in self._parents], self._proportions)


def mix_datasets(datasets: Sequence[grain.IterDataset], weights: Sequence[float]) -> grain.IterDataset:
    """``grain.IterDataset.mix(datasets, weights)``: the same elements in the same order and the
    same checkpoint state, with per-element bookkeeping independent of the number of tasks."""
    return _MixDataset(list(datasets), list(weights))


@dataclasses.dataclass(frozen=True)
class _FromPacked:
    def __call__(self, ex: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "inputs": ex["inputs"].astype(np.int32),
            "targets": ex["targets"].astype(np.int32),
            "loss_mask": ex["loss_mask"].astype(np.float32),
            "segment_ids": ex["inputs_segment_ids"].astype(np.int32),
            "positions": ex["inputs_positions"].astype(np.int32),
            "language_ids": ex["language_ids"].astype(np.int32),
        }


@dataclasses.dataclass(frozen=True)
class _PadTo:
    seq_len: int
    pad_id: int

    def __call__(self, ex: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, t = len(ex["inputs"]), self.seq_len

        def pad(x: np.ndarray, value: Any, dtype: Any) -> np.ndarray:
            out = np.full(t, value, dtype)
            out[:n] = x
            return out

        return {
            "inputs": pad(ex["inputs"], self.pad_id, np.int32),
            "targets": pad(ex["targets"], self.pad_id, np.int32),
            "loss_mask": pad(ex["loss_mask"], 0.0, np.float32),
            "segment_ids": pad(np.ones(n, np.int32), 0, np.int32),
            "positions": pad(np.arange(n, dtype=np.int32), 0, np.int32),
            "language_ids": pad(ex["language_ids"], -1, np.int32),
        }


def make_train_dataset(config: PipelineConfig, tokenizer: Any, *, shard_index: int | None = None,
                       shard_count: int | None = None, stats: TruncationStats | None = None) -> grain.IterDataset:
    """The batched training stream (see the module docstring for the batch contract)."""
    ds = mixed_example_dataset(config, tokenizer, shard_index=shard_index, shard_count=shard_count, stats=stats)
    t, pad_id = config.seq_len, tokenizer_pad_id(tokenizer)
    if config.packing:
        ds = grain.experimental.FirstFitPackIterDataset(
            ds,
            length_struct={k: t for k in _PACKED_KEYS},
            num_packing_bins=config.num_packing_bins or config.batch_size,
            seed=config.seed,
            shuffle_bins=True,
            padding_struct={"inputs": pad_id, "targets": pad_id, "loss_mask": 0, "language_ids": -1},
        )
        ds = ds.map(_FromPacked())
    else:
        ds = ds.map(_PadTo(t, pad_id))
    ds = ds.batch(config.batch_size, drop_remainder=config.drop_remainder)
    if config.worker_count > 0:
        from absl import flags  # grain's worker processes read absl flags; a plain script never parses them

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.worker_count))
    elif config.prefetch_buffer_size > 0:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=config.prefetch_buffer_size)
    return ds


def make_train_iterator(config: PipelineConfig, tokenizer: Any, *, shard_index: int | None = None,
                        shard_count: int | None = None, stats: TruncationStats | None = None) -> grain.DatasetIterator:
    """A checkpointable iterator of batches (``get_state`` / ``set_state``, or orbax via
    ``grain.checkpoint.CheckpointSave`` / ``CheckpointRestore``). Shards default to
    ``jax.process_index()`` of ``jax.process_count()``."""
    return iter(make_train_dataset(config, tokenizer, shard_index=shard_index, shard_count=shard_count, stats=stats))


def check_batch(batch: Mapping[str, np.ndarray], batch_size: int, seq_len: int) -> None:
    """Raises ValueError unless ``batch`` follows the batch contract (keys, dtypes, [B, T])."""
    dtypes = {"loss_mask": np.float32}
    if set(batch) != set(BATCH_KEYS):
        raise ValueError(f"batch keys {sorted(batch)} != {sorted(BATCH_KEYS)}")
    for k in BATCH_KEYS:
        v = batch[k]
        if v.shape != (batch_size, seq_len) or v.dtype != dtypes.get(k, np.int32):
            raise ValueError(f"batch[{k!r}] has shape {v.shape} dtype {v.dtype}")


def language_token_counts(batches: Sequence[Mapping[str, np.ndarray]], num_languages: int) -> np.ndarray:
    """[num_languages] loss-bearing target tokens per language over ``batches`` (for logging)."""
    out = np.zeros(num_languages, np.int64)
    for b in batches:
        ids = b["language_ids"][b["loss_mask"] > 0]
        out += np.bincount(ids[ids >= 0], minlength=num_languages)[:num_languages]
    return out
