"""Training data for the loop: the config's mixture, resolved once into a value, through the
grain pipeline.

``data.mixture`` is a GlobMed-mini name (``tasks.NAMED_MIXTURES``, or one GlobMed-mini task)
built with this run's seed, languages and size; with ``data.arrayrecord_dir``, the name given to a
temperature mixture over the versioned TFDS ArrayRecord build (``data_pipelines.build --tfds``;
records are read by index, each process and grain worker only its own shard); or, with
``data.jsonl_dir``, the same over the normalized JSONL tree (read into memory in every process:
for small data).
"""

from __future__ import annotations

from typing import Any, Iterator

from globmed_jax.data import mini, prompts, tasks
from globmed_jax.data.pipeline import PipelineConfig, make_train_iterator
from globmed_jax.training.config import DataSection


def mini_config(data: DataSection, seed: int) -> mini.MiniConfig:
    return mini.MiniConfig(seed=seed, languages=tuple(data.languages), train_variants=data.mini_train_variants)


def resolve_mixture(data: DataSection, seed: int) -> tasks.Mixture:
    """The mixture ``data`` names, as a value (the only place a mixture name is looked up)."""
    if data.arrayrecord_dir:  # DataSection refuses arrayrecord_dir together with jsonl_dir
        return tasks.arrayrecord_mixture(data.arrayrecord_dir, data.mixture, data.temperature, tuple(data.languages))
    if data.jsonl_dir:
        return tasks.jsonl_mixture(data.jsonl_dir, data.mixture, data.temperature, tuple(data.languages))
    return tasks.named_mixture(data.mixture, mini_config(data, seed))


def prompt_config(data: DataSection) -> prompts.PromptConfig:
    """The prompt format training uses (and the held-out evaluation must use as well)."""
    return prompts.PromptConfig(mcqa_answer=data.mcqa_answer)


def pipeline_config(data: DataSection, mixture: tasks.Mixture, batch_size: int) -> PipelineConfig:
    """``batch_size`` is per process."""
    return PipelineConfig(
        mixture=mixture,
        split="train",
        seq_len=data.seq_len,
        batch_size=batch_size,
        seed=data.shuffle_seed,
        languages=tuple(data.languages),
        packing=data.packing,
        num_packing_bins=data.num_packing_bins or None,
        prompt=prompt_config(data),
        objective=data.objective,
    )


def corpus_texts(data: DataSection, mixture: tasks.Mixture) -> Iterator[str]:
    """Every text the model trains on (for training a BPE): the documents' text for
    ``objective="lm"``, otherwise each record's prompt and answer in the run's format."""
    fmt = prompt_config(data)
    for task in mixture.tasks().values():
        for item in task.records("train"):
            if data.objective == "lm":
                yield item.text
            else:
                yield prompts.user_message(item, fmt)
                yield prompts.answer_target(item, fmt)


def globmed_iterator(pipeline: PipelineConfig, tokenizer: Any, process_index: int,
                     process_count: int) -> Iterator[dict]:
    return make_train_iterator(pipeline, tokenizer, shard_index=process_index, shard_count=process_count)
