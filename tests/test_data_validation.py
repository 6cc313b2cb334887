"""Validation rules, quarantine counts on planted defects, strict mode."""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib

import pytest

from data_pipelines.build import build
from data_pipelines.importers import ImportOptions
from globmed_jax.data.records_io import load_records
from data_pipelines.validate import ValidationError, check_record, validate_records
from globmed_jax.data.schema import Record

BASE = Record(
    id="medqa:1@en", source_id="medqa:1", dataset="medqa", language="en", split="train", family="mcqa",
    question="Q?", answer="B", options={"A": "x", "B": "y", "C": "z"},
)


@pytest.mark.parametrize(
    "changes, field, reason",
    [
        ({"question": "  "}, "question", "empty question"),
        ({"family": "summarization"}, "family", "unknown task family"),
        ({"language": "xx"}, "language", "unknown language 'xx'"),
        ({"split": "dev"}, "split", "unknown split 'dev'"),
        ({"answer": "D"}, "answer", "answer 'D' not among options ABC"),
        ({"options": {"A": "x"}, "answer": "A"}, "options", "1 option(s)"),
        ({"options": {k: k for k in "ABCDEFGHIJK"}}, "options", "11 option(s)"),
        ({"options": {"A": "x", "C": "z"}, "answer": "A"}, "options", "option letters AC are not AB"),
        ({"options": {"A": "x", "B": " "}}, "options", "empty option text for B"),
        ({"family": "yes_no_maybe", "options": {}, "answer": "perhaps"}, "answer", "label 'perhaps'"),
        ({"family": "nli", "options": {}, "answer": "entails"}, "answer", "label 'entails'"),
        ({"family": "open_qa", "options": {}, "answer": ""}, "answer", "empty answer"),
        ({"family": "open_qa"}, "options", "options given for a open_qa record"),
        ({"id": ""}, "id", "empty id"),
    ],
)
def test_check_record_rules(changes, field, reason):
    issues = check_record(dataclasses.replace(BASE, **changes))
    assert issues and issues[0][0] == field and reason in issues[0][1]


def test_check_record_accepts_good_records():
    assert check_record(BASE) == []
    assert check_record(dataclasses.replace(BASE, options={k: k for k in "ABCDEFGHIJ"}, answer="J")) == []
    for task, answer in (("yes_no_maybe", "maybe"), ("nli", "contradiction"), ("open_qa", "Some text.")):
        assert check_record(dataclasses.replace(BASE, family=task, answer=answer, options={})) == []


def test_validator_duplicates_and_cross_language_alignment():
    es = dataclasses.replace(BASE, id="medqa:1@es", language="es")
    es_split = dataclasses.replace(es, id="medqa:1@fr", language="fr", split="test")
    es_opts = dataclasses.replace(es, id="medqa:1@zh", language="zh", options={"A": "x", "B": "y"})
    es_ds = dataclasses.replace(es, id="medqa:1@ar", language="ar", dataset="headqa")
    kept, bad = validate_records([BASE, BASE, es, es_split, es_opts, es_ds])
    assert kept == [BASE, es]
    assert [(b.field, b.location) for b in bad] == [("id", "record 1"), ("source_id", "record 3"), ("source_id", "record 4"), ("source_id", "record 5")]
    assert "duplicate id 'medqa:1@en'" in bad[0].reason
    assert "split 'test' here but 'train'" in bad[1].reason
    assert "n_options 2 here but 3" in bad[2].reason
    assert "dataset 'headqa' here but 'medqa'" in bad[3].reason


def _mcq(id_: str, question: str = "Q?", n: int = 4, answer: str = "A") -> dict:
    return {"id": id_, "question": question, "options": {"ABCDEFGHIJ"[i]: f"opt {i}" for i in range(n)}, "answer_idx": answer}


