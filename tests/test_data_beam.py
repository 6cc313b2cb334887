"""The Beam build (DirectRunner) gives the single-process build's outputs, record for record.

Skipped where apache_beam is not importable (CI: the main venv has no beam); ``make test-beam``
runs this file in the overlay venv of docs/data.md. Compared: every JSONL file byte for byte
(records, their order, the dev split), quarantine.jsonl, the manifest (per input file: records
seen = kept + quarantined), the counts tables, and with ``--tfds`` every ArrayRecord split
example by example.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("apache_beam")

from data_pipelines.beam_build import BeamConfig  # noqa: E402
from data_pipelines.build import MANIFEST_NAME, build  # noqa: E402
from test_data_validation import planted_release  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DIRECT = BeamConfig("DirectRunner")


def _files(out: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.jsonl"))}


def _manifest(out: pathlib.Path) -> dict:
    m = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    return m, m.pop("engine")


def _assert_same_build(single: pathlib.Path, beam: pathlib.Path) -> dict:
    a, b = _files(single), _files(beam)
    assert list(a) == list(b)
    for name in a:
        assert a[name] == b[name], name
    (ma, engine_a), (mb, engine_b) = _manifest(single), _manifest(beam)
    assert engine_a == {"runner": "single-process"} and engine_b["runner"] == "beam:DirectRunner"
    assert ma == mb
    for f in mb["files"]:  # the quarantine accounting, per input file
        assert f["seen"] == f["kept"] + f["quarantined"] + f.get("skipped_unknown_language", 0)
    return mb


def test_beam_build_equals_single_process_on_planted_defects(tmp_path):
    root = planted_release(tmp_path / "rel")
    a = build("globmed", root, tmp_path / "single", progress=False)
    b = build("globmed", root, tmp_path / "beam", progress=False, beam=DIRECT)
    m = _assert_same_build(tmp_path / "single", tmp_path / "beam")
    assert m["totals"]["quarantined"] == 12 and b.total_quarantined == 12  # one per planted defect
    assert (a.table(), a.file_table()) == (b.table(), b.file_table())
    assert a.first_bad == b.first_bad and a.files_with_lost_records == b.files_with_lost_records


def _mcq(i: int, lang: str) -> dict:
    return {"id": f"q{i}", "question": f"[{lang}] question {i}?", "options": {k: f"{k}{i}" for k in "ABCD"},
            "answer_idx": "ABCD"[i % 4]}


def _write(path: pathlib.Path, items: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items), encoding="utf-8")


def dev_release(root: pathlib.Path) -> pathlib.Path:
    """Cells that get a dev split (60 train), keep a source dev split, are too small, plus an
    unknown language folder and a duplicate inside one file."""
    for lang in ("en", "fr"):
        _write(root / f"GlobMed_MedQA/{lang}/train.json", [_mcq(i, lang) for i in range(60)] + [_mcq(3, lang)])
        _write(root / f"GlobMed_MedQA/{lang}/test.json", [_mcq(i, lang) for i in range(100, 105)])
    _write(root / "GlobMed_HeadQA/es/train.json", [_mcq(i, "es") for i in range(55)])
    _write(root / "GlobMed_HeadQA/es/dev.json", [_mcq(i, "es") for i in range(200, 203)])
    _write(root / "GlobMed_MedMCQA/en/train.json", [_mcq(i, "en") for i in range(10)])
    _write(root / "GlobMed_MedQA/tlh/train.json", [_mcq(i, "tlh") for i in range(4)])  # not in the registry
    return root


@pytest.mark.parametrize("unknown", ["report", "quarantine"])
def test_beam_build_dev_split_and_unknown_languages(tmp_path, unknown):
    root = dev_release(tmp_path / "rel")
    a = build("globmed", root, tmp_path / "single", progress=False, unknown_languages=unknown)
    b = build("globmed", root, tmp_path / "beam", progress=False, unknown_languages=unknown, beam=DIRECT)
    m = _assert_same_build(tmp_path / "single", tmp_path / "beam")
    dev = m["dev_split"]
    assert dev["carved"] == {"medqa/en": {"dev": 5, "train": 55}, "medqa/fr": {"dev": 5, "train": 55}}
    assert dev["from_source"] == ["headqa/es"] and dev["too_small"] == ["medmcqa/en"]
    assert (a.table(), a.file_table()) == (b.table(), b.file_table())
    if unknown == "report":
        assert m["unknown_languages"] == {"tlh": {"GlobMed_MedQA": 4}}
        assert a.unknown_languages.report() == b.unknown_languages.report()
    else:
        assert m["totals"]["quarantined"] == 2 + 4  # the two duplicates and the four tlh records


def test_beam_tfds_equals_single_process_example_by_example(tmp_path):
    from data_pipelines import tfds_builder

    root = tmp_path / "rel"
    _write(root / "GlobMed_MedQA/en/train.json", [_mcq(i, "en") for i in range(60)])
    _write(root / "GlobMed_MedQA/en/test.json", [_mcq(i, "en") for i in range(100, 110)])
    build("globmed", root, tmp_path / "single", progress=False, tfds=True)
    build("globmed", root, tmp_path / "beam", progress=False, tfds=True, beam=DIRECT)
    _assert_same_build(tmp_path / "single", tmp_path / "beam")
    for split, n in (("train", 55), ("validation", 5), ("test", 10)):
        src_a = tfds_builder.load_data_source(tmp_path / "single" / "tfds", "medqa", "en", split)
        src_b = tfds_builder.load_data_source(tmp_path / "beam" / "tfds", "medqa", "en", split)
        assert len(src_a) == len(src_b) == n
        for i in range(n):  # same records in the same (key-hash) order
            assert tfds_builder.example_to_record(src_a[i]) == tfds_builder.example_to_record(src_b[i]), (split, i)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "data_pipelines.build", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_beam_runner_multiprocess_and_bad_options(tmp_path):
    root = dev_release(tmp_path / "rel")
    build("globmed", root, tmp_path / "single", progress=False)
    r = _cli("--format", "globmed", "--input", str(root), "--output", str(tmp_path / "beam"), "--no-progress",
             "--beam-runner", "DirectRunner",
             "--beam-options", "--direct_num_workers=2 --direct_running_mode=multi_processing")
    assert r.returncode == 0, r.stderr[-3000:]
    m = _assert_same_build(tmp_path / "single", tmp_path / "beam")
    assert _manifest(tmp_path / "beam")[1] == {"runner": "beam:DirectRunner",
                                               "beam_option_names": ["--direct_num_workers", "--direct_running_mode"]}
    assert m["totals"]["kept"] > 0
    bad = _cli("--format", "globmed", "--input", str(root), "--output", str(tmp_path / "bad"),
               "--beam-options", "direct_num_workers=2")
    assert bad.returncode == 2 and "is not a --flag[=value] pipeline option" in bad.stderr
