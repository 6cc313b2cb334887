"""Build CLI: import one source, validate, write normalized JSONL (+ TFDS), print counts.

    python -m data_pipelines.build --format medqa --input data/medqa --output out/medqa \\
        [--language en] [--split test] [--strict] [--tfds] [--field-map JSON_OR_FILE]

Writes ``OUT/<dataset>/<language>/<split>.jsonl``, ``OUT/quarantine.jsonl`` and, with
``--tfds``, ArrayRecord TFDS datasets under ``OUT/tfds``. Use one output directory per run:
files are overwritten, not appended.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
from typing import Any, Sequence

from data_pipelines.importers import FORMATS, ImportOptions, import_path
from data_pipelines.importers.liveqa import QUESTION_SOURCES
from data_pipelines.importers.normalized import QUARANTINE_NAME
from data_pipelines.jsonl_io import QuarantineWriter
from globmed_jax.data.records_io import RecordWriter
from data_pipelines.validate import Counts, ValidationError, run_validation

log = logging.getLogger("data_pipelines.build")


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

    Raises ValidationError in strict mode on the first bad record (outputs are then partial).
    """
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = import_path(fmt, input_path, options or ImportOptions())
    with RecordWriter(out) as writer, QuarantineWriter(out / QUARANTINE_NAME) as quarantine:
        counts = run_validation(items, writer=writer, quarantine=quarantine, strict=strict, progress=progress)
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
        counts = build(args.format, args.input, args.output, options, strict=args.strict, tfds=args.tfds,
                       progress=False if args.no_progress else None)
    except ValidationError as e:
        print(f"error: {e}\n(strict mode: stopped at the first bad record; outputs in {args.output} are incomplete)", file=sys.stderr)
        return 1
    print(counts.table())
    if counts.total_kept + counts.total_quarantined == 0:
        print(f"warning: no input files/records found for --format {args.format} under {args.input}", file=sys.stderr)
    print(f"\n{counts.total_kept} kept, {counts.total_quarantined} quarantined "
          f"(see {args.output / QUARANTINE_NAME}); JSONL in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
