"""notebooks/quickstart.ipynb runs top to bottom (GLOBMED_NOTEBOOK_SMOKE=1: ~10 training steps) and
shows the held-out report, the leaderboard and the plots."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    # The kernel inherits this process's environment.
    settings = {"GLOBMED_NOTEBOOK_SMOKE": "1", "GLOBMED_NOTEBOOK_RUN_DIR": str(run_dir)}
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
