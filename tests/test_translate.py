"""data_pipelines.translate: placeholders, glossary, QC, cache/resume, API + local translators,
review round trip, CLI end to end (GlobMed-mini slice, real SmolLM2, subprocess)."""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys

import pytest

# The `translate` extra (pulled in by the `test` extra): chrF and offline language ID.
pytest.importorskip("sacrebleu", reason="pip install 'globmed-jax[translate]'")
pytest.importorskip("lingua", reason="pip install 'globmed-jax[translate]'")

from data_pipelines.jsonl_io import iter_quarantine  # noqa: E402
from data_pipelines.translate import (
    Glossary, GlossaryError, ReviewError, TranslateOptions, apply_review, clean_reply, export_review,
    protect, restore, translate_records)
from data_pipelines.translate.__main__ import main as cli_main
from data_pipelines.translate.placeholders import numbers_in
from data_pipelines.translate.qc import LanguageIdentifier
from data_pipelines.translate.records import record_fields
from data_pipelines.translate.translators import APITranslator, api_settings
from data_pipelines.validate import validate_records
from globmed_jax.data.records_io import load_records, write_records  # noqa: E402
from globmed_jax.data.schema import OPTION_LETTERS

import translate_helpers as h
from conftest import one_device_env
from openai_stub import StubServer

REPO = pathlib.Path(__file__).resolve().parents[1]
LANGS = ("sw", "fr")


@pytest.fixture(scope="module")
def langid():
    return LanguageIdentifier()  # loaded once per module (lingua, low-accuracy mode)


def _opts(**kw) -> TranslateOptions:
    return TranslateOptions(languages=kw.pop("languages", LANGS), batch_size=kw.pop("batch_size", 4),
                            progress=False, **kw)


def _outputs(out: pathlib.Path):
    passed = {r.id: r for r in load_records(out)}
    quarantined = {q["raw"]["id"]: q for q in iter_quarantine(out / "quarantine.jsonl")}
    return passed, quarantined


# ------------------------------------------------------------------------- placeholders


def test_protect_restore_numbers_units_and_glossary():
    text = ("A 45-year-old with HbA1c 7.5%, K+ 2.9 mmol/L, BP 120/80 mmHg took 500 mg of Paracetamol "
            "for 3-5 days; CD4+ count 200/µL, 38.5 °C.")
    p = protect(text, {"paracetamol": "parasetamoli"})
    assert [s.source for s in p.spans] == ["45", "HbA1c", "7.5%", "2.9 mmol/L", "120/80 mmHg", "500 mg",
                                           "Paracetamol", "3-5", "CD4+", "200/µL", "38.5 °C"]
    assert "year-old" in p.masked and "days" in p.masked  # word units stay translatable
    back = restore(p.masked, p.spans)
    assert back.issues == () and back.text == text.replace("Paracetamol", "parasetamoli")
    assert restore(p.masked, p.spans, side="source").text == text
    # broken placeholders: one missing, one repeated (with spaces), one invented
    broken = p.masked.replace(h.P.format(3), "").replace(h.P.format(5), "\u27e6 5 \u27e7 \u27e65\u27e7") + " \u27e642\u27e7"
    issues = restore(broken, p.spans).issues
    assert any("\u27e63\u27e7" in i and "missing" in i for i in issues)
    assert any("\u27e65\u27e7" in i and "2 times" in i for i in issues)
    assert any("unknown" in i and "42" in i for i in issues)
    assert numbers_in("2,5 mg and \u0663 doses") == numbers_in("3 doses of 2.5 mg")
    assert not protect("500 mg").needs_translation and protect("give 500 mg").needs_translation


