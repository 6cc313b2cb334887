"""Training data for the loop: the GlobMed mixture through the grain pipeline.

Mixture names starting with ``globmed_mini`` register the embedded synthetic corpus; any other
name must be registered beforehand, e.g. JSONL built by ``data_pipelines.build`` registered with
``globmed_jax.data.tasks.register_jsonl_tasks`` (the real recipes do this from ``data.jsonl_dir``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import ml_collections

from globmed_jax.data import mini, prompts, records_io, tasks
from globmed_jax.data.pipeline import PipelineConfig, make_train_iterator


def mini_config(config: ml_collections.ConfigDict) -> mini.MiniConfig:
    return mini.MiniConfig(seed=config.seed, languages=tuple(config.data.languages),
                           train_variants=config.data.mini_train_variants)


def register_mixture(config: ml_collections.ConfigDict) -> str:
    """Makes sure ``config.data.mixture`` exists in the task registry; returns its name."""
    name = config.data.mixture
    if name.startswith(mini.DATASET_PREFIX):
        # tasks.py registers GlobMed-mini with default settings at import: re-register it with
        # this run's seed, languages and size.
        tasks.register_globmed_mini(mini_config(config), overwrite=True)
    if name in tasks.list_mixtures():
        return name
    jsonl_dir = config.data.jsonl_dir
    if name not in tasks.list_mixtures() and jsonl_dir:
        register_jsonl_directory(Path(jsonl_dir), name, config.data.temperature,
                                 tuple(config.data.languages))
    if name not in tasks.list_mixtures():
        raise KeyError(f"mixture {name!r} is not registered; known: {sorted(tasks.list_mixtures())}")
    return name


def register_jsonl_directory(directory: Path, mixture: str, temperature: float,
                             languages: tuple[str, ...]) -> None:
    """Registers one task per (dataset, language) found in a normalized JSONL tree
    (``<dataset>/<language>/<split>.jsonl``, as ``data_pipelines.build`` writes it) and a
    temperature-weighted mixture over the given languages."""
    found = []
    for train_file in sorted(directory.glob("*/*/train.jsonl")):
        dataset, language = train_file.parent.parent.name, train_file.parent.name
        if language not in languages:
            continue
        first = next(records_io.iter_records(train_file), None)
        if first is None:
            raise ValueError(f"{train_file} has no records")
        found.append((dataset, language, first.family))
    if not found:
        raise FileNotFoundError(f"no <dataset>/<language>/train.jsonl files for {languages} under {directory}")
    names = tasks.register_jsonl_tasks(directory, found, overwrite=True)
    rate = tasks.rate_temperature(temperature)
    tasks.add_mixture(tasks.Mixture(mixture, tuple((n, rate) for n in names)), overwrite=True)


def pipeline_config(config: ml_collections.ConfigDict, process_count: int) -> PipelineConfig:
    return PipelineConfig(
        mixture=register_mixture(config),
        split="train",
        seq_len=config.data.seq_len,
        batch_size=config.train.global_batch_size // process_count,
        seed=config.data.shuffle_seed,
        languages=tuple(config.data.languages),
        packing=config.data.packing,
        num_packing_bins=config.data.num_packing_bins or None,
        prompt=prompt_config(config),
    )


def prompt_config(config: ml_collections.ConfigDict) -> prompts.PromptConfig:
    """The prompt format training uses (and the held-out evaluation must use as well)."""
    return prompts.PromptConfig(mcqa_answer=config.data.mcqa_answer)


def globmed_iterator(config: ml_collections.ConfigDict, tokenizer: Any, process_index: int,
                     process_count: int) -> Iterator[dict]:
    return make_train_iterator(pipeline_config(config, process_count), tokenizer,
                               shard_index=process_index, shard_count=process_count)


def corpus_texts(config: ml_collections.ConfigDict) -> Iterator[str]:
    """Every prompt and answer text of the mixture's training records (for training a BPE)."""
    mixture = tasks.get_mixture(register_mixture(config))
    fmt = prompt_config(config)
    for name in mixture.task_names:
        for record in tasks.get_task(name).records("train"):
            yield prompts.user_message(record, fmt)
            yield prompts.answer_target(record, fmt)
