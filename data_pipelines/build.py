"""Build CLI: import one source, validate, write normalized JSONL (+ TFDS), print counts.

    python -m data_pipelines.build --format medqa --input data/medqa --output out/medqa \\
        [--language en] [--split test] [--strict] [--tfds] [--field-map JSON_OR_FILE]
    python -m data_pipelines.build --format globmed --input hf://ruiyang-medinfo/GlobMed_MedQA --output out/g
    python -m data_pipelines.build --format globmed --input hf://globmed --output out/g   # all 10 sources
        [--dev-seed 0] [--no-dev-split] [--beam-runner DirectRunner [--beam-options "--direct_num_workers=2"]]

``--input hf://org/name[@revision]`` (several, or ``hf://globmed`` for the whole collection)
downloads dataset repositories through huggingface_hub (``data_pipelines/hub.py``; HF_HOME,
HF_HUB_OFFLINE and the cache are honoured). For ``--format globmed`` from the Hub, language
folders not in the language registry are skipped and reported once each with their counts
(``--unknown-languages quarantine`` quarantines their records instead, the default for local input).

Writes ``OUT/<dataset>/<language>/<split>.jsonl``, ``OUT/quarantine.jsonl``,
``OUT/manifest.json`` (per input file: size, sha256, records seen = kept + quarantined, lost;
``dev_split``: its seed, size rule and the records carved per cell) and, with ``--tfds``,
ArrayRecord TFDS datasets under ``OUT/tfds``. Every file is written under
a temporary name and renamed into place. Use one output directory per run: files are
overwritten, not appended; an output that overlaps the input is refused.

``--beam-runner`` runs the same build as an Apache Beam pipeline (``data_pipelines/beam_build.py``;
``--tfds`` then uses TFDS's own Beam support): same JSONL, ArrayRecord, quarantine and manifest
counts as the single-process build, for releases that outgrow one host.

Every (dataset, language) whose source has no validation split gets a dev split carved from its
train file (``data_pipelines/dev_split.py``: seeded by source id, 5% with at least 5 and at most
100 records, from 50 train records on; train keeps the rest), for the bench's few-shot prompts.
The printed table counts the records per split as written; the per-file table is unaffected.

Exit status: 0; 1 when records were lost (a file that could not be split into records) or,
with ``--strict``, when anything was quarantined; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import pathlib
import sys
from typing import Any, Sequence

from data_pipelines import dev_split, hub
from data_pipelines.beam_build import BeamConfig
from data_pipelines.importers import FORMATS, ImportOptions, import_unit
from data_pipelines.importers.globmed import UnknownLanguages, release_sources, source_files
from data_pipelines.importers.liveqa import QUESTION_SOURCES
from data_pipelines.importers.normalized import QUARANTINE_NAME
from data_pipelines.jsonl_io import QuarantineWriter
from globmed_jax.data.records_io import RecordWriter, atomic_open, record_path
from data_pipelines.validate import Counts, ValidationError, run_validation

log = logging.getLogger("data_pipelines.build")
MANIFEST_NAME = "manifest.json"


class BuildError(ValueError):
    """The build refuses to start (e.g. the output overlaps the input)."""


def check_paths(input_path: pathlib.Path, output_dir: pathlib.Path) -> None:
    """Refuses an output that is the input, lies inside it or contains it (symlinks followed):
    writing there would truncate or re-import the files being read."""
    inp, out = input_path.resolve(), output_dir.resolve()
    if inp == out or out.is_relative_to(inp) or inp.is_relative_to(out):
        raise BuildError(f"--output {output_dir} overlaps --input {input_path} (resolved: {out} and {inp}); "
                         "use a separate output directory")


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tool_version() -> str:
    try:
        return importlib.metadata.version("globmed-jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def manifest(fmt: str, input_path: Any, counts: Counts, outputs: dict[str, int],
             sources: Sequence[hub.HubSource] = (), unknown: UnknownLanguages | None = None,
             dev: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the build read and wrote, per input file: bytes, sha256, records seen / kept /
    quarantined, lost (0, or null = unknown because the file could not be split into records)."""
    files = []
    for name, c in sorted(counts.files.items()):
        f = pathlib.Path(name)
        files.append({
            "path": name, "bytes": f.stat().st_size if f.is_file() else None,
            "sha256": sha256(f) if f.is_file() else None,
            "seen": c.seen, "kept": c.kept, "quarantined": c.quarantined, "lost": c.lost, "file_errors": c.file_errors,
        })
    for name, n in sorted(unknown.files.items()) if unknown else ():
        f = pathlib.Path(name)
        files.append({"path": name, "bytes": f.stat().st_size, "sha256": sha256(f), "seen": n, "kept": 0,
                      "quarantined": 0, "skipped_unknown_language": n, "lost": 0, "file_errors": []})
    out = {
        "tool": "data_pipelines.build", "version": tool_version(), "format": fmt, "input": str(input_path),
        "files": files, "outputs": outputs,
        "totals": {"kept": counts.total_kept, "quarantined": counts.total_quarantined,
                   "files_with_lost_records": counts.files_with_lost_records,
                   "skipped_unknown_language": unknown.total if unknown else 0},
    }
    if sources:
        out["hub"] = [{"repo_id": s.repo_id, "revision": s.revision, "commit": s.commit} for s in sources]
    if unknown is not None:
        out["unknown_languages"] = unknown.by_language()
    if dev is not None:
        out["dev_split"] = dev
    return out


