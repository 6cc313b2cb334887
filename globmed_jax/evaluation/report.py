"""Leaderboard (Markdown) and plots (PNG) from a GlobMed-Bench ``results.jsonl``.

Written next to results.jsonl: ``leaderboard.md``, ``heatmap.png`` (model x language accuracy)
and ``gap.png`` (mean high- vs low-resource accuracy per model); the protocol sections (paired
intervals, scoring agreement, position bias, reasoning mode, language fidelity) with
``summary.json`` and ``paired.png`` come from ``protocol_report``. Accuracy per (model, language)
is macro-averaged over the closed-form datasets of that language; a model's average is the
macro average over languages (``metrics.macro_average``). When cells were scored in both
formulations, a table gives letter acc, cloze acc and acc_norm and the OLMES best-of per model
(``evaluation.formulations``).
"""

from __future__ import annotations

import math
import pathlib
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from globmed_jax.data.families import get_family
from globmed_jax.data.languages import DEFAULT_LANGUAGES, get_language
from globmed_jax.evaluation import formulations, metrics, position_bias, protocol_report
from globmed_jax.evaluation.runner import RESULTS_NAME, read_predictions, read_results

__all__ = ["Summary", "summarize", "leaderboard_markdown", "write_report"]


def _order_languages(langs: set[str]) -> list[str]:
    first = [l for l in DEFAULT_LANGUAGES if l in langs]
    return first + sorted(langs - set(first))


