"""The build as an Apache Beam pipeline, for releases that outgrow one host.

``python -m data_pipelines.build ... --beam-runner DirectRunner [--beam-options "..."]`` (or
``build(..., beam=BeamConfig(...))``) runs import -> validate -> dev split -> JSONL as::

    units (one per input file) --Import--> record-level checks, each record's JSONL line
      --GroupByKey(source_id)--> duplicate ids / cross-language alignment, first seen wins
      --GroupByKey(id)--> duplicates across source_ids (first seen wins)
      --GroupByKey(dataset, language)--> dev split, one JSONL file per split (atomic)
    bad records --> quarantine.jsonl in input order; per-cell and unknown-language summaries --> driver

Every element carries its position in the single-process stream (unit index, item index), so
"first seen", file order inside each JSONL file and the quarantine order are those of the
single-process build, which this pipeline reproduces record for record (JSONL, quarantine,
manifest counts). The cross-record rules run per ``source_id`` group with the same
:class:`~data_pipelines.validate.Validator` code; one case cannot be reproduced group-wise and
may differ: a record whose id duplicates an earlier record of *another* source_id is still
quarantined as a duplicate, but it may have set its own source_id's alignment signature first.

Scale: the work is spread per input file and per source_id; one (dataset, language) cell is held
by one worker while its files are written, and the output directory must be a filesystem every
worker sees (local for DirectRunner; a shared mount for Dataflow/Flink/Spark). Elements are JSON
values (strings, numbers, dicts), never pickled objects. Needs the ``beam`` extra.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shlex
import shutil
from typing import Any, Iterable, Iterator

from data_pipelines import dev_split
from data_pipelines.importers import ImportOptions, import_unit
from data_pipelines.importers.base import BadRecord
from data_pipelines.importers.globmed import UnknownLanguages
from data_pipelines.jsonl_io import quarantine_line
from data_pipelines.validate import Counts, FileCount, Validator, bad_from_issues, duplicate_issue, record_issues, signature
from globmed_jax.data.records_io import QUARANTINE_NAME, Key, atomic_open, inside_dir, record_from_obj, record_line, record_path

BAD, UNKNOWN, CELL = "bad", "unknown", "cell"


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """Which Beam runner the build runs on, and its pipeline options (``--flag=value`` strings)."""

    runner: str = "DirectRunner"
    options: tuple[str, ...] = ()

    @classmethod
    def parse(cls, runner: str | None, options: str | None) -> "BeamConfig":
        """From ``--beam-runner`` / ``--beam-options`` (one shell-quoted string of flags)."""
        flags = tuple(shlex.split(options or ""))
        bad = [f for f in flags if not f.startswith("--")]
        if bad:
            raise ValueError(f"--beam-options: {bad[0]!r} is not a --flag[=value] pipeline option")
        return cls(runner or "DirectRunner", flags)

    def pipeline_options(self) -> Any:
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(list(self.options))

    def describe(self) -> dict[str, Any]:
        """For the manifest: the runner and the option names (values may name projects or buckets)."""
        return {"runner": f"beam:{self.runner}", "beam_option_names": sorted({f.split("=", 1)[0] for f in self.options})}


# --- stage 1: import one unit ------------------------------------------------------------------


def _bad(order: tuple[int, int], bad: BadRecord) -> tuple[tuple[int, int], str]:
    return order, quarantine_line(bad)


def import_unit_elements(fmt: str, index: int, source: str | None, path: str, options: ImportOptions,
                         report_unknown: bool) -> Iterator[tuple[str, Any]]:
    """``(tag, element)`` for every item of one unit: ``BAD`` (order, quarantine line), ``UNKNOWN``
    (an unknown-language folder's counts) or ``"candidate"`` (source_id, record summary)."""
    unknown = UnknownLanguages() if report_unknown else None
    for j, item in enumerate(import_unit(fmt, (source, pathlib.Path(path)), options, unknown)):
        order = (index, j)
        if isinstance(item, BadRecord):
            yield BAD, _bad(order, item)
            continue
        r, loc = item
        issues = record_issues(r)
        if issues:
            yield BAD, _bad(order, bad_from_issues(loc.file, loc.where, issues, r.to_json(), r.dataset, r.language, r.split))
            continue
        try:
            line, write_error = record_line(r), None
        except ValueError as e:  # as RecordWriter.write would refuse it
            line, write_error = None, quarantine_line(BadRecord(loc.file, loc.where, "<output>", f"not written: {e}",
                                                                r.to_json(), r.dataset, r.language, r.split))
        yield "candidate", (r.source_id, {"order": order, "id": r.id, "sig": list(signature(r)), "file": loc.file,
                                          "where": loc.where, "line": line, "write_error": write_error})
    for (folder, src), per_split in (unknown.counts.items() if unknown else ()):
        for split, n in per_split.items():
            yield UNKNOWN, (folder, src, split, path, n)


def _order(v: dict[str, Any]) -> tuple[int, int]:
    return tuple(v["order"])  # type: ignore[return-value]


def _history_bad(v: dict[str, Any], issues: list[tuple[str, str]]) -> tuple[tuple[int, int], str]:
    dataset, _family, split, _n_options, language = v["sig"]
    raw = json.loads(v["line"]) if v["line"] is not None else None
    return _bad(_order(v), bad_from_issues(v["file"], v["where"], issues, raw, dataset, language, split))


# --- stage 2: history per source_id, then duplicates across source_ids ------------------------


def check_source_group(source_id: str, values: Iterable[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The Validator's cross-record rules over one source_id's records, in stream order."""
    validator = Validator()
    for v in sorted(values, key=_order):
        sig = tuple(v["sig"])
        issues = validator.check_history(v["id"], source_id, sig, f"{v['file']}:{v['where']}")  # type: ignore[arg-type]
        if issues:
            yield BAD, _history_bad(v, issues)
        else:
            yield "accepted", (v["id"], v)


def check_id_group(record_id: str, values: Iterable[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """An id accepted under several source_ids: the first in stream order wins."""
    ordered = sorted(values, key=_order)
    first = ordered[0]
    yield "accepted", ((first["sig"][0], first["sig"][4]), first)
    for v in ordered[1:]:
        yield BAD, _history_bad(v, [duplicate_issue(record_id, f"{first['file']}:{first['where']}")])


# --- stage 3: one (dataset, language) cell: dev split and its JSONL files ---------------------


def write_cell(out_dir: str, dev: dev_split.DevSplitConfig, cell: tuple[str, str],
               values: Iterable[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Writes ``<out>/<dataset>/<language>/<split>.jsonl`` for one cell (file order = stream
    order; dev carved from train as ``dev_split.carve`` does) and yields its summary."""
    out = pathlib.Path(out_dir)
    dataset, language = cell
    by_split: dict[str, list[dict[str, Any]]] = {}
    for v in sorted(values, key=_order):
        if v["write_error"] is not None:
            yield BAD, (_order(v), v["write_error"])
            continue
        by_split.setdefault(v["sig"][2], []).append(v)
    paths: dict[str, pathlib.Path] = {}
    for split, vs in list(by_split.items()):
        try:
            paths[split] = inside_dir(record_path(out, dataset, language, split), out)
        except ValueError as e:  # as RecordWriter refuses the key
            for v in by_split.pop(split):
                raw = json.loads(v["line"])
                yield BAD, _bad(_order(v), BadRecord(v["file"], v["where"], "<output>", f"not written: {e}", raw,
                                                     dataset, language, split))
    written = {split: len(vs) for split, vs in by_split.items()}
    kept: dict[str, dict[str, int]] = {}  # file -> split (as validated) -> records
    for split, vs in by_split.items():
        for v in vs:
            per_file = kept.setdefault(v["file"], {})
            per_file[split] = per_file.get(split, 0) + 1
    lines = {split: [v["line"] for v in vs] for split, vs in by_split.items()}
    name, status = f"{dataset}/{language}", None
    train = by_split.get(dev_split.SOURCE_SPLIT)
    if dev.enabled and train:
        if dev_split.DEV_SPLIT in by_split:
            status = "from_source"
        else:
            records = [record_from_obj(json.loads(v["line"])) for v in train]  # as carve reads the file back
            dev_ids = dev_split.choose(records, dev, len(records))
            if not dev_ids:
                status = "too_small"
            else:
                status = {"dev": len(dev_ids), "train": len(records) - len(dev_ids)}
                lines[dev_split.SOURCE_SPLIT] = [record_line(r) for r in records if r.id not in dev_ids]
                lines[dev_split.DEV_SPLIT] = [record_line(dataclasses.replace(r, split=dev_split.DEV_SPLIT))
                                              for r in records if r.id in dev_ids]
                paths[dev_split.DEV_SPLIT] = inside_dir(record_path(out, dataset, language, dev_split.DEV_SPLIT), out)
    for split, ls in lines.items():
        paths[split].parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(paths[split]) as fh:
            for line in ls:
                fh.write(line + "\n")
    yield CELL, {"dataset": dataset, "language": language, "written": written, "kept": kept, "name": name,
                 "dev": status}


# --- the pipeline ---------------------------------------------------------------------------------


def _write_json(obj: Any, path: str) -> None:
    with atomic_open(pathlib.Path(path)) as fh:
        json.dump(obj, fh, ensure_ascii=False)


def _write_quarantine(bad: list[Any], path: str) -> None:
    with atomic_open(pathlib.Path(path)) as fh:
        for _, line in sorted(bad, key=lambda b: tuple(b[0])):
            fh.write(line + "\n")


def _outputs(tagged: Iterable[tuple[str, Any]], main: str) -> Iterator[Any]:
    """``(tag, element)`` pairs -> the main output and Beam tagged outputs."""
    from apache_beam import pvalue

    for tag, element in tagged:
        yield element if tag == main else pvalue.TaggedOutput(tag, element)


def run_beam_build(fmt: str, units: list[tuple[str | None, pathlib.Path]], out: pathlib.Path, options: ImportOptions,
                   dev: dev_split.DevSplitConfig, config: BeamConfig, unknown: UnknownLanguages | None,
                   ) -> tuple[Counts, dict[Key, int], dict[str, Any]]:
    """Runs the pipeline into ``out``; returns what the single-process build would have: the
    counts, the records written per key before the dev split, and the dev split report."""
    import apache_beam as beam

    work = out / f".beam-{os.getpid()}"  # the pipeline's summaries for this driver
    work.mkdir(parents=True, exist_ok=True)
    try:
        unit_list = [(i, source, str(path)) for i, (source, path) in enumerate(units)]
        with beam.Pipeline(runner=config.runner, options=config.pipeline_options()) as p:
            report_unknown = unknown is not None
            imported = (p | "Units" >> beam.Create(unit_list)
                        | "Import" >> beam.FlatMap(lambda u: _outputs(
                            import_unit_elements(fmt, u[0], u[1], u[2], options, report_unknown), "candidate"))
                        .with_outputs(BAD, UNKNOWN, main="candidate"))
            history = (imported.candidate | "BySource" >> beam.GroupByKey()
                       | "History" >> beam.FlatMap(lambda kv: _outputs(check_source_group(kv[0], kv[1]), "accepted"))
                       .with_outputs(BAD, main="accepted"))
            unique = (history.accepted | "ById" >> beam.GroupByKey()
                      | "Duplicates" >> beam.FlatMap(lambda kv: _outputs(check_id_group(kv[0], kv[1]), "accepted"))
                      .with_outputs(BAD, main="accepted"))
            out_dir = str(out)
            cells = (unique.accepted | "ByCell" >> beam.GroupByKey()
                     | "WriteCells" >> beam.FlatMap(lambda kv: _outputs(write_cell(out_dir, dev, tuple(kv[0]), kv[1]), CELL))
                     .with_outputs(BAD, main=CELL))
            bad = (imported[BAD], history[BAD], unique[BAD], cells[BAD]) | "AllBad" >> beam.Flatten()
            (bad | "BadList" >> beam.combiners.ToList()
             | "Quarantine" >> beam.Map(_write_quarantine, str(out / QUARANTINE_NAME)))
            (cells[CELL] | "CellList" >> beam.combiners.ToList()
             | "CellSummary" >> beam.Map(_write_json, str(work / "cells.json")))
            (imported[UNKNOWN] | "UnknownList" >> beam.combiners.ToList()
             | "UnknownSummary" >> beam.Map(_write_json, str(work / "unknown.json")))
        return _collect(out, work, dev, unknown)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _collect(out: pathlib.Path, work: pathlib.Path, dev: dev_split.DevSplitConfig, unknown: UnknownLanguages | None,
             ) -> tuple[Counts, dict[Key, int], dict[str, Any]]:
    """The single-process build's Counts, written-per-key and dev report from the summaries."""
    counts = Counts()
    with (out / QUARANTINE_NAME).open(encoding="utf-8") as fh:  # in stream order, as run_validation adds them
        for line in fh:
            counts.add_bad(BadRecord(**json.loads(line)))
    cells = json.loads((work / "cells.json").read_text(encoding="utf-8"))
    written: dict[Key, int] = {}
    report: dict[str, Any] = {**dev.describe(), "carved": {}, "from_source": [], "too_small": []}
    for c in sorted(cells, key=lambda c: (c["dataset"], c["language"])):
        for split, n in c["written"].items():
            written[(c["dataset"], c["language"], split)] = n
        for file, per_split in c["kept"].items():
            fc = counts.files.setdefault(file, FileCount())
            for split, n in per_split.items():
                counts.kept[Counts.key(c["dataset"], c["language"], split)] += n
                fc.kept += n
        if isinstance(c["dev"], dict):
            report["carved"][c["name"]] = c["dev"]
        elif c["dev"] is not None:
            report[c["dev"]].append(c["name"])
    if unknown is not None:
        for folder, source, split, file, n in json.loads((work / "unknown.json").read_text(encoding="utf-8")):
            unknown.add(folder, source, split, file, n)
    return counts, written, report
