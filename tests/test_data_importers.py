"""Importers on the real samples in /work/shared/data and on small files written here.

Expected counts come from independent sources (the sample README, raw-text counts, the
datasets' own gold files), not from the importer's own parsing.
"""

from __future__ import annotations

import collections
import csv
import json
import pathlib
import re

from data_pipelines.importers import BadRecord, ImportOptions, Location, import_path
from data_pipelines.importers.base import FILE_FIELD
from data_pipelines.importers.headqa import read_gold
from data_pipelines.validate import check_record
from globmed_jax.data.schema import Record


def run(fmt: str, path: pathlib.Path, **opts) -> tuple[list[Record], list[BadRecord]]:
    good: list[Record] = []
    bad: list[BadRecord] = []
    for item in import_path(fmt, path, ImportOptions(**opts)):
        if isinstance(item, BadRecord):
            bad.append(item)
        else:
            rec, loc = item
            assert isinstance(loc, Location) and loc.file and loc.where
            good.append(rec)
    return good, bad


def write_json(path: pathlib.Path, obj) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def write_lines(path: pathlib.Path, objs) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    return path


# --- real samples -----------------------------------------------------------------------


def test_medqa_afrimed_csv(shared_data):
    path = shared_data / "medqa_usmle_4opt/data/MedQA-USMLE-4-options-test.csv"
    good, bad = run("medqa", path)
    assert (len(good), len(bad)) == (300, 0)  # README: first 300 of 1273
    first = good[0]
    assert first.question.startswith("A junior orthopaedic surgery resident")
    assert first.answer == "B" and first.options["B"] == "Tell the attending that he cannot fail to disclose this mistake"
    assert (first.split, first.language, first.source_id) == ("test", "en", "medqa:test:0")
    # Gold check against the export's own text column, read with the csv module.
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r.options[r.answer] for r in good] == [row["answer_words"] for row in rows]
    assert collections.Counter(r.answer for r in good) == collections.Counter(row["correct_answer"] for row in rows)


def test_medqa_original_jsonl_aligns_with_csv_export(tmp_path):
    rows = [
        {"question": "Q0?", "answer": "Tell the attending", "options": {"A": "Disclose", "B": "Tell the attending", "C": "Report", "D": "Refuse"}, "meta_info": "step1", "answer_idx": "B"},
        {"question": "Q1?", "answer": "x", "options": {"A": "x", "B": "y"}, "meta_info": "step1", "answer_idx": "A"},
        {"question": "Q2?", "answer": "y", "options": {"A": "x", "B": "y"}, "meta_info": "step1", "answer_idx": "A"},  # text disagrees
    ]
    good, bad = run("medqa", write_lines(tmp_path / "US" / "test.jsonl", rows))
    assert [r.answer for r in good] == ["B", "A"]
    assert good[0].source_id == "medqa:test:0"  # same source_id as the CSV export's row 0
    assert [(b.field, b.location) for b in bad] == [("answer", "line 3")]


def test_headqa_dev_es_en(shared_data):
    good, bad = run("headqa", shared_data / "head_qa")
    assert bad == []
    by_lang = collections.defaultdict(list)
    for r in good:
        by_lang[r.language].append(r)
    assert {k: len(v) for k, v in by_lang.items()} == {"es": 1366, "en": 1366}  # README: whole dev split
    assert {r.split for r in good} == {"validation"}
    # Independent gold: every "ra" in the raw text, in file order (ra is a 1-based aid string).
    for lang, name in (("es", "HEAD/dev_HEAD.json"), ("en", "HEAD_EN/dev_HEAD_EN.json")):
        raw = (shared_data / "head_qa" / name).read_text(encoding="utf-8")
        ras = re.findall(r'"ra": "(\d)"', raw)
        assert len(ras) == 1366
        assert [r.answer for r in by_lang[lang]] == ["ABCDE"[int(a) - 1] for a in ras]
    # es and en are translations: same source ids, same answers.
    es = {r.source_id: r.answer for r in by_lang["es"]}
    en = {r.source_id: r.answer for r in by_lang["en"]}
    assert es == en
    q1 = next(r for r in by_lang["en"] if r.source_id == "headqa:Cuaderno_2015_1_B:1")
    assert q1.answer == "D" and q1.options["D"] == "The Nernst equation."
    assert sum(1 for r in by_lang["es"] if r.meta.get("image")) == 30  # README: 30 reference an image


