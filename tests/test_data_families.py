"""Task families: one object per family, bound to its name once; records name theirs as ``family``."""

import json
import pathlib
import re

import pytest

from globmed_jax.data import families, tasks
from globmed_jax.data.schema import Record

OLD_LINE = {"id": "medqa:1@en", "source_id": "medqa:1", "dataset": "medqa", "language": "en", "split": "train",
            "task": "mcqa", "question": "Q?", "answer": "B", "options": {"A": "a", "B": "b"},
            "context": None, "explanation": None, "meta": {}}


def test_old_jsonl_with_task_field_still_loads_and_is_written_back_as_family(tmp_path):
    path = tmp_path / "medqa" / "en" / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(OLD_LINE) + "\n")
    (r,) = tasks.JsonlSource(tmp_path)("train")
    assert r.family == "mcqa" and r == Record.from_json(OLD_LINE)
    written = r.to_json()
    assert written["family"] == "mcqa" and "task" not in written
    assert Record.from_json(written) == r


def test_each_family_is_bound_to_its_name_once():
    assert families.NAMES == ("mcqa", "yes_no_maybe", "nli", "open_qa")
    assert all(families.get_family(n).name == n for n in families.NAMES)
    with pytest.raises(ValueError, match="unknown task family"):
        families.get_family("summarization")


def test_no_family_name_comparisons_outside_families():
    root = pathlib.Path(__file__).resolve().parents[1]
    names = "|".join(families.NAMES)
    pattern = re.compile(rf"""(==|!=|\bin \()\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    hits = [f"{p.relative_to(root)}:{i}" for pkg in ("globmed_jax", "data_pipelines")
            for p in sorted((root / pkg).rglob("*.py")) if p.name != "families.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
