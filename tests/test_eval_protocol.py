"""GlobMed-Bench protocol statistics against hand computations: paired model differences and the
resource gap, cross-lingual consistency, loglik-vs-generation agreement, the option-permutation
pass, reasoning-mode extraction on Qwen3 chat outputs, and language fidelity; then the runner and
report end to end on scripted API models (no model weights, no JAX compiles)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from globmed_jax.data import mini, prompts
from globmed_jax.data.prompts import PromptConfig
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import (bench_config, fidelity, metrics, paired, position_bias, reasoning,
                                    report, runner)
from openai_stub import StubServer

TEST = mini.generate(mini.MiniConfig(), "test")


def _row(model, dataset, lang, sid, correct, predicted="A", family="mcqa", text=None):
    return {"model": model, "dataset": dataset, "language": lang, "family": family,
            "record_id": f"{sid}@{lang}", "source_id": sid, "gold": "A", "predicted": predicted,
            "correct": correct, "parse_failed": predicted is None, "text": text, "fingerprint": "x"}


def _table(model, correct_by_cell):
    """Prediction rows from ``{(dataset, language): [0/1 per source item s0, s1, ...]}``."""
    return [_row(model, d, l, f"{d}/s{i}", bool(c)) for (d, l), cs in correct_by_cell.items() for i, c in enumerate(cs)]


# --------------------------------------------------------------------------- paired statistics


def test_gap_and_model_difference_match_hand_computation():
    # Two datasets, en/fr high-resource, sw low-resource; the same 4 source items in every language.
    a = {("d1", "en"): [1, 1, 1, 0], ("d1", "fr"): [1, 1, 0, 0], ("d1", "sw"): [1, 0, 0, 0],
         ("d2", "en"): [1, 1, 1, 1], ("d2", "fr"): [1, 1, 1, 0], ("d2", "sw"): [0, 0, 0, 0]}
    b = {("d1", "en"): [1, 1, 0, 0], ("d1", "fr"): [1, 1, 0, 0], ("d1", "sw"): [1, 1, 0, 0],
         ("d2", "en"): [1, 1, 0, 0], ("d2", "fr"): [1, 0, 0, 0], ("d2", "sw"): [1, 0, 0, 0]}
    preds = {"A": _table("A", a), "B": _table("B", b)}
    # By hand: A per language en (.75+1)/2=.875, fr (.5+.75)/2=.625, sw (.25+0)/2=.125
    avg_a, gap_a = (0.875 + 0.625 + 0.125) / 3, (0.875 + 0.625) / 2 - 0.125  # .541667, .625
    # B: en (.5+.5)/2=.5, fr (.5+.25)/2=.375, sw (.5+.25)/2=.375
    avg_b, gap_b = (0.5 + 0.375 + 0.375) / 3, (0.5 + 0.375) / 2 - 0.375  # .416667, .0625
    gap = paired.resource_gap(preds, "A", resamples=500, seed=1)
    assert gap.value == pytest.approx(gap_a) and gap.items == 24
    assert gap.low <= gap.value <= gap.high and gap.high - gap.low > 0.1  # 4 items: wide
    assert gap.scheme == "source items across languages"
    d = paired.model_difference(preds, "A", "B", resamples=500, seed=1)
    assert d.avg.value == pytest.approx(avg_a - avg_b) and d.gap.value == pytest.approx(gap_a - gap_b)
    assert d.avg.low <= d.avg.value <= d.avg.high and d.gap.low <= d.gap.value <= d.gap.high
    assert d.cells == 6 and d.avg.items == 24
    # Consistent with the leaderboard's own aggregation (metrics.macro_average / resource_gap).
    cell_rows = [{"model": "A", "dataset": k[0], "language": k[1], "accuracy": float(np.mean(v))} for k, v in a.items()]
    assert metrics.macro_average(cell_rows, over="language")[("A",)] == pytest.approx(avg_a)
    # A model against itself: exactly zero, interval [0, 0] (the same draws for both).
    same = paired.model_difference({"A": preds["A"], "A2": [dict(r, model="A2") for r in preds["A"]]}, "A", "A2")
    assert (same.avg.value, same.avg.low, same.avg.high) == (0.0, 0.0, 0.0)
    # Items only one model has are left out of the pairing.
    extra = preds["A"] + [_row("A", "d1", "en", "d1/s9", True)]
    assert paired.model_difference({"A": extra, "B": preds["B"]}, "A", "B").avg.items == 24


def test_paired_interval_is_the_bootstrap_of_the_item_differences():
    """One cell of 20 items; B is right on a subset of A's items, A on 4 more: the paired
    difference per resample is (number of the 4 drawn)/20, i.e. Binomial(20, 0.2)/20, whose
    2.5% / 97.5% quantiles are 1/20 and 8/20. Unpaired resampling would reach below 0."""
    stats = pytest.importorskip("scipy.stats")
    a = {("d", "en"): [1] * 10 + [0] * 10}
    b = {("d", "en"): [1] * 6 + [0] * 14}
    preds = {"A": _table("A", a), "B": _table("B", b)}
    d = paired.model_difference(preds, "A", "B", resamples=4000, seed=0)
    assert d.avg.value == pytest.approx(0.2)
    exact_low, exact_high = stats.binom.ppf([0.025, 0.975], 20, 0.2) / 20
    assert d.avg.low == pytest.approx(exact_low, abs=0.051) and d.avg.high == pytest.approx(exact_high, abs=0.051)
    assert d.avg.low > 0 and d.avg.scheme == "items within each cell"


def test_consistency_interval_matches_hand_count():
    rows = []
    answers = {  # source item -> language -> predicted
        "s0": {"en": "A", "es": "A", "sw": "A"},  # consistent
        "s1": {"en": "B", "es": "B", "sw": "C"},  # not
        "s2": {"en": "C", "es": "C"},  # consistent (two languages)
        "s3": {"en": None, "es": None},  # parse failures never agree
        "s4": {"en": "D", "es": "D", "sw": "D"},  # consistent
        "s5": {"en": "A"},  # one language only: left out
    }
    for sid, by_lang in answers.items():
        rows += [_row("m", "d", l, f"d/{sid}", p == "A", predicted=p) for l, p in by_lang.items()]
    rows.append(dict(_row("m", "d", "sw", "d/s1", True, predicted="B"), record_id="d/s1@sw#shift1", shift=1))
    est = paired.consistency(rows, resamples=500)
    assert est.value == pytest.approx(3 / 5) and est.items == 5  # the shifted row is ignored
    assert est.low < 0.6 < est.high and 0.0 <= est.low and est.high <= 1.0
    assert est.value == pytest.approx(metrics.consistency(
        (f"{r['dataset']}/{r['source_id']}", r["language"], r["predicted"]) for r in position_bias.unshifted(rows)))


def test_scoring_agreement_and_kappa_by_hand():
    assert paired.cohen_kappa(list("AABB"), list("ABBB")) == pytest.approx(0.5)  # (3/4 - 1/2) / (1 - 1/2)
    # Parse failure as its own category: po = 2/4, pe = (2/4)(1/4) + (2/4)(2/4) = 3/8 -> kappa = 0.2
    assert paired.cohen_kappa(list("AABB"), ["A", None, "B", "B"][:1] + [None, "B", "A"]) == pytest.approx(
        (0.5 - (0.5 * 0.25 + 0.5 * 0.5)) / (1 - (0.5 * 0.25 + 0.5 * 0.5)))

    def results(model, path, mode):
        fields = {"model.kind": "local", "model.path": path, "model.files": {"w": "1"}, "scoring.mode": mode}
        return {"model": model, "dataset": "d", "language": "en", "family": "mcqa", "n": 4, "accuracy": 0.5,
                "fingerprint": {"fields": fields, "digest": "x"}}

    rows = [results("m", "/ckpt/a", "loglik"), results("m_gen", "/ckpt/a", "generate"),
            results("other_gen", "/ckpt/b", "generate")]
    x, y = list("AABB"), list("ABBB")
    preds = {"m": [_row("m", "d", "en", f"d/s{i}", p == "A", predicted=p) for i, p in enumerate(x)],
             "m_gen": [_row("m_gen", "d", "en", f"d/s{i}", p == "A", predicted=p) for i, p in enumerate(y)],
             "other_gen": [_row("other_gen", "d", "en", f"d/s{i}", True) for i in range(4)]}
    (ag,) = paired.scoring_agreement(rows, preds, resamples=200)  # other_gen: other model files
    assert (ag.loglik, ag.generated, ag.mode) == ("m", "m_gen", "generate")
    assert ag.agreement.value == pytest.approx(0.75) and ag.kappa == pytest.approx(0.5)
    assert ag.cells == {("d", "en"): (4, 0.75, pytest.approx(0.5))}


# ----------------------------------------------------------------------------- position bias


def test_shift_record_moves_the_gold_with_its_option():
    r = Record(id="q@en", source_id="q", dataset="d", language="en", split="test", family="mcqa", question="Q?",
               answer="B", options={"A": "a", "B": "b", "C": "c", "D": "d"})
    s1 = position_bias.shift_record(r, 1)
    assert s1.options == {"A": "b", "B": "c", "C": "d", "D": "a"} and s1.answer == "A" and s1.id == r.id
    assert position_bias.original_letter(s1, "A") == "B" and position_bias.original_letter(s1, "D") == "A"
    copies = position_bias.shifted_records([r], 9)  # capped at n - 1 = 3 shifts
    assert [c.answer for c in copies] == ["A", "D", "C"]
    assert position_bias.row_ids([r, *copies]) == ["q@en", "q@en#shift1", "q@en#shift2", "q@en#shift3"]
    assert position_bias.shifted_records([r], 0) == []
    ynm = next(x for x in TEST if x.family == "yes_no_maybe")
    assert position_bias.shifted_records([ynm], 3) == []  # no options, no shifts
    with pytest.raises(ValueError, match="permutations must be a non-negative integer"):
        position_bias.shifted_records([r], -1)


def _pass_rows(model, records, choose):
    """Prediction rows of a full permutation pass where ``choose(record) -> letter``."""
    scored = [*records, *position_bias.shifted_records(records, 3)]
    preds = [runner.Prediction(r.id, choose(r), False, None) for r in scored]
    rows = runner.prediction_rows(model, scored, preds)
    position_bias.tag_rows(rows, scored)
    return rows


def test_permutation_pass_shows_a_letter_preference():
    records = [r for r in TEST if r.family == "mcqa" and r.language in ("en", "sw")][:30]
    always_a = _pass_rows("always_a", records, lambda r: "A")
    oracle = _pass_rows("oracle", records, lambda r: r.answer)
    # Picks the option whose text is first alphabetically: reads the options, ignores positions.
    content = _pass_rows("content", records, lambda r: min(r.options, key=lambda l: r.options[l]))
    out = position_bias.summarize({"always_a": always_a, "oracle": oracle, "content": content}, resamples=300)
    a, o, c = out["always_a"], out["oracle"], out["content"]
    assert a.items == o.items == c.items == 30 and a.orderings == 4
    # By hand: over the 4 cyclic orderings the gold sits at A exactly once per item.
    assert a.accuracy[0] == pytest.approx(0.25) and a.consistency[0] == 0.0
    assert a.predicted_letters == {"A": 120} and a.gold_letters == {l: 30 for l in "ABCD"}
    assert a.tvd == pytest.approx(0.75) and a.chi_square == pytest.approx(3 * 30 + (120 - 30) ** 2 / 30)
    assert o.accuracy[0] == 1.0 and o.consistency[0] == 1.0 and o.tvd == 0.0 and o.chi_square == 0.0
    assert c.consistency[0] == 1.0 and c.tvd == pytest.approx(0.0)  # consistent, no letter preference
    assert c.accuracy[0] == pytest.approx(c.accuracy_original)
    assert a.accuracy_original == pytest.approx(np.mean([r.answer == "A" for r in records]))
    assert a.accuracy[1] <= a.accuracy[0] <= a.accuracy[2]
    # Per cell fields of the results row.
    assert position_bias.cell_fields(always_a) == {"perm_accuracy": 0.25, "perm_consistency": 0.0}
    assert position_bias.cell_fields(runner.prediction_rows("m", records, [
        runner.Prediction(r.id, "A", False, None) for r in records])) == {}


# ----------------------------------------------------------------------------- reasoning mode

# Qwen3-style reasoning outputs: (language, text after the assistant header, expected letter).
QWEN3_OUTPUTS = [
    ("es", "<think>\nEl paciente presenta anafilaxia. La opción A es un antibiótico, no sirve. La adrenalina "
           "es la C.\n</think>\n\nLa respuesta correcta es C.", "C"),
    ("fr", "<think>\nL'option B est un antibiotique ; la naloxone est l'antidote des opioïdes, c'est A.\n</think>\n\n"
           "**Réponse : A**", "A"),
    ("zh", "<think>\n患者出现过敏性休克。选项A是抗生素，不对。肾上腺素是D。\n</think>\n\n答案是D。", "D"),
    ("ar", "<think>\nالمريض يعاني من صدمة تحسسية. الخيار أ مضاد حيوي. الأدرينالين هو ب.\n</think>\n\nالإجابة الصحيحة هي ب", "B"),
    ("sw", "<think>\nMgonjwa ana mshtuko wa mzio. Chaguo A ni antibiotiki. Adrenalini ni C.\n</think>\n\nJibu ni C.", "C"),
    ("hi", "<think>\nरोगी को एनाफिलेक्सिस है। विकल्प A एंटीबायोटिक है।\n</think>\n\nसही उत्तर: B", "B"),
    ("ja", "<think>\n選択肢Aは抗菌薬なので違う。アドレナリンはCである。\n</think>\n\n正解はCです。", "C"),
    ("am", "<think>\nታካሚው አናፊላክሲስ አለበት። አማራጭ A አንቲባዮቲክ ነው።\n</think>\n\nመልሱ D ነው", "D"),
]


@pytest.fixture(scope="module")
def qwen3():
    from globmed_jax.models.tokenizer import build_qwen3_tokenizer

    return build_qwen3_tokenizer()


def _mcqa(lang):
    return next(r for r in TEST if r.family == "mcqa" and r.language == lang)


@pytest.mark.parametrize("lang,text,letter", QWEN3_OUTPUTS, ids=[o[0] for o in QWEN3_OUTPUTS])
def test_reasoning_extraction_on_qwen3_outputs(qwen3, lang, text, letter):
    """The output encoded with the real Qwen3 vocabulary (think markers are single special
    tokens) and decoded the way reasoning mode does: markers kept, reasoning stripped, the
    letter after the think block parsed -- not the letters the reasoning mentions."""
    ids = qwen3.encode(text, add_special_tokens=False) + [qwen3.convert_tokens_to_ids("<|im_end|>")]
    assert qwen3.convert_tokens_to_ids("</think>") in ids
    decoded = reasoning.decode(qwen3, ids)
    assert "<think>" in decoded and "</think>" in decoded and "<|im_end|>" not in decoded
    # A plain decode drops the markers (Qwen3 marks them special) and glues reasoning to answer.
    assert "</think>" not in qwen3.decode(ids, skip_special_tokens=True)
    s = reasoning.split(decoded)
    assert not s.truncated and s.reasoning and "</think>" not in s.answer
    p = reasoning.parse(decoded, _mcqa(lang))
    assert (p.predicted, p.parse_failed) == (letter, False)


def test_reasoning_truncated_budget_and_prompt(qwen3):
    r = _mcqa("es")
    cut = reasoning.parse("<think>\nEl paciente presenta anafilaxia. La opción C", r)  # budget ran out
    assert cut.parse_failed and cut.predicted is None and reasoning.split(cut.text).truncated
    plain = reasoning.parse("La respuesta correcta es C.", r)  # a model that does not think
    assert plain.predicted == "C" and reasoning.split(plain.text).reasoning is None
    # Thinking on: the Qwen3 generation prompt has no empty think block; off, it has one.
    cfg = reasoning.thinking_config(PromptConfig())
    on = qwen3.apply_chat_template(prompts.build_messages(r, cfg), tokenize=False, add_generation_prompt=True,
                                   enable_thinking=cfg.enable_thinking)
    assert on.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="reasoning mode needs thinking"):
        reasoning.thinking_config(PromptConfig(enable_thinking=False))


class _ScriptedDecoder:
    """Stands in for ``decode.Decoder``: returns prepared token ids per prompt."""

    def __init__(self, outputs):
        self.outputs, self.calls = outputs, []

    def generate(self, prompts_, *, max_new_tokens, eos_ids, batch_size=None, progress=None):
        self.calls.append(max_new_tokens)
        return [self.outputs[i] for i in range(len(prompts_))]


def test_reasoning_predict_budget_and_open_think_templates(qwen3):
    records = [_mcqa(lang) for lang, _, _ in QWEN3_OUTPUTS[:3]]
    outs = [qwen3.encode(t, add_special_tokens=False) for _, t, _ in QWEN3_OUTPUTS[:2]]
    outs.append(qwen3.encode("<think>\n患者出现过敏性休克。选项A", add_special_tokens=False))  # truncated
    dec = _ScriptedDecoder(outs)
    preds = reasoning.predict(dec, qwen3, records, prompt_config=PromptConfig(), budget=64, answer_tokens=16)
    assert dec.calls == [80]
    assert [p.predicted for p in preds] == ["C", "A", None] and preds[2].parse_failed
    assert reasoning.cell_fields(preds, "reasoning") == {"reasoning_truncated_rate": pytest.approx(1 / 3)}
    # A template that opens the think block in the prompt: the model emits only "</think>".
    tok = qwen3
    old = tok.chat_template
    try:
        tok.chat_template = old + "{%- if add_generation_prompt %}{{- '<think>\\n' }}{%- endif %}"
        body = QWEN3_OUTPUTS[0][1].replace("<think>\n", "")
        dec = _ScriptedDecoder([tok.encode(body, add_special_tokens=False),
                                tok.encode("El paciente presenta", add_special_tokens=False)])
        preds = reasoning.predict(dec, tok, records[:1] * 2, prompt_config=PromptConfig(), budget=8, answer_tokens=4)
    finally:
        tok.chat_template = old
    assert preds[0].predicted == "C" and preds[0].text.startswith("<think>")
    assert preds[1].parse_failed and reasoning.split(preds[1].text).truncated


# --------------------------------------------------------------------------- language fidelity


def test_language_fidelity_by_hand():
    pytest.importorskip("lingua")
    results = [{"model": "m", "dataset": "oqa", "language": l, "family": "open_qa", "n": 1,
                "fingerprint": {"fields": {"scoring.mode": "loglik"}, "digest": "x"}} for l in ("es", "sw", "am")]
    results += [{"model": "r", "dataset": "mc", "language": "es", "family": "mcqa", "n": 1,
                 "fingerprint": {"fields": {"scoring.mode": "reasoning"}, "digest": "x"}}]
    es = "La adrenalina es el fármaco de primera línea para tratar la anafilaxia grave."
    en = "Adrenaline is the first-line drug for the treatment of severe anaphylaxis."
    sw = "Adrenalini ndiyo dawa ya kwanza kwa matibabu ya mshtuko mkali wa mzio."
    preds = {
        "m": [_row("m", "oqa", "es", "o/1", None, predicted=es, family="open_qa", text=es),
              _row("m", "oqa", "es", "o/2", None, predicted="adrenalina", family="open_qa", text="adrenalina"),
              _row("m", "oqa", "sw", "o/1", None, predicted=en, family="open_qa", text=en),
              _row("m", "oqa", "sw", "o/2", None, predicted=sw, family="open_qa", text=sw),
              _row("m", "oqa", "am", "o/1", None, predicted="x", family="open_qa", text="አድሬናሊን የመጀመሪያው መድሃኒት ነው።"),
              _row("m", "mc", "es", "q/1", True, text="Answer: A")],  # a generate-mode letter: no language
        "r": [_row("r", "mc", "es", "q/1", True, text=f"<think>\n{en}\n</think>\n\n{es} La respuesta es A."),
              _row("r", "mc", "es", "q/2", None, predicted=None, text=f"<think>\n{en}")],  # truncated
    }
    out = fidelity.fidelity(results, preds, resamples=200)
    e, s, a = out[("m", "es", "answer")], out[("m", "sw", "answer")], out[("m", "am", "answer")]
    assert (e.passed, e.failed, e.too_short) == (1, 0, 1) and e.share[0] == 1.0
    assert (s.passed, s.failed, dict(s.drift)) == (1, 1, {"en": 1}) and s.share[0] == 0.5
    assert a.undetectable == 1 and a.judged == 0
    assert ("m", "es", "reasoning") not in out
    ra, rr = out[("r", "es", "answer")], out[("r", "es", "reasoning")]
    assert (ra.passed, ra.no_answer) == (1, 1)  # the truncated item has no answer
    assert (rr.failed, dict(rr.drift)) == (2, {"en": 2}) and rr.share[0] == 0.0  # reasoned in English


# ------------------------------------------------------------------------- runner and report

LANGS = ("en", "es", "sw")


def _gold_text(r):
    return r.options[r.answer]


def test_runner_permutations_reasoning_and_report_end_to_end(tmp_path):
    records = [r for r in TEST if r.language in LANGS]
    cells = runner.group_cells([r for r in records if r.family in ("mcqa", "open_qa")], 4)
    pool = [r for recs in cells.values() for r in recs]
    by_message = {prompts.user_message(r): r for r in pool}
    by_message.update({prompts.user_message(s): s for s in position_bias.shifted_records(pool, 3)})
    said = {"es": "La respuesta correcta es la {}, según las guías clínicas actuales.",
            "en": "The correct answer is {}, according to current clinical guidelines.",
            "sw": "The correct answer is {}, according to current clinical guidelines."}  # drifts to English

    budgets: set[int] = set()
    cut_ids = {recs[0].source_id for recs in cells.values()}

    def responder(body):
        model, r = body["model"], by_message[body["messages"][-1]["content"]]
        if model == "thinker":
            budgets.add(body["max_tokens"])
        if model == "always-a":
            return "A"
        if model == "oracle":
            return r.answer
        # thinker: reasons, then answers right; the first source item of each cell runs out of budget
        if r.source_id in cut_ids:
            return "<think>\nThe patient presents with"
        return f"<think>\nOption A is tempting, but the guideline says otherwise.\n</think>\n\n{said[r.language].format(r.answer)}"

    with StubServer(responder) as server:
        c = bench_config.default_config()
        c.out_dir, c.progress, c.bootstrap_resamples = str(tmp_path / "out"), False, 200
        c.data.languages, c.data.max_per_cell = LANGS, 4
        c.data.datasets = (mini.dataset_name("mcqa"), mini.dataset_name("open_qa"))
        c.permutations = 3
        c.reasoning_budget = 64
        for name in ("always-a", "oracle"):
            c.models[name.replace("-", "_")] = bench_config.model_spec(f"api:{name}", base_url=server.base_url)
        c.models.thinker = bench_config.model_spec("api:thinker", base_url=server.base_url, mode="reasoning")
        summary = runner.run(c)
        assert len(summary["done"]) == 3 * 2 * len(LANGS)
        assert budgets == {64 + c.max_new_tokens, 64 + c.open_qa_max_new_tokens}
        again = runner.run(c)  # shifted predictions resume like the others
        assert not again["done"] and len(again["skipped"]) == 3 * 2 * len(LANGS)
        c.permutations = 2
        with pytest.raises(runner.FingerprintMismatchError, match=r"bench\.permutations: 3 -> 2"):
            runner.run(c)

    rows = {(r["model"], r["dataset"], r["language"]): r for r in runner.read_results(c.out_dir)}
    mc, oqa = mini.dataset_name("mcqa"), mini.dataset_name("open_qa")
    for lang in LANGS:
        a, o, t = rows[("always_a", mc, lang)], rows[("oracle", mc, lang)], rows[("thinker", mc, lang)]
        assert a["n"] == 4 and a["perm_accuracy"] == 0.25 and a["perm_consistency"] == 0.0
        assert o["accuracy"] == o["perm_accuracy"] == o["perm_consistency"] == 1.0
        assert "perm_accuracy" not in rows[("oracle", oqa, lang)]  # no options, no pass
        assert a["fingerprint"]["fields"]["bench.permutations"] == 3
        assert "bench.permutations" not in rows[("oracle", oqa, lang)]["fingerprint"]["fields"]
        assert t["fingerprint"]["fields"]["reasoning.budget"] == 64 and "reasoning.budget" not in a["fingerprint"]["fields"]
        recs = cells[(mc, lang)]
        assert recs[0].source_id in cut_ids
        assert t["reasoning_truncated_rate"] == t["parse_failure_rate"] == 0.25 and t["accuracy"] == 0.75
    preds = runner.read_predictions(c.out_dir)
    assert sum(1 for p in preds["always_a"] if p.get("shift")) == 3 * 4 * len(LANGS)

    paths = report.write_report(c.out_dir)
    md = paths["leaderboard"].read_text()
    for section in ("## Paired statistics", "### Model differences", "## Position bias", "## Reasoning mode",
                    "## Language fidelity"):
        assert section in md, section
    # Original-order rows only in the main table and consistency: always_a scores its gold-at-A share.
    s = report.summarize(c.out_dir)
    assert s.by_language["oracle"]["en"] == 1.0 and s.consistency["oracle"] == 1.0
    summary_json = json.loads(paths["summary"].read_text())
    pb = summary_json["position_bias"]
    assert pb["always_a"]["consistency"][0] == 0.0 and pb["oracle"]["consistency"][0] == 1.0
    assert pb["always_a"]["predicted_letters"] == {"A": 4 * 4 * len(LANGS)}
    assert summary_json["reasoning"]["thinker"]["budget"] == [64]
    fid = summary_json["fidelity"]["models"]["thinker"]["answer"]
    assert fid["es"]["share"][0] == 1.0 and fid["sw"]["drift"].get("en", 0) > 0 and fid["sw"]["share"][0] == 0.0
    diffs = {(d["a"], d["b"]): d for d in summary_json["differences"]}
    assert set(diffs) == {("always_a", "oracle"), ("always_a", "thinker"), ("oracle", "thinker")}
    d = diffs[("always_a", "oracle")]["avg"]
    assert d["value"] == pytest.approx(s.average["always_a"] - s.average["oracle"]) and d["high"] < 0
    assert paths["paired_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(md)


def test_local_model_reasoning_and_agreement_through_the_runner(tmp_path):
    """A tiny random local checkpoint entered twice: loglik and reasoning mode. The reasoning
    entry generates budget + allowance tokens through ``reasoning.predict``; both entries share
    model files, so the report pairs them for the scoring-agreement table."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from globmed_jax.training.bpe import train_bpe_tokenizer

    recs = [r for r in TEST if r.family == "mcqa" and r.language in ("en", "sw")]
    tok = train_bpe_tokenizer([f"{r.question} {' '.join(r.options.values())}" for r in recs[::8]], vocab_size=384)
    cfg = transformers.Qwen3Config(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                   max_position_embeddings=2048, tie_word_embeddings=False,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(cfg).float().save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    c = bench_config.default_config()
    c.out_dir, c.progress, c.bootstrap_resamples = str(tmp_path / "out"), False, 100
    c.data.languages, c.data.max_per_cell, c.data.datasets = ("en", "sw"), 2, (mini.dataset_name("mcqa"),)
    c.reasoning_budget, c.max_new_tokens = 3, 2
    spec = dict(dtype="float32", param_dtype="float32", shard=False)
    c.models.tiny = bench_config.model_spec(str(tmp_path / "ckpt"), **spec)
    c.models.tiny_reasoning = bench_config.model_spec(str(tmp_path / "ckpt"), mode="reasoning", **spec)
    runner.run(c)
    rows = {(r["model"], r["language"]): r for r in runner.read_results(c.out_dir)}
    for lang in ("en", "sw"):
        row = rows[("tiny_reasoning", lang)]
        fields = row["fingerprint"]["fields"]
        assert fields["scoring.mode"] == "reasoning" and fields["reasoning.budget"] == 3
        assert fields["prompt.max_new_tokens"] == 2 and "reasoning.budget" not in rows[("tiny", lang)]["fingerprint"]["fields"]
        assert row["reasoning_truncated_rate"] == 0.0  # this tokenizer has no think markers: nothing opens one
    texts = [p["text"] for p in runner.read_predictions(c.out_dir)["tiny_reasoning"]]
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    s = report.summarize(c.out_dir)
    (ag,) = s.protocol.agreement
    assert (ag.loglik, ag.generated, ag.mode, ag.agreement.items) == ("tiny", "tiny_reasoning", "reasoning", 4)
    assert "## Log-likelihood vs generation scoring" in report.leaderboard_markdown(s)
