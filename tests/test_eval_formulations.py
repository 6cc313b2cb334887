"""Letter / cloze formulations (acc, acc_norm, OLMES best-of), dev-split shots and the
fingerprint of the protocol settings: hand computations on small tables, then one tiny bench."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from globmed_jax.data import mini
from globmed_jax.data.schema import Record
from globmed_jax.evaluation import bench_config, formulations, protocol, report, runner
from globmed_jax.evaluation.scoring import Prediction


def _mcqa(i: int, options: dict[str, str], answer: str, language: str = "en") -> Record:
    return Record(id=f"q{i}@{language}", source_id=f"q{i}", dataset="d", language=language, split="test",
                  family="mcqa", question=f"Question {i}?", answer=answer, options=options)


# Option texts of 1, 4 and 20 characters.
OPTS = {"A": "x", "B": "abcd", "C": "twenty characters!!!"}


def test_acc_norm_picks_another_option_than_acc():
    """acc: argmax of summed log-probs; acc_norm: argmax of log-prob / characters (by hand)."""
    r = _mcqa(0, OPTS, "C")
    # Sums -2, -3, -10  -> acc picks A.  Per character -2/1, -3/4, -10/20 = -2, -0.75, -0.5 -> C.
    p = Prediction(r.id, "A", False, None, (-2.0, -3.0, -10.0))
    s = formulations.score_item(r, p, "cloze")
    assert (s.predicted, s.correct, s.predicted_norm, s.correct_norm) == ("A", False, "C", True)
    assert formulations.choice_chars(r, "cloze") == [1, 4, 20]
    assert formulations.choice_chars(r, "letter") == [1, 1, 1]
    # Letter formulation: no acc_norm reported (the letters are one character each).
    assert formulations.score_item(r, p, "letter").correct_norm is None
    # Characters are code points, not bytes: "ñ" and "药" are one character each.
    r2 = _mcqa(1, {"A": "药物", "B": "ñu"}, "A")
    assert formulations.choice_chars(r2, "cloze") == [2, 2]
    # Generated predictions (no scores) report acc only.
    assert formulations.score_item(r, Prediction(r.id, "C", False, "C"), "cloze").correct_norm is None


def test_cell_fields_and_item_fields_by_hand():
    recs = [_mcqa(0, OPTS, "C"), _mcqa(1, OPTS, "A"), _mcqa(2, OPTS, "B"), _mcqa(3, OPTS, "B")]
    cloze = [  # (acc prediction, acc_norm prediction): (A, C) (A, C) (B, B) (C, C)
        Prediction(recs[0].id, "A", False, None, (-2.0, -3.0, -10.0)),
        Prediction(recs[1].id, "A", False, None, (-1.0, -8.0, -4.0)),
        Prediction(recs[2].id, "B", False, None, (-5.0, -1.0, -9.0)),
        Prediction(recs[3].id, "C", False, None, (-9.0, -9.0, -1.0)),
    ]
    letter = [Prediction(r.id, "B", False, None, (-1.0, -0.5, -2.0)) for r in recs]
    fields = formulations.cell_fields(recs, {"letter": letter, "cloze": cloze}, "cloze", resamples=200, seed=0)
    assert fields["formulation"] == "cloze" and fields["normalization"] == "per_character"
    f = fields["formulations"]
    assert f["letter"]["accuracy"] == pytest.approx(2 / 4)  # B right for q2 and q3
    assert "accuracy_norm" not in f["letter"]
    assert f["cloze"]["accuracy"] == pytest.approx(2 / 4)  # A for q1, B for q2
    assert f["cloze"]["accuracy_norm"] == pytest.approx(2 / 4)  # C for q0, B for q2
    assert f["cloze"]["norm_ci_low"] <= 0.5 <= f["cloze"]["norm_ci_high"]
    items = formulations.item_fields(recs, {"letter": letter, "cloze": cloze})
    assert [i["formulations"]["cloze"]["correct_norm"] for i in items] == [True, False, True, False]
    assert [i["formulations"]["cloze"]["correct"] for i in items] == [False, True, True, False]
    assert items[0]["formulations"]["cloze"]["scores"] == [-2.0, -3.0, -10.0]
    assert items[0]["formulations"]["cloze"]["chars"] == [1, 4, 20]


def test_predict_all_scores_option_free_cells_once():
    calls = []
    ynm = [Record(id="y@en", source_id="y", dataset="d", language="en", split="test", family="yes_no_maybe",
                  question="Q?", answer="yes")]
    out = formulations.predict_all(lambda f: calls.append(f) or [f], ynm, ("letter", "cloze"))
    assert calls == ["letter"] and out == {"letter": ["letter"], "cloze": ["letter"]}
    calls.clear()
    out = formulations.predict_all(lambda f: calls.append(f) or [f], [_mcqa(0, OPTS, "A")], ("letter", "cloze"))
    assert calls == ["letter", "cloze"] and out["cloze"] == ["cloze"]
    with pytest.raises(ValueError, match="formulations"):
        formulations.check(("letter", "letter"))
    with pytest.raises(ValueError, match="formulations"):
        formulations.check(("mcf",))


def _row(model, dataset, language, letter, cloze, cloze_norm):
    return {"model": model, "dataset": dataset, "language": language, "family": "mcqa", "n": 10,
            "accuracy": letter, "parse_failure_rate": 0.0, "formulation": "letter",
            "formulations": {"letter": {"accuracy": letter}, "cloze": {"accuracy": cloze, "accuracy_norm": cloze_norm}}}


def test_model_averages_and_best_of_by_hand():
    rows = [_row("m", "d1", "en", 0.8, 0.5, 0.6), _row("m", "d2", "en", 0.4, 0.7, 0.9),
            _row("m", "d1", "sw", 0.2, 0.3, 0.5),
            _row("n", "d1", "en", 0.9, 0.1, 0.2), _row("n", "d1", "sw", 0.7, 0.1, 0.2)]
    avg = formulations.model_averages(rows)
    # m: per language the mean over datasets, then the mean over languages.
    assert avg["m"][("letter", "accuracy")] == pytest.approx(((0.8 + 0.4) / 2 + 0.2) / 2)  # 0.4
    assert avg["m"][("cloze", "accuracy")] == pytest.approx(((0.5 + 0.7) / 2 + 0.3) / 2)  # 0.45
    assert avg["m"][("cloze", "accuracy_norm")] == pytest.approx(((0.6 + 0.9) / 2 + 0.5) / 2)  # 0.625
    assert formulations.best_of(avg["m"]) == (pytest.approx(0.625), "cloze, acc_norm")
    assert formulations.best_of(avg["n"]) == (pytest.approx(0.8), "letter")
    assert formulations.best_of({("letter", "accuracy"): 0.5}) is None  # one formulation: no best-of
    s = report.Summary(rows)
    md = report.leaderboard_markdown(s)
    assert "| m | letter | 40.0 | 45.0 | 62.5 | **62.5** (cloze, acc_norm) |" in md
    assert "| n | letter | 80.0 | 10.0 | 20.0 | **80.0** (letter) |" in md
    # Rows scored in one formulation only: no formulations table.
    single = [{**r, "formulations": {"letter": r["formulations"]["letter"]}} for r in rows]
    assert "## Formulations" not in report.leaderboard_markdown(report.Summary(single))


# ------------------------------------------------------------------------------ fingerprint


def _config(out_dir, ckpt) -> object:
    c = bench_config.default_config()
    c.out_dir = str(out_dir)
    c.progress = False
    c.batch_size = 8
    c.bootstrap_resamples = 100
    c.data.languages = ("en", "sw")
    c.data.max_per_cell = 3
    c.data.datasets = ("globmed_mini_mcqa", "globmed_mini_yes_no_maybe")
    c.formulations = ("letter", "cloze")
    c.num_shots = 2
    c.models.letter_model = bench_config.model_spec(str(ckpt), dtype="float32", param_dtype="float32")
    c.models.cloze_model = bench_config.model_spec(str(ckpt), dtype="float32", param_dtype="float32",
                                                   mcqa_answer="option_text")
    return c


def _fields(c, records, shots):
    return runner.cell_fingerprint_fields(c, c.models.letter_model, records, shots)


def test_every_protocol_setting_enters_the_fingerprint(tmp_path):
    recs = [r for r in mini.generate(mini.MiniConfig(), "test") if r.dataset == "globmed_mini_mcqa"][:3]
    shots = [r for r in mini.generate(mini.MiniConfig(), "validation") if r.dataset == "globmed_mini_mcqa"][:5]
    c = _config(tmp_path, tmp_path)
    base = _fields(c, recs, shots)
    assert base["scoring.formulations"] == ["letter", "cloze"] and base["scoring.normalization"] == "per_character"
    assert (base["prompt.num_shots"], base["data.shots_split"], base["data.shots_seed"]) == (2, "validation", 0)
    changes = {"formulations": ("letter",), "num_shots": 1, "data.shots_split": "train", "data.shots_seed": 1,
               "mode": "generate"}
    for key, value in changes.items():
        c2 = _config(tmp_path, tmp_path)
        section, _, name = key.rpartition(".")
        setattr(c2.data if section else c2, name, value)
        assert _fields(c2, recs, shots) != base, key
    assert _fields(c, recs, shots[:4]) != base  # another shot pool
    zero = _fields(_zero_shot(tmp_path), recs, shots)  # zero-shot: no shot fields beyond k = 0
    assert zero["prompt.num_shots"] == 0 and "data.shots_split" not in zero
    # Two protocol groups may not emit the same field.
    clash = protocol.FIELD_GROUPS + (protocol.shot_fields,)
    cell = protocol.CellSettings(c, c.models.letter_model, "loglik", recs, shots)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "FIELD_GROUPS", clash)
        with pytest.raises(ValueError, match="prompt.num_shots"):
            protocol.fingerprint_fields(cell)


def _zero_shot(tmp_path):
    c = _config(tmp_path, tmp_path)
    c.num_shots = 0
    return c


def test_shots_split_must_not_be_the_evaluated_split(tmp_path):
    c = _config(tmp_path, tmp_path)
    c.data.shots_split = "test"
    cells = runner.group_cells(runner.load_records(c.data, "test"), 3)
    with pytest.raises(ValueError, match="must not come from"):
        runner._shot_pools(c, cells)


# --------------------------------------------------------------------------- tiny bench


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> pathlib.Path:
    """A random fp32 Qwen3 (vocab 512) with a 512-token BPE tokenizer and chat template."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from hf_utils import save_tiny_bench_checkpoint

    return save_tiny_bench_checkpoint(tmp_path_factory.mktemp("tiny_qwen3"), mini.generate(mini.MiniConfig(), "train"))[0]


