"""The dev split the build carves from train (data_pipelines/dev_split.py), through the CLI."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from data_pipelines.dev_split import DevSplitConfig, choose, rank_key
from globmed_jax.data import mini
from globmed_jax.data.records_io import load_records

REPO = pathlib.Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "data_pipelines.build", "--format", "medqa", "--no-progress", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _mcq(i: int) -> dict:
    return {"question": f"Question number {i}?", "options": {"A": f"x{i}", "B": f"y{i}"}, "answer_idx": "AB"[i % 2]}


def _source(root: pathlib.Path, n_train: int, n_test: int, n_dev: int = 0, bad_train: int = 0) -> pathlib.Path:
    root.mkdir(parents=True)
    splits = {"train": n_train, "test": n_test, "dev": n_dev}
    start = 0
    for split, n in splits.items():
        if not n:
            continue
        lines = [json.dumps(_mcq(start + i)) for i in range(n)]
        if split == "train":
            lines += [json.dumps({**_mcq(0), "question": " "})] * bad_train  # quarantined: empty question
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        start += n
    return root


def _ids(path: pathlib.Path) -> list[str]:
    return [r.id for r in load_records(path)]


def test_dev_split_carved_seeded_disjoint_and_accounted(tmp_path):
    src = _source(tmp_path / "src", n_train=240, n_test=40, bad_train=3)
    out = tmp_path / "out"
    r = cli("--input", str(src), "--output", str(out))
    assert r.returncode == 0, r.stderr
    cell = out / "medqa/en"
    train, dev, test = _ids(cell / "train.jsonl"), _ids(cell / "validation.jsonl"), _ids(cell / "test.jsonl")
    n_dev = min(100, max(5, math.ceil(0.05 * 240)))  # 12: the documented size rule by hand
    assert (len(train), len(dev), len(test)) == (240 - n_dev, n_dev, 40)
    # Nothing duplicated, nothing lost; dev never holds a test item (by id or by source item).
    assert not set(train) & set(dev) and not set(dev) & set(test) and not set(train) & set(test)
    recs = {r.id: r for r in load_records(cell)}
    assert {recs[i].split for i in dev} == {"validation"}
    assert not {recs[i].source_id for i in dev} & {recs[i].source_id for i in test}
    # Exactly the first n_dev by the seeded source-id rank.
    train_recs = [recs[i] for i in train + dev]
    ranked = sorted(train_recs, key=lambda x: rank_key(0, x))
    assert set(dev) == {x.id for x in ranked[:n_dev]}
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["dev_split"]["seed"] == 0
    assert m["dev_split"]["carved"] == {"medqa/en": {"dev": n_dev, "train": 240 - n_dev}}
    assert m["outputs"] == {"medqa/en/test.jsonl": 40, "medqa/en/train.jsonl": 240 - n_dev,
                            "medqa/en/validation.jsonl": n_dev}
    for f in m["files"]:  # per input file: records seen = kept + quarantined still holds
        assert f["seen"] == f["kept"] + f["quarantined"]
    assert sum(f["kept"] for f in m["files"]) == m["totals"]["kept"] == sum(m["outputs"].values()) == 280
    assert m["totals"]["quarantined"] == 3
    # The printed table counts records per split as written.
    table = {tuple(c[:3]): c[3:] for c in (line.split() for line in r.stdout.split("\n\n")[0].splitlines())
             if len(c) == 5 and c[3].isdigit()}
    assert table == {("medqa", "en", "test"): ["40", "0"], ("medqa", "en", "train"): [str(240 - n_dev), "3"],
                     ("medqa", "en", "validation"): [str(n_dev), "0"]}

    # Same seed, same dev; another seed, another dev of the same size.
    again = tmp_path / "again"
    assert cli("--input", str(src), "--output", str(again)).returncode == 0
    assert _ids(again / "medqa/en/validation.jsonl") == dev
    other = tmp_path / "other"
    assert cli("--input", str(src), "--output", str(other), "--dev-seed", "1").returncode == 0
    dev1 = _ids(other / "medqa/en/validation.jsonl")
    assert len(dev1) == n_dev and set(dev1) != set(dev)
    assert json.loads((other / "manifest.json").read_text())["dev_split"]["seed"] == 1

    # --no-dev-split: the source splits only.
    plain = tmp_path / "plain"
    assert cli("--input", str(src), "--output", str(plain), "--no-dev-split").returncode == 0
    assert not (plain / "medqa/en/validation.jsonl").exists() and len(_ids(plain / "medqa/en/train.jsonl")) == 240


def test_source_dev_split_kept_and_small_train_not_carved(tmp_path):
    src = _source(tmp_path / "src", n_train=100, n_test=10, n_dev=7)
    out = tmp_path / "out"
    assert cli("--input", str(src), "--output", str(out)).returncode == 0
    assert len(_ids(out / "medqa/en/train.jsonl")) == 100 and len(_ids(out / "medqa/en/validation.jsonl")) == 7
    m = json.loads((out / "manifest.json").read_text())
    assert m["dev_split"]["from_source"] == ["medqa/en"] and m["dev_split"]["carved"] == {}

    small = _source(tmp_path / "small", n_train=49, n_test=5)
    out = tmp_path / "out_small"
    assert cli("--input", str(small), "--output", str(out)).returncode == 0
    assert len(_ids(out / "medqa/en/train.jsonl")) == 49 and not (out / "medqa/en/validation.jsonl").exists()
    assert json.loads((out / "manifest.json").read_text())["dev_split"]["too_small"] == ["medqa/en"]


def test_size_rule_and_config_checks():
    c = DevSplitConfig()
    assert [c.size(n) for n in (0, 49, 50, 100, 101, 1000, 2000, 10**6)] == [0, 0, 5, 5, 6, 50, 100, 100]
    with pytest.raises(ValueError, match="fraction"):
        DevSplitConfig(fraction=0.0)
    with pytest.raises(ValueError, match="min_train"):
        DevSplitConfig(minimum=30, min_train=50)


def test_rank_by_source_id_aligns_languages():
    """The same source items go to dev in every language of an aligned dataset."""
    recs = mini.generate(mini.MiniConfig(languages=("en", "fr")), "train")
    en = [r for r in recs if r.language == "en" and r.family == "mcqa"]
    fr = [r for r in recs if r.language == "fr" and r.family == "mcqa"]
    cfg = DevSplitConfig()
    by_id = {r.id: r.source_id for r in en + fr}
    assert {by_id[i] for i in choose(en, cfg)} == {by_id[i] for i in choose(fr, cfg)}