class Summary:
    """Per-model aggregates of results rows (closed-form accuracy only)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], predictions: Mapping[str, Sequence[Mapping]] | None = None):
        closed = [r for r in rows if r.get("accuracy") is not None]
        self.rows = list(rows)
        self.languages = _order_languages({r["language"] for r in closed})
        self.datasets = sorted({r["dataset"] for r in closed})
        by: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        pf: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for r in closed:
            by[r["model"]][r["language"]][r["dataset"]] = r["accuracy"]
            pf[r["model"]].append((r["parse_failure_rate"], r["n"]))
        self.models = list(by)
        # model -> language -> mean over datasets
        self.by_language = {m: {l: float(np.mean(list(d.values()))) for l, d in langs.items()} for m, langs in by.items()}
        self.by_dataset = {m: {ds: float(np.mean([d[ds] for d in langs.values() if ds in d]))
                               for ds in self.datasets if any(ds in d for d in langs.values())}
                           for m, langs in by.items()}
        self.average = {m[0]: v for m, v in metrics.macro_average(closed, over="language").items()}
        self.gap = {m: metrics.resource_gap(v) for m, v in self.by_language.items()}
        self.high = {m: _mean([a for l, a in v.items() if not get_language(l).low_resource])
                     for m, v in self.by_language.items()}
        self.low = {m: _mean([a for l, a in v.items() if get_language(l).low_resource])
                    for m, v in self.by_language.items()}
        self.parse_failure = {m: sum(p * n for p, n in v) / max(1, sum(n for _, n in v)) for m, v in pf.items()}
        self.consistency = {}
        for m, preds in (predictions or {}).items():
            self.consistency[m] = metrics.consistency(
                (f"{p['dataset']}/{p['source_id']}", p["language"], p["predicted"])
                for p in position_bias.unshifted(preds) if get_family(row_family(p)).closed)
        self.models.sort(key=lambda m: -_nan_to(self.average.get(m), -1.0))
        self.open_rows = [r for r in rows if not get_family(row_family(r)).closed]
        # model -> {(formulation, metric): macro average}; the formulation of each model's main table
        self.formulations = formulations.model_averages(closed)
        self.main_formulation = {m: sorted({r["formulation"] for r in closed if r["model"] == m and "formulation" in r})
                                 for m in self.models}
        self.protocol = protocol_report.compute(self.rows, predictions or {})


def row_family(row: Mapping[str, Any]) -> str:
    """The task family of a results / predictions row (``task`` in rows written before 0.2)."""
    return row["family"] if "family" in row else row["task"]


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def _nan_to(x: float | None, default: float) -> float:
    return default if x is None or math.isnan(x) else x


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def summarize(out_dir: str | pathlib.Path) -> Summary:
    return Summary(read_results(out_dir), read_predictions(out_dir))


def leaderboard_markdown(s: Summary, *, title: str = "GlobMed-Bench leaderboard") -> str:
    low = [l for l in s.languages if get_language(l).low_resource]
    head = [f"{l}*" if l in low else l for l in s.languages]
    lines = [f"# {title}", "",
             "Accuracy (%) per language, macro-averaged over datasets; **Avg** = macro average over "
             "languages; **High**/**Low** = mean over high-/low-resource languages (\\* = low-resource); "
             "**Gap** = High − Low; **Cons.** = cross-lingual consistency (% of source items answered "
             "identically in every language they appear in); **PF** = parse-failure rate (%).", "",
             "| Model | " + " | ".join(head) + " | Avg | High | Low | Gap | Cons. | PF |",
             "|---|" + "---:|" * (len(head) + 6)]
    for m in s.models:
        cells = [_pct(s.by_language[m].get(l)) for l in s.languages]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | **{_pct(s.average.get(m))}** | {_pct(s.high[m])} | "
                     f"{_pct(s.low[m])} | {_pct(s.gap[m], signed=True)} | {_pct(s.consistency.get(m))} | "
                     f"{_pct(s.parse_failure[m])} |")
    lines += _backend_lines(s)
    lines += _formulation_lines(s)
    if s.datasets:
        lines += ["", "## Per dataset (accuracy %, mean over languages)", "",
                  "| Model | " + " | ".join(s.datasets) + " |", "|---|" + "---:|" * len(s.datasets)]
        for m in s.models:
            lines.append(f"| {m} | " + " | ".join(_pct(s.by_dataset[m].get(d)) for d in s.datasets) + " |")
    if s.open_rows:
        lines += ["", "## Open QA", "", "| Model | Dataset | Language | n | chrF | ROUGE-L | Judge (1-5) |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r in sorted(s.open_rows, key=lambda r: (r["model"], r["dataset"], r["language"])):
            judge = r.get("judge_score")
            lines.append(f"| {r['model']} | {r['dataset']} | {r['language']} | {r['n']} | {r['chrf']:.1f} | "
                         f"{r['rouge_l']:.1f} | {'–' if judge is None else f'{judge:.2f}'} |")
    lines += protocol_report.markdown(s.protocol)
    lines += ["", f"{len(s.rows)} cells from `{RESULTS_NAME}`. Intervals per cell (bootstrap 95%) are in the file.", ""]
    return "\n".join(lines)


def _backend_lines(s: Summary) -> list[str]:
    """Which backend scored each model and whether log-likelihood was available (only when some
    model is not local: then rows were not all measured the same way)."""
    info: dict[str, dict[str, Any]] = {}
    for r in s.rows:
        if isinstance(r.get("backend"), dict):
            info[r["model"]] = r["backend"]
    if all(b.get("kind") == "local" for b in info.values()):
        return []
    lines = ["", "## Backends", "", "**local** = our JAX model on a checkpoint; **served** = a model server's "
             "OpenAI-compatible endpoint; **api** = a chat API. A chat endpoint returns no prompt log-probabilities, "
             "so its rows are generated and parsed, not ranked by log-likelihood.", "",
             "| Model | Backend | Log-likelihood |", "|---|---|---|"]
    for m in sorted(info):
        b = info[m]
        avail = b.get("loglik_available")
        if avail is True:
            ll = "available" + (f" ({b['logprobs_format']})" if b.get("logprobs_format") else "")
        elif avail is False:
            ll = "unavailable: generation only" + (f" ({b['note']})" if b.get("note") else "")
        else:
            ll = "not asked" + (f" ({b['note']})" if b.get("note") else "")
        endpoint = f" (/{b['endpoint']})" if b.get("endpoint") else ""
        lines.append(f"| {m} | {b.get('kind', '?')}{endpoint} | {ll} |")
    return lines


def _formulation_lines(s: Summary) -> list[str]:
    """The formulations table (only when some row was scored in more than its own formulation)."""
    if not any(len(v) > 1 for v in s.formulations.values()):
        return []
    lines = ["", "## Formulations (accuracy %, macro average over languages like Avg)", "",
             "**Letter** = options listed, the option letters scored; **Cloze** = options listed, each option's "
             "text scored as the continuation: **acc** = highest summed log-probability, **acc_norm** = highest "
             f"log-probability per character of the option text ({formulations.NORMALIZATION}, as "
             "lm-evaluation-harness's acc_norm); **Best-of (OLMES)** = the better of Letter acc and Cloze acc_norm "
             "per model, the formulation named; **Main** = the formulation of the table above. Yes/no/maybe and "
             "NLI items have no options: one prompt, scored once, counted in both.", "",
             "| Model | Main | Letter acc | Cloze acc | Cloze acc_norm | Best-of (OLMES) |", "|---|---|---:|---:|---:|---:|"]
    for m in s.models:
        avg = s.formulations.get(m, {})
        best = formulations.best_of(avg)
        cells = [_pct(avg.get(c)) for c in formulations.COLUMNS]
        lines.append(f"| {m} | {', '.join(s.main_formulation.get(m, [])) or '–'} | " + " | ".join(cells)
                     + f" | {'–' if best is None else f'**{_pct(best[0])}** ({best[1]})'} |")
    return lines


def _plot_heatmap(s: Summary, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.array([[_nan_to(s.by_language[m].get(l), np.nan) for l in s.languages] for m in s.models]) * 100
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 0.7 * len(s.languages)), 1.5 + 0.5 * len(s.models)))
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(s.languages)),
                  [f"{l}*" if get_language(l).low_resource else l for l in s.languages])
    ax.set_yticks(range(len(s.models)), s.models)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] < 60 else "black")
    ax.set_title("Accuracy (%), * = low-resource", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_gap(s: Summary, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(s.models))
    high = [100 * _nan_to(s.high[m], 0.0) for m in s.models]
    low = [100 * _nan_to(s.low[m], 0.0) for m in s.models]
    fig, ax = plt.subplots(figsize=(2.0 + 1.2 * len(s.models), 3.5))
    ax.bar(x - 0.2, high, 0.4, label="high-resource")
    ax.bar(x + 0.2, low, 0.4, label="low-resource")
    for i, m in enumerate(s.models):
        ax.annotate(f"gap {_pct(s.gap[m], signed=True)}", (x[i], max(high[i], low[i]) + 2), ha="center", fontsize=8)
    ax.set_xticks(x, s.models, rotation=20, ha="right")
    ax.set_ylabel("mean accuracy (%)")
    ax.set_ylim(0, 110)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("High- vs low-resource languages")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out_dir: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes leaderboard.md, heatmap.png and gap.png into ``out_dir``; returns their paths (the
    PNGs only when there is closed-form accuracy to plot)."""
    out_dir = pathlib.Path(out_dir)
    s = summarize(out_dir)
    paths = {"leaderboard": out_dir / "leaderboard.md"}
    paths["leaderboard"].write_text(leaderboard_markdown(s), encoding="utf-8")
    paths.update(protocol_report.write(s.protocol, out_dir))
    if s.models and s.languages:
        paths["heatmap"] = out_dir / "heatmap.png"
        paths["gap"] = out_dir / "gap.png"
        _plot_heatmap(s, paths["heatmap"])
        _plot_gap(s, paths["gap"])
    return paths