def test_glossary_json_and_tsv(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps({"sw": {"anaphylaxis": "anafilaksia"}, "*": {"epinephrine": "epinephrine"}}))
    (tmp_path / "g.tsv").write_text("source\tsw\tfr\t*\nanaphylaxis\tanafilaksia\tanaphylaxie\t\n"
                                    "epinephrine\t\t\tepinephrine\nheart\tmoyo\tcœur\t\n")
    gj, gt = Glossary.load(tmp_path / "g.json"), Glossary.load(tmp_path / "g.tsv")
    assert gj.terms("sw") == {"anaphylaxis": "anafilaksia", "epinephrine": "epinephrine"}
    assert gt.terms("fr") == {"anaphylaxis": "anaphylaxie", "epinephrine": "epinephrine", "heart": "cœur"}
    p = protect("Epinephrine for anaphylaxis; the heart rate is 120 bpm.", gt.terms("sw"))
    assert p.masked == "\u27e60\u27e7 for \u27e61\u27e7; the \u27e62\u27e7 rate is \u27e63\u27e7."
    assert restore(p.masked, p.spans).text == "epinephrine for anafilaksia; the moyo rate is 120 bpm."
    (tmp_path / "bad.json").write_text(json.dumps({"xx": {"a": "b"}}))
    with pytest.raises(GlossaryError, match="unknown language"):
        Glossary.load(tmp_path / "bad.json")


def test_clean_reply():
    assert clean_reply("<think>\nhmm\n</think>\n\nHere is the translation:\n\"Mgonjwa ana homa.\"", "sw") == "Mgonjwa ana homa."
    assert clean_reply("Swahili translation: Homa", "sw") == "Homa"
    assert clean_reply("```\nHoma kali\n```") == "Homa kali"


# ------------------------------------------------------------------- pipeline (scripted)


