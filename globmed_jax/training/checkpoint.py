"""Orbax checkpoints of the train state together with the grain iterator state.

Orbax writes each step into a temporary directory and renames it only once every host has
finished, so a checkpoint half-written when the process died is never listed or restored.

Restoring does not trust what is on disk: ``restore_latest`` tries the newest step first and
accepts it only if orbax reads it, every array matches the state's shapes, the per-array
fingerprints saved with it still match (a bit flip anywhere changes them) and every parameter and
optimizer value is finite. A step that fails is moved to ``corrupt/`` (out of orbax's sight, so it
neither counts against ``keep`` nor rotates a good step out) and the next older step is tried.
A shape mismatch is not corruption (the config changed): it is an error and nothing is moved.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from globmed_jax.models.hf_io import CheckpointError

log = logging.getLogger(__name__)

CORRUPT_DIR = "corrupt"


class CheckpointRestoreError(CheckpointError):
    """No checkpoint step can be resumed from (all corrupt), or the saved shapes do not match the
    model being trained; the message names the step, array path and shapes."""


def _data_args(iterator: Any, save: bool):
    import grain

    return grain.checkpoint.CheckpointSave(iterator) if save else grain.checkpoint.CheckpointRestore(iterator)


def _checkpointable(iterator: Any) -> bool:
    """grain iterators carry their position; a plain Python iterator (tests) has none to save."""
    return hasattr(iterator, "get_state") and hasattr(iterator, "set_state")


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _path(keys: tuple) -> str:
    return ".".join(_key_name(k) for k in keys)


def _flat(tree: Any) -> dict[str, Any]:
    """Leaves by dotted path; the same path for a TrainState attribute and orbax's saved dict key."""
    return {_path(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _as_unsigned(x: jax.Array) -> jax.Array:
    """The bit pattern of ``x`` as uint32 (narrower types widened), for an exact checksum."""
    width = jnp.dtype(x.dtype).itemsize
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[width]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def _fingerprints(tree: Any) -> Any:
    """Per leaf, the sum of its bit patterns modulo 2**32: exact integer arithmetic, so it does not
    depend on sharding or reduction order, and any single flipped bit changes it."""
    return jax.tree.map(lambda x: jnp.sum(_as_unsigned(x), dtype=jnp.uint32), tree)


@jax.jit
def _all_finite(tree: Any) -> Any:
    return jax.tree.map(
        lambda x: jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True), tree)


@contextlib.contextmanager
def _quiet_abandoned_reads():
    """A failed orbax read leaves its sibling read coroutines unfinished; when they are collected
    Python prints each one's traceback ("Exception ignored in ..."), which reads as a crash.
    Collect them here and log them at debug level instead; the failure itself is reported."""
    previous = sys.unraisablehook

    def hook(unraisable):
        log.debug("abandoned checkpoint read: %s", unraisable.exc_value)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        gc.collect()
        sys.unraisablehook = previous


def _first_line(err: Exception) -> str:
    """A one-line reason; TensorStore appends a many-line spec after "See full TensorStore details"."""
    text = str(err).split("See full TensorStore details")[0].strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300] if text else ''}"


