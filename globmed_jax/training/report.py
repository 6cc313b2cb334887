"""The run report: per-language accuracy table (Markdown) and bar chart (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from globmed_jax.data.languages import get_language


def write_report(run_dir: Path, metrics: Mapping[str, float], languages: Sequence[str],
                 chance: Mapping[str, float], title: str) -> tuple[Path, Path]:
    """``metrics`` holds ``accuracy_<lang>`` entries; ``chance`` the chance accuracy per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(lang, metrics.get(f"accuracy_{lang}"), chance.get(lang)) for lang in languages]
    lines = [f"# {title}", "", "| language | resource | accuracy | chance |", "|---|---|---|---|"]
    for lang, acc, base in rows:
        level = "low" if get_language(lang).low_resource else "high"
        acc_s = "n/a" if acc is None else f"{acc:.3f}"
        base_s = "n/a" if base is None else f"{base:.3f}"
        lines.append(f"| {lang} | {level} | {acc_s} | {base_s} |")
    if "accuracy" in metrics:
        lines += ["", f"Overall accuracy: {metrics['accuracy']:.3f}"]
    table = run_dir / "report.md"
    table.write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows)), 3.5))
    colors = ["tab:orange" if get_language(lang).low_resource else "tab:blue" for lang, _, _ in rows]
    ax.bar([r[0] for r in rows], [r[1] or 0.0 for r in rows], color=colors)
    ax.plot([r[0] for r in rows], [r[2] or 0.0 for r in rows], "k--", label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title + " (orange: low-resource)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    plot = run_dir / "accuracy_by_language.png"
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    return table, plot
