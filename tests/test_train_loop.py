"""The training run: exact resume after SIGKILL, SIGTERM checkpoint, non-finite loss policy and
config errors reported before compiling. (The reduced demo end to end: tests/test_notebook.py,
whose training cell runs it.)"""

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import one_device_env, train_losses
from globmed_jax.training.config import ConfigError, default_config, validate

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = [
    "--config.train.global_batch_size=4", "--config.data.seq_len=128", "--config.tokenizer.vocab_size=400",
    "--config.model.overrides.num_layers=2", "--config.model.overrides.hidden_size=64",
    "--config.model.overrides.intermediate_size=128", "--config.model.overrides.head_dim=16",
    "--config.train.warmup_steps=2", "--config.log.every_steps=1", "--config.log.progress=False",
]


def train_cmd(run_dir, *extra):
    return [sys.executable, "-m", "globmed_jax.train", "--config", str(REPO / "configs/demo.py"),
            f"--config.run_dir={run_dir}", *TINY, *extra]


def child_env():
    return one_device_env(PYTHONUNBUFFERED="1")  # one CPU device, as a user's run


def wait_for_step(proc, run_dir, step, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early with {proc.returncode}: {proc.stdout.read()}")
        if max(train_losses(run_dir), default=0) >= step:
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} not reached in {timeout}s")


def test_sigkill_then_rerun_reproduces_the_uninterrupted_losses(tmp_path):
    steps = ["--config.train.steps=9", "--config.checkpoint.every_steps=3", "--config.eval.max_items_per_language=0",
             "--config.export.hf=False"]
    straight = tmp_path / "straight"
    done = subprocess.run(train_cmd(straight, *steps), env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = train_losses(straight)
    assert sorted(expected) == list(range(1, 10))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(killed, *steps), env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for_step(proc, killed, 5)
    proc.kill()  # SIGKILL: no handler runs, an async save may be half written
    proc.wait()
    before = train_losses(killed)
    assert 5 <= max(before) < 9
    rerun = subprocess.run(train_cmd(killed, *steps), env=child_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from step" in rerun.stderr
    after = train_losses(killed)
    assert sorted(after) == list(range(1, 10))
    # Bitwise: same program, same data order, restored state (CPU is deterministic).
    assert after == expected


def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path):
    run = tmp_path / "term"
    cmd = train_cmd(run, "--config.train.steps=200", "--config.checkpoint.every_steps=1000",
                    "--config.eval.max_items_per_language=0", "--config.export.hf=False")
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_step(proc, run, 3)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    assert "after SIGTERM; checkpoint saved" in output
    saved = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert saved[-1] >= 3 and saved[-1] < 200
    assert not list((run / "checkpoints").glob("*tmp*"))


def _tiny_nan_config(tmp_path, name):
    config = default_config()
    config.run_dir = str(tmp_path / name)
    config.model.init = "scratch"
    config.model.preset = "qwen3_0p6b"
    config.model.overrides.update(dict(hidden_size=32, intermediate_size=64, num_layers=1,
                                       num_heads=2, num_kv_heads=1, head_dim=16))
    config.model.dtype = "float32"
    config.tokenizer.kind = "qwen3"
    config.data.languages = ("en", "sw")
    config.data.seq_len = 16
    config.train.global_batch_size = 2
    config.train.steps = 5
    config.train.warmup_steps = 1  # must be < train.steps
    config.mesh.fsdp, config.mesh.tensor = 2, 4  # the test process has 8 simulated devices
    config.log.progress = False
    config.eval.max_items_per_language = 0
    config.export.hf = False
    config.checkpoint.async_save = False
    return config


def _nan_batches(nan_steps):
    def factory(cfg, tokenizer, process_index, process_count):
        def gen():
            step = 0
            while True:
                step += 1
                mask = np.ones((2, 16), np.float32) * (np.nan if step in nan_steps else 1.0)
                yield {"inputs": np.zeros((2, 16), np.int32), "targets": np.ones((2, 16), np.int32),
                       "loss_mask": mask, "segment_ids": np.ones((2, 16), np.int32),
                       "positions": np.tile(np.arange(16, dtype=np.int32), (2, 1)),
                       "language_ids": np.array([[1] * 16, [1] * 16], np.int32)}
        return _PlainIterator(gen())
    return factory


def test_nonfinite_loss_stop_policy_names_step_and_languages(tmp_path):
    from globmed_jax.training.loop import NonFiniteLossError, train

    config = _tiny_nan_config(tmp_path, "nan")
    config.train.on_nonfinite = "stop"
    with pytest.raises(NonFiniteLossError, match=r"step 3 \(batch languages: sw\)"):
        train(config, data_factory=_nan_batches({3}))


def test_run_ending_with_nonfinite_loss_fails_and_says_so(tmp_path):
    """on_nonfinite='skip' skips the bad update, but a run whose last loss is NaN must not look
    like success: NonFiniteLossError (the CLI exits 2) and summary.json records it."""
    from globmed_jax.training.loop import NonFiniteLossError, train

    config = _tiny_nan_config(tmp_path, "nan_end")
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* at step 5"):
        train(config, data_factory=_nan_batches({5}))
    summary = json.loads((tmp_path / "nan_end" / "summary.json").read_text())
    assert summary["final_loss_finite"] is False and summary["final_step"] == 5
    # A NaN earlier in the run that training recovered from is not a failure.
    config = _tiny_nan_config(tmp_path, "nan_mid")
    assert train(config, data_factory=_nan_batches({2}))["final_loss_finite"] is True


class _PlainIterator:
    """A non-grain iterator: checkpoints then skip the data state."""

    def __init__(self, gen):
        self.gen = gen

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.gen)


def test_config_errors_name_the_key():
    config = default_config()
    config.model.checkpoint = "/some/dir"
    config.train.global_batch_size = 6
    with pytest.raises(ConfigError, match="not divisible by the data-parallel size data\\*fsdp = 8"):
        validate(config, num_devices=8)  # fsdp=-1 takes all 8 devices; 6 % 8 != 0
    config.mesh.fsdp, config.mesh.tensor = 2, 2
    with pytest.raises(ConfigError, match="data-parallel size data\\*fsdp = 2"):
        config.train.global_batch_size = 3
        validate(config, num_devices=4)
    config.mesh.data = 3
    with pytest.raises(ConfigError, match="cannot be laid out on 8 devices"):
        validate(config, num_devices=8)
    config = default_config()
    with pytest.raises(ConfigError, match="model.checkpoint must name"):
        validate(config, num_devices=1)


def test_cli_reports_unknown_keys_and_missing_checkpoints(tmp_path):
    base = [sys.executable, "-m", "globmed_jax.train", "--config", str(REPO / "configs/demo.py")]
    bad_key = subprocess.run(base + ["--config.train.stepz=3"], env=child_env(), capture_output=True, text=True)
    assert bad_key.returncode == 2 and "unknown config key 'train.stepz'" in bad_key.stderr
    missing = subprocess.run(base + [f"--config.run_dir={tmp_path}", "--config.model.init=pretrained",
                                     f"--config.model.checkpoint={tmp_path}/nowhere"],
                             env=child_env(), capture_output=True, text=True)
    assert missing.returncode == 2 and "base checkpoint" in missing.stderr and "Traceback" not in missing.stderr
