"""Two CPU processes on 127.0.0.1 (4 simulated devices each) form one 8-device mesh and train
the real train step; their losses equal the same steps on 8 devices in this one process."""

import importlib.util
import sys

import jax
import numpy as np

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "multiprocess_check.py"
STEPS = 4


def load_check():
    spec = importlib.util.spec_from_file_location("multiprocess_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["multiprocess_check"] = module
    spec.loader.exec_module(module)
    return module


check = load_check()


def test_two_processes_match_one_process(tmp_path):
    multi = check.launch(num_processes=2, local_devices=4, steps=STEPS, out=tmp_path / "multi.json", timeout=240)
    assert multi["process_count"] == 2
    assert multi["device_count"] == 8 and multi["local_device_count"] == 4
    assert multi["local_rows"] == "slice(0, 4, None)"  # process 0 fed the first half of each batch

    assert jax.device_count() == 8  # tests/conftest.py: 8 simulated devices in this process
    single = check.train_losses(STEPS)
    assert len(multi["losses"]) == len(single) == STEPS
    assert all(np.isfinite(single))
    assert single[2] < single[0] and single[3] < single[1]  # it trains (batches alternate)
    np.testing.assert_allclose(multi["losses"], single, rtol=1e-5)


def test_each_process_holds_a_distinct_contiguous_half():
    from globmed_jax import sharding
    from globmed_jax.training.step import batch_sharding

    mesh = sharding.make_mesh(*check.MESH)
    sh = batch_sharding(mesh, (check.GLOBAL_BATCH, check.SEQ_LEN))
    # Simulate the two processes' device sets on this single-process mesh: devices 0-3 and 4-7.
    halves = []
    for devices in (jax.devices()[:4], jax.devices()[4:]):
        rows = [idx[0] for d, idx in sh.devices_indices_map((check.GLOBAL_BATCH, check.SEQ_LEN)).items()
                if d in devices]
        halves.append((min(r.start for r in rows), max(r.stop for r in rows)))
    assert halves == [(0, 4), (4, 8)]
