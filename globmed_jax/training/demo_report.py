"""The paper in miniature: a base model against its GlobMed fine-tune, and fine-tunes with
different language weightings against each other, on GlobMed-mini's held-out items.

    python -m globmed_jax.training.demo_report compare --base runs/demo/base/hf_export \\
        --tuned runs/demo/globmed/hf_export --out runs/demo                  # (make demo)
    python -m globmed_jax.training.demo_report ablation --out runs/reproduce \\
        --base runs/demo/base/hf_export --setting T=1:runs/reproduce/t1_s0,...  # (make reproduce)

**How the paper's two figures are computed here** (``paper_figures``). Per language L, acc(L) is
the accuracy over all closed-form held-out items of L (mcqa, yes/no/maybe, NLI; open questions
have no accuracy). Macro averages weigh every language equally:

* average relative improvement = (macro_L acc_tuned(L) - macro_L acc_base(L)) / macro_L acc_base(L),
  the macro over all languages;
* low-resource fold change = macro_{L low} acc_tuned(L) / macro_{L low} acc_base(L), the macro
  over the low-resource languages (sw, yo, zu, am by default); the same ratio over the
  high-resource ones is reported next to it.

Both are ratios of macro averages (not averages of per-language ratios, which one language near
zero would dominate). The paper's exact aggregation is not public; this is our reading of
"on average >40% higher" and ">3x higher on the low-resource languages". Intervals are 95 %
percentile bootstraps: per language the items are resampled with replacement, the same items for
both models (paired), and the figure recomputed (``paired_bootstrap``); in the ablation the seeds
are resampled as well (``seed_item_bootstrap``). Per-cell intervals come from
``evaluation.metrics.bootstrap_ci``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from globmed_jax.data import tasks
from globmed_jax.data.languages import DEFAULT_LANGUAGES, get_language
from globmed_jax.data.prompts import PromptConfig
from globmed_jax.data.schema import Record
from globmed_jax.evaluation.metrics import bootstrap_ci
from globmed_jax.evaluation.scoring import MODES, is_correct, predict
from globmed_jax.training.config import EvalSection

log = logging.getLogger(__name__)

NUM_RESAMPLES = 1000


# ----------------------------------------------------------------------------- the figures


def _macro(acc: Mapping[str, float], languages: Sequence[str]) -> float:
    vals = [acc[lang] for lang in languages if lang in acc]
    return float(np.mean(vals)) if vals else float("nan")


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return math.inf if num > 0 else float("nan")
    return num / den


def paper_figures(base: Mapping[str, float], tuned: Mapping[str, float],
                  languages: Sequence[str] = DEFAULT_LANGUAGES) -> dict[str, float]:
    """The paper's two figures from per-language accuracies (see the module docstring):
    ``relative_improvement`` (a fraction: 0.4 is "40 % higher"), ``low_resource_fold_change``
    and ``high_resource_fold_change`` (ratios: 3.0 is "3x"), with the macro averages they come
    from. A zero base average gives ``inf``."""
    low = [lang for lang in languages if get_language(lang).low_resource]
    high = [lang for lang in languages if not get_language(lang).low_resource]
    out = {"macro_base": _macro(base, languages), "macro_tuned": _macro(tuned, languages),
           "low_base": _macro(base, low), "low_tuned": _macro(tuned, low),
           "high_base": _macro(base, high), "high_tuned": _macro(tuned, high)}
    out["relative_improvement"] = _ratio(out["macro_tuned"] - out["macro_base"], out["macro_base"])
    out["low_resource_fold_change"] = _ratio(out["low_tuned"], out["low_base"])
    out["high_resource_fold_change"] = _ratio(out["high_tuned"], out["high_base"])
    return out


FIGURES = ("relative_improvement", "low_resource_fold_change", "high_resource_fold_change",
           "macro_base", "macro_tuned", "low_base", "low_tuned", "high_base", "high_tuned")


def _per_language(correct: np.ndarray, item_languages: np.ndarray, languages: Sequence[str]) -> dict[str, float]:
    return {lang: float(correct[item_languages == lang].mean()) for lang in languages
            if np.any(item_languages == lang)}


def _quantiles(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    # No interpolation between order statistics: an interval may end at inf (a zero base), and
    # interpolating next to inf gives nan.
    low, high = np.quantile(v, [0.025, 0.975], method="inverted_cdf")
    return float(low), float(high)


def paired_bootstrap(base_correct: np.ndarray, tuned_correct: np.ndarray, item_languages: Sequence[str],
                     languages: Sequence[str], *, num_resamples: int = NUM_RESAMPLES,
                     seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % intervals of every ``paper_figures`` value: items resampled with replacement within
    each language, the same resampled items for both models."""
    item_languages = np.asarray(item_languages)
    base_correct, tuned_correct = np.asarray(base_correct, bool), np.asarray(tuned_correct, bool)
    index = {lang: np.flatnonzero(item_languages == lang) for lang in languages}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in FIGURES}
    for _ in range(num_resamples):
        b, t = {}, {}
        for lang, idx in index.items():
            if idx.size == 0:
                continue
            pick = rng.choice(idx, idx.size, replace=True)
            b[lang], t[lang] = float(base_correct[pick].mean()), float(tuned_correct[pick].mean())
        fig = paper_figures(b, t, languages)
        for k in FIGURES:
            draws[k].append(fig[k])
    return {k: _quantiles(v) for k, v in draws.items()}