def test_bench_scores_both_formulations_with_dev_shots_and_resumes_by_fingerprint(tiny_ckpt, tmp_path):
    out = tmp_path / "bench"
    c = _config(out, tiny_ckpt)
    summary = runner.run(c)
    assert len(summary["done"]) == 2 * 4 and sorted(summary["loaded"]) == ["cloze_model", "letter_model"]
    rows = runner.read_results(out)
    preds = runner.read_predictions(out)
    for row in rows:
        assert set(row["formulations"]) == {"letter", "cloze"}
        assert row["formulation"] == ("letter" if row["model"] == "letter_model" else "cloze")
        assert row["accuracy"] == row["formulations"][row["formulation"]]["accuracy"]  # the main table's number
        assert row["setting"]["formulations"][0] == row["formulation"]
        cell = [p for p in preds[row["model"]] if (p["dataset"], p["language"]) == (row["dataset"], row["language"])]
        assert len(cell) == 3
        for name, entry in row["formulations"].items():  # every metric recomputed from the stored scores
            items = [p["formulations"][name] for p in cell]
            assert entry["accuracy"] == pytest.approx(np.mean([i["correct"] for i in items]))
            for p, i in zip(cell, items):
                assert i["predicted"] == _label(p, int(np.argmax(i["scores"])))
                if name == "cloze":
                    norm = np.asarray(i["scores"]) / np.asarray(i["chars"])
                    assert i["predicted_norm"] == _label(p, int(np.argmax(norm)))
            if name == "cloze":
                assert entry["accuracy_norm"] == pytest.approx(np.mean([i["correct_norm"] for i in items]))
        if row["dataset"] == "globmed_mini_mcqa":  # letters vs option texts: two different scorings
            assert all(p["formulations"]["letter"]["scores"] != p["formulations"]["cloze"]["scores"] for p in cell)
            assert all(p["formulations"]["cloze"]["chars"] != [1, 1, 1, 1] for p in cell)
        else:  # no options: one prompt, scored once, counted in both
            assert all(p["formulations"]["letter"]["scores"] == p["formulations"]["cloze"]["scores"] for p in cell)
        for p in cell:  # top-level prediction = the main formulation's
            assert p["predicted"] == p["formulations"][row["formulation"]]["predicted"]

    # Shots: from the dev split, never a test item (nor a translation of one), the same for both models.
    dev_ids = {r.id for r in mini.generate(mini.MiniConfig(), "validation")}
    test = mini.generate(mini.MiniConfig(), "test")
    test_ids, test_sources = {r.id for r in test}, {r.source_id for r in test}
    shots = {m: {p["record_id"]: p["shots"] for p in rows_} for m, rows_ in preds.items()}
    assert shots["letter_model"] == shots["cloze_model"]
    used = {s for lists in shots["letter_model"].values() for s in lists}
    assert all(len(v) == 2 for v in shots["letter_model"].values())
    assert used <= dev_ids and not used & test_ids
    assert not {s.rsplit("@", 1)[0] for s in used} & test_sources

    md = report.leaderboard_markdown(report.summarize(out))
    assert "## Formulations" in md and "Best-of (OLMES)" in md
    assert "| letter_model | letter |" in md and "| cloze_model | cloze |" in md

    # Resume: nothing to do under the same settings; each changed protocol setting is refused
    # (naming its field) and recompute=True recomputes exactly the changed cells.
    assert not runner.run(c)["done"]
    for key, value, field in (("formulations", ("letter",), "scoring.formulations"),
                              ("data.shots_seed", 3, "data.shots_seed")):
        c2 = _config(out, tiny_ckpt)
        section, _, name = key.rpartition(".")
        setattr(c2.data if section else c2, name, value)
        with pytest.raises(runner.FingerprintMismatchError, match=field.replace(".", r"\.")):
            runner.run(c2)
    c2 = _config(out, tiny_ckpt)
    c2.formulations = ("letter",)
    c2.recompute = True
    summary = runner.run(c2)
    # cloze_model scores (its own cloze, letter) either way: unchanged, kept; letter_model recomputed.
    assert {d[0] for d in summary["done"]} == {"letter_model"} and len(summary["done"]) == 4
    assert {d[0] for d in summary["skipped"]} == {"cloze_model"} and len(summary["skipped"]) == 4
    got = {r["model"]: list(r["formulations"]) for r in runner.read_results(out)}
    assert got == {"letter_model": ["letter"], "cloze_model": ["cloze", "letter"]}  # its own first, then the run's
    assert len(runner.read_results(out)) == 8


