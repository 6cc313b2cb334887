"""The dev split: a fixed, seeded slice of train for every (dataset, language) whose source has none.

Few-shot prompts (the bench's ``data.shots_split``) draw their solved examples from here, never
from test. The dev split is written as the schema's ``validation`` split (importers already map a
source's ``dev`` / ``val`` files to it), so a source that ships one keeps it untouched.

Which records: within one (dataset, language) train file, records are ranked by
``sha256("<seed>|<dataset>|<source_id>")`` (ties by id) and the first ``size(N)`` move to
``validation.jsonl``; train keeps the rest, so nothing is duplicated and every record is still
written exactly once (a file's records seen = kept + quarantined is untouched). Ranking by the
source id, not the record, picks the same source items in every language of an aligned dataset.

How many (``DevSplitConfig.size``): ``min(maximum, max(minimum, ceil(fraction * N)))`` for a
train file of at least ``min_train`` records, none below that. Defaults 5%, at least 5 (a
5-shot prompt then finds 5 distinct shots), at most 100, from 50 train records on: at most
10% of a small train file, 100 items of a large one; a smaller train file keeps everything and
the bench falls back to the dataset's dev records in other languages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import pathlib
from typing import Any, Iterable, Mapping

from globmed_jax.data.records_io import Key, RecordWriter, iter_records
from globmed_jax.data.schema import Record

DEV_SPLIT = "validation"
SOURCE_SPLIT = "train"


@dataclasses.dataclass(frozen=True)
class DevSplitConfig:
    """``enabled=False`` writes the source splits only (the manifest says so)."""

    seed: int = 0
    fraction: float = 0.05
    minimum: int = 5
    maximum: int = 100
    min_train: int = 50
    enabled: bool = True

    def __post_init__(self):
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"dev split fraction must be in (0, 1), got {self.fraction}")
        if not 0 < self.minimum <= self.maximum:
            raise ValueError(f"dev split needs 0 < minimum <= maximum, got {self.minimum}, {self.maximum}")
        if self.min_train < 2 * self.minimum:
            raise ValueError(f"dev split min_train ({self.min_train}) must be at least 2 * minimum ({self.minimum}) "
                             "so train keeps most of a small file")

    def size(self, n_train: int) -> int:
        """Dev records carved from a train file of ``n_train`` records."""
        if n_train < self.min_train:
            return 0
        return min(self.maximum, max(self.minimum, math.ceil(self.fraction * n_train)))

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "split": DEV_SPLIT, "from": SOURCE_SPLIT,
                "rank": "sha256(seed|dataset|source_id), ties by id",
                "size": "min(maximum, max(minimum, ceil(fraction * N))) when N >= min_train, else 0"}


def rank_key(seed: int, record: Record) -> tuple[str, str]:
    return hashlib.sha256(f"{seed}|{record.dataset}|{record.source_id}".encode("utf-8")).hexdigest(), record.id


def choose(records: Iterable[Record], config: DevSplitConfig, n: int | None = None) -> set[str]:
    """The ids of the records that go to dev (``config.size(n)`` of them; ``n`` = the number of
    ``records``, counted here when not given). Streams: holds only the ``size(n)`` best ranks."""
    if n is None:
        records = list(records)
        n = len(records)
    k = config.size(n)
    if k == 0:
        return set()
    best = heapq.nsmallest(k, (rank_key(config.seed, r) for r in records))
    return {rid for _, rid in best}


def carve(out_dir: pathlib.Path, keys: Iterable[Key] | Mapping[Key, int], config: DevSplitConfig) -> dict[str, Any]:
    """Carves the dev split for every (dataset, language) of ``keys`` (the files the build wrote)
    that has a train file and no validation file; rewrites both files atomically (one
    ``RecordWriter`` per cell: both renamed into place together after both are complete).
    Streams the train file twice (rank, then rewrite), so memory does not grow with its size;
    ``keys`` may map each file to its record count (the build's), saving a counting pass.

    Returns the manifest entry: the config, ``carved`` ``{"<dataset>/<language>": {"dev": n,
    "train": N - n}}``, ``from_source`` (cells whose source has its own validation split) and
    ``too_small`` (train files under ``min_train``)."""
    sizes = dict(keys) if isinstance(keys, Mapping) else {}
    keys = set(keys)
    report: dict[str, Any] = {**config.describe(), "carved": {}, "from_source": [], "too_small": []}
    if not config.enabled:
        return report
    cells = sorted({(d, l) for d, l, s in keys if s == SOURCE_SPLIT})
    for dataset, language in cells:
        name = f"{dataset}/{language}"
        if (dataset, language, DEV_SPLIT) in keys:
            report["from_source"].append(name)
            continue
        train_path = out_dir / dataset / language / f"{SOURCE_SPLIT}.jsonl"
        n = sizes.get((dataset, language, SOURCE_SPLIT))
        if n is None:
            n = sum(1 for _ in iter_records(train_path))
        dev_ids = choose(iter_records(train_path), config, n)
        if not dev_ids:
            report["too_small"].append(name)
            continue
        with RecordWriter(out_dir) as writer:  # file order kept in both files
            for r in iter_records(train_path):
                writer.write(dataclasses.replace(r, split=DEV_SPLIT) if r.id in dev_ids else r)
        report["carved"][name] = {"dev": len(dev_ids), "train": n - len(dev_ids)}
    return report
