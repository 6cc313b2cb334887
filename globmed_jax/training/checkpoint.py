"""Orbax checkpoints of the train state together with the grain iterator state.

Orbax writes each step into a temporary directory and renames it only once every host has
finished, so a checkpoint half-written when the process died is never listed or restored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


def _data_args(iterator: Any, save: bool):
    import grain

    return grain.checkpoint.CheckpointSave(iterator) if save else grain.checkpoint.CheckpointRestore(iterator)


def _checkpointable(iterator: Any) -> bool:
    """grain iterators carry their position; a plain Python iterator (tests) has none to save."""
    return hasattr(iterator, "get_state") and hasattr(iterator, "set_state")


class TrainCheckpointer:
    """``state`` (params, optimizer, step) + ``data`` (grain iterator) per step, keep the last N."""

    def __init__(self, directory: str | Path, *, keep: int = 3, every_steps: int = 1000,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every_steps,
                                               enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, *, force: bool = False) -> bool:
        items = {"state": ocp.args.StandardSave(state)}
        if _checkpointable(data_iterator):
            items["data"] = _data_args(data_iterator, True)
        args = ocp.args.Composite(**items)
        saved = self.manager.save(step, args=args, force=force)
        if saved:
            log.info("checkpoint: saving step %d to %s", step, self.directory)
        return saved

    def restore(self, step: int, state_shardings: Any, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores ``state`` with the given shardings and sets ``data_iterator``'s position."""
        target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              abstract_state, state_shardings)
        items = {"state": ocp.args.StandardRestore(target)}
        if _checkpointable(data_iterator):
            items["data"] = _data_args(data_iterator, False)
        args = ocp.args.Composite(**items)
        restored = self.manager.restore(step, args=args)
        log.info("checkpoint: resumed from step %d in %s", step, self.directory)
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