def _label(pred_row: dict, index: int) -> str:
    """The label of choice ``index`` of a predictions row's item (letters for mcqa)."""
    if pred_row["family"] == "mcqa":
        return "ABCDEFGHIJ"[index]
    return ("yes", "no", "maybe")[index]


def test_bench_demo_config_writes_the_formulations_leaderboard(tiny_ckpt, tmp_path):
    """configs/bench_demo.py (what `make bench` runs), shrunk: both models replaced by the tiny
    checkpoint, one language, two items per cell."""
    import importlib

    c = importlib.import_module("configs.bench_demo").get_config()
    assert tuple(c.formulations) == ("letter", "cloze")
    c.out_dir, c.progress, c.bootstrap_resamples = str(tmp_path / "bench"), False, 50
    c.data.languages, c.data.max_per_cell = ("sw",), 2
    c.open_qa_max_new_tokens = 4
    for spec in c.models.values():
        spec.path = str(tiny_ckpt)
    runner.run(c)
    md = report.write_report(c.out_dir)["leaderboard"].read_text(encoding="utf-8")
    assert "## Formulations" in md and "## Open QA" in md
    section = md.split("## Formulations")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in section.splitlines() if line.startswith("| ")}
    assert rows["demo"][1] == "cloze" and rows["smollm2_135m"][1] == "letter"  # each model's own formulation
    for cells in (rows["demo"], rows["smollm2_135m"]):
        # letter acc, cloze acc, cloze acc_norm all there; best-of names its formulation
        assert all(c != "–" for c in cells[2:5]) and "(" in cells[5]
