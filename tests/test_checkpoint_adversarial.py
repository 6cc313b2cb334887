"""Corrupt checkpoints: the newest intact step is resumed, corrupt steps are moved to corrupt/
(never deleted, never counted against keep), and shape mismatches name the array."""

import logging

import jax
import numpy as np
import pytest
from jax.sharding import SingleDeviceSharding

from globmed_jax.training.checkpoint import CheckpointRestoreError, TrainCheckpointer


def _state(seed: int, rows: int = 256):
    rng = np.random.default_rng(seed)
    return {"step": np.int32(seed),
            "params": {"embed": rng.standard_normal((rows, 256)).astype(np.float32),
                       "norm": np.ones(256, np.float32)},
            "opt_state": {"mu": rng.standard_normal((rows, 256)).astype(np.float32), "count": np.int32(seed)}}


def _abstract(state):
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), state)
    shardings = jax.tree.map(lambda _: SingleDeviceSharding(jax.devices()[0]), state)
    return shardings, abstract


@pytest.fixture()
def three_steps(tmp_path):
    """Steps 1, 2, 3 saved (keep=3); returns the directory."""
    ck = TrainCheckpointer(tmp_path / "ck", keep=3, every_steps=1, async_save=False)
    for step in (1, 2, 3):
        ck.save(step, _state(step), None)
    ck.close()
    return tmp_path / "ck"


def _restore(directory, keep=3, state=None):
    ck = TrainCheckpointer(directory, keep=keep, every_steps=1, async_save=False)
    return ck, ck.restore_latest(*_abstract(state or _state(0)), None)


def _largest_array_file(step_dir):
    return max((step_dir / "state").rglob("d/*"), key=lambda f: f.stat().st_size)


def _steps(directory):
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _flip_bit(step_dir):
    f = _largest_array_file(step_dir)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


def _truncate(step_dir):
    f = _largest_array_file(step_dir)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete(step_dir):
    _largest_array_file(step_dir).unlink()


def _garbage_metadata(step_dir):
    (step_dir / "state" / "_METADATA").write_text("\x00not json{")


def _garbage_step_metadata(step_dir):
    (step_dir / "_CHECKPOINT_METADATA").write_text("\x00not json{")


def test_intact_newest_step_is_restored(three_steps):
    _, (state, step) = _restore(three_steps)
    assert step == 3
    np.testing.assert_array_equal(state["params"]["embed"], _state(3)["params"]["embed"])


@pytest.mark.parametrize("corrupt", [_flip_bit, _truncate, _delete, _garbage_metadata],
                         ids=lambda f: f.__name__.strip("_"))
def test_corrupt_newest_step_falls_back_to_the_older_one(three_steps, corrupt, caplog):
    corrupt(three_steps / "3")
    with caplog.at_level(logging.WARNING, logger="globmed_jax.training.checkpoint"):
        ck, (state, step) = _restore(three_steps)
    assert step == 2
    np.testing.assert_array_equal(state["params"]["embed"], _state(2)["params"]["embed"])
    assert "step 3" in caplog.text and "corrupt" in caplog.text
    # Set aside, not deleted; the good steps are all still there.
    assert (three_steps / "corrupt" / "3" / "state").is_dir()
    assert _steps(three_steps) == [1, 2]
    # The moved step does not count against keep: saving 3 (again) and 4 rotates out only step 1.
    ck.save(3, _state(30), None)
    ck.save(4, _state(4), None)
    ck.close()
    assert _steps(three_steps) == [2, 3, 4]
    assert (three_steps / "corrupt" / "3").is_dir()


def test_garbage_step_metadata_with_verified_arrays_is_still_used(three_steps):
    """_CHECKPOINT_METADATA holds only timestamps and the like: when every array still matches its
    fingerprint the step is intact and is resumed, not set aside."""
    _garbage_step_metadata(three_steps / "3")
    _, (state, step) = _restore(three_steps)
    assert step == 3 and not (three_steps / "corrupt").exists()
    np.testing.assert_array_equal(state["opt_state"]["mu"], _state(3)["opt_state"]["mu"])


def test_checkpoint_saved_with_nan_is_refused(tmp_path):
    ck = TrainCheckpointer(tmp_path / "ck", keep=3, every_steps=1, async_save=False)
    ck.save(1, _state(1), None)
    poisoned = _state(2)
    poisoned["opt_state"]["mu"][7, 7] = np.nan
    ck.save(2, poisoned, None)
    ck.close()
    _, (state, step) = _restore(tmp_path / "ck")
    assert step == 1 and (tmp_path / "ck" / "corrupt" / "2").is_dir()


def test_no_intact_step_is_a_clear_error(three_steps):
    for step in (1, 2, 3):
        _garbage_metadata(three_steps / str(step))
    with pytest.raises(CheckpointRestoreError, match="no intact checkpoint") as info:
        _restore(three_steps)
    assert all(f"step {s}:" in str(info.value) for s in (1, 2, 3))
    assert sorted(p.name for p in (three_steps / "corrupt").iterdir()) == ["1", "2", "3"]


def test_shape_mismatch_names_the_array_and_moves_nothing(three_steps):
    with pytest.raises(CheckpointRestoreError,
                       match=r"'params\.embed' was saved with shape \(256, 256\), the model expects \(128, 256\)"):
        _restore(three_steps, state=_state(0, rows=128))
    assert _steps(three_steps) == [1, 2, 3] and not (three_steps / "corrupt").exists()


def test_missing_array_is_named(three_steps):
    state = _state(0)
    state["params"]["lora_a"] = np.zeros((4, 4), np.float32)
    with pytest.raises(CheckpointRestoreError, match=r"no array 'params\.lora_a'"):
        _restore(three_steps, state=state)
    assert _steps(three_steps) == [1, 2, 3]


def test_a_second_corruption_of_the_same_step_does_not_overwrite_the_first(three_steps):
    _garbage_metadata(three_steps / "3")
    ck, (_, step) = _restore(three_steps)
    ck.save(3, _state(3), None)
    ck.close()
    _garbage_metadata(three_steps / "3")
    _, (_, step) = _restore(three_steps)
    assert step == 2
    assert sorted(p.name for p in (three_steps / "corrupt").iterdir()) == ["3", "3.1"]