def seed_item_bootstrap(correct_by_seed: Sequence[np.ndarray], item_languages: Sequence[str],
                        groups: Mapping[str, Sequence[str]], *, num_resamples: int = NUM_RESAMPLES,
                        seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Per group of languages (e.g. high / low resource): the macro accuracy averaged over seeds,
    and its 95 % interval resampling seeds and, within each language, items (the same items for
    every seed). ``correct_by_seed[s]`` is [N] bool over the same items."""
    item_languages = np.asarray(item_languages)
    runs = np.asarray(correct_by_seed, bool)  # [S, N]
    rng = np.random.default_rng(seed)
    out = {}
    for name, langs in groups.items():
        index = [np.flatnonzero(item_languages == lang) for lang in langs]
        index = [idx for idx in index if idx.size]
        point = float(np.mean([np.mean([runs[s, idx].mean() for idx in index]) for s in range(len(runs))]))
        draws = []
        for _ in range(num_resamples):
            seeds = rng.integers(0, len(runs), len(runs))
            per_lang = []
            for idx in index:
                pick = rng.choice(idx, idx.size, replace=True)
                per_lang.append(runs[np.ix_(seeds, pick)].mean())
            draws.append(float(np.mean(per_lang)))
        out[name] = (point, *_quantiles(draws))
    return out


def setting_difference(reference: Sequence[np.ndarray], other: Sequence[np.ndarray], item_languages: Sequence[str],
                       languages: Sequence[str], *, num_resamples: int = NUM_RESAMPLES,
                       seed: int = 0) -> tuple[float, float, float]:
    """Macro accuracy over ``languages`` of ``other`` minus that of ``reference`` (each averaged
    over its seeds), with a 95 % interval: the seeds of each setting resampled independently
    (different runs), the items within each language resampled once for both (the same items).
    ``reference[s]`` / ``other[s]`` are [N] bool over the same items."""
    item_languages = np.asarray(item_languages)
    a, b = np.asarray(reference, bool), np.asarray(other, bool)  # [Sa, N], [Sb, N]
    index = [idx for idx in (np.flatnonzero(item_languages == lang) for lang in languages) if idx.size]
    point = float(np.mean([b[:, idx].mean() - a[:, idx].mean() for idx in index]))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(num_resamples):
        sa, sb = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        per_lang = []
        for idx in index:
            pick = rng.choice(idx, idx.size, replace=True)
            per_lang.append(b[np.ix_(sb, pick)].mean() - a[np.ix_(sa, pick)].mean())
        draws.append(float(np.mean(per_lang)))
    return (point, *_quantiles(draws))


# ----------------------------------------------------------------------------- scoring


def held_out_items(languages: Sequence[str] = DEFAULT_LANGUAGES, items_per_language: int = 312,
                   seed: int = 0) -> list[Record]:
    """The closed-form GlobMed-mini test items every comparison scores (the test split does not
    depend on the training weighting): the first ``items_per_language`` per language in
    ``recipes.held_out_records``' order (tasks interleaved)."""
    from globmed_jax.training.recipes import held_out_records

    mixture = tasks.globmed_mini(tasks.mini.MiniConfig(seed=seed, languages=tuple(languages)))
    return held_out_records(mixture, EvalSection(every_steps=0, split="test", max_items_per_language=items_per_language,
                                                 batch_size=32), languages)


@dataclasses.dataclass
class ModelScores:
    """Per scoring mode: [N] correct flags over the items, parse-failure rate, seconds taken."""

    path: str
    correct: dict[str, np.ndarray]
    parse_failure_rate: dict[str, float]
    seconds: dict[str, float]


def score_model(path: str | Path, records: Sequence[Record], modes: Sequence[str], *,
                prompt_config: PromptConfig, batch_size: int = 64, max_new_tokens: int = 24,
                dtype: str = "float32") -> ModelScores:
    """Loads the HF directory ``path`` (model + tokenizer) and scores ``records`` in each mode."""
    from globmed_jax.decode import Decoder
    from globmed_jax.models import from_pretrained, load_tokenizer
    from globmed_jax.models.tokenizer import pad_id

    model, _ = from_pretrained(path, dtype=dtype, param_dtype=dtype)
    tokenizer = load_tokenizer(path)
    decoder = Decoder(model, pad_id=pad_id(tokenizer))
    correct, failures, seconds = {}, {}, {}
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        start = time.perf_counter()
        preds = predict(decoder, tokenizer, records, mode=mode, prompt_config=prompt_config,
                        batch_size=batch_size, max_new_tokens=max_new_tokens)
        seconds[mode] = time.perf_counter() - start
        correct[mode] = np.asarray([is_correct(r, p) for r, p in zip(records, preds)], bool)
        failures[mode] = float(np.mean([p.parse_failed for p in preds]))
        log.info("%s %s: accuracy %.3f, parse failures %.3f (%.0f s)", path, mode, correct[mode].mean(),
                 failures[mode], seconds[mode])
    return ModelScores(str(path), correct, failures, seconds)


# ----------------------------------------------------------------------------- the report


def _f(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.2f}"


def _ci(point: float, ci: tuple[float, float]) -> str:
    return f"{_f(point)} [{_f(ci[0])}, {_f(ci[1])}]"


def _cell(correct: np.ndarray) -> tuple[float, tuple[float, float]]:
    return float(correct.mean()), bootstrap_ci(correct)


def compare_tables(records: Sequence[Record], base: ModelScores, tuned: ModelScores,
                   languages: Sequence[str]) -> dict[str, Any]:
    """Everything the compare report shows, as plain data (also written as JSON)."""
    item_langs = np.asarray([r.language for r in records])
    item_fams = np.asarray([r.family for r in records])
    families = list(dict.fromkeys(r.family for r in records))
    out: dict[str, Any] = {"num_items": len(records), "languages": list(languages), "families": families,
                           "items_per_language": {lang: int((item_langs == lang).sum()) for lang in languages},
                           "modes": {}}
    for mode in base.correct:
        b, t = base.correct[mode], tuned.correct[mode]
        cells = {}
        for lang in languages:
            for fam in families + ["all"]:
                mask = (item_langs == lang) & ((item_fams == fam) if fam != "all" else True)
                if mask.any():
                    cells[f"{fam}/{lang}"] = {"base": _cell(b[mask]), "tuned": _cell(t[mask]), "n": int(mask.sum())}
        fig = paper_figures(_per_language(b, item_langs, languages), _per_language(t, item_langs, languages), languages)
        cis = paired_bootstrap(b, t, item_langs, languages)
        out["modes"][mode] = {"cells": cells, "figures": fig, "intervals": cis,
                              "items": {"ids": [r.id for r in records], "base": b.tolist(), "tuned": t.tolist()},
                              "parse_failure_rate": {"base": base.parse_failure_rate[mode],
                                                     "tuned": tuned.parse_failure_rate[mode]}}
    return out


def _plot_compare(data: Mapping[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = data["languages"]
    modes = list(data["modes"])
    fig, axes = plt.subplots(1, len(modes), figsize=(max(7, 0.75 * len(languages)) * len(modes), 3.8), squeeze=False)
    xs = np.arange(len(languages))
    for ax, mode in zip(axes[0], modes):
        cells = data["modes"][mode]["cells"]
        for offset, who, color in ((-0.2, "base", "tab:gray"), (0.2, "tuned", "tab:green")):
            points = [cells[f"all/{lang}"][who][0] for lang in languages]
            low = [p - cells[f"all/{lang}"][who][1][0] for p, lang in zip(points, languages)]
            high = [cells[f"all/{lang}"][who][1][1] - p for p, lang in zip(points, languages)]
            ax.bar(xs + offset, points, 0.4, yerr=[low, high], capsize=2, color=color,
                   label="base" if who == "base" else "GlobMed fine-tune")
        labels = [f"{lang}*" if get_language(lang).low_resource else lang for lang in languages]
        ax.set_xticks(xs, labels)
        ax.set_ylim(0, 1)
        f = data["modes"][mode]["figures"]
        ax.set_title(f"{mode}: relative improvement {_f(100 * f['relative_improvement'])} %, "
                     f"low-resource x{_f(f['low_resource_fold_change'])}", fontsize=9)
        ax.set_ylabel("accuracy (95 % bootstrap CI)")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title + " (* low-resource)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_compare_report(out_dir: str | Path, data: Mapping[str, Any], *, title: str,
                         commands: Sequence[str] = (), notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """``report.md``, ``accuracy_base_vs_tuned.png`` and ``comparison.json`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    if commands:
        lines += ["Produced by:", "", "```", *commands, "```", ""]
    lines += [f"{data['num_items']} held-out closed-form items (GlobMed-mini test split, held-out phrasings): "
              + ", ".join(f"{lang} {n}" for lang, n in data["items_per_language"].items()) + ".", ""]
    lines += ["Average relative improvement = (macro tuned - macro base) / macro base, macro over all languages; "
              "low-resource fold change = macro over sw/yo/zu/am of tuned / of base (high-resource: same over the "
              "other languages). 95 % paired bootstrap intervals over items (1000 resamples). See "
              "`globmed_jax/training/demo_report.py`.", ""]
    lines += ["| scoring | macro base | macro tuned | relative improvement | low-res base | low-res tuned | "
              "low-res fold change | high-res fold change | parse failures base / tuned |", "|" + "---|" * 9]
    for mode, m in data["modes"].items():
        f, ci = m["figures"], m["intervals"]
        lines.append(
            f"| {mode} | {_ci(f['macro_base'], ci['macro_base'])} | {_ci(f['macro_tuned'], ci['macro_tuned'])} | "
            f"{_ci(100 * f['relative_improvement'], tuple(100 * x for x in ci['relative_improvement']))} % | "
            f"{_ci(f['low_base'], ci['low_base'])} | {_ci(f['low_tuned'], ci['low_tuned'])} | "
            f"x{_ci(f['low_resource_fold_change'], ci['low_resource_fold_change'])} | "
            f"x{_ci(f['high_resource_fold_change'], ci['high_resource_fold_change'])} | "
            f"{m['parse_failure_rate']['base']:.2f} / {m['parse_failure_rate']['tuned']:.2f} |")
    for mode, m in data["modes"].items():
        fams = data["families"] + ["all"]
        lines += ["", f"## Accuracy per language and task family, {mode} scoring (base -> tuned)", "",
                  "| language | resource | " + " | ".join(fams) + " |", "|" + "---|" * (len(fams) + 2)]
        for lang in data["languages"]:
            level = "low" if get_language(lang).low_resource else "high"
            row = []
            for fam in fams:
                c = m["cells"].get(f"{fam}/{lang}")
                row.append("n/a" if c is None else
                           f"{_ci(c['base'][0], c['base'][1])} -> {_ci(c['tuned'][0], c['tuned'][1])}")
            lines.append(f"| {lang} | {level} | " + " | ".join(row) + " |")
    if notes:
        lines += ["", *notes]
    table = out / "report.md"
    table.write_text("\n".join(lines) + "\n")
    plot = out / "accuracy_base_vs_tuned.png"
    _plot_compare(data, plot, title)
    (out / "comparison.json").write_text(json.dumps(data, indent=2, default=_json_default))
    return table, plot


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


# ----------------------------------------------------------------------------- ablation


def ablation_tables(records: Sequence[Record], base: np.ndarray, settings: Mapping[str, Sequence[np.ndarray]],
                    languages: Sequence[str]) -> dict[str, Any]:
    """Per setting: high / low-resource macro accuracy (mean over seeds, 95 % interval over seeds
    and items), the paper's figures of the seed-averaged accuracies against ``base``."""
    item_langs = np.asarray([r.language for r in records])
    low = [lang for lang in languages if get_language(lang).low_resource]
    high = [lang for lang in languages if not get_language(lang).low_resource]
    groups = {"high": high, "low": low, "all": list(languages)}
    base_acc = _per_language(base, item_langs, languages)
    out: dict[str, Any] = {"base": seed_item_bootstrap([base], item_langs, groups), "settings": {}}
    reference = next(iter(settings), None)
    for name, runs in settings.items():
        mean_acc = {lang: float(np.mean([_per_language(c, item_langs, languages)[lang] for c in runs]))
                    for lang in languages}
        out["settings"][name] = {"seeds": len(runs), "groups": seed_item_bootstrap(runs, item_langs, groups),
                                 "figures": paper_figures(base_acc, mean_acc, languages),
                                 "per_seed": [paper_figures(base_acc, _per_language(c, item_langs, languages),
                                                            languages) for c in runs]}
        if name != reference:  # against the first setting (make reproduce: proportional, T=1)
            out["settings"][name]["minus_reference"] = {
                "reference": reference,
                **{g: setting_difference(settings[reference], runs, item_langs, langs) for g, langs in groups.items()}}
    return out


def ablation_summary(data: Mapping[str, Any]) -> str:
    """What the ablation shows, in one sentence built from its figures: each setting's high- and
    low-resource difference from the reference setting, and whether any interval excludes 0."""
    diffs = {name: s["minus_reference"] for name, s in data["settings"].items() if "minus_reference" in s}
    if not diffs:
        return ""
    reference = next(iter(diffs.values()))["reference"]

    def signed(x: float) -> str:
        return f"{x:+.3f}"

    parts = [f"{name} low-resource {signed(d['low'][0])} [{signed(d['low'][1])}, {signed(d['low'][2])}], "
             f"high-resource {signed(d['high'][0])} [{signed(d['high'][1])}, {signed(d['high'][2])}]"
             for name, d in diffs.items()]
    clear = [f"{name} {group}-resource ({'higher' if d[group][1] > 0 else 'lower'})"
             for name, d in diffs.items() for group in ("low", "high") if d[group][1] > 0 or d[group][2] < 0]
    verdict = ("intervals that exclude 0: " + ", ".join(clear) if clear else
               "every interval includes 0: at this size the weightings are not distinguishable")
    return (f"Against {reference} (macro accuracy difference, 95 % interval over seeds and items): "
            + "; ".join(parts) + f"; {verdict}.")


def write_ablation_report(out_dir: str | Path, data: Mapping[str, Any], *, title: str, commands: Sequence[str] = (),
                          notes: Sequence[str] = ()) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    if commands:
        lines += ["Produced by:", "", "```", *commands, "```", ""]
    lines += ["Macro accuracy over high- / low-resource languages, mean over seeds with a 95 % bootstrap "
              "interval resampling seeds and items; relative improvement and fold changes of the seed-averaged "
              "accuracies against the base model (definitions in `globmed_jax/training/demo_report.py`).", "",
              "| setting | seeds | high-resource | low-resource | all | relative improvement | low-res fold change | "
              "high-res fold change |", "|" + "---|" * 8]
    b = data["base"]
    lines.append(f"| base (no fine-tune) | - | {_ci(b['high'][0], b['high'][1:])} | {_ci(b['low'][0], b['low'][1:])} | "
                 f"{_ci(b['all'][0], b['all'][1:])} | | | |")
    for name, s in data["settings"].items():
        g, f = s["groups"], s["figures"]
        lines.append(f"| {name} | {s['seeds']} | {_ci(g['high'][0], g['high'][1:])} | {_ci(g['low'][0], g['low'][1:])} | "
                     f"{_ci(g['all'][0], g['all'][1:])} | {_f(100 * f['relative_improvement'])} % | "
                     f"x{_f(f['low_resource_fold_change'])} | x{_f(f['high_resource_fold_change'])} |")
    if summary := ablation_summary(data):
        lines += ["", summary]
    if notes:
        lines += ["", *notes]
    table = out / "ablation.md"
    table.write_text("\n".join(lines) + "\n")
    names = ["base"] + list(data["settings"])
    groups = [data["base"]] + [s["groups"] for s in data["settings"].values()]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    xs = np.arange(len(names))
    for offset, key, color in ((-0.2, "high", "tab:blue"), (0.2, "low", "tab:orange")):
        pts = [g[key][0] for g in groups]
        err = [[p - g[key][1] for p, g in zip(pts, groups)], [g[key][2] - p for p, g in zip(pts, groups)]]
        ax.bar(xs + offset, pts, 0.4, yerr=err, capsize=3, color=color, label=f"{key}-resource")
    ax.set_xticks(xs, names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro accuracy (95 % CI: seeds x items)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plot = out / "ablation.png"
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    (out / "ablation.json").write_text(json.dumps(data, indent=2, default=_json_default))
    return table, plot


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m globmed_jax.training.demo_report", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("compare", "ablation"):
        s = sub.add_parser(name)
        s.add_argument("--base", default="runs/demo/base/hf_export", help="HF directory of the base model")
        s.add_argument("--out", default="runs/demo" if name == "compare" else "runs/reproduce")
        s.add_argument("--items-per-language", type=int, default=312)
        s.add_argument("--modes", default="loglik,generate" if name == "compare" else "loglik")
        s.add_argument("--mcqa-answer", default="option_text", help="as the fine-tune was trained (data.mcqa_answer)")
        s.add_argument("--batch-size", type=int, default=64)
        s.add_argument("--max-new-tokens", type=int, default=24)
        s.add_argument("--title", default="")
        s.add_argument("--command-line", action="append", default=[], help="a command to cite in the report")
        s.add_argument("--note", action="append", default=[])
    sub.choices["compare"].add_argument("--tuned", default="runs/demo/globmed/hf_export")
    sub.choices["ablation"].add_argument(
        "--setting", action="append", required=True,
        help="NAME:DIR[,DIR...]: the HF exports of one setting's seeds (repeat per setting)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    records = held_out_items(items_per_language=args.items_per_language)
    modes = [m for m in args.modes.split(",") if m]
    fmt = PromptConfig(mcqa_answer=args.mcqa_answer)
    kw = dict(prompt_config=fmt, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    started = time.perf_counter()
    commands = args.command_line or ["python -m globmed_jax.training.demo_report " + " ".join(sys.argv[1:] if argv is None else argv)]
    base = score_model(args.base, records, modes, **kw)
    if args.command == "compare":
        tuned = score_model(args.tuned, records, modes, **kw)
        data = compare_tables(records, base, tuned, DEFAULT_LANGUAGES)
        data["seconds"] = {"base": base.seconds, "tuned": tuned.seconds}
        table, plot = write_compare_report(args.out, data, title=args.title or "Base model vs GlobMed fine-tune",
                                           commands=commands, notes=args.note)
    else:
        settings = {}
        for spec in args.setting:
            name, _, dirs = spec.partition(":")
            settings[name] = [score_model(d, records, modes[:1], **kw).correct[modes[0]] for d in dirs.split(",")]
        data = ablation_tables(records, base.correct[modes[0]], settings, DEFAULT_LANGUAGES)
        data["mode"] = modes[0]
        table, plot = write_ablation_report(args.out, data, title=args.title or f"Language weighting ablation ({modes[0]})",
                                            commands=commands, notes=args.note)
    print(table.read_text())
    print(f"report: {table}  plot: {plot}  ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