def write_manifest(path: pathlib.Path, obj: dict[str, Any]) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


UNKNOWN_LANGUAGE_MODES = ("report", "quarantine")


def build(
    fmt: str,
    input_path: str | pathlib.Path | Sequence[str],
    output_dir: str | pathlib.Path,
    options: ImportOptions | None = None,
    *,
    strict: bool = False,
    tfds: bool = False,
    progress: bool | None = None,
    unknown_languages: str | None = None,
    dev: dev_split.DevSplitConfig = dev_split.DevSplitConfig(),
    beam: BeamConfig | None = None,
    tfds_workers: int = 1,
) -> Counts:
    """Imports ``input_path`` with the ``fmt`` importer into ``output_dir``; returns the counts.

    ``input_path`` is a local file or directory, or ``hf://org/name[@rev]`` ids (a list, or one
    comma-separated string; ``hf://globmed`` = the whole collection) resolved by
    ``data_pipelines.hub``. ``unknown_languages`` (``--format globmed`` only): ``"report"``
    skips language folders not in the registry and reports them once each (logged, in
    ``manifest.json`` and in ``Counts.unknown_languages``); ``"quarantine"`` quarantines each of
    their records. Default: report for hub input, quarantine for local input. ``dev``: how the
    dev split is carved from train where the source has none (``dev_split.DevSplitConfig``).
    ``beam``: run the build (and the TFDS stage) as an Apache Beam pipeline on that runner
    (``data_pipelines/beam_build.py``); the outputs are the same as the single-process build's.
    ``tfds_workers``: processes writing ArrayRecord datasets at once (``tfds_builder.build_tfds``).

    Every input record is read and accounted for; outputs, quarantine and manifest are always
    written whole. Raises BuildError when the output overlaps the input, and, in strict mode
    once all is written, ValidationError naming the first bad record when any was quarantined.
    """
    out = pathlib.Path(output_dir)
    options = options or ImportOptions()
    from_hub = hub.is_hub_input(input_path)
    mode = unknown_languages or ("report" if from_hub else "quarantine")
    if mode not in UNKNOWN_LANGUAGE_MODES:
        raise BuildError(f"unknown_languages must be one of {UNKNOWN_LANGUAGE_MODES}, got {mode!r}")
    unknown = UnknownLanguages() if fmt == "globmed" and mode == "report" else None
    if from_hub:
        try:
            sources = hub.resolve(input_path)  # type: ignore[arg-type]
        except hub.HubInputError as e:
            raise BuildError(str(e)) from None
        for s in sources:
            check_paths(s.path, out)
        units = (source_files([(s.name, s.path) for s in sources]) if fmt == "globmed"
                 else [(None, s.path) for s in sources])
        inp: Any = ",".join(f"{hub.SCHEME}{s.repo_id}@{s.commit}" for s in sources)
    else:
        sources = []
        inp = pathlib.Path(input_path)  # type: ignore[arg-type]
        check_paths(inp, out)
        units = source_files(release_sources(inp)) if fmt == "globmed" else [(None, inp)]
    out.mkdir(parents=True, exist_ok=True)
    if beam is None:
        items = (item for unit in units for item in import_unit(fmt, unit, options, unknown))
        with RecordWriter(out) as writer, QuarantineWriter(out / QUARANTINE_NAME) as quarantine:
            counts = run_validation(items, writer=writer, quarantine=quarantine, progress=progress)
        written = dict(writer.counts)
        carved = dev_split.carve(out, written, dev)
    else:
        from data_pipelines.beam_build import run_beam_build  # lazy: apache_beam is an optional extra

        counts, written, carved = run_beam_build(fmt, units, out, options, dev, beam, unknown)
    counts.unknown_languages = unknown  # type: ignore[attr-defined]
    for line in unknown.report() if unknown else ():
        log.warning("%s", line)
    for name, n in carved["carved"].items():  # records moved from train to dev, per split as written
        dataset, language = name.split("/")
        for split, delta in ((dev_split.SOURCE_SPLIT, -n["dev"]), (dev_split.DEV_SPLIT, n["dev"])):
            written[(dataset, language, split)] = written.get((dataset, language, split), 0) + delta
            counts.kept[(dataset, language, split)] += delta
    outputs = {str(record_path(pathlib.Path(""), *key)): n for key, n in sorted(written.items())}
    built = manifest(fmt, inp, counts, outputs, sources, unknown, carved)
    built["engine"] = beam.describe() if beam is not None else {"runner": "single-process"}
    write_manifest(out / MANIFEST_NAME, built)
    if strict and counts.first_bad is not None:
        raise ValidationError(f"{counts.first_bad.describe()} ({counts.total_quarantined} quarantined in all)")
    if tfds and counts.total_kept:
        from data_pipelines.tfds_builder import build_tfds  # lazy: tensorflow is heavy

        names = build_tfds(out, out / "tfds", beam=beam, workers=tfds_workers)  # logs each one
        log.info("%d ArrayRecord datasets written to %s", len(names), out / "tfds")
    return counts