def test_headqa_gold_file_cross_check(shared_data, tmp_path):
    """The sample's .gold covers exam Cuaderno_2013_1_M, which is not in the dev JSON, so a
    small exam file is written for that exam with ra taken from the real gold file, plus one
    planted disagreement."""
    gold = read_gold(shared_data / "head_qa/HEAD/Cuaderno_2013_1_M.gold")
    assert len(gold) == 227 and gold["3"] == "4"
    data = []
    for qid in ("1", "2", "3", "4", "5"):
        ra = gold[qid] if qid != "5" else str(int(gold[qid]) % 5 + 1)  # qid 5: planted wrong ra
        data.append({"qid": qid, "qtext": f"Pregunta {qid}", "ra": ra, "image": "",
                     "answers": [{"aid": a, "atext": f"Respuesta {a}"} for a in range(1, 6)]})
    (tmp_path / "Cuaderno_2013_1_M.gold").write_bytes((shared_data / "head_qa/HEAD/Cuaderno_2013_1_M.gold").read_bytes())
    write_json(tmp_path / "test_HEAD.json", {"version": "1.0", "language": "es", "exams": {
        "Cuaderno_2013_1_M": {"name": "Cuaderno_2013_1_M", "category": "medicine", "year": "2013", "data": data}}})
    good, bad = run("headqa", tmp_path / "test_HEAD.json")
    assert [r.answer for r in good] == ["ABCDE"[int(gold[q]) - 1] for q in ("1", "2", "3", "4")]
    assert len(bad) == 1 and bad[0].field == "ra" and "Cuaderno_2013_1_M.gold" in bad[0].reason


