"""Fine-tune a model on a GlobMed mixture.

    python -m globmed_jax.train --config configs/demo.py [--config.train.steps=100 ...]

Rerunning the same command resumes from the newest checkpoint in ``run_dir``.
"""

from __future__ import annotations

import sys

from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                          lock_config=True)


def main(argv) -> int:
    del argv
    from globmed_jax import distributed
    from globmed_jax.cli import setup_logging

    setup_logging()

    config = _CONFIG.value
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
    from globmed_jax.cli import run_config_main

    sys.exit(run_config_main(_CONFIG, main))
