"""scripts/memory_plan.py: the train step compiled abstractly for a mesh, with nothing allocated."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "memory_plan.py"


def test_demo_plan_on_eight_devices(tmp_path):
    out = tmp_path / "plan.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", "8", "--config", str(REPO_ROOT / "configs" / "demo.py"),
         "--config.train.global_batch_size=16", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(out.read_text())
    assert plan["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    a, x = plan["analytic"], plan["xla"]
    assert a["params_gib"] > 0 and abs(a["optimizer_gib"] - 2 * a["params_gib"]) < 1e-6  # Adam mu + nu, fp32
    # XLA's arguments are exactly the per-device train state (params + optimizer state + step).
    assert abs(x["argument_gib"] - (a["params_gib"] + a["optimizer_gib"])) < 1e-3
    assert len(plan["largest"]) == 10 and plan["largest"][0]["global_gib"] >= plan["largest"][-1]["global_gib"]
    assert "fsdp" in plan["largest"][0]["spec"]
    assert "per device (GiB)" in proc.stdout


def test_extrapolation_is_linear_in_layers():
    spec = importlib.util.spec_from_file_location("memory_plan", SCRIPT)
    mp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mp)
    got = mp.extrapolate({"temp_gib": 2.0}, {"temp_gib": 3.0}, 4, 8, 36)
    assert got == {"temp_gib": 2.0 + (36 - 4) / 4}