def test_mmlu_african_csv(shared_data):
    folder = shared_data / "mmlu_clinical_afr/mmlu_cm_ck_vir"
    good, bad = run("mmlu", folder)
    # README: zu/am test 265+173+166, val 29+22+18, dev 5 per subject; 9 more languages dev only.
    expected = {("zu", "test"): 604, ("am", "test"): 604, ("zu", "validation"): 69, ("am", "validation"): 69}
    for lang in ("af", "am", "bm", "ig", "nso", "sn", "st", "tn", "ts", "xh", "zu"):
        expected[(lang, "train")] = 15
    assert bad == []
    assert dict(collections.Counter((r.language, r.split) for r in good)) == expected
    # Codes missing from the language registry (af, bm, nso, ...) pass through unchanged;
    # validation quarantines them (tests/test_data_build_cli.py).
    assert {r.language for r in good} == {lang for lang, _ in expected}
    # Gold: last CSV column of every row, read independently.
    zu = [r for r in good if r.language == "zu" and r.meta["subject"] == "virology" and r.split == "test"]
    with (folder / "virology_test_zu.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert [r.answer for r in zu] == [row[5] for row in rows]
    assert [r.options["C"] for r in zu] == [row[3].strip() for row in rows]  # importer strips
    # zu and am are translations of the same items: aligned source ids.
    assert {r.source_id for r in good if r.language == "zu"} == {r.source_id for r in good if r.language == "am"}


def test_mmlu_pro_health(shared_data):
    path = shared_data / "mmlu_pro_health/model_outputs_gemini-1.5-pro-002_5shots.health_subset.json"
    good, bad = run("mmlu_pro", path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert (len(good), len(bad)) == (200, 0) and len(raw) == 200
    assert [r.answer for r in good] == ["ABCDEFGHIJ"[x["answer_index"]] for x in raw]
    assert [len(r.options) for r in good] == [len(x["options"]) for x in raw]
    assert min(len(r.options) for r in good) >= 3 and max(len(r.options) for r in good) == 10
    for r in good:
        assert r.meta["category"] == "health" and "pred" not in r.meta and "model_outputs" not in r.meta
    assert good[0].answer == "I" and good[0].options["I"] == "The botanist Dmitri Iwanowsky"


def test_pubmedqa_splits_follow_ground_truth(shared_data):
    good, bad = run("pubmedqa", shared_data / "pubmedqa")
    assert (len(good), len(bad)) == (300, 0)
    truth = json.loads((shared_data / "pubmedqa/test_ground_truth.json").read_text())
    test = [r for r in good if r.split == "test"]
    assert len(test) == 158  # README: 158 of the 500 test PMIDs fall in the 300-record subset
    assert all(r.answer == truth[r.meta["pmid"]] for r in test)
    assert {r.split for r in good} == {"test", "train"}
    r0 = next(r for r in good if r.meta["pmid"] == "21645374")
    assert r0.answer == "yes" and r0.question.startswith("Do mitochondria play a role")
    assert r0.context.startswith("Programmed cell death (PCD)") and r0.explanation.startswith("Results depicted")


def test_liveqa_both_xml_files(shared_data):
    folder = shared_data / "liveqa_trec2017/TestDataset"
    for name in ("TREC-2017-LiveQA-Medical-Test.xml", "TREC-2017-LiveQA-Medical-Test-Questions-w-summaries.xml"):
        raw = (folder / name).read_text(encoding="utf-8")
        good, bad = run("liveqa", folder / name)
        assert (len(good), len(bad)) == (raw.count("<NLM-QUESTION "), 0) == (104, 0)
        for r in good:
            assert "\t" not in r.answer and "\n" not in r.answer and "  " not in r.answer
        tq1 = good[0]
        assert tq1.question == "Noonan syndrome\nWhat are the references with noonan syndrome and polycystic renal disease"
        assert tq1.answer.startswith("Noonan's syndrome is an eponymic designation")
        tq2 = good[1]  # qFile spelling + <ReferenceAnswer> element name
        assert tq2.meta["qfile"] == "1-136931717.xml.txt"
        assert tq2.answer.startswith("Zolmitriptan tablets are available as 2.5 mg")
    good, _ = run("liveqa", folder / "TREC-2017-LiveQA-Medical-Test-Questions-w-summaries.xml", question_source="summary")
    assert good[0].question == "What is the relationship between Noonan syndrome and polycystic renal disease?"


def test_expertqa_answers_and_r1_quarantine(shared_data):
    good, bad = run("expertqa", shared_data / "expertqa")
    assert (len(good), len(bad)) == (51, 150)
    assert all(b.file.endswith("r1_data_anon.jsonl") and b.field == "answers" and "empty 'answers'" in b.reason for b in bad)
    lines = [json.loads(x) for x in (shared_data / "expertqa/lfqa/domain_test.jsonl").read_text().splitlines()]
    expected = [next(iter(x["answers"].values()))["revised_answer_string"].strip() for x in lines]
    assert [r.answer for r in good] == expected
    assert {r.dataset for r in good} == {"expertqa_med"} and {r.split for r in good} == {"test"}


def test_xmedbench_files(shared_data):
    folder = shared_data / "xmedbench/metadata"
    good, bad = run("xmedbench", folder)
    assert bad == []
    expected = {("ar", "test"): 300, ("es", "test"): 300, ("fr", "test"): 321, ("hi", "test"): 300,
                ("zh", "test"): 300, ("en", "validation"): 416}
    assert dict(collections.Counter((r.language, r.split) for r in good)) == expected
    for split, lang in (("test", "es"), ("dev", "en"), ("test", "zh")):
        raw = json.loads((folder / split / f"{lang}.json").read_text(encoding="utf-8"))
        recs = [r for r in good if r.language == lang]
        assert [f"({r.answer})" for r in recs] == [x["answer"] for x in raw]
        assert [len(r.options) for r in recs] == [x["options"].count("\n(") + 1 for x in raw]
    es0 = next(r for r in good if r.language == "es")
    assert es0.options == {"A": "Fibronectina..", "B": "Colágeno..", "C": "Integrinas..", "D": "Proteoglucanos.."}
    assert es0.answer == "B"
    pub = [r for r in good if r.meta.get("source") == "pubmedqa"]
    assert len(pub) == 53 and all(list(r.options) == ["A", "B", "C"] and r.context for r in pub)


def test_frenchmedmcqa_multi_answer_quarantined(shared_data):
    path = shared_data / "frenchmedmcqa/corpus/dev.json"
    good, bad = run("frenchmedmcqa", path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    single = [x for x in raw if x["nbr_correct_answers"] == 1]
    assert (len(good), len(bad)) == (len(single), len(raw) - len(single)) == (164, 148)
    assert all("multiple correct answers" in b.reason and b.field == "correct_answers" for b in bad)
    assert [r.answer for r in good] == [x["correct_answers"][0].upper() for x in single]
    assert good[0].answer == "E" and good[0].options["E"] == "Cétogénèse" and good[0].language == "fr"


# --- formats without a real sample: files written here -----------------------------------


def test_medmcqa_cop_bases(tmp_path):
    rows = [
        {"id": "a1", "question": "Q1", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 1, "exp": "because"},
        {"id": "a2", "question": "Q2", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 4},
        {"id": "a3", "question": "Q3", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 0},
        {"id": "a4", "question": "Q4", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": -1},
    ]
    path = write_lines(tmp_path / "dev.json", rows)  # original release: JSON lines in .json
    good, bad = run("medmcqa", path)
    assert [(r.id, r.answer, r.split) for r in good] == [("medmcqa:a1@en", "A", "validation"), ("medmcqa:a2@en", "D", "validation")]
    assert good[0].explanation == "because"
    assert [(b.location, b.field) for b in bad] == [("line 3", "cop"), ("line 4", "cop")]
    good0, bad0 = run("medmcqa", path, cop_base=0)
    assert [r.answer for r in good0] == ["B", "A"]  # cop 4 is out of range 0-based; -1 unlabelled
    assert len(bad0) == 2


def test_bionli_jsonl_and_csv(tmp_path):
    write_lines(tmp_path / "train.jsonl", [
        {"premise": "P1", "hypothesis": "H1", "label": "entailment"},
        {"premise": "P2", "hypothesis": "H2", "label": "CONTRADICTION"},
        {"premise": "P3", "hypothesis": "", "label": "neutral"},
    ])
    (tmp_path / "test.csv").write_text("id,premise,hypothesis,label\nx1,P4,H4,neutral\nx2,P5,H5,entails\n", encoding="utf-8")
    good, bad = run("bionli", tmp_path)
    assert [(r.split, r.context, r.question, r.answer) for r in good] == [
        ("test", "P4", "H4", "neutral"), ("test", "P5", "H5", "entailment"),
        ("train", "P1", "H1", "entailment"), ("train", "P2", "H2", "contradiction")]
    assert good[0].source_id == "bionli:x1"
    assert [(b.field, b.reason) for b in bad] == [("hypothesis", "empty")]


def test_medexpqa_languages_aligned(tmp_path):
    def item(lang: str, q: str) -> dict:
        return {"id": 7, "year": 2013, "full_question": q, "full_answer": f"explanation {lang}", "type": "CARDIOLOGY",
                "options": {"1": "uno", "2": "dos", "3": "tres", "4": "cuatro", "5": ""}, "correct_option": 3, "lang": lang}
    write_lines(tmp_path / "en" / "test.en.casimedicos.rag.jsonl", [item("en", "Question?")])
    write_lines(tmp_path / "es" / "test.es.casimedicos.rag.jsonl", [item("es", "¿Pregunta?"), {**item("es", "Q"), "id": 8, "correct_option": 5}])
    good, bad = run("medexpqa", tmp_path)
    assert bad == []
    assert [(r.language, r.source_id, r.answer, list(r.options)) for r in good] == [
        ("en", "medexpqa:7", "C", ["A", "B", "C", "D"]), ("es", "medexpqa:7", "C", ["A", "B", "C", "D"]),
        ("es", "medexpqa:8", "E", ["A", "B", "C", "D"])]
    assert good[0].explanation == "explanation en" and good[0].split == "test"
    # correct_option 5 points at the removed empty padding option: validation rejects it.
    assert check_record(good[2]) == [("answer", "answer 'E' not among options ABCD")]


# --- globmed release layout ----------------------------------------------------------------


def _release(root: pathlib.Path) -> pathlib.Path:
    """A tiny GlobMed release: JSON array and JSON lines files, three languages."""
    opts = {"A": "Croup", "B": "Asthma", "C": "Epiglottitis"}
    write_json(root / "GlobMed_MedQA/en/train.json", [
        {"question": "Barking cough?", "options": opts, "answer_idx": "A", "answer": "Croup"},
        {"question": "Drooling and tripod position?", "options": opts, "answer": "Epiglottitis"}])  # answer as text
    write_lines(root / "GlobMed_MedQA/es/train.json", [
        {"question": "¿Tos perruna?", "options": {"A": "Crup", "B": "Asma", "C": "Epiglotitis"}, "answer_idx": "A"},
        {"question": "¿Babeo?", "options": {"A": "Crup", "B": "Asma", "C": "Epiglotitis"}, "answer_idx": "C"}])
    write_lines(root / "GlobMed_MedQA/Swahili/train.jsonl", [
        {"question": "Kikohozi?", "options": ["a", "b", "c"], "answer": 0},
        {"question": "Mate?", "options": ["a", "b", "c"], "answer": 2}])
    write_json(root / "GlobMed_MMLU-Pro/en/test.json", [{"id": "q9", "question": "Q?", "choices": ["x", "y", "z", "w"], "answer": 1}])
    write_lines(root / "GlobMed_MedMCQA/en/train.json", [
        {"id": "m1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0, "exp": "e"},
        {"id": "m2", "question": "Q2?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 3}])
    write_json(root / "GlobMed_PubMedQA/fr/test.json", [
        {"pubid": 1, "question": "Q?", "contexts": ["c1", "c2"], "final_decision": "No", "long_answer": "L"}])
    write_json(root / "GlobMed_BioNLI/en/train.json", [{"premise": "P", "hypothesis": "H", "label": "neutral"}])
    write_json(root / "GlobMed_LiveQA/en/test.json", [{"question": "Q?", "answer": "A."}])
    return root


def test_globmed_release_variants_and_alignment(tmp_path):
    good, bad = run("globmed", _release(tmp_path / "rel"))
    assert bad == []
    medqa = {(r.language, r.source_id): r for r in good if r.dataset == "medqa"}
    # No id field -> dataset:split:index; the same index aligns across language folders.
    assert set(medqa) == {(lang, f"medqa:train:{i}") for lang in ("en", "es", "sw") for i in (0, 1)}
    assert [medqa[(lang, "medqa:train:1")].answer for lang in ("en", "es", "sw")] == ["C", "C", "C"]
    assert medqa[("en", "medqa:train:0")].id == "medqa:train:0@en"
    by_ds = {r.dataset: r for r in good if r.dataset != "medqa"}
    assert (by_ds["mmlu_pro"].source_id, by_ds["mmlu_pro"].answer, len(by_ds["mmlu_pro"].options)) == ("mmlu_pro:q9", "B", 4)
    assert [r.answer for r in good if r.dataset == "medmcqa"] == ["A", "D"]  # cop 0 occurs -> 0-based
    pm = by_ds["pubmedqa"]
    assert (pm.family, pm.answer, pm.context, pm.explanation, pm.language) == ("yes_no_maybe", "no", "c1\nc2", "L", "fr")
    nli = by_ds["bionli"]
    assert (nli.family, nli.context, nli.question, nli.answer) == ("nli", "P", "H", "neutral")
    assert (by_ds["liveqa"].family, by_ds["liveqa"].answer, by_ds["liveqa"].split) == ("open_qa", "A.", "test")


def test_globmed_field_map_override(tmp_path):
    write_json(tmp_path / "GlobMed_MedExpQA/en/train.json", [{"nr": 5, "enunciado": "Q?", "opciones": ["a", "b", "c"], "correcta": 2}])
    _, bad = run("globmed", tmp_path)
    assert len(bad) == 1 and bad[0].field == "question"
    fm = {"MedExpQA": {"id": "nr", "question": "enunciado", "options": "opciones", "answer": "correcta", "answer_format": "index1"}}
    good, bad = run("globmed", tmp_path, field_map=fm)
    assert bad == [] and [(r.source_id, r.answer, r.family) for r in good] == [("medexpqa:5", "B", "mcqa")]


def test_globmed_unknown_source_is_reported(tmp_path):
    write_json(tmp_path / "GlobMed_Mystery/en/train.json", [{"question": "Q?", "answer": "A"}])
    good, bad = run("globmed", tmp_path)
    assert good == [] and len(bad) == 1 and bad[0].field == "<source>" and "Mystery" in bad[0].reason
    good, bad = run("globmed", tmp_path, field_map={"family": "open_qa", "dataset": "mystery"})
    assert bad == [] and good[0].dataset == "mystery" and good[0].family == "open_qa"
    old, _ = run("globmed", tmp_path, field_map={"task": "open_qa", "dataset": "mystery"})  # the older key
    assert old == good
    _, bad = run("globmed", tmp_path, field_map={"family": "essay", "dataset": "mystery"})
    assert len(bad) == 1 and bad[0].field == "family" and "essay" in bad[0].reason


# --- malformed files --------------------------------------------------------------------


def test_malformed_files_fail_per_record(tmp_path):
    (tmp_path / "GlobMed_MedQA/en").mkdir(parents=True)
    (tmp_path / "GlobMed_MedQA/en/train.json").write_text('[{"question": "Q", "options": {"A": "x",\n "B": ', encoding="utf-8")
    latin1 = b'{"question": "ok", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}\n{"question": "caf\xe9"}\n'
    (tmp_path / "GlobMed_MedQA/en/test.json").write_bytes(latin1)
    good, bad = run("globmed", tmp_path)
    by_file = {pathlib.Path(b.file).name: b for b in bad}
    assert by_file["train.json"].location == "record 0" and "cut off" in by_file["train.json"].reason
    assert by_file["test.json"].location == "line 2" and "invalid UTF-8: byte 0xe9" in by_file["test.json"].reason
    assert [r.question for r in good] == ["ok"] and not any(b.file_level for b in bad)

    csv_path = tmp_path / "virology_test_zu.csv"
    csv_path.write_text('Q1,a,b,c,d,A\n"Q2\nmultiline",a,b,c,d,B\nQ3,a,b,c,A\n', encoding="utf-8")
    good, bad = run("mmlu", csv_path)
    assert [r.question for r in good] == ["Q1", "Q2\nmultiline"]  # a bad row costs only itself
    assert [(b.field, b.location) for b in bad] == [("<line>", "line 4")]
    assert "5 columns, expected 6" in bad[0].reason

    xml_path = tmp_path / "liveqa.xml"
    xml_path.write_text("<LiveQA>\n<NLM-QUESTION qid='1'>\n</LiveQA>\n", encoding="utf-8")
    _, bad = run("liveqa", xml_path)  # an XML tree cannot be split into records: the file fails
    assert bad[0].field == FILE_FIELD and bad[0].location.startswith("line 3") and bad[0].file_level


def test_jsonl_bad_line_is_one_bad_record(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"question": "Q", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}\n{"question": "trunc\n', encoding="utf-8")
    good, bad = run("medqa", path)
    assert len(good) == 1 and [(b.location, b.field) for b in bad] == [("line 2", "<line>")]


def test_missing_split_is_reported(tmp_path):
    path = write_lines(tmp_path / "questions.jsonl", [{"question": "Q", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}])
    good, bad = run("medqa", path)
    assert good == [] and bad[0].field == "split" and "--split" in bad[0].reason
    good, bad = run("medqa", path, split="train")
    assert bad == [] and good[0].split == "train"
