"""TFDS builder over the normalized JSONL: one ArrayRecord dataset per (dataset, language).

Builder name ``glob_med``; config name ``<dataset>-<language>`` (e.g. ``medqa-en``); splits
are the normalized split names present (``train``/``validation``/``test``). ArrayRecord
splits are random access, read with ``as_data_source`` (not ``as_dataset``)::

    build_tfds("out/medqa", "out/medqa/tfds")
    src = load_data_source("out/medqa/tfds", "medqa", "en", "test")
    ds = grain.MapDataset.source(src).map(example_to_record)

This module imports tensorflow_datasets (and so tensorflow): import it lazily.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import pathlib
from typing import Any

import tensorflow_datasets as tfds

from globmed_jax.data.records_io import iter_records, record_path
from globmed_jax.data.tasks import ARRAYRECORD_BUILDER, ARRAYRECORD_TEXT_FIELDS, example_to_record  # noqa: F401 (re-exported)
from globmed_jax.data.schema import OPTION_LETTERS, SPLITS, Record

log = logging.getLogger("data_pipelines.tfds_builder")
BUILDER_NAME = ARRAYRECORD_BUILDER


class _NoCustomConfigNotice(logging.Filter):
    """TFDS warns "Using custom data configuration" for every config not declared in advance:
    here that is every (dataset, language), so 150 warnings per full build that say nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Using custom data configuration: GlobMedConfig(")


logging.getLogger("absl").addFilter(_NoCustomConfigNotice())
VERSION = tfds.core.Version("1.1.0")
_TEXT_FIELDS = ARRAYRECORD_TEXT_FIELDS

FEATURES = tfds.features.FeaturesDict(
    {
        **{f: tfds.features.Text() for f in _TEXT_FIELDS},
        "options": tfds.features.Sequence(tfds.features.Text()),  # texts of A, B, ... in order
        "context": tfds.features.Text(),  # "" = None
        "explanation": tfds.features.Text(),  # "" = None
        "meta_json": tfds.features.Text(),  # arbitrary JSON meta, serialized
    }
)


def config_name(dataset: str, language: str) -> str:
    return f"{dataset}-{language}"


@dataclasses.dataclass(eq=False)
class GlobMedConfig(tfds.core.BuilderConfig):
    """One (dataset, language) of a normalized JSONL directory."""

    dataset: str = ""
    language: str = ""
    jsonl_dir: str = ""


def record_to_example(r: Record) -> dict[str, Any]:
    """Record -> TFDS feature dict (options must be lettered A.. in order, as validated)."""
    ex: dict[str, Any] = {f: getattr(r, f) for f in _TEXT_FIELDS}
    ex["options"] = [r.options[k] for k in OPTION_LETTERS[: len(r.options)]]
    ex["context"] = r.context or ""
    ex["explanation"] = r.explanation or ""
    ex["meta_json"] = json.dumps(dict(r.meta), ensure_ascii=False, sort_keys=True)
    return ex


class GlobMed(tfds.core.GeneratorBasedBuilder):
    """Normalized GlobMed records; configs are created per (dataset, language) at run time."""

    VERSION = VERSION
    RELEASE_NOTES = {"1.0.0": "Normalized records (data_pipelines.build JSONL).",
                     "1.1.0": "The task-family feature is named `family` (was `task`), as in Record."}
    BUILDER_CONFIGS: list[GlobMedConfig] = []

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=FEATURES,
            description="GlobMed normalized medical QA records (see docs/data.md).",
            supervised_keys=None,
        )

    use_beam = False  # set by make_builder(beam=...): the splits are Beam PTransforms (TFDS's Beam support)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        cfg: GlobMedConfig = self.builder_config
        out = {}
        for split in SPLITS:
            path = record_path(pathlib.Path(cfg.jsonl_dir), cfg.dataset, cfg.language, split)
            if path.is_file():
                out[split] = self._beam_examples(split, path) if self.use_beam else self._generate_examples(path)
        if not out:
            raise FileNotFoundError(f"no {cfg.dataset}/{cfg.language}/<split>.jsonl under {cfg.jsonl_dir}")
        return out

    def _generate_examples(self, path: pathlib.Path):
        yield from file_examples(str(path))

    def _beam_examples(self, split: str, path: pathlib.Path) -> Any:
        """The same (key, example) pairs as a Beam PTransform: TFDS serializes, shuffles by key
        and writes the ArrayRecord shards on the pipeline's workers."""
        beam = tfds.core.lazy_imports.apache_beam
        return beam.Create([str(path)]) | f"Examples_{split}" >> beam.FlatMap(file_examples)


