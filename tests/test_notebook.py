"""notebooks/quickstart.ipynb runs top to bottom (GLOBMED_NOTEBOOK_SMOKE=1: ~10 training steps) and
shows the held-out report, the leaderboard and the plots. Its training cell is the reduced demo
(`globmed_jax.train --config=configs/demo.py`), so the demo pipeline's own checks read that run:
BPE, from-scratch model, grain mixture, checkpoint, held-out evaluation per language, report +
plot, and an HF export that transformers loads."""

import json
import os
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT, one_device_env, train_losses

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    # The kernel inherits this process's environment.
    # One CPU device, as a user's notebook (not the 8 this test process simulates).
    settings = {"GLOBMED_NOTEBOOK_SMOKE": "1", "GLOBMED_NOTEBOOK_RUN_DIR": str(run_dir),
                "XLA_FLAGS": one_device_env()["XLA_FLAGS"]}
    before = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        client = NotebookClient(nb, timeout=240, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb, run_dir


def outputs(nb, kind):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == kind:
                yield out


def test_notebook_trains_evaluates_and_reports(executed):
    nb, run_dir = executed
    errors = list(outputs(nb, "error"))
    assert not errors, errors
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "globmed_jax.train --config=configs/demo.py" in text and "--config.train.steps=10" in text
    for name in ("report.md", "accuracy_by_language.png", "metrics.jsonl", "hf_export/config.json",
                 "bench/leaderboard.md", "bench/heatmap.png"):
        assert (run_dir / name).exists(), name
    steps = [line for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"kind": "train"' in line]
    assert steps and '"step": 10' in steps[-1]


def test_demo_run_reports_every_language_and_task_family(executed):
    _, run = executed
    losses = train_losses(run)
    assert sorted(losses) == list(range(1, 11)) and all(np.isfinite(list(losses.values())))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_step"] == 10
    from globmed_jax.training.config import default_config

    languages = default_config().data.languages
    assert {f"accuracy_{lang}" for lang in languages} <= set(summary["eval"])
    report = (run / "report.md").read_text()
    assert all(f"| {lang} |" in report for lang in languages)
    # Per task family too: a column each, matching the logged metrics.
    families = sorted({k.split("/")[1] for k in summary["eval"] if k.startswith("accuracy/")})
    assert families and "| language | resource | " in report
    header = next(line for line in report.splitlines() if line.startswith("| language"))
    columns = [c.strip() for c in header.split("|")]
    assert set(families) <= set(columns)
    en_row = next(line for line in report.splitlines() if line.startswith("| en |"))
    fam = next(f for f in families if f"accuracy/{f}/en" in summary["eval"])
    cells = [c.strip() for c in en_row.split("|")]
    assert cells[columns.index(fam)] == f"{summary['eval'][f'accuracy/{fam}/en']:.3f}"
    assert (run / "accuracy_by_language.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_demo_export_loads_in_transformers_with_our_logits(executed):
    _, run = executed
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from globmed_jax.models import from_pretrained

    hf = AutoModelForCausalLM.from_pretrained(run / "hf_export", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(run / "hf_export")
    assert hf.config.eos_token_id == tokenizer.eos_token_id or tokenizer.eos_token_id in hf.config.eos_token_id
    ours, _ = from_pretrained(run / "hf_export", dtype="float32")
    ids = tokenizer("Malaria", return_tensors="np")["input_ids"].astype(np.int32)
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(ids)), ref, rtol=1e-4, atol=1e-4)


def test_label_breakdown_script_reads_the_demo_run(executed):
    """A row per (task, gold label, resource level) with the item counts it was asked for."""
    _, run = executed
    env = one_device_env()  # one CPU device, as a user's run
    out = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/label_breakdown.py"), str(run), "--limit", "3"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    cells = {(t.strip(), g.strip(), lv.strip()): (float(a), int(n)) for t, g, lv, a, n in rows[1:]}
    assert {t for t, _, _ in cells} == {"mcqa", "yes_no_maybe", "nli", "open_qa"}
    n_high, n_low = 8, 4  # default languages
    assert sum(n for (t, _, lv), (_, n) in cells.items() if t == "nli" and lv == "high") == 3 * n_high
    assert sum(n for (t, _, lv), (_, n) in cells.items() if t == "open_qa" and lv == "low") == 3 * n_low
    assert all(0.0 <= a <= 1.0 for a, _ in cells.values())


def test_notebook_displays_tables_and_plots(executed):
    nb, _ = executed
    shown = [o["data"] for o in outputs(nb, "display_data")]
    markdown = "\n".join(d.get("text/markdown", "") for d in shown)
    assert "| language | resource | mcqa |" in markdown and "| all | chance |" in markdown  # held-out report
    assert "# GlobMed-Bench leaderboard" in markdown and "| demo |" in markdown
    assert sum("image/png" in d for d in shown) >= 4  # loss curve, accuracy by language, heatmap, gap


def test_parameters_cell_is_tagged_for_papermill():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "GLOBMED_NOTEBOOK_SMOKE" in tagged[0].source
