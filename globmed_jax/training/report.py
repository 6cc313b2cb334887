"""The run report: held-out accuracy per language and per task family (Markdown table) and a
bar chart of both (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from globmed_jax.data.languages import get_language
from globmed_jax.evaluation.heldout_metrics import HeldoutMetrics


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def write_report(run_dir: Path, metrics: HeldoutMetrics, languages: Sequence[str],
                 chance: Mapping[str | tuple[str, str], float], title: str) -> tuple[Path, Path]:
    """A table and a plot of ``metrics`` next to ``chance``: the chance accuracy keyed by language
    and by (family, language)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = metrics.families()
    header = ["language", "resource", *tasks, "all", "chance"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for lang in languages:
        level = "low" if get_language(lang).low_resource else "high"
        cells = [_fmt(metrics.by_family_language.get((t, lang))) for t in tasks]
        lines.append(f"| {lang} | {level} | " + " | ".join(cells + [_fmt(metrics.by_language.get(lang)),
                                                                   _fmt(chance.get(lang))]) + " |")
    if tasks:
        first = next((lang for lang in languages if (tasks[0], lang) in chance), None)
        chance_cells = [_fmt(chance.get((t, first))) if first else "n/a" for t in tasks]
        lines.append("| chance | | " + " | ".join(chance_cells) + " | | |")
    if metrics.accuracy is not None:
        lines += ["", f"Overall accuracy: {metrics.accuracy:.3f}"]
    table = run_dir / "report.md"
    table.write_text("\n".join(lines) + "\n")

    panels = 2 if tasks else 1
    fig, axes = plt.subplots(1, panels, figsize=(max(6, 0.6 * len(languages)) * panels, 3.5), squeeze=False)
    ax = axes[0][0]
    colors = ["tab:orange" if get_language(lang).low_resource else "tab:blue" for lang in languages]
    ax.bar(list(languages), [metrics.by_language.get(lang) or 0.0 for lang in languages], color=colors)
    ax.plot(list(languages), [chance.get(lang) or 0.0 for lang in languages], "k--", label="chance")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title + " (orange: low-resource)", fontsize=9)
    ax.legend(loc="upper right")
    if tasks:
        ax = axes[0][1]
        width = 0.8 / len(tasks)
        for i, t in enumerate(tasks):
            xs = [j + (i - (len(tasks) - 1) / 2) * width for j in range(len(languages))]
            ax.bar(xs, [metrics.by_family_language.get((t, lang)) or 0.0 for lang in languages], width, label=t)
            ax.plot(xs, [chance.get((t, lang)) or 0.0 for lang in languages], "k_", markersize=6)
        ax.set_xticks(range(len(languages)), list(languages))
        ax.set_ylim(0, 1)
        ax.set_title("per task family (black ticks: chance)", fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    plot = run_dir / "accuracy_by_language.png"
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    return table, plot
