"""What a model trained on GlobMed-mini gets right, per task family x gold label x resource level
(a confusion-level view the run report's per-language table hides), plus the exact-match rate of
the held-out open questions (greedy generation).

    python scripts/label_breakdown.py runs/demo

Reads the run's ``config.json`` for the multiple-choice answer format and its HF export.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import ml_collections

from globmed_jax.data import mini
from globmed_jax.data.families import get_family
from globmed_jax.data.languages import get_language
from globmed_jax.decode import Decoder
from globmed_jax.evaluation import scoring
from globmed_jax.models import from_pretrained, load_tokenizer
from globmed_jax.models.tokenizer import pad_id
from globmed_jax.training.config import typed_config
from globmed_jax.training.data import mini_config, prompt_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="items per task and language (0: all)")
    args = parser.parse_args()
    config = typed_config(ml_collections.ConfigDict(json.loads((args.run_dir / "config.json").read_text())))
    fmt = prompt_config(config.data)  # the run's own answer format
    model, _ = from_pretrained(args.run_dir / "hf_export", dtype="float32")
    tokenizer = load_tokenizer(args.run_dir / "hf_export")
    records = mini.generate(mini_config(config.data, config.seed), args.split)
    if args.limit:
        by_cell = collections.defaultdict(list)
        for r in records:
            by_cell[(r.family, r.language)].append(r)
        records = [r for cell in by_cell.values() for r in cell[:args.limit]]
    decoder = Decoder(model, pad_id=pad_id(tokenizer))
    preds = scoring.predict(decoder, tokenizer, records, mode="loglik", prompt_config=fmt, batch_size=64,
                            max_new_tokens=24, progress=True)
    cells: dict[tuple[str, str, str], list[bool]] = collections.defaultdict(list)
    for r, p in zip(records, preds):
        level = "low" if get_language(r.language).low_resource else "high"
        family = get_family(r.family)
        if not family.closed:
            cells[(r.family, "exact match", level)].append((p.text or "").strip().lower() == r.answer.lower())
        else:
            cells[(r.family, "-" if family.has_options else r.answer, level)].append(scoring.is_correct(r, p))
    print("| task | gold label | resource | accuracy | items |\n|---|---|---|---|---|")
    for (task, label, level), ok in sorted(cells.items()):
        print(f"| {task} | {label} | {level} | {sum(ok) / len(ok):.3f} | {len(ok)} |")


if __name__ == "__main__":
    main()
