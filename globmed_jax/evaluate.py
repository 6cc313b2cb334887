"""Run GlobMed-Bench: models x datasets x languages, then write the leaderboard.

    python -m globmed_jax.evaluate --config configs/bench_demo.py [--config.data.max_per_cell=20 ...]

Rerunning the same command skips every (model, dataset, language) cell already in
``<out_dir>/results.jsonl`` whose fingerprint (model files, tokenizer, mode, prompt settings,
seed, data) equals this run's; a different fingerprint is an error naming the fields, unless
``--config.recompute=True`` recomputes those cells. Writes results.jsonl, predictions/<model>.jsonl, leaderboard.md,
heatmap.png and gap.png into ``out_dir``.
"""

from __future__ import annotations

import sys

from globmed_jax.cli import define_config_flag, run_config_main

_CONFIG = define_config_flag("Path to a config file (configs/bench_*.py).")


def main(config) -> int:
    from globmed_jax.evaluation import report, runner
    from globmed_jax.api_client import APIError
    from globmed_jax.models import CheckpointError, UnsupportedModelError

    try:
        summary = runner.run(config)
    except (FileNotFoundError, CheckpointError, UnsupportedModelError, runner.SettingMismatchError,
            APIError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(summary['done'])} cells evaluated, {len(summary['skipped'])} already done; "
          f"results in {summary['out_dir']}/{runner.RESULTS_NAME}")
    if config.report:
        paths = report.write_report(config.out_dir)
        print(paths["leaderboard"].read_text(encoding="utf-8"))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(run_config_main(_CONFIG, main))
