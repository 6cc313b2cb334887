"""Fine-tune a model on a GlobMed mixture.

    python -m globmed_jax.train --config configs/demo.py [--config.train.steps=100 ...]

Rerunning the same command resumes from the newest checkpoint in ``run_dir``.
"""

from __future__ import annotations

import logging
import sys

from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                          lock_config=True)


def main(argv) -> int:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "orbax", "jax._src", "etils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from globmed_jax import distributed

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


def cli() -> int:
    from globmed_jax.cli import parse_flags

    argv = parse_flags()
    if argv is None:
        return 2
    if _CONFIG.value is None:
        print("error: --config=configs/<name>.py is required", file=sys.stderr)
        return 2
    return main(argv)


if __name__ == "__main__":
    sys.exit(cli())
