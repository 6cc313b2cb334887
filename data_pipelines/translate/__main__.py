"""Translate normalized records into new languages with quality control (GlobMed construction).

    python -m data_pipelines.translate --input DIR --languages sw,yo,zu \\
        --translator local:<hf dir> | api:<model> --output OUT \\
        [--source-language en] [--glossary FILE] [--batch-size N] [--limit N] [--export-review FILE]
    python -m data_pipelines.translate --export-review FILE --output OUT
    python -m data_pipelines.translate --apply-review FILE --output OUT

Writes ``OUT/<dataset>/<language>/<split>.jsonl`` (records that passed QC and validation),
``OUT/quarantine.jsonl`` (the others, with reasons), ``OUT/qc_report.md``,
``OUT/qc_chrf_hist.png``, ``OUT/qc_summary.json`` and the resumable cache
``OUT/translate_cache.sqlite``. Re-running the same command continues a stopped run without
translating anything twice. See docs/translation.md.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Sequence

log = logging.getLogger("data_pipelines.translate")


def _codes(value: str) -> tuple[str, ...]:
    from globmed_jax.data.languages import get_language

    codes = tuple(v.strip() for v in value.split(",") if v.strip())
    if not codes:
        raise argparse.ArgumentTypeError("expected a comma-separated list of language codes")
    try:
        return tuple(get_language(c).code for c in codes)
    except KeyError as e:
        raise argparse.ArgumentTypeError(str(e).strip('"')) from None


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_pipelines.translate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, type=pathlib.Path, help="output directory")
    run = p.add_argument_group("translation run")
    run.add_argument("--input", type=pathlib.Path, help="normalized JSONL directory (<dataset>/<lang>/<split>.jsonl)")
    run.add_argument("--languages", type=_codes, help="target language codes, comma-separated (e.g. sw,yo,zu)")
    run.add_argument("--translator", help="local:<hf checkpoint dir> or api:<model name>")
    run.add_argument("--source-language", default="en", help="language of the records to translate (default en)")
    run.add_argument("--glossary", type=pathlib.Path, help="glossary .json or .tsv (docs/translation.md)")
    run.add_argument("--batch-size", type=int, default=16, help="texts per translator call / device batch")
    run.add_argument("--limit", type=int, default=0, help="at most N source records per (dataset, split); 0 = all")
    run.add_argument("--datasets", type=_names, default=(), help="only these datasets (comma-separated)")
    run.add_argument("--splits", type=_names, default=(), help="only these splits (comma-separated)")
    local = p.add_argument_group("local translator")
    local.add_argument("--max-new-tokens", type=int, default=256, help="generation cap per text")
    local.add_argument("--dtype", default="float32", help="compute/parameter dtype (float32, bfloat16)")
    local.add_argument("--shard", choices=("auto", "yes", "no"), default="auto",
                       help="shard the model over all local devices (auto: when there are several)")
    api = p.add_argument_group("API translator (OpenAI-compatible)")
    api.add_argument("--api-base-url", default="", help="endpoint up to the version prefix, e.g. http://host/v1")
    api.add_argument("--api-key-env", default="", help="NAME of the environment variable with the API key")
    api.add_argument("--max-concurrency", type=int, default=8)
    api.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    api.add_argument("--max-retries", type=int, default=5)
    qc = p.add_argument_group("quality control")
    qc.add_argument("--min-chrf", type=float, default=30.0, help="back-translation chrF threshold per record")
    qc.add_argument("--min-length-ratio", type=float, default=0.3)
    qc.add_argument("--max-length-ratio", type=float, default=3.0)
    qc.add_argument("--no-back-translation", action="store_true", help="skip back-translation (no chrF check)")
    qc.add_argument("--langid-accuracy", choices=("low", "high"), default="low",
                    help="lingua detector mode: low (fast, ~160 MB) or high (~1 GB)")
    rev = p.add_argument_group("human review")
    rev.add_argument("--export-review", type=pathlib.Path, metavar="FILE", help="write a review CSV")
    rev.add_argument("--review-status", choices=("all", "passed", "quarantined"), default="all")
    rev.add_argument("--review-sample", type=int, default=0, help="N random records per language (0 = all)")
    rev.add_argument("--apply-review", type=pathlib.Path, metavar="FILE", help="apply a filled-in review CSV")
    p.add_argument("--progress", choices=("auto", "yes", "no"), default="auto", help="tqdm progress bars")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from data_pipelines.translate import review
    from data_pipelines.translate.placeholders import GlossaryError

    translating = args.input is not None or args.languages is not None or args.translator is not None
    if args.apply_review and translating:
        parser.error("--apply-review runs on its own (with --output only)")
    if not (translating or args.apply_review or args.export_review):
        parser.error("nothing to do: give --input/--languages/--translator, --export-review or --apply-review")
    progress = {"auto": None, "yes": True, "no": False}[args.progress]
    try:
        if args.apply_review:
            result = review.apply_review(args.apply_review, args.output)
            print(result.summary())
            if result.unmatched:
                print("unmatched ids: " + ", ".join(result.unmatched[:20]), file=sys.stderr)
            return 0
        if translating:
            missing = [f"--{n}" for n in ("input", "languages", "translator") if getattr(args, n) is None]
            if missing:
                parser.error(f"a translation run needs {', '.join(missing)}")
            _translate(args, progress)
        if args.export_review:
            n = review.export_review(args.output, args.export_review, status=args.review_status,
                                     per_language=args.review_sample)
            print(f"review CSV: {args.export_review} ({n} rows)")
        return 0
    except (ValueError, FileNotFoundError, GlossaryError, review.ReviewError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # e.g. APIError after the client's retries
        print(f"error: {e}\n(finished batches are cached: re-run the same command to resume)", file=sys.stderr)
        return 1


def _translate(args: argparse.Namespace, progress: bool | None) -> None:
    from data_pipelines.translate.pipeline import TranslateOptions, run
    from data_pipelines.translate.placeholders import Glossary
    from data_pipelines.translate.qc import QCConfig
    from data_pipelines.translate.translators import api_settings, make_translator

    glossary = Glossary.load(args.glossary) if args.glossary else None
    qc = QCConfig(min_chrf=args.min_chrf, min_length_ratio=args.min_length_ratio,
                  max_length_ratio=args.max_length_ratio, back_translate=not args.no_back_translation,
                  langid_accuracy=args.langid_accuracy)
    options = TranslateOptions(languages=args.languages, source_language=args.source_language,
                               batch_size=args.batch_size, limit=args.limit, datasets=args.datasets,
                               splits=args.splits, qc=qc, progress=progress)
    api = api_settings(base_url=args.api_base_url, api_key_env=args.api_key_env, max_concurrency=args.max_concurrency,
                       timeout_s=args.timeout, max_retries=args.max_retries)
    kwargs = {}
    if args.translator.startswith("local:"):
        kwargs = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, dtype=args.dtype,
                      shard={"auto": None, "yes": True, "no": False}[args.shard])
    translator = make_translator(args.translator, api=api, cache_dir=args.output, progress=progress, **kwargs)
    result = run(args.input, args.output, translator, options, glossary)
    print(result.summary())
    print(result.report)


if __name__ == "__main__":
    sys.exit(main())
