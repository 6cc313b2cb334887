"""Fine-tune a model on a GlobMed mixture.

    python -m globmed_jax.train --config configs/demo.py [--config.train.steps=100 ...]

Rerunning the same command resumes from the newest checkpoint in ``run_dir``.
"""

from __future__ import annotations

import sys

from globmed_jax.cli import define_config_flag, run_config_main

_CONFIG = define_config_flag("Path to a config file (configs/*.py).")


def main(config) -> int:
    from globmed_jax import distributed

    distributed.maybe_initialize(config.distributed)

    from globmed_jax.models import CheckpointError, UnsupportedModelError
    from globmed_jax.training.config import ConfigError
    from globmed_jax.training.loop import CompileOutOfMemoryError, NonFiniteLossError
    from globmed_jax.training.recipes import run

    try:
        summary = run(config)
    except (ConfigError, FileNotFoundError, CheckpointError, UnsupportedModelError,
            NonFiniteLossError, CompileOutOfMemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary.get("interrupted"):
        print(f"stopped at step {summary['final_step']} after SIGTERM; checkpoint saved. Rerun to resume.")
    return 0


if __name__ == "__main__":
    sys.exit(run_config_main(_CONFIG, main))