def file_examples(path: str):
    """``(record id, example)`` for every record of one normalized JSONL file."""
    for r in iter_records(path):
        yield r.id, record_to_example(r)


def make_builder(jsonl_dir: str | pathlib.Path, data_dir: str | pathlib.Path, dataset: str, language: str,
                 beam: bool = False) -> GlobMed:
    cfg = GlobMedConfig(
        name=config_name(dataset, language), version=VERSION, dataset=dataset, language=language,
        jsonl_dir=str(jsonl_dir), description=f"{dataset} in {language}",
    )
    builder = GlobMed(config=cfg, data_dir=str(data_dir), file_format="array_record")
    builder.use_beam = beam
    return builder


def discover(jsonl_dir: str | pathlib.Path) -> list[tuple[str, str]]:
    """(dataset, language) pairs with at least one ``<split>.jsonl`` in a build output."""
    root = pathlib.Path(jsonl_dir)
    pairs = {(p.parent.parent.name, p.parent.name) for s in SPLITS for p in root.glob(f"*/*/{s}.jsonl")}
    return sorted(pairs)


def build_tfds(
    jsonl_dir: str | pathlib.Path, data_dir: str | pathlib.Path, pairs: list[tuple[str, str]] | None = None,
    beam: Any = None, workers: int = 1,
) -> list[str]:
    """Prepares one ArrayRecord dataset per (dataset, language); returns the config names.

    ``workers > 1`` prepares that many configs at once, each in its own process (spawned: TF is
    not fork-safe), largest JSONL first; every config is written by one process alone, so the
    records are the same as with one worker. ``beam`` (a ``data_pipelines.beam_build.BeamConfig``):
    generate through TFDS's Beam support on that runner, one pipeline per (dataset, language);
    the records are the same (``workers`` is then unused: the runner parallelises)."""
    pairs = list(pairs if pairs is not None else discover(jsonl_dir))
    jobs = [(str(jsonl_dir), str(data_dir), dataset, language) for dataset, language in pairs]
    names: dict[int, str] = {}

    def finished(k: int, name: str) -> None:
        names[k] = name
        log.info("ArrayRecord %d/%d: %s", len(names), len(jobs), name)

    if beam is not None or workers <= 1 or len(jobs) <= 1:
        for k, job in enumerate(jobs):
            finished(k, _prepare(*job, beam=beam))
    else:
        biggest_first = sorted(range(len(jobs)), key=lambda k: -_jsonl_bytes(str(jsonl_dir), *pairs[k]))
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(_prepare, *jobs[k]): k for k in biggest_first}
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result())  # a worker's error is raised here, naming its config
    return [names[k] for k in range(len(jobs))]


def _jsonl_bytes(jsonl_dir: str, dataset: str, language: str) -> int:
    paths = (record_path(pathlib.Path(jsonl_dir), dataset, language, split) for split in SPLITS)
    return sum(p.stat().st_size for p in paths if p.is_file())


def _prepare(jsonl_dir: str, data_dir: str, dataset: str, language: str, beam: Any = None) -> str:
    """Writes one (dataset, language) ArrayRecord dataset; returns its config name."""
    beam_args = {} if beam is None else {"beam_runner": beam.runner, "beam_options": beam.pipeline_options()}
    builder = make_builder(jsonl_dir, data_dir, dataset, language, beam=beam is not None)
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False, **beam_args))
    except Exception as err:  # a worker's error reaches the parent with the config it belongs to
        err.add_note(f"while writing the ArrayRecord dataset {config_name(dataset, language)} from {jsonl_dir}")
        raise
    return builder.builder_config.name


def dataset_dir(data_dir: str | pathlib.Path, dataset: str, language: str) -> pathlib.Path:
    return pathlib.Path(data_dir) / BUILDER_NAME / config_name(dataset, language) / str(VERSION)


def load_data_source(data_dir: str | pathlib.Path, dataset: str, language: str, split: str):
    """Random-access source of decoded examples for one prepared split (no config registry needed)."""
    builder = tfds.builder_from_directory(str(dataset_dir(data_dir, dataset, language)))
    return builder.as_data_source(split)


def grain_records(data_dir: str | pathlib.Path, dataset: str, language: str, split: str):
    """A ``grain.MapDataset`` of Records for one prepared split."""
    import grain

    return grain.MapDataset.source(load_data_source(data_dir, dataset, language, split)).map(example_to_record)
