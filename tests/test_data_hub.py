"""Import from the Hugging Face Hub, offline: the test builds a dataset cache in the hub layout
(``datasets--org--name/snapshots/<commit>/...`` + ``refs/main``) under a temporary HF_HOME and runs
the build CLI in a subprocess with HF_HUB_OFFLINE=1 (huggingface_hub reads the env at import)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from data_pipelines import hub

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMIT_MEDQA = "a" * 40
COMMIT_PUBMEDQA = "b" * 40


def _mcq(i: int) -> dict:
    return {"id": f"q{i}", "question": f"Question {i}?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
            "answer_idx": "ABCD"[i % 4]}


def _put(snapshot: pathlib.Path, rel: str, items: list[dict], lines: bool = False) -> None:
    path = snapshot / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(x) + "\n" for x in items) if lines else json.dumps(items)
    path.write_text(text, encoding="utf-8")


def hub_cache(hf_home: pathlib.Path) -> pathlib.Path:
    """Two GlobMed dataset repos in the hub cache layout: MedQA (en 5+2, es 5, one known language
    by English name 'French' 3, unknown 'tl' 4 + 1 and 'Tagalog'-free 'qu' 2) and PubMedQA (en 3,
    unknown 'qu' 6)."""
    cache = hf_home / "hub"
    medqa = cache / "datasets--ruiyang-medinfo--GlobMed_MedQA"
    snap = medqa / "snapshots" / COMMIT_MEDQA
    _put(snap, "en/train.json", [_mcq(i) for i in range(5)])
    _put(snap, "en/test.json", [_mcq(i) for i in range(5, 7)], lines=True)
    _put(snap, "es/train.json", [_mcq(i) for i in range(5)])
    _put(snap, "French/train.json", [_mcq(i) for i in range(3)])
    _put(snap, "tl/train.json", [_mcq(i) for i in range(4)])
    _put(snap, "tl/test.json", [_mcq(i) for i in range(5, 6)])
    _put(snap, "qu/train.json", [_mcq(i) for i in range(2)])
    (snap / "README.md").write_text("# card\n")  # not a data file: never imported
    (medqa / "refs").mkdir(parents=True)
    (medqa / "refs" / "main").write_text(COMMIT_MEDQA)
    pub = cache / "datasets--ruiyang-medinfo--GlobMed_PubMedQA"
    snap = pub / "snapshots" / COMMIT_PUBMEDQA
    _put(snap, "en/test.json", [{"pubid": i, "question": f"Q{i}?", "context": "c", "final_decision": "yes"}
                                for i in range(3)])
    _put(snap, "qu/test.json", [{"pubid": i, "question": f"Q{i}?", "context": "c", "final_decision": "no"}
                                for i in range(6)])
    (pub / "refs").mkdir(parents=True)
    (pub / "refs" / "main").write_text(COMMIT_PUBMEDQA)
    return cache


def run_build(hf_home: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "data_pipelines.build", "--format", "globmed", "--no-progress", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _jsonl_ids(path: pathlib.Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_parse_hub_inputs():
    assert hub.parse_hub_inputs("hf://ruiyang-medinfo/GlobMed_MedQA") == [("ruiyang-medinfo/GlobMed_MedQA", None)]
    assert hub.parse_hub_inputs(["hf://a/b@v1.0,hf://c/d", "hf://a/b@v1.0"]) == [("a/b", "v1.0"), ("c/d", None)]
    whole = hub.parse_hub_inputs("hf://globmed")
    assert len(whole) == 10 and ("ruiyang-medinfo/GlobMed_MMLU-Pro", None) in whole
    assert hub.is_hub_input(["hf://a/b", "hf://c/d"]) and not hub.is_hub_input(["hf://a/b", "local/dir"])
    for bad in ("hf://noslash", "hf://a/../b", "hf://a/b,local"):
        with pytest.raises(hub.HubInputError):
            hub.parse_hub_inputs(bad)


def test_build_from_hub_cache_offline(tmp_path):
    hf_home = tmp_path / "hf"
    hub_cache(hf_home)
    out = tmp_path / "out"
    r = run_build(hf_home, "--input", "hf://ruiyang-medinfo/GlobMed_MedQA", "hf://ruiyang-medinfo/GlobMed_PubMedQA",
                  "--output", str(out))
    assert r.returncode == 0, r.stderr
    # every known language folder imported, languages by name resolved to their code
    assert _jsonl_ids(out / "medqa/en/train.jsonl") == [f"medqa:q{i}@en" for i in range(5)]
    assert _jsonl_ids(out / "medqa/en/test.jsonl") == [f"medqa:q{i}@en" for i in (5, 6)]
    assert len(_jsonl_ids(out / "medqa/es/train.jsonl")) == 5
    assert len(_jsonl_ids(out / "medqa/fr/train.jsonl")) == 3
    assert len(_jsonl_ids(out / "pubmedqa/en/test.jsonl")) == 3
    assert not (out / "medqa/tl").exists() and not (out / "medqa/qu").exists()
    # unknown languages: not quarantined record by record, reported once each with counts and a hint
    assert (out / "quarantine.jsonl").read_text() == ""
    report = [line for line in r.stdout.splitlines() if "not in the language registry" in line]
    assert len(report) == 2, r.stdout
    qu, tl = sorted(report)
    assert "'qu'" in qu and "8 records skipped" in qu and "GlobMed_MedQA 2" in qu and "GlobMed_PubMedQA 6" in qu
    assert "'tl'" in tl and "5 records skipped" in tl and "languages.py" in tl
    assert r.stderr.count("'tl' is not in the language registry") == 1  # logged once, not per record
    m = json.loads((out / "manifest.json").read_text())
    assert m["unknown_languages"] == {"qu": {"GlobMed_MedQA": 2, "GlobMed_PubMedQA": 6}, "tl": {"GlobMed_MedQA": 5}}
    assert m["totals"] == {"kept": 18, "quarantined": 0, "files_with_lost_records": [], "skipped_unknown_language": 13}
    assert {h["repo_id"]: h["commit"] for h in m["hub"]} == {
        "ruiyang-medinfo/GlobMed_MedQA": COMMIT_MEDQA, "ruiyang-medinfo/GlobMed_PubMedQA": COMMIT_PUBMEDQA}
    assert sum(f["seen"] for f in m["files"]) == 18 + 13
    assert not any(f["path"].endswith("README.md") for f in m["files"])
    assert "18 kept, 0 quarantined, 13 skipped (unknown language)" in r.stdout


def test_hub_quarantine_mode_and_missing_repo(tmp_path):
    hf_home = tmp_path / "hf"
    hub_cache(hf_home)
    r = run_build(hf_home, "--input", "hf://ruiyang-medinfo/GlobMed_MedQA", "--unknown-languages", "quarantine",
                  "--output", str(tmp_path / "q"))
    assert r.returncode == 0, r.stderr
    quarantined = [json.loads(line) for line in (tmp_path / "q/quarantine.jsonl").read_text().splitlines()]
    assert sorted({q["language"] for q in quarantined}) == ["qu", "tl"] and len(quarantined) == 7
    # not in the cache, offline: a clear error, exit 2, nothing written
    r = run_build(hf_home, "--input", "hf://ruiyang-medinfo/GlobMed_HeadQA", "--output", str(tmp_path / "none"))
    assert r.returncode == 2
    assert "not in the local Hugging Face cache" in r.stderr and "hf download --repo-type dataset" in r.stderr
    assert not (tmp_path / "none").exists()
    # the whole collection by its short name: the same error for the first repo not cached
    r = run_build(hf_home, "--input", "hf://globmed", "--output", str(tmp_path / "all"))
    assert r.returncode == 2 and "GlobMed_BioNLI" in r.stderr