class TrainCheckpointer:
    """``state`` (params, optimizer, step) + ``data`` (grain iterator) + ``integrity`` (per-array
    fingerprints) per step, keep the last N."""

    def __init__(self, directory: str | Path, *, keep: int = 3, every_steps: int = 1000,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every_steps,
                                               enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "integrity"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, *, force: bool = False) -> bool:
        if not force and not self.manager.should_save(step):
            return False
        sums = {k: int(v) for k, v in _flat(jax.device_get(_fingerprints(state))).items()}
        items = {"state": ocp.args.StandardSave(state), "integrity": ocp.args.JsonSave(sums)}
        if _checkpointable(data_iterator):
            items["data"] = _data_args(data_iterator, True)
        saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        if saved:
            log.info("checkpoint: saving step %d to %s", step, self.directory)
        return saved

    def restore(self, step: int, state_shardings: Any, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores ``state`` of ``step`` with the given shardings and sets ``data_iterator``'s
        position. Not verified: ``restore_latest`` is the checked path."""
        target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                              abstract_state, state_shardings)
        items = {"state": ocp.args.StandardRestore(target)}
        if _checkpointable(data_iterator):
            items["data"] = _data_args(data_iterator, False)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def restore_latest(self, state_shardings: Any, abstract_state: Any,
                       data_iterator: Any) -> tuple[Any, int] | None:
        """The newest intact step's state and its number, or None when there is no checkpoint.

        Corrupt steps are moved to ``corrupt/`` with a warning; raises CheckpointRestoreError
        when steps existed but none is intact, or when the saved shapes differ from the model's."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        problems = []
        for step in steps:
            self._check_shapes(step, abstract_state)
            with _quiet_abandoned_reads():
                try:
                    state = self.restore(step, state_shardings, abstract_state, data_iterator)
                    problem = self._verify(step, state)
                except Exception as err:  # orbax / tensorstore / json: anything unreadable is corrupt
                    problem = f"cannot be read ({_first_line(err)})"
            if problem is None:
                log.info("checkpoint: resumed from step %d in %s", step, self.directory)
                return state, step
            moved = self._quarantine(step)
            log.warning("checkpoint: step %d in %s is corrupt: %s; moved to %s, trying an older step",
                        step, self.directory, problem, moved)
            problems.append(f"step {step}: {problem}")
        raise CheckpointRestoreError(
            f"no intact checkpoint in {self.directory} (the corrupt steps were moved to {CORRUPT_DIR}/; "
            "delete the run directory's checkpoints to start over):\n  " + "\n  ".join(problems))

    def _check_shapes(self, step: int, abstract_state: Any) -> None:
        """Raises naming the first array whose saved shape differs from the model's. Unreadable
        metadata is left to the restore (it is corruption, not a config change)."""
        try:  # read directly: the manager knows an item's handler only after its first restore
            with ocp.StandardCheckpointer() as reader:
                saved = reader.metadata(self._step_dir(step) / "state").item_metadata
            saved_shapes = {k: tuple(v.shape) for k, v in _flat(saved.tree).items() if hasattr(v, "shape")}
        except Exception:
            return
        if not saved_shapes:
            return
        expected = _flat(abstract_state)
        # Parameters first: a changed model shows there; its optimizer moments follow from it.
        order = sorted(expected, key=lambda k: not k.startswith("params"))
        differ = [k for k in order if saved_shapes.get(k) != tuple(expected[k].shape)]
        if not differ:
            return
        path, more = differ[0], (f" ({len(differ) - 1} more array(s) differ)" if len(differ) > 1 else "")
        if path not in saved_shapes:
            raise CheckpointRestoreError(
                f"checkpoint step {step} in {self.directory} has no array {path!r} (expected shape "
                f"{tuple(expected[path].shape)}): it was saved for a different model or LoRA setting{more}")
        raise CheckpointRestoreError(
            f"checkpoint step {step} in {self.directory} does not match the model: {path!r} was saved "
            f"with shape {saved_shapes[path]}, the model expects {tuple(expected[path].shape)}{more}")

    def _verify(self, step: int, state: Any) -> str | None:
        """None when the restored state is intact, else what is wrong with it."""
        finite = _flat(jax.device_get(_all_finite(state)))
        bad = [k for k, ok in finite.items() if not bool(ok)]
        if bad:
            return f"non-finite values in {', '.join(bad[:5])}" + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        expected = self._saved_fingerprints(step)
        if expected is None:
            return None  # saved before fingerprints existed: the finite check is all there is
        actual = {k: int(v) for k, v in _flat(jax.device_get(_fingerprints(state))).items()}
        changed = [k for k in actual if expected.get(k) != actual[k]]
        if changed:
            return f"fingerprint mismatch (data changed on disk) in {', '.join(changed[:5])}"
        return None

    def _saved_fingerprints(self, step: int) -> dict[str, int] | None:
        if not (self._step_dir(step) / "integrity").exists():
            return None
        restored = self.manager.restore(step, args=ocp.args.Composite(integrity=ocp.args.JsonRestore()))
        return dict(restored["integrity"])

    def _step_dir(self, step: int) -> Path:
        return self.directory / str(step)  # the manager's default step naming (no prefix)

    def _quarantine(self, step: int) -> Path:
        """Moves a corrupt step out of orbax's directory listing; never deletes it."""
        target = self.directory / CORRUPT_DIR / str(step)
        n = 0
        while target.exists():
            n += 1
            target = self.directory / CORRUPT_DIR / f"{step}.{n}"
        if jax.process_index() == 0:
            target.parent.mkdir(exist_ok=True)
            self._step_dir(step).rename(target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"checkpoint quarantine {step}")
        self.manager.reload()
        return target

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