def test_structure_preserved_and_output_validates(tmp_path, langid):
    h.check_tables()
    fake = h.ScriptedTranslator()
    res = translate_records(h.SOURCES, tmp_path, fake, _opts(), langid=langid)
    passed, quarantined = _outputs(tmp_path)
    assert not quarantined and res.passed == len(h.SOURCES) * len(LANGS) == len(passed)
    for src in h.SOURCES:
        for lang in LANGS:
            r = passed[f"{src.source_id}@{lang}"]
            assert (r.source_id, r.language, r.dataset, r.split, r.family) == (src.source_id, lang, src.dataset, src.split, src.family)
            assert list(r.options) == list(src.options) == list(OPTION_LETTERS[:len(src.options)])
            assert numbers_in(" ".join(t for _, t in record_fields(r))) == numbers_in(" ".join(t for _, t in record_fields(src)))
            assert "\u27e6" not in json.dumps(r.to_json(), ensure_ascii=False)
            assert r.answer == (src.answer if src.family != "open_qa" else r.answer)
            tr = r.meta["translation"]
            assert tr["translator"] == "fake:scripted" and tr["source_language"] == "en"
            assert tr["qc"]["chrf"] == 100.0 and tr["qc"]["language_id"] == "pass"
    assert passed["toy_mcqa:1@sw"].question.startswith("Mwanamume mwenye umri wa miaka 45 ana potasiamu ya damu ya 2.9 mmol/L")
    assert passed["toy_open:3@fr"].answer == "En général 500 mg à 1 g toutes les 4 à 6 heures, sans dépasser 4 g par jour."
    assert passed["toy_mcqa:1@fr"].answer == "A"
    kept, bad = validate_records(load_records(tmp_path))
    assert len(kept) == 8 and not bad
    report = (tmp_path / "qc_report.md").read_text()
    assert "| sw | 4 | 4 | 0 |" in report and "| fr | 4 | 4 | 0 |" in report
    assert (tmp_path / "qc_chrf_hist.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "toy_mcqa" / "sw" / "test.jsonl").exists()


def test_qc_catches_planted_failures(tmp_path, langid):
    fr_ynm = {h.masked_source("toy_ynm:2", f): h.masked_target("toy_ynm:2", f, "fr") for f in ("question", "context", "explanation")}
    ans = h.masked_target("toy_open:3", "answer", "sw")
    plants = {
        **{("sw", k): v for k, v in fr_ynm.items()},  # wrong language: French for Swahili
        ("fr", "furosemide"): "",  # a missing option
        ("sw", h.masked_source("toy_open:3", "answer")): ans.replace(" \u27e64\u27e7", ""),  # broken placeholder
        ("fr", h.masked_source("toy_nli:4", "context")): " ".join([h.masked_target("toy_nli:4", "context", "fr")] * 10),
    }
    res = translate_records(h.SOURCES, tmp_path, h.ScriptedTranslator(plants=plants), _opts(), langid=langid)
    passed, quarantined = _outputs(tmp_path)
    assert res.passed + res.quarantined == 8 == len(passed) + len(quarantined)  # nothing dropped
    reasons = {rid: set(q["reasons"]) for rid, q in quarantined.items()}
    assert set(reasons) == {"toy_ynm:2@sw", "toy_mcqa:1@fr", "toy_open:3@sw", "toy_nli:4@fr"}
    assert "language_id" in reasons["toy_ynm:2@sw"]
    assert "options" in reasons["toy_mcqa:1@fr"]
    assert {"placeholders", "numbers"} <= reasons["toy_open:3@sw"]
    assert "length_ratio" in reasons["toy_nli:4@fr"]
    q = quarantined["toy_open:3@sw"]
    assert q["dataset"] == "toy_open" and "\u27e64\u27e7" in q["reason"] and q["raw"]["language"] == "sw"
    assert set(passed) == {"toy_mcqa:1@sw", "toy_nli:4@sw", "toy_ynm:2@fr", "toy_open:3@fr"}
    report = (tmp_path / "qc_report.md").read_text()
    assert "q:language_id" in report and "q:options" in report and "q:length_ratio" in report
    summary = json.loads((tmp_path / "qc_summary.json").read_text())["languages"]
    assert summary["sw"]["quarantined"] == 2 and summary["fr"]["quarantined_by_reason"]["options"] == 1


def test_untranslated_and_undetectable_language(tmp_path, langid):
    identity = h.ScriptedTranslator(table={})  # returns every text unchanged
    res = translate_records(h.SOURCES[:2], tmp_path, identity, _opts(languages=("sw", "am")), langid=langid)
    _, quarantined = _outputs(tmp_path)
    assert res.passed == 0 and all("untranslated" in q["reasons"] for q in quarantined.values())
    assert res.stats["am"].langid["undetectable"] == 2 and res.stats["sw"].langid["fail"] == 2
    assert "undetectable" in (tmp_path / "qc_report.md").read_text()


def test_glossary_forces_terms(tmp_path, langid):
    g = Glossary({"sw": {"paracetamol": "parasetamoli"}, "*": {"digoxin": "digoxin"}})
    translate_records(h.SOURCES, tmp_path, h.ScriptedTranslator(table={}), _opts(languages=("sw",)), glossary=g,
                      langid=langid)
    _, quarantined = _outputs(tmp_path)
    assert quarantined["toy_open:3@sw"]["raw"]["question"] == "What is the usual adult dose of parasetamoli for fever?"
    assert quarantined["toy_mcqa:1@sw"]["raw"]["options"]["D"] == "digoxin"


# ------------------------------------------------------------------------------- resume


def test_resume_does_not_retranslate(tmp_path, langid):
    full = h.ScriptedTranslator()
    translate_records(h.SOURCES, tmp_path / "a", full, _opts(batch_size=2), langid=langid)
    assert full.calls > 0
    # a stopped run (after 3 batches), then the same command again
    stopped = h.ScriptedTranslator(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        translate_records(h.SOURCES, tmp_path / "b", stopped, _opts(batch_size=2), langid=langid)
    assert stopped.calls == 6
    resumed = h.ScriptedTranslator()
    translate_records(h.SOURCES, tmp_path / "b", resumed, _opts(batch_size=2), langid=langid)
    assert resumed.calls == full.calls - stopped.calls
    again = h.ScriptedTranslator()
    res = translate_records(h.SOURCES, tmp_path / "b", again, _opts(batch_size=2), langid=langid)
    assert again.calls == 0 and res.translated == 0 and res.passed == 8
    assert load_records(tmp_path / "a") == load_records(tmp_path / "b")


# ---------------------------------------------------------------------------------- API


def _stub_responder(table):
    def respond(body):
        src, tgt, text = h.parse_translation_request(body["messages"][-1]["content"])
        out = table.get((src, tgt, text), text)
        return f"Here is the translation:\n{out}" if len(out) % 2 else out
    return respond


def test_api_translator_via_local_server(tmp_path, langid):
    with StubServer(_stub_responder(h.translation_table())) as server:
        settings = api_settings(base_url=server.base_url, max_concurrency=4, max_retries=2, backoff_s=0.01)
        tr = APITranslator("stub-mt", settings, cache_path=tmp_path / "api.ndjson")
        server.fail_next(2, status=503)  # retried by the client
        res = translate_records(h.SOURCES, tmp_path / "out", tr, _opts(batch_size=8), langid=langid)
        assert res.passed == 8 and tr.name == "api:stub-mt"
        first = server.num_requests
        assert first == res.translated + 2
        # a fresh client: everything comes from the pipeline cache, no request is sent
        tr2 = APITranslator("stub-mt", settings)
        res2 = translate_records(h.SOURCES, tmp_path / "out", tr2, _opts(batch_size=8), langid=langid)
        assert server.num_requests == first and tr2.calls == 0 and res2.passed == 8
    r = {x.id: x for x in load_records(tmp_path / "out")}["toy_mcqa:1@sw"]
    assert r.options["A"] == "kloridi ya potasiamu" and r.meta["translation"]["translator"] == "api:stub-mt"


def test_cli_api_translator_and_review_export(tmp_path, capsys):
    write_records(h.SOURCES, tmp_path / "in")
    with StubServer(_stub_responder(h.translation_table())) as server:
        rc = cli_main(["--input", str(tmp_path / "in"), "--languages", "sw,fr", "--translator", "api:stub-mt",
                       "--api-base-url", server.base_url, "--output", str(tmp_path / "out"), "--limit", "1",
                       "--datasets", "toy_mcqa,toy_nli", "--progress", "no",
                       "--export-review", str(tmp_path / "review.csv")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 source record(s) x 2 language(s): 4 passed, 0 quarantined" in out and "| sw | 2 | 2 | 0 |" in out
    with open(tmp_path / "review.csv", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * (6 + 2) and {r["language"] for r in rows} == {"sw", "fr"}
    with pytest.raises(SystemExit):
        cli_main(["--output", str(tmp_path / "out")])  # nothing to do
    assert cli_main(["--input", str(tmp_path / "in"), "--languages", "sw", "--translator", "bogus:x",
                     "--output", str(tmp_path / "o2")]) == 1


# ------------------------------------------------------------------------------- review


def test_review_round_trip(tmp_path, langid):
    plants = {("fr", "furosemide"): ""}  # fr toy_mcqa:1 is quarantined (missing option C)
    opts = _opts()
    translate_records(h.SOURCES, tmp_path, h.ScriptedTranslator(plants=plants), opts, langid=langid)
    n = export_review(tmp_path, tmp_path / "review.csv")
    with open(tmp_path / "review.csv", encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    assert n == len(rows) == 2 * sum(len(record_fields(r)) for r in h.SOURCES)
    assert {"id", "language", "field", "source_text", "translation", "accuracy", "fluency", "completeness",
            "revised_translation"} <= set(columns)
    assert all(r["accuracy"] == r["fluency"] == r["completeness"] == r["revised_translation"] == "" for r in rows)
    row = next(r for r in rows if r["id"] == "toy_mcqa:1@sw" and r["field"] == "question")
    assert row["source_text"] == h.SOURCES[0].question and row["status"] == "passed" and row["chrf"] == "100.0"
    revised = "Mwanamume wa miaka 45 ana potasiamu ya 2.9 mmol/L na udhaifu wa misuli. Dawa gani itolewe kwanza?"
    row.update(accuracy="4", fluency="5", completeness="5", revised_translation=revised)
    for r in rows:  # the quarantined French record: an expert fills in option C and scores the rest
        if r["id"] == "toy_mcqa:1@fr":
            assert r["status"] == "quarantined" and r["qc_reasons"] == "options"
            r.update(accuracy="5", fluency="5", completeness="5")
            if r["field"] == "option:C":
                r["revised_translation"] = "le furosémide"
    with open(tmp_path / "reviewed.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    result = apply_review(tmp_path / "reviewed.csv", tmp_path)
    assert (result.revised_fields, result.promoted, result.validation_failures) == (2, 1, 0)
    passed, quarantined = _outputs(tmp_path)
    r = passed["toy_mcqa:1@sw"]
    assert r.question == revised
    assert r.meta["review"]["fields"]["question"] == {"accuracy": 4, "fluency": 5, "completeness": 5, "revised": True}
    fr = passed["toy_mcqa:1@fr"]
    assert fr.options["C"] == "le furosémide" and fr.meta["review"]["promoted_from_quarantine"] == ["options"]
    assert not quarantined
    kept, bad = validate_records(load_records(tmp_path))
    assert len(kept) == 8 and not bad
    # a later translation run re-applies the stored reviews and translates nothing
    again = h.ScriptedTranslator(plants=plants)
    translate_records(h.SOURCES, tmp_path, again, opts, langid=langid)
    passed2, _ = _outputs(tmp_path)
    assert again.calls == 0 and passed2["toy_mcqa:1@sw"].question == revised and "toy_mcqa:1@fr" in passed2
    # bad scores are refused with file, line and column
    rows[0]["accuracy"] = "7"
    with open(tmp_path / "bad.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ReviewError, match="line 2: column 'accuracy'"):
        apply_review(tmp_path / "bad.csv", tmp_path)


# ------------------------------------------------------- end to end: local model, subprocess


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "data_pipelines.translate", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_local_model_end_to_end_on_mini(tmp_path, smollm2_dir):
    from globmed_jax.data import mini

    # The closed-form families (one record each with --limit 1); open answers are translated too,
    # so their answer differs from the source's, which the checks below do not expect.
    en = [r for r in mini.generate(mini.MiniConfig(), "test") if r.language == "en" and r.family != "open_qa"]
    write_records(en, tmp_path / "mini")
    env = one_device_env(JAX_PLATFORMS="cpu")  # one CPU device
    args = ["--input", str(tmp_path / "mini"), "--languages", "sw,yo", "--translator", f"local:{smollm2_dir}",
            "--output", str(tmp_path / "out"), "--limit", "1", "--batch-size", "32", "--max-new-tokens", "8",
            "--progress", "no"]
    proc = _cli(args, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 source record(s) x 2 language(s)" in proc.stdout
    out = tmp_path / "out"
    passed, quarantined = _outputs(out)
    assert len(passed) + len(quarantined) == 6  # every record accounted for, none dropped
    for rec in [*passed.values(), *(load_records_from_raw(q) for q in quarantined.values())]:
        src = next(r for r in en if r.source_id == rec.source_id)
        assert rec.language in ("sw", "yo") and list(rec.options) == list(src.options) and rec.answer == src.answer
        assert rec.meta["translation"]["translator"] == f"local:{pathlib.Path(smollm2_dir).name}"
    for q in quarantined.values():
        assert q["reasons"] and q["reason"]
    kept, bad = validate_records(list(passed.values()))
    assert not bad
    report = (out / "qc_report.md").read_text()
    assert "| sw | 3 |" in report and "| yo | 3 |" in report
    assert (out / "qc_chrf_hist.png").exists()
    # resumed: nothing is translated again (the model is not even loaded)
    proc2 = _cli([*args, "-v"], env)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "0 text(s) translated" in proc2.stdout
    assert "loading translator" not in proc2.stderr


def load_records_from_raw(q):
    from globmed_jax.data.schema import Record

    return Record.from_json(q["raw"])
