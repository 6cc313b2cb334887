"""Shared command-line handling for the ``--config`` entry points (train, evaluate).

ml_collections' ``config_flags`` loads ``--config path.py`` and applies ``--config.a.b=value``
overrides while absl parses flags; its errors arrive as bare ``AttributeError("'b'")`` or type
errors. ``parse_flags`` turns them into one line naming the offending key.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any, Callable, Sequence

from absl import flags


def _load_config_file(path: str):
    file, _, arg = path.partition(":")  # config_flags passes what follows ':' to get_config
    spec = importlib.util.spec_from_file_location("_globmed_config", file)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"config file {path} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def explain_override_error(argv: Sequence[str], err: Exception) -> str:
    config_path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if config_path is None and "--config" in argv:
        config_path = argv[list(argv).index("--config") + 1]
    if config_path is None:
        return "error: --config=configs/<name>.py is required"
    try:
        config = _load_config_file(config_path)
    except FileNotFoundError:
        return f"error: config file {config_path} not found"
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key, _, value = arg[len("--config."):].partition("=")
        node = config
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not hasattr(node, "keys") or part not in node.keys():
                parent = ".".join(parts[:i]) or "<root>"
                known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(not a group)"
                return f"error: unknown config key '{key}' ({config_path}); keys under {parent}: {known}"
            node = node[part]
        if node is not None and not isinstance(node, (str, bool)) and hasattr(node, "__class__"):
            try:
                type(node)(value) if not isinstance(node, (tuple, list)) else None
            except (TypeError, ValueError):
                return f"error: config key '{key}' expects {type(node).__name__}, got {value!r}"
    return f"error: invalid config or override: {err}"


def parse_flags(argv: Sequence[str] | None = None) -> list[str] | None:
    """Parses absl flags; prints a one-line error and returns None when they are invalid."""
    argv = list(sys.argv if argv is None else argv)
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as err:
        print(explain_override_error(argv, err), file=sys.stderr)
        return None


def setup_logging(quiet: Sequence[str] = ("absl", "orbax", "jax._src", "etils", "httpx")) -> None:
    """INFO logs with timestamps; the listed chatty libraries only warn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)


def define_config_flag(help_text: str):
    """The locked ``--config`` file flag of an entry point (define at import, before parsing)."""
    from ml_collections import config_flags

    return config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)


def run_config_main(config_flag, main: Callable[[Any], int]) -> int:
    """Parses flags (one-line errors), requires ``--config``, sets up logging, runs ``main(config)``."""
    if parse_flags() is None:
        return 2
    if config_flag.value is None:
        print("error: --config=configs/<name>.py is required", file=sys.stderr)
        return 2
    setup_logging()
    return main(config_flag.value)
