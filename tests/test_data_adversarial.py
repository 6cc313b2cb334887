"""Hostile input for the data import: every planted defect costs exactly its own record.

Each test plants one class of defect (bad line, row, element or byte; hostile values; hostile
names; overlapping paths; a crash mid-write) and asserts the exact outcome: what was kept and
quarantined per file, the error text (file, line/index, field), that nothing outside --output
changed, that no half-written file remains, and that the manifest accounts for every record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pathlib
import subprocess
import sys

import pytest

from data_pipelines import build as build_mod
from data_pipelines.build import MANIFEST_NAME, BuildError, build
from data_pipelines.importers import ImportOptions, import_path
from data_pipelines.importers.base import BadRecord
from data_pipelines.validate import ValidationError
from globmed_jax.data.records_io import RecordWriter, load_records

REPO = pathlib.Path(__file__).resolve().parents[1]
GOOD_MCQ = {"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}


def run(fmt: str, path: pathlib.Path, **opts) -> tuple[list, list[BadRecord]]:
    good, bad = [], []
    for item in import_path(fmt, path, ImportOptions(**opts)):
        (bad if isinstance(item, BadRecord) else good).append(item if isinstance(item, BadRecord) else item[0])
    return good, bad


def quarantine(out: pathlib.Path) -> list[dict]:
    path = out / "quarantine.jsonl"
    return [json.loads(x, parse_constant=_no_constant) for x in path.read_text(encoding="utf-8").splitlines()]


def _no_constant(name: str) -> None:
    raise AssertionError(f"quarantine.jsonl holds the non-JSON constant {name}")


def tree_hash(root: pathlib.Path) -> dict[str, str]:
    """Every file below ``root`` (relative path -> sha256), to prove nothing changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_manifest_accounts(out: pathlib.Path) -> dict:
    m = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    for f in m["files"]:
        assert f["seen"] == f["kept"] + f["quarantined"], f
        data = pathlib.Path(f["path"]).read_bytes()
        assert (f["bytes"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert sum(f["kept"] for f in m["files"]) == m["totals"]["kept"] == sum(m["outputs"].values())
    assert m["version"] and m["tool"] == "data_pipelines.build"
    return m


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_pipelines.build", "--no-progress", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


# --- one bad row, line, element or byte costs only itself --------------------------------


def _mmlu_rows(shared: pathlib.Path) -> list[list[str]]:
    src = shared / "mmlu_clinical_afr/mmlu_cm_ck_vir/clinical_knowledge_test_zu.csv"
    if not src.is_file():  # synthetic stand-in with the same layout (commas, quotes, newlines)
        return [[f"Q{i}, with a comma\nand a second line", "a", "b", "c", "d", "ABCD"[i % 4]] for i in range(240)]
    rows = list(csv.reader(io.StringIO(src.read_text(encoding="utf-8"), newline="")))
    return [r for r in rows if r][:240]


def test_mmlu_csv_with_three_planted_defects_keeps_every_good_row(tmp_path):
    from tests.conftest import SHARED_DATA

    rows = _mmlu_rows(SHARED_DATA)
    assert len(rows) == 240
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    lines_of: list[int] = []  # first line of each written row
    line = 1

    def put(chunk: str) -> None:
        nonlocal line
        lines_of.append(line)
        buf.write(chunk)
        line += chunk.count("\n")

    for i, row in enumerate(rows):
        if i == 30:
            put('"A truncated question, cut off inside its quotes\n')  # defect 1: unbalanced quote
        if i == 100:
            put("Q with a bad byte \udcff here,a,b,c,d,A\n")  # defect 2: invalid UTF-8 (written below)
        if i == 200:
            put("Q with five columns,a,b,c,A\n")  # defect 3: a column missing
        one = io.StringIO(newline="")
        csv.writer(one, lineterminator="\n").writerow(row)
        put(one.getvalue())
    path = tmp_path / "src/clinical_knowledge_test_zu.csv"
    path.parent.mkdir()
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogateescape"))
    defect_lines = [lines_of[30], lines_of[101], lines_of[202]]

    counts = build("mmlu", path.parent, tmp_path / "out")
    assert (counts.total_kept, counts.total_quarantined) == (240, 3)
    q = quarantine(tmp_path / "out")
    assert [(x["location"], x["field"]) for x in q] == [
        (f"line {defect_lines[0]}", "<line>"), (f"line {defect_lines[1]}", "column 1"), (f"line {defect_lines[2]}", "<line>")]
    assert "only its first line is quarantined" in q[0]["reason"]
    assert "invalid UTF-8: byte 0xff" in q[1]["reason"] and "5 columns, expected 6" in q[2]["reason"]
    kept = load_records(tmp_path / "out")
    assert [r.question for r in kept] == [r[0].strip() for r in rows]
    m = assert_manifest_accounts(tmp_path / "out")
    assert [(f["seen"], f["kept"], f["quarantined"], f["lost"]) for f in m["files"]] == [(243, 240, 3, 0)]


def test_jsonl_invalid_utf8_byte_costs_one_line(tmp_path):
    path = tmp_path / "test.jsonl"
    lines = [json.dumps({**GOOD_MCQ, "question": f"Q{i}?"}).encode() for i in range(5)]
    lines[2] = lines[2].replace(b"Q2?", b"Q2\xff?")
    path.write_bytes(b"\n".join(lines) + b"\n")
    good, bad = run("medqa", path)
    assert [r.question for r in good] == ["Q0?", "Q1?", "Q3?", "Q4?"]
    assert [(b.location, b.field) for b in bad] == [("line 3", "<line>")]
    assert bad[0].reason == "invalid UTF-8: byte 0xff at column 17" and "\ufffd" in bad[0].raw


def test_json_array_bad_elements_cost_only_themselves(tmp_path):
    src = tmp_path / "rel/GlobMed_MedQA/en/train.json"
    src.parent.mkdir(parents=True)
    elems = [json.dumps({**GOOD_MCQ, "id": f"q{i}"}) for i in range(4)]
    text = ("[" + elems[0] + ",\n" + '{"id": "bad", "question": "Q?" "options": [1, 2}' + ",\n" + elems[1] + ",\n"
            + '{"id": "q\\"]}, tricky", ' + json.dumps(GOOD_MCQ)[1:] + ",\n,\n" + elems[2] + ",\n" + elems[3][:25])
    src.write_text(text, encoding="utf-8")
    good, bad = run("globmed", tmp_path / "rel")
    assert [r.source_id for r in good] == ["medqa:q0", "medqa:q1", 'medqa:q"]}, tricky', "medqa:q2"]
    assert [(b.location, b.field) for b in bad] == [("record 1", "<line>"), ("record 4", "<line>"), ("record 6", "<line>")]
    assert "Expecting ',' delimiter" in bad[0].reason
    assert bad[1].reason == "empty array element (line 5)"
    assert bad[2].reason == "cut off: the file ends inside this element (line 7)"


def test_deep_nesting_is_a_record_error_not_a_crash(tmp_path):
    path = tmp_path / "test.jsonl"
    deep_line = "[" * 100_000 + "]" * 100_000  # json.loads: RecursionError
    meta_deep = {**GOOD_MCQ, "options": {"A": "x", "B": "y"}, "extra": json.loads("[" * 40 + "]" * 40)}
    path.write_text("\n".join([json.dumps(GOOD_MCQ), deep_line, json.dumps(meta_deep)]) + "\n", encoding="utf-8")
    good, bad = run("medqa", path)
    assert len(good) == 1
    assert [(b.location, b.field) for b in bad] == [("line 2", "<line>"), ("line 3", "extra" + "[0]" * 32)]
    assert bad[0].reason == "JSON nested too deeply to parse" and "nested deeper than 32 levels" in bad[1].reason
    arr = tmp_path / "rel/GlobMed_MedQA/en/train.json"
    arr.parent.mkdir(parents=True)
    arr.write_text("[" + json.dumps(GOOD_MCQ) + ", " + "[" * 5000 + "]" * 5000 + "]", encoding="utf-8")
    good, bad = run("globmed", tmp_path / "rel")
    assert len(good) == 1 and [b.location for b in bad] == ["record 1"] and "5000 levels deep" in bad[0].reason


# --- hostile values: quarantined with the field named, never coerced ---------------------

HOSTILE_INDEX = [  # (raw JSON of answer_index, field, reason fragment); index0 format
    ("1.7", "answer_index", "index 1.7 is a floating-point number"),
    ("2.0", "answer_index", "index 2.0 is a floating-point number"),
    ("1e308", "answer_index", "index 1e+308 is a floating-point number"),
    ("1000000000000000000000000000000", "answer_index", "answer index 1000000000000000000000000000000 out of range"),
    ("true", "answer_index", "boolean answer True"),
    ('"1e3"', "answer_index", "index '1e3' is not an integer"),
    ("Infinity", "answer_index", "non-finite number inf"),
    ("-Infinity", "answer_index", "non-finite number -inf"),
    ("NaN", "answer_index", "non-finite number nan"),
    ("1e400", "answer_index", "non-finite number inf"),
    ("-1", "answer_index", "answer index -1 is negative"),
]


def test_hostile_answer_indices_are_quarantined_by_field(tmp_path):
    src = tmp_path / "rel/GlobMed_MedExpQA/en/train.jsonl"
    src.parent.mkdir(parents=True)
    base = '{"question": "Q?", "options": ["a", "b", "c"], "answer_index": %s}'
    src.write_text("\n".join([base % "1", *(base % raw for raw, _, _ in HOSTILE_INDEX)]) + "\n", encoding="utf-8")
    counts = build("globmed", tmp_path / "rel", tmp_path / "out")
    assert (counts.total_kept, counts.total_quarantined) == (1, len(HOSTILE_INDEX))
    assert load_records(tmp_path / "out")[0].answer == "B"
    q = quarantine(tmp_path / "out")
    for entry, (raw, field, reason) in zip(q, HOSTILE_INDEX):
        assert entry["field"] == field and reason in entry["reason"], (raw, entry)
    assert [e["location"] for e in q] == [f"line {i}" for i in range(2, 2 + len(HOSTILE_INDEX))]


def test_hostile_text_values_are_quarantined_by_field(tmp_path):
    path = tmp_path / "test.jsonl"
    cases = [
        ('{"question": "bad \\ud800 text", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}', "question", "lone surrogate U+D800"),
        ('{"question": "Q?", "options": {"A": "x", "B": "\\udfff"}, "answer_idx": "A"}', "options.B", "lone surrogate U+DFFF"),
        ('{"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A", "meta_info": NaN}', "meta_info", "non-finite number nan"),
        ('{"question": ["a list"], "options": {"A": "x", "B": "y"}, "answer_idx": "A"}', "question", "expected text, got list"),
        ('{"question": true, "options": {"A": "x", "B": "y"}, "answer_idx": "A"}', "question", "expected text, got bool"),
        ('{"question": "Q?", "options": 7, "answer_idx": "A"}', "options", ""),
        ('{"question": 1%s, "options": {"A": "x", "B": "y"}, "answer_idx": "A"}' % ("0" * 5000), "<line>", "unreadable JSON value"),
        ('"just a string"', "<record>", ""),
    ]
    path.write_text("\n".join([json.dumps(GOOD_MCQ), *(c for c, _, _ in cases)]) + "\n", encoding="utf-8")
    counts = build("medqa", path, tmp_path / "out")
    assert (counts.total_kept, counts.total_quarantined) == (1, len(cases))
    q = quarantine(tmp_path / "out")  # strict JSON: no NaN, no unencodable text
    assert [(e["location"], e["field"]) for e in q] == [(f"line {i + 2}", f) for i, (_, f, _) in enumerate(cases)]
    for e, (_, _, reason) in zip(q, cases):
        assert reason in e["reason"], e
    assert_manifest_accounts(tmp_path / "out")


def test_normalized_records_with_wrong_types_do_not_crash(tmp_path):
    good = {"id": "d:1@en", "source_id": "d:1", "dataset": "d", "language": "en", "split": "test", "family": "open_qa",
            "question": "Q?", "answer": "A", "options": {}, "context": None, "explanation": None, "meta": {}}
    bad = [{**good, "id": "d:2@en", "options": ["x", "y"]}, {**good, "id": "d:3@en", "meta": "m"},
           {**good, "id": "d:4@en", "question": 5}, {**good, "id": "d:5@en", "dataset": 5},
           {**good, "id": "d:6@en", "language": "Swahili"}, {**good, "id": "d:7@en", "answer": float("inf")}]
    src = tmp_path / "src/in.jsonl"
    src.parent.mkdir()
    src.write_text("\n".join(json.dumps(x) for x in [good, *bad]) + "\n", encoding="utf-8")
    counts = build("normalized", src, tmp_path / "out")
    assert (counts.total_kept, counts.total_quarantined) == (1, 6)
    assert [e["field"] for e in quarantine(tmp_path / "out")] == ["options", "meta", "question", "dataset", "language", "answer"]


# --- names become path parts: nothing is written outside --output ---------------------------


HOSTILE_NAMES = [
    ("dataset", "../../escaped"), ("dataset", "/abs/path"), ("dataset", "a/b"), ("dataset", ".."), ("dataset", ".hidden"),
    ("dataset", "UPPER"), ("dataset", "x" * 65), ("dataset", "a..b"), ("dataset", "nul\x00byte"),
    ("language", "../en"), ("language", "en/../../x"), ("split", "../../test"), ("split", "test/../../x"),
]


def test_hostile_names_cannot_write_outside_output(tmp_path):
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    (sibling / "keep.jsonl").write_text("precious\n", encoding="utf-8")
    before = tree_hash(sibling)
    good = {"id": "d:1@en", "source_id": "d:1", "dataset": "d", "language": "en", "split": "test", "family": "open_qa",
            "question": "Q?", "answer": "A"}
    recs = [good, *({**good, "id": f"d:{i}@en", "source_id": f"d:{i}", key: value}
                    for i, (key, value) in enumerate(HOSTILE_NAMES, start=2))]
    src = tmp_path / "src/in.jsonl"
    src.parent.mkdir()
    src.write_text("\n".join(json.dumps(x) for x in recs) + "\n", encoding="utf-8")
    out = tmp_path / "deep/a/out"
    counts = build("normalized", src, out)
    assert (counts.total_kept, counts.total_quarantined) == (1, len(HOSTILE_NAMES))
    assert [e["field"] for e in quarantine(out)] == [k for k, _ in HOSTILE_NAMES]
    assert tree_hash(sibling) == before
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"sibling/keep.jsonl", "src/in.jsonl", "deep/a/out/d/en/test.jsonl",
                       "deep/a/out/quarantine.jsonl", "deep/a/out/manifest.json"}


def test_symlink_in_output_cannot_redirect_writes(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "medqa").symlink_to(outside, target_is_directory=True)
    src = tmp_path / "src/test.jsonl"
    src.parent.mkdir()
    src.write_text(json.dumps(GOOD_MCQ) + "\n", encoding="utf-8")
    counts = build("medqa", src, out)
    assert (counts.total_kept, counts.total_quarantined) == (0, 1)
    [entry] = quarantine(out)
    assert entry["field"] == "<output>" and "outside" in entry["reason"] and entry["location"] == "line 1"
    assert list(outside.rglob("*")) == []


def test_writer_refuses_unsafe_names_directly(tmp_path):
    from globmed_jax.data.schema import Record

    r = Record(id="x", source_id="x", dataset="../x", language="en", split="test", family="open_qa", question="Q", answer="A")
    with pytest.raises(ValueError, match="dataset '../x' is not a valid name"):
        with RecordWriter(tmp_path / "out") as w:
            w.write(r)
    assert not (tmp_path / "x").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["same", "output_inside_input", "input_inside_output"])
