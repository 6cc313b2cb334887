"""Build CLI: import one source, validate, write normalized JSONL (+ TFDS), print counts.

    python -m data_pipelines.build --format medqa --input data/medqa --output out/medqa \\
        [--language en] [--split test] [--strict] [--tfds] [--field-map JSON_OR_FILE]

Writes ``OUT/<dataset>/<language>/<split>.jsonl``, ``OUT/quarantine.jsonl``,
``OUT/manifest.json`` (per input file: size, sha256, records seen = kept + quarantined, lost)
and, with ``--tfds``, ArrayRecord TFDS datasets under ``OUT/tfds``. Every file is written under
a temporary name and renamed into place. Use one output directory per run: files are
overwritten, not appended; an output that overlaps the input is refused.

Exit status: 0; 1 when records were lost (a file that could not be split into records) or,
with ``--strict``, when anything was quarantined; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import pathlib
import sys
from typing import Any, Sequence

from data_pipelines.importers import FORMATS, ImportOptions, import_path
from data_pipelines.importers.liveqa import QUESTION_SOURCES
from data_pipelines.importers.normalized import QUARANTINE_NAME
from data_pipelines.jsonl_io import QuarantineWriter
from globmed_jax.data.records_io import RecordWriter, atomic_open
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


def manifest(fmt: str, input_path: pathlib.Path, counts: Counts, outputs: dict[str, int]) -> dict[str, Any]:
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
    return {
        "tool": "data_pipelines.build", "version": tool_version(), "format": fmt, "input": str(input_path),
        "files": files, "outputs": outputs,
        "totals": {"kept": counts.total_kept, "quarantined": counts.total_quarantined,
                   "files_with_lost_records": counts.files_with_lost_records},
    }


def write_manifest(path: pathlib.Path, obj: dict[str, Any]) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


def build(
    fmt: str,
    input_path: str | pathlib.Path,
    output_dir: str | pathlib.Path,
    options: ImportOptions | None = None,
    *,
    strict: bool = False,
    tfds: bool = False,
    progress: bool | None = None,
) -> Counts:
    """Imports ``input_path`` with the ``fmt`` importer into ``output_dir``; returns the counts.

    Every input record is read and accounted for; outputs, quarantine and manifest are always
    written whole. Raises BuildError when the output overlaps the input, and, in strict mode
    once all is written, ValidationError naming the first bad record when any was quarantined.
    """
    inp, out = pathlib.Path(input_path), pathlib.Path(output_dir)
    check_paths(inp, out)
    out.mkdir(parents=True, exist_ok=True)
    items = import_path(fmt, inp, options or ImportOptions())
    with RecordWriter(out) as writer, QuarantineWriter(out / QUARANTINE_NAME) as quarantine:
        counts = run_validation(items, writer=writer, quarantine=quarantine, progress=progress)
    outputs = {str(path.relative_to(out)): writer.counts[key] for key, path in sorted(writer.paths.items())}
    write_manifest(out / MANIFEST_NAME, manifest(fmt, inp, counts, outputs))
    if strict and counts.first_bad is not None:
        raise ValidationError(f"{counts.first_bad.describe()} ({counts.total_quarantined} quarantined in all)")
    if tfds and counts.total_kept:
        from data_pipelines.tfds_builder import build_tfds  # lazy: tensorflow is heavy

        for name in build_tfds(out, out / "tfds"):
            log.info("TFDS config %s written to %s", name, out / "tfds")
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
    p.add_argument("--input", required=True, type=pathlib.Path, help="file or directory of the source")
    p.add_argument("--output", required=True, type=pathlib.Path, help="output directory")
    p.add_argument("--language", help="override the language (ISO code or English name)")
    p.add_argument("--split", help="override the split (train/validation/test; dev/val accepted)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad record")
    p.add_argument("--tfds", action="store_true", help="also write ArrayRecord TFDS datasets")
    p.add_argument("--field-map", type=parse_field_map, help="JSON (inline or file) field mapping for --format globmed")
    p.add_argument("--cop-base", type=int, choices=(0, 1), help="MedMCQA cop base (default 1 for medmcqa)")
    p.add_argument("--question-source", choices=QUESTION_SOURCES, default="original", help="LiveQA question text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.input.exists():
        print(f"error: input not found: {args.input}", file=sys.stderr)
        return 2
    options = ImportOptions(
        language=args.language, split=args.split, field_map=args.field_map,
        cop_base=args.cop_base, question_source=args.question_source,
    )
    try:
        counts = build(args.format, args.input, args.output, options, tfds=args.tfds,
                       progress=False if args.no_progress else None)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(counts.table())
    print()
    print(counts.file_table())
    if counts.total_kept + counts.total_quarantined == 0:
        print(f"warning: no input files/records found for --format {args.format} under {args.input}", file=sys.stderr)
    print(f"\n{counts.total_kept} kept, {counts.total_quarantined} quarantined "
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
