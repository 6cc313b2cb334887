"""The leaderboard's protocol sections: paired statistics, scoring agreement, position bias,
reasoning mode and language fidelity, as Markdown tables, ``summary.json`` and ``paired.png``.

``compute(results_rows, predictions)`` gathers every statistic once (see ``paired``,
``position_bias``, ``reasoning``, ``fidelity`` for their definitions); ``markdown`` renders the
sections that have data; ``write`` stores the JSON summary and the interval plot next to
``leaderboard.md``. Bootstrap resamples and seed are the run's (``bootstrap_resamples`` /
``seed`` of the results rows' fingerprints; 1000 / 0 when absent).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from globmed_jax.data.languages import DEFAULT_LANGUAGES, get_language
from globmed_jax.evaluation import fidelity as fidelity_mod
from globmed_jax.evaluation import metrics, paired, position_bias, reasoning

__all__ = ["ProtocolStats", "compute", "markdown", "write", "SUMMARY_NAME", "PLOT_NAME"]

SUMMARY_NAME = "summary.json"
PLOT_NAME = "paired.png"


@dataclasses.dataclass
class ProtocolStats:
    models: list[str]
    resamples: int
    seed: int
    gap: dict[str, paired.Estimate]
    consistency: dict[str, paired.Estimate]
    differences: list[paired.Difference]
    agreement: list[paired.Agreement]
    position: dict[str, position_bias.PositionBias]
    reasoning: dict[str, dict[str, float]]
    fidelity: dict[tuple[str, str, str], fidelity_mod.Fidelity]
    min_chars: int

    def to_json(self) -> dict[str, Any]:
        fid: dict[str, Any] = {}
        for (m, lang, part), f in sorted(self.fidelity.items()):
            fid.setdefault(m, {}).setdefault(part, {})[lang] = f.to_json()
        return {
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "interval": "95% percentile"},
            "models": {m: {"gap": self.gap[m].to_json(), "consistency": self.consistency[m].to_json()}
                       for m in self.models},
            "differences": [d.to_json() for d in self.differences],
            "agreement": [a.to_json() for a in self.agreement],
            "position_bias": {m: b.to_json() for m, b in self.position.items()},
            "reasoning": self.reasoning,
            "fidelity": {"detector": "lingua (data.langid.LanguageIdentifier, low-accuracy mode)",
                         "min_chars": self.min_chars, "models": fid},
        }


def _bootstrap_setting(rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    for r in rows:
        fields = (r.get("fingerprint") or {}).get("fields") or {}
        if "bootstrap_resamples" in fields:
            return int(fields["bootstrap_resamples"]), int(fields.get("seed", 0))
    return 1000, 0


def _weighted(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    vals = [(r[key], r["n"]) for r in rows if r.get(key) is not None]
    return sum(v * n for v, n in vals) / sum(n for _, n in vals) if vals else float("nan")


def _reasoning_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    modes = fidelity_mod.cell_modes(rows)
    out = {}
    for m in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == m and modes.get((m, r["dataset"], r["language"])) == reasoning.MODE
                and r.get("accuracy") is not None]  # closed-form cells, as the leaderboard's PF
        if not mine:
            continue
        budget = {((r.get("fingerprint") or {}).get("fields") or {}).get("reasoning.budget") for r in mine}
        avg = metrics.macro_average(mine, over="language").get((m,), float("nan"))
        out[m] = {"accuracy": avg, "parse_failure_rate": _weighted(mine, "parse_failure_rate"),
                  "truncated_rate": _weighted(mine, "reasoning_truncated_rate"),
                  "budget": sorted(b for b in budget if b is not None), "cells": len(mine)}
    return out


def compute(rows: Sequence[Mapping[str, Any]], predictions: Mapping[str, Sequence[Mapping[str, Any]]],
            *, identifier: Any = None, min_chars: int = fidelity_mod.DEFAULT_MIN_CHARS) -> ProtocolStats:
    """Every protocol statistic of a results table and its predictions."""
    resamples, seed = _bootstrap_setting(rows)
    models = [m for m in dict.fromkeys(r["model"] for r in rows if r.get("accuracy") is not None)]
    kw = dict(resamples=resamples, seed=seed)
    with_preds = [m for m in models if predictions.get(m)]
    return ProtocolStats(
        models=models, resamples=resamples, seed=seed,
        gap={m: paired.resource_gap(predictions, m, **kw) for m in models},
        consistency={m: paired.consistency(predictions.get(m, ()), **kw) for m in models},
        differences=[paired.model_difference(predictions, a, b, **kw) for a, b in itertools.combinations(with_preds, 2)],
        agreement=paired.scoring_agreement(rows, predictions, **kw),
        position=position_bias.summarize(predictions, **kw),
        reasoning=_reasoning_stats(rows),
        fidelity=fidelity_mod.fidelity(rows, predictions, identifier, min_chars=min_chars, **kw),
        min_chars=min_chars)


# ------------------------------------------------------------------------------- markdown


def _pct(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    x = 0.0 if abs(x) < 5e-4 else x  # no "-0.0"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _ci(e: paired.Estimate | tuple[float, float, float], signed: bool = False) -> str:
    value, low, high = (e.value, e.low, e.high) if isinstance(e, paired.Estimate) else e
    if value is None or math.isnan(value):
        return "–"
    if math.isnan(low):
        return _pct(value, signed)
    return f"{_pct(value, signed)} [{_pct(low, signed)}, {_pct(high, signed)}]"


def _excludes_zero(e: paired.Estimate) -> str:
    return " \\*" if not math.isnan(e.low) and (e.low > 0 or e.high < 0) else ""


def _letters(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    return " ".join(f"{l}:{100 * c / total:.0f}" for l, c in sorted(counts.items())) if total else "–"


def markdown(s: ProtocolStats) -> list[str]:
    """The protocol sections as Markdown lines (sections without data are left out)."""
    lines: list[str] = []
    if s.models:
        lines += ["", "## Paired statistics", "",
                  f"Percentages; 95% percentile bootstrap intervals ({s.resamples} resamples, seed {s.seed}) "
                  "over items, paired: the same draws for everything compared; source items are resampled "
                  "together with their translations where the languages hold the same items. **Gap** = "
                  "macro accuracy over high-resource minus low-resource languages; **Cons.** = share of "
                  "source items answered identically in every language.", "",
                  "| Model | Gap [95% CI] | Cons. [95% CI] | items (gap) | items (cons.) |", "|---|---:|---:|---:|---:|"]
        for m in s.models:
            g, c = s.gap[m], s.consistency[m]
            lines.append(f"| {m} | {_ci(g, signed=True)} | {_ci(c)} | {g.items} | {c.items} |")
    if s.differences:
        lines += ["", "### Model differences (row A − row B, same items)", "",
                  "\\* = the 95% interval excludes 0.", "",
                  "| A | B | items | ΔAvg [95% CI] | ΔGap [95% CI] |", "|---|---|---:|---:|---:|"]
        for d in s.differences:
            lines.append(f"| {d.a} | {d.b} | {d.avg.items} | {_ci(d.avg, signed=True)}{_excludes_zero(d.avg)} | "
                         f"{_ci(d.gap, signed=True)}{_excludes_zero(d.gap)} |")
    if s.agreement:
        lines += ["", "## Log-likelihood vs generation scoring", "",
                  "Entries with the same model files scored both ways: share of items given the same answer "
                  "(a parse failure is its own answer) with a 95% interval, and Cohen's kappa.", "",
                  "| loglik entry | generation entry | mode | items | agreement [95% CI] | kappa |",
                  "|---|---|---|---:|---:|---:|"]
        for a in s.agreement:
            lines.append(f"| {a.loglik} | {a.generated} | {a.mode} | {a.agreement.items} | {_ci(a.agreement)} | "
                         f"{'–' if math.isnan(a.kappa) else f'{a.kappa:.2f}'} |")
        lines += ["", "Per cell:", "", "| loglik entry | generation entry | dataset | language | items | agreement | kappa |",
                  "|---|---|---|---|---:|---:|---:|"]
        for a in s.agreement:
            for (d, l), (n, ag, k) in sorted(a.cells.items()):
                lines.append(f"| {a.loglik} | {a.generated} | {d} | {l} | {n} | {_pct(ag)} | "
                             f"{'–' if math.isnan(k) else f'{k:.2f}'} |")
    if s.position:
        lines += ["", "## Position bias (options cyclically shifted)", "",
                  "Each multiple-choice item also scored with its options shifted (the gold letter moves with "
                  "its option). **Acc (orig.)** = original order; **Acc (perm.)** = mean over all orderings "
                  "[95% CI]; **Consistent** = share of items whose chosen option is the same in every ordering "
                  "[95% CI]; letter shares (%) over all orderings, predicted vs gold; **TVD** = total variation "
                  "distance between them (0 = no letter preference beyond the gold's), χ² against the gold.", "",
                  "| Model | items | orderings | Acc (orig.) | Acc (perm.) [95% CI] | Consistent [95% CI] | "
                  "predicted letters | gold letters | TVD | χ² |", "|---|---:|---:|---:|---:|---:|---|---|---:|---:|"]
        for m, b in s.position.items():
            lines.append(f"| {m} | {b.items} | {b.orderings} | {_pct(b.accuracy_original)} | {_ci(b.accuracy)} | "
                         f"{_ci(b.consistency)} | {_letters(b.predicted_letters)} | {_letters(b.gold_letters)} | "
                         f"{b.tvd:.3f} | {b.chi_square:.1f} |")
    if s.reasoning:
        lines += ["", "## Reasoning mode", "",
                  "Generated with thinking on and a reasoning budget (tokens beyond the answer allowance); the "
                  "think block is stripped and the final answer parsed. Closed-form cells; **PF** = parse failures, "
                  "which include **Truncated** (the budget ran out inside the reasoning: no final answer).", "",
                  "| Model | budget | cells | Acc (Avg) | PF | Truncated |", "|---|---:|---:|---:|---:|---:|"]
        for m, r in s.reasoning.items():
            lines.append(f"| {m} | {', '.join(map(str, r['budget'])) or '–'} | {r['cells']} | {_pct(r['accuracy'])} | "
                         f"{_pct(r['parse_failure_rate'])} | {_pct(r['truncated_rate'])} |")
    if s.fidelity:
        langs = sorted({l for _, l, _ in s.fidelity}, key=lambda l: (l not in DEFAULT_LANGUAGES,
                                                                     DEFAULT_LANGUAGES.index(l) if l in DEFAULT_LANGUAGES else 0, l))
        lines += ["", "## Language fidelity of generated answers", "",
                  f"Share (%) of open-QA and reasoning-mode answers identified as the asked language [95% CI] "
                  f"(n judged), by the offline identifier of translation QC (lingua); texts under {s.min_chars} "
                  "letters are too short to judge and languages lingua lacks are undetectable (both counted in "
                  "the JSON summary, with the languages answers drifted to). \\* = low-resource.", "",
                  "| Model | part | " + " | ".join(f"{l}*" if get_language(l).low_resource else l for l in langs) + " |",
                  "|---|---|" + "---:|" * len(langs)]
        for m, part in sorted({(m, p) for m, _, p in s.fidelity}):
            cells = []
            for l in langs:
                f = s.fidelity.get((m, l, part))
                if f is None:
                    cells.append("–")
                elif not f.judged:
                    cells.append("undetectable" if f.undetectable else ("too short" if f.too_short else "–"))
                else:
                    cells.append(f"{_ci(f.share)} (n={f.judged})")
            lines.append(f"| {m} | {part} | " + " | ".join(cells) + " |")
    return lines


# ----------------------------------------------------------------------------------- files


def _plot(s: ProtocolStats, path: pathlib.Path) -> None:
    """Forest plot: each model's gap and each pair's ΔAvg / ΔGap with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("high- minus low-resource gap", [(m, s.gap[m]) for m in s.models]),
              ("ΔAvg (A − B)", [(f"{d.a} − {d.b}", d.avg) for d in s.differences]),
              ("ΔGap (A − B)", [(f"{d.a} − {d.b}", d.gap) for d in s.differences])]
    series = [(t, [(n, e) for n, e in rows if not math.isnan(e.value)]) for t, rows in series]
    series = [(t, rows) for t, rows in series if rows]
    if not series:
        return
    heights = [1.0 + 0.35 * len(r) for _, r in series]
    fig, axes = plt.subplots(len(series), 1, figsize=(8.0, 0.6 + sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (title, rows) in zip(axes[:, 0], series):
        y = np.arange(len(rows))[::-1]
        vals = np.array([100 * e.value for _, e in rows])
        lo = np.array([100 * (e.value - e.low) if not math.isnan(e.low) else 0.0 for _, e in rows])
        hi = np.array([100 * (e.high - e.value) if not math.isnan(e.high) else 0.0 for _, e in rows])
        ax.errorbar(vals, y, xerr=[lo, hi], fmt="o", capsize=4)
        ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_yticks(y, [n for n, _ in rows], fontsize=8)
        ax.set_xlabel("percentage points (95% CI)")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _atomic_write(path: pathlib.Path, text: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _clean(x: Any) -> Any:
    """Plain JSON: NaN -> null, numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write(s: ProtocolStats, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes ``summary.json`` (always) and ``paired.png`` (when there is an interval to plot)."""
    paths = {"summary": out_dir / SUMMARY_NAME}
    _atomic_write(paths["summary"], json.dumps(_clean(s.to_json()), indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    if any(not math.isnan(e.value) for e in s.gap.values()) or any(not math.isnan(d.avg.value) for d in s.differences):
        paths["paired_plot"] = out_dir / PLOT_NAME
        _plot(s, paths["paired_plot"])
    return paths