def _write(path: pathlib.Path, items: list[dict], lines: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if lines:
        path.write_text("".join(json.dumps(x) + "\n" for x in items), encoding="utf-8")
    else:
        path.write_text(json.dumps(items, indent=1), encoding="utf-8")


def planted_release(root: pathlib.Path) -> pathlib.Path:
    """A GlobMed tree with one planted defect per quarantine reason (12 in all)."""
    _write(root / "GlobMed_MedQA/en/train.json", [
        _mcq("q1"),
        _mcq("q2", question=""),                                   # empty question
        _mcq("q3", answer="E"),                                    # answer not among options
        _mcq("q4", n=1),                                           # 1 option
        {"id": "q5", "question": "Q?", "options": [f"o{i}" for i in range(11)], "answer": 0},  # 11 options
        _mcq("q1"),                                                # duplicate id
        _mcq("q7"),
        _mcq("q8"),
    ])
    _write(root / "GlobMed_MedQA/es/train.json", [_mcq("q1"), _mcq("q7", n=3)], lines=True)  # q7: misaligned options
    _write(root / "GlobMed_MedQA/es/test.json", [_mcq("q8")], lines=True)  # q8: misaligned split
    _write(root / "GlobMed_MedQA/xx/train.json", [_mcq("q1")])  # unknown language
    (root / "GlobMed_MedQA/fr").mkdir(parents=True)
    truncated = json.dumps([_mcq("q1")])[:-1] + ', {"id": "q7", '  # cut inside the 2nd object
    (root / "GlobMed_MedQA/fr/train.json").write_text(truncated, encoding="utf-8")
    (root / "GlobMed_MedQA/fr/test.json").write_bytes(json.dumps([_mcq("q8")]).replace("Q?", "Qu\\u00e9?").encode().replace(b"\\u00e9", b"\xe9"))  # Latin-1 byte
    _write(root / "GlobMed_PubMedQA/en/test.json", [
        {"pubid": 1, "question": "Q?", "context": "c", "final_decision": "yes"},
        {"pubid": 2, "question": "Q?", "context": "c", "final_decision": "perhaps"},  # bad label
    ])
    _write(root / "GlobMed_BioNLI/en/train.json", [
        {"premise": "P", "hypothesis": "H", "label": "neutral"},
        {"premise": "P", "hypothesis": "H2", "label": "unrelated"},  # bad label
    ])
    return root


def test_planted_defects_exact_quarantine(tmp_path):
    out = tmp_path / "out"
    root = planted_release(tmp_path / "rel")
    # Expected position, computed from the planted file: offset of the bad byte (one line).
    bad_byte = (root / "GlobMed_MedQA/fr/test.json").read_bytes().index(0xE9)
    counts = build("globmed", root, out)
    lines = [json.loads(x) for x in (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(set(q) >= {"file", "location", "field", "reason", "raw"} for q in lines)
    got = collections.Counter(
        (str(pathlib.Path(q["file"]).relative_to(tmp_path / "rel")), q["location"], q["field"]) for q in lines
    )
    expected = collections.Counter({
        ("GlobMed_MedQA/en/train.json", "record 1", "question"): 1,
        ("GlobMed_MedQA/en/train.json", "record 2", "answer"): 1,
        ("GlobMed_MedQA/en/train.json", "record 3", "options"): 1,
        ("GlobMed_MedQA/en/train.json", "record 4", "options"): 1,
        ("GlobMed_MedQA/en/train.json", "record 5", "id"): 1,
        ("GlobMed_MedQA/es/train.json", "line 2", "source_id"): 1,
        ("GlobMed_MedQA/es/test.json", "line 1", "source_id"): 1,
        ("GlobMed_MedQA/xx/train.json", "record 0", "language"): 1,
        ("GlobMed_MedQA/fr/train.json", "record 1", "<line>"): 1,  # cut off; record 0 is kept
        ("GlobMed_MedQA/fr/test.json", "record 0", "<line>"): 1,
        ("GlobMed_PubMedQA/en/test.json", "record 1", "answer"): 1,
        ("GlobMed_BioNLI/en/train.json", "record 1", "answer"): 1,
    })
    assert got == expected
    reasons = {(pathlib.Path(q["file"]).parent.name, q["location"]): q["reason"] for q in lines}
    assert "11 option(s)" in reasons[("en", "record 4")] and "1 option(s)" in reasons[("en", "record 3")]
    assert "cut off" in reasons[("fr", "record 1")]
    assert f"invalid UTF-8: byte 0xe9 at line 1 column {bad_byte + 1}" in reasons[("fr", "record 0")]
    # Counts table: kept / quarantined per dataset x language x split, nothing dropped.
    assert counts.kept[("medqa", "en", "train")] == 3 and counts.quarantined[("medqa", "en", "train")] == 5
    assert counts.kept[("medqa", "es", "train")] == 1 and counts.quarantined[("medqa", "es", "test")] == 1
    assert counts.quarantined[("medqa", "fr", "train")] == 1 and counts.quarantined[("medqa", "fr", "test")] == 1
    assert counts.kept[("medqa", "fr", "train")] == 1  # the record before the cut-off one survives
    assert (counts.total_kept, counts.total_quarantined) == (7, 12)
    items_in = 8 + 2 + 1 + 1 + 2 + 1 + 2 + 2  # records in the tree (no file fails as a whole)
    assert counts.total_kept + counts.total_quarantined == items_in
    assert sum(c.seen for c in counts.files.values()) == items_in and counts.files_with_lost_records == []
    table = counts.table()
    assert "TOTAL" in table and "medqa" in table and "quarantined" in table
    kept = load_records(out)
    assert len(kept) == 7 and sorted(r.id for r in kept if r.dataset == "medqa") == [
        "medqa:q1@en", "medqa:q1@es", "medqa:q1@fr", "medqa:q7@en", "medqa:q8@en"]


def test_strict_names_file_record_and_field(tmp_path):
    root = planted_release(tmp_path / "rel")
    with pytest.raises(ValidationError) as e:
        build("globmed", root, tmp_path / "out", strict=True)
    msg = str(e.value)
    assert str(root / "GlobMed_BioNLI/en/train.json") in msg and "record 1" in msg and "field 'answer'" in msg


def test_strict_cut_off_element_names_position(tmp_path):
    root = tmp_path / "rel"
    (root / "GlobMed_LiveQA/en").mkdir(parents=True)
    (root / "GlobMed_LiveQA/en/test.json").write_text('[{"question": "Q?",\n  "answer": "A"},\n  {"question": ', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"GlobMed_LiveQA/en/test\.json:record 1: field '<line>': cut off: the file ends inside this element \(line 3\)"):
        build("globmed", root, tmp_path / "out", strict=True)
    counts = build("globmed", root, tmp_path / "out2")  # non-strict: the first record is kept
    assert (counts.total_kept, counts.total_quarantined) == (1, 1)


def test_strict_file_error_names_position(tmp_path):
    src = tmp_path / "pqal/ori_pqal.json"  # one JSON object keyed by PMID: split only once parsed
    src.parent.mkdir()
    src.write_text('{"1": {"QUESTION": "Q?",\n  "final_decision": ', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"pqal/ori_pqal\.json:line 2 column 21: field '<file>': malformed JSON"):
        build("pubmedqa", src.parent, tmp_path / "out", strict=True)
    counts = build("pubmedqa", src.parent, tmp_path / "out2")  # non-strict: one file error, records lost
    assert (counts.total_kept, counts.total_quarantined) == (0, 1)
    assert counts.files_with_lost_records == [str(src)] and counts.files[str(src)].lost is None


def test_valid_release_fixture_has_no_quarantine(tmp_path):
    fixture = pathlib.Path(__file__).parent / "fixtures/data/globmed_release"
    counts = build("globmed", fixture, tmp_path / "out", ImportOptions())
    assert counts.total_quarantined == 0
    recs = load_records(tmp_path / "out")
    assert len(recs) == counts.total_kept == 27
    by_sid = collections.defaultdict(set)
    for r in recs:
        by_sid[r.source_id].add(r.language)
    assert by_sid["medqa:train:1"] == {"en", "es", "sw"} and by_sid["mmlu_pro:6003"] == {"en", "zh"}