def test_overlapping_input_and_output_are_refused(tmp_path, layout):
    data = tmp_path / "data"
    src = data / "test.jsonl"
    data.mkdir()
    src.write_text(json.dumps(GOOD_MCQ) + "\n", encoding="utf-8")
    inp, out = {"same": (data, data), "output_inside_input": (data, data / "out"),
                "input_inside_output": (src, tmp_path)}[layout]
    before = tree_hash(tmp_path)
    with pytest.raises(BuildError, match="overlaps --input"):
        build("medqa", inp, out)
    assert tree_hash(tmp_path) == before
    r = cli("--format", "medqa", "--input", str(inp), "--output", str(out))
    assert r.returncode == 2 and "overlaps --input" in r.stderr and "Traceback" not in r.stderr
    assert tree_hash(tmp_path) == before


# --- atomic outputs: an interrupted build leaves the previous files, never half a file -------


def test_crash_mid_build_leaves_previous_outputs_whole(tmp_path, monkeypatch):
    src = tmp_path / "src/test.jsonl"
    src.parent.mkdir()
    src.write_text("\n".join(json.dumps({**GOOD_MCQ, "question": f"Q{i}?"}) for i in range(50)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    build("medqa", src, out)
    before = tree_hash(out)
    assert set(before) == {"medqa/en/test.jsonl", "quarantine.jsonl", "manifest.json"}
    src.write_text("\n".join(json.dumps({**GOOD_MCQ, "question": f"New {i}?"}) for i in range(50)) + "\n", encoding="utf-8")
    real_write, n = RecordWriter.write, [0]

    def crash_after_20(self, record):
        n[0] += 1
        if n[0] > 20:
            raise KeyboardInterrupt("simulated crash mid-write")
        real_write(self, record)

    monkeypatch.setattr(RecordWriter, "write", crash_after_20)
    with pytest.raises(KeyboardInterrupt):
        build("medqa", src, out)
    assert tree_hash(out) == before  # no half file, no temporary left behind
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

    monkeypatch.setattr(RecordWriter, "write", real_write)
    monkeypatch.setattr(build_mod, "write_manifest", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        build("medqa", src, out)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert (out / "medqa/en/test.jsonl").read_text(encoding="utf-8").count("New ") == 50  # whole, not half


def test_stats_png_is_written_atomically(tmp_path, monkeypatch):
    import matplotlib.figure

    from data_pipelines import stats

    png = tmp_path / "stats.png"
    png.write_bytes(b"old chart")

    def half_then_crash(self, fname, **kw):
        pathlib.Path(fname).write_bytes(b"\x89PNG half")
        raise RuntimeError("crash while saving")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_then_crash)
    with pytest.raises(RuntimeError):
        stats.plot({("d", "en", "test"): 3}, png)
    assert png.read_bytes() == b"old chart" and sorted(p.name for p in tmp_path.iterdir()) == ["stats.png"]


# --- accounting and exit status ---------------------------------------------------------


def test_manifest_and_exit_status(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_test.jsonl").write_text(json.dumps(GOOD_MCQ) + "\n{broken\n", encoding="utf-8")
    r = cli("--format", "medqa", "--input", str(src), "--output", str(tmp_path / "o1"))
    assert r.returncode == 0, r.stderr  # record-level quarantine only: not fatal without --strict
    m = assert_manifest_accounts(tmp_path / "o1")
    assert [(f["seen"], f["kept"], f["quarantined"], f["lost"]) for f in m["files"]] == [(2, 1, 1, 0)]
    assert m["format"] == "medqa" and m["outputs"] == {"medqa/en/test.jsonl": 1}
    assert f"{src / 'a_test.jsonl'}  " in r.stdout and "lost" in r.stdout  # the per-file table

    r = cli("--format", "medqa", "--input", str(src), "--output", str(tmp_path / "o2"), "--strict")
    assert r.returncode == 1 and f"{src / 'a_test.jsonl'}:line 2: field '<line>'" in r.stderr
    assert (tmp_path / "o2/manifest.json").is_file()  # written in full, then the failure reported

    (src / "no_split.jsonl").write_text(json.dumps(GOOD_MCQ) + "\n", encoding="utf-8")  # whole file rejected
    r = cli("--format", "medqa", "--input", str(src), "--output", str(tmp_path / "o3"))
    assert r.returncode == 1 and "records lost (number unknown)" in r.stderr and "no_split.jsonl" in r.stderr
    m = assert_manifest_accounts(tmp_path / "o3")
    lost = {pathlib.Path(f["path"]).name: f["lost"] for f in m["files"]}
    assert lost == {"a_test.jsonl": 0, "no_split.jsonl": None}
    assert m["totals"]["files_with_lost_records"] == [str(src / "no_split.jsonl")]


def test_strict_build_raises_after_writing_everything(tmp_path):
    src = tmp_path / "test.jsonl"
    src.write_text(json.dumps(GOOD_MCQ) + "\n" + json.dumps({**GOOD_MCQ, "answer_idx": "Z"}) + "\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"test\.jsonl:line 2: field 'answer'.*\(1 quarantined in all\)"):
        build("medqa", src, tmp_path / "out", strict=True)
    assert len(load_records(tmp_path / "out")) == 1 and len(quarantine(tmp_path / "out")) == 1
