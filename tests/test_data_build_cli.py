"""End-to-end CLI runs (subprocess) and the TFDS ArrayRecord round trip through grain."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/fixtures/data/globmed_release"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def table_rows(stdout: str) -> dict[tuple[str, ...], list[str]]:
    """(dataset, language, split) -> [count, quarantined] parsed from the first printed table
    (the build prints the per-file table after a blank line)."""
    rows = {}
    for line in stdout.split("\n\n")[0].splitlines():
        cells = line.split()
        if len(cells) == 5 and cells[3].isdigit():
            rows[tuple(cells[:3])] = cells[3:]
    return rows


def test_build_and_stats_on_real_samples(shared_data, tmp_path):
    out = tmp_path / "out"
    r = cli("data_pipelines.build", "--format", "pubmedqa", "--input", str(shared_data / "pubmedqa"), "--output", str(out / "pubmedqa"))
    assert r.returncode == 0, r.stderr
    # 142 train items: 8 of them (5%, rounded up) carved into the dev split (data_pipelines/dev_split.py).
    assert table_rows(r.stdout) == {("pubmedqa", "en", "test"): ["158", "0"], ("pubmedqa", "en", "train"): ["134", "0"],
                                    ("pubmedqa", "en", "validation"): ["8", "0"]}
    r = cli("data_pipelines.build", "--format", "mmlu", "--input", str(shared_data / "mmlu_clinical_afr"), "--output", str(out / "mmlu"))
    assert r.returncode == 0, r.stderr
    quarantine_file = out / "mmlu/quarantine.jsonl"
    quarantine = quarantine_file.read_text(encoding="utf-8").splitlines() if quarantine_file.exists() else []
    assert quarantine == []  # every file-name language (11 African languages) is in the registry
    # 9 dev-only languages x 3 subjects x 5 rows, plus zu and am with their own dev rows.
    assert (out / "mmlu/mmlu/nso/train.jsonl").read_text(encoding="utf-8").count("\n") == 15
    assert (out / "mmlu/mmlu/zu/test.jsonl").read_text(encoding="utf-8").count("\n") == 604

    r = cli("data_pipelines.stats", str(out))
    assert r.returncode == 0, r.stderr
    rows = table_rows(r.stdout)
    assert rows[("mmlu", "zu", "test")] == ["604", "0"]
    assert rows[("mmlu", "nso", "train")] == ["15", "0"]
    assert rows[("pubmedqa", "en", "test")] == ["158", "0"]
    total = next(line for line in r.stdout.splitlines() if line.startswith("TOTAL")).split()
    assert total[1:] == [str(300 + 1406 + 105), "0"]
    png = out / "stats.png"
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_strict_cli_names_file_line_and_field(tmp_path):
    src = tmp_path / "test.jsonl"
    good = {"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}
    src.write_text("\n".join(json.dumps(x) for x in [good, good, {**good, "question": " "}]) + "\n", encoding="utf-8")
    r = cli("data_pipelines.build", "--format", "medqa", "--input", str(src), "--output", str(tmp_path / "o"), "--strict")
    assert r.returncode == 1
    assert f"{src}:line 3: field 'question'" in r.stderr
    r = cli("data_pipelines.build", "--format", "medqa", "--input", str(src), "--output", str(tmp_path / "o2"))
    assert r.returncode == 0 and table_rows(r.stdout) == {("medqa", "en", "test"): ["2", "1"]}


def test_cli_field_map_and_language_override(tmp_path):
    src = tmp_path / "rel/GlobMed_MedExpQA/en/train.json"
    src.parent.mkdir(parents=True)
    src.write_text(json.dumps([{"enunciado": "Q?", "opciones": ["a", "b"], "correcta": 1}]), encoding="utf-8")
    fm = json.dumps({"question": "enunciado", "options": "opciones", "answer": "correcta", "answer_format": "index1"})
    out = tmp_path / "out"
    r = cli("data_pipelines.build", "--format", "globmed", "--input", str(tmp_path / "rel"), "--output", str(out),
            "--field-map", fm, "--language", "it")
    assert r.returncode == 0, r.stderr
    rec = json.loads((out / "medexpqa/it/train.jsonl").read_text(encoding="utf-8"))
    assert (rec["answer"], rec["language"], rec["options"]) == ("A", "it", {"A": "a", "B": "b"})
    r = cli("data_pipelines.build", "--format", "globmed", "--input", str(tmp_path / "rel"), "--output", str(out), "--field-map", "{not json")
    assert r.returncode == 2 and "--field-map" in r.stderr


def test_tfds_array_record_through_grain_equals_jsonl(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    r = cli("data_pipelines.build", "--format", "globmed", "--input", str(FIXTURE / "GlobMed_MedQA"), "--output", str(out), "--tfds")
    assert r.returncode == 0, r.stderr
    import grain
    import tensorflow_datasets as tfds

    from globmed_jax.data.records_io import load_records
    from data_pipelines.tfds_builder import example_to_record, load_data_source

    for lang in ("en", "es", "sw"):
        expected = sorted(load_records(out / "medqa" / lang), key=lambda r: r.id)
        assert len(expected) == 2
        src = tfds.data_source(f"glob_med/medqa-{lang}", split="train", data_dir=str(out / "tfds"))
        got = sorted(grain.MapDataset.source(src).map(example_to_record), key=lambda r: r.id)
        assert got == expected
    assert len(load_data_source(out / "tfds", "medqa", "es", "train")) == 2
    assert (out / "tfds/glob_med/medqa-en/1.1.0/glob_med-train.array_record-00000-of-00001").is_file()
