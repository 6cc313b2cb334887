"""Draw training curves from a run's metrics.jsonl to PNG.

    python scripts/plot_training.py runs/demo [--out runs/demo/training_curves.png]

Panels: loss (with per-language answer loss), learning rate, gradient norm, tokens/s, and
held-out accuracy per language when the run evaluated more than once.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def load_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist (is {run_dir} a training run directory?)")
    train, evals = {}, {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SystemExit(f"error: {path}:{number}: invalid JSON ({err.msg})") from None
        # A resumed run logs recomputed steps again: the last entry per step wins.
        (train if row.get("kind") == "train" else evals)[row["step"]] = row
    return [train[k] for k in sorted(train)], [evals[k] for k in sorted(evals)]


def plot(run_dir: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = load_metrics(run_dir)
    if not train:
        raise SystemExit(f"error: no training rows in {run_dir / 'metrics.jsonl'}")
    steps = [r["step"] for r in train]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    ax = axes[0, 0]
    ax.plot(steps, [r["loss"] for r in train], color="black", lw=2, label="all")
    per_lang = defaultdict(list)
    for r in train:
        for key, value in r.items():
            if key.startswith("loss_") and key != "loss_tokens":
                per_lang[key[5:]].append((r["step"], value))
    for lang, points in sorted(per_lang.items()):
        ax.plot(*zip(*points), lw=0.8, alpha=0.7, label=lang)
    ax.set_yscale("log")
    ax.set_title("answer-token loss")
    ax.legend(fontsize=7, ncol=2)
    for ax, key, title in ((axes[0, 1], "learning_rate", "learning rate"), (axes[0, 2], "grad_norm", "gradient norm"),
                           (axes[1, 0], "tokens_per_s", "tokens/s"), (axes[1, 1], "token_accuracy",
                                                                       "answer-token accuracy")):
        points = [(r["step"], r[key]) for r in train if key in r]
        if points:
            ax.plot(*zip(*points))
        ax.set_title(title)
    ax = axes[1, 2]
    if evals:
        keys = sorted({k for r in evals for k in r if k.startswith("accuracy_")})
        for key in keys:
            ax.plot([r["step"] for r in evals if key in r], [r[key] for r in evals if key in r], marker="o",
                    label=key[9:])
        ax.legend(fontsize=7, ncol=2)
    ax.set_title("held-out accuracy")
    for ax in axes.flat:
        ax.set_xlabel("step")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    print(plot(args.run_dir, args.out or args.run_dir / "training_curves.png"))


if __name__ == "__main__":
    main()