def parse_field_map(value: str) -> dict[str, Any]:
    """``--field-map``: inline JSON, or the path of a JSON file."""
    p = pathlib.Path(value)
    try:
        raw = p.read_text(encoding="utf-8") if p.is_file() else value
        fm = json.loads(raw)
    except (OSError, json.JSONDecodeError) as e:
        raise argparse.ArgumentTypeError(f"--field-map is neither a JSON file nor inline JSON: {e}") from None
    if not isinstance(fm, dict):
        raise argparse.ArgumentTypeError("--field-map must be a JSON object")
    return fm


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_pipelines.build", description=__doc__.split("\n")[0])
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--input", required=True, nargs="+",
                   help="file or directory of the source, or hf://org/name[@revision] dataset ids "
                        "(several; hf://globmed = the whole GlobMed collection)")
    p.add_argument("--output", required=True, type=pathlib.Path, help="output directory")
    p.add_argument("--language", help="override the language (ISO code or English name)")
    p.add_argument("--split", help="override the split (train/validation/test; dev/val accepted)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad record")
    p.add_argument("--tfds", action="store_true", help="also write ArrayRecord TFDS datasets")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes writing the ArrayRecord datasets, one (dataset, language) each at a time "
                        "(default: the number of CPUs; the records do not depend on it)")
    p.add_argument("--field-map", type=parse_field_map, help="JSON (inline or file) field mapping for --format globmed")
    p.add_argument("--cop-base", type=int, choices=(0, 1), help="MedMCQA cop base (default 1 for medmcqa)")
    p.add_argument("--question-source", choices=QUESTION_SOURCES, default="original", help="LiveQA question text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--unknown-languages", choices=UNKNOWN_LANGUAGE_MODES,
                   help="globmed: language folders not in the registry are skipped and reported once each "
                        "(report; default for hf:// input) or every record is quarantined (quarantine; default "
                        "for local input)")
    p.add_argument("--beam-runner", metavar="RUNNER",
                   help="run the build as an Apache Beam pipeline on this runner (DirectRunner, DataflowRunner, "
                        "FlinkRunner, SparkRunner, ...; needs the 'beam' extra); outputs as the single-process build")
    p.add_argument("--beam-options", metavar="FLAGS",
                   help="Beam pipeline options as one string, e.g. \"--direct_num_workers=2 "
                        "--direct_running_mode=multi_processing\" (implies --beam-runner DirectRunner if not given)")
    p.add_argument("--dev-seed", type=int, default=0, help="seed of the dev split carved from train (default 0)")
    p.add_argument("--no-dev-split", action="store_true",
                   help="write the source splits only (no dev split carved from train)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if hub.is_hub_input(args.input):
        source: Any = list(args.input)
    elif len(args.input) > 1 or hub.is_hub_input(args.input[0].split(",")[0]) or not pathlib.Path(args.input[0]).exists():
        print(f"error: input not found: {' '.join(args.input)} (one local path, or hf:// ids only)", file=sys.stderr)
        return 2
    else:
        source = pathlib.Path(args.input[0])
    options = ImportOptions(
        language=args.language, split=args.split, field_map=args.field_map,
        cop_base=args.cop_base, question_source=args.question_source,
    )
    beam = None
    if args.beam_runner or args.beam_options:
        try:
            beam = BeamConfig.parse(args.beam_runner, args.beam_options)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        counts = build(args.format, source, args.output, options, tfds=args.tfds, beam=beam, tfds_workers=args.workers,
                       progress=False if args.no_progress else None, unknown_languages=args.unknown_languages,
                       dev=dev_split.DevSplitConfig(seed=args.dev_seed, enabled=not args.no_dev_split))
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(counts.table())
    print()
    print(counts.file_table())
    unknown = getattr(counts, "unknown_languages", None)
    if unknown is not None and unknown.counts:
        print()
        print("\n".join(unknown.report()))
    if counts.total_kept + counts.total_quarantined == 0:
        print(f"warning: no input files/records found for --format {args.format} under {' '.join(args.input)}", file=sys.stderr)
    skipped = f", {unknown.total} skipped (unknown language)" if unknown is not None and unknown.total else ""
    print(f"\n{counts.total_kept} kept, {counts.total_quarantined} quarantined{skipped} "
          f"(see {args.output / QUARANTINE_NAME}); JSONL in {args.output}; manifest {args.output / MANIFEST_NAME}")
    return exit_status(counts, strict=args.strict)


def exit_status(counts: Counts, *, strict: bool) -> int:
    """1 when records were lost (always) or anything was quarantined (strict); else 0."""
    lost = counts.files_with_lost_records
    for file in lost:
        print(f"error: records lost (number unknown): {'; '.join(counts.files[file].file_errors)}", file=sys.stderr)
    if strict and counts.first_bad is not None:
        print(f"error: {counts.first_bad.describe()}\n(strict mode: {counts.total_quarantined} quarantined; "
              "outputs, quarantine.jsonl and manifest.json were written in full)", file=sys.stderr)
    return 1 if lost or (strict and counts.first_bad is not None) else 0


if __name__ == "__main__":
    sys.exit(main())
