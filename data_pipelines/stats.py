"""Stats CLI: records per dataset x language x split of a normalized JSONL tree + a bar chart.

    python -m data_pipelines.stats OUT_DIR [--png OUT_DIR/stats.png]

Counts come from the records themselves (not from file names); quarantined counts come from
any ``quarantine.jsonl`` below OUT_DIR. The PNG shows records per language, stacked by dataset.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
from typing import Sequence

from data_pipelines.jsonl_io import iter_quarantine
from globmed_jax.data.records_io import NormalizedDataError, iter_records
from data_pipelines.validate import format_table

Key = tuple[str, str, str]


def collect(root: str | pathlib.Path) -> tuple[collections.Counter[Key], collections.Counter[Key]]:
    """``(kept, quarantined)`` counters keyed by (dataset, language, split)."""
    kept: collections.Counter[Key] = collections.Counter()
    for r in iter_records(root):
        kept[(r.dataset, r.language, r.split)] += 1
    bad: collections.Counter[Key] = collections.Counter()
    for q in iter_quarantine(root):
        bad[(q.get("dataset") or "?", q.get("language") or "?", q.get("split") or "?")] += 1
    return kept, bad


def stats_table(kept: collections.Counter[Key], bad: collections.Counter[Key]) -> str:
    keys = sorted(set(kept) | set(bad))
    rows = [(*k, kept[k], bad[k]) for k in keys]
    rows.append(("TOTAL", "", "", sum(kept.values()), sum(bad.values())))
    return format_table(("dataset", "language", "split", "records", "quarantined"), rows)


def plot(kept: collections.Counter[Key], png: str | pathlib.Path) -> pathlib.Path:
    """Stacked bar chart of records per language, one colour per dataset (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (dataset, language, _), n in kept.items():
        per[dataset][language] += n
    languages = sorted({lang for c in per.values() for lang in c})
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(languages) + 3), 4.5))
    bottom = [0] * len(languages)
    for dataset in sorted(per):
        heights = [per[dataset][lang] for lang in languages]
        ax.bar(languages, heights, bottom=bottom, label=dataset)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xlabel("language")
    ax.set_ylabel("records")
    ax.set_title("Records per language and dataset")
    if per:
        ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    png = pathlib.Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp")  # renamed into place: never half a PNG
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, png)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return png


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_pipelines.stats", description=__doc__.split("\n")[0])
    p.add_argument("dir", type=pathlib.Path, help="build output directory (searched recursively)")
    p.add_argument("--png", type=pathlib.Path, help="chart path (default DIR/stats.png)")
    args = p.parse_args(argv)
    if not args.dir.is_dir():
        print(f"error: not a directory: {args.dir}", file=sys.stderr)
        return 2
    try:
        kept, bad = collect(args.dir)
    except NormalizedDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(stats_table(kept, bad))
    png = plot(kept, args.png or args.dir / "stats.png")
    print(f"\nchart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
