"""The paper in miniature (make demo): the base corpus never holds a test phrasing, the report's
figures are the stated hand computation, and pretrain -> checkpoint -> fine-tune from it -> both
scorings -> report runs end to end at reduced size."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import one_device_env
from globmed_jax.data import base_corpus, mini, tasks
from globmed_jax.data.pipeline import PipelineConfig, lm_features, make_train_iterator
from globmed_jax.training import demo_report

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config.train.global_batch_size=4", "--config.data.seq_len=128",
        "--config.train.warmup_steps=2", "--config.log.every_steps=1", "--config.log.progress=False"]
TINY_MODEL = ["--config.tokenizer.vocab_size=400", "--config.model.overrides.num_layers=2",
              "--config.model.overrides.hidden_size=64", "--config.model.overrides.intermediate_size=128",
              "--config.model.overrides.head_dim=16"]


# ------------------------------------------------------------------------------ leakage


def test_base_corpus_and_training_split_hold_no_test_phrasing():
    docs = base_corpus.documents()
    test, train = mini.generate(split="test"), mini.generate(split="train")
    assert base_corpus.find_test_phrasings([(d.language, d.text) for d in docs], test, train) == []
    assert base_corpus.find_test_phrasings(base_corpus.record_texts(train), test, train) == []
    # By construction: the corpus uses only its own frames and GlobMed-mini's TRAINING hypothesis
    # frames, never a test-only template, and every frame's literal text is free of test fragments.
    for lang in mini.TEMPLATES:
        hyp = mini.TEMPLATES[lang].nli_hypothesis
        frames = base_corpus._statement_frames(lang)
        assert hyp[mini.template_ids(len(hyp), "test")[0]] not in frames
        for frag in base_corpus.test_only_fragments([lang])[lang]:
            assert not any(frag in f for f in frames + base_corpus.FILLER_FRAMES.get(lang, ()))


def test_leakage_check_catches_a_test_phrasing():
    test, train = mini.generate(split="test"), mini.generate(split="train")
    item = next(r for r in test if r.family == "mcqa" and r.language == "en")
    assert base_corpus.find_test_phrasings([("en", "Intro. " + item.question)], test, train)
    # A test-only template's text ("It follows that ...") is found even with other slot values.
    assert base_corpus.find_test_phrasings([("en", "It follows that water is wet.")], test, train)


def test_base_corpus_is_poor_in_low_resource_languages():
    mixture = tasks.named_mixture("base_corpus")
    shares = mixture.language_shares()
    low = sum(shares[lang] for lang in ("sw", "yo", "zu", "am"))
    assert 0 < low < 0.01 and all(shares[lang] > 0.1 for lang in ("en", "zh", "es", "fr", "ar", "hi", "ja", "ko"))
    docs = base_corpus.documents()
    facts_en = {d.text for d in docs if d.language == "en" and d.kind == "facts"}
    assert "The first-line drug for anaphylaxis is epinephrine." in facts_en
    assert len(facts_en) == len(mini.FACTS) * 5
    assert sum(d.language == "sw" for d in docs) == round(0.1 * len(mini.FACTS))


# ------------------------------------------------------------------------------ LM pipeline


def test_lm_pipeline_puts_loss_on_every_token_without_chat_template():
    from globmed_jax.training.bpe import train_bpe_tokenizer

    docs = base_corpus.documents()
    tok = train_bpe_tokenizer([d.text for d in docs], 400)
    f = lm_features("The first-line drug for anaphylaxis is epinephrine.", tok, 3)
    assert f["loss_mask"].all() and f["targets"][-1] == tok.eos_token_id and not f["truncated"]
    assert "<|im_start|>" not in tok.decode(list(f["inputs"]))
    cfg = PipelineConfig(mixture=tasks.named_mixture("base_corpus"), seq_len=256, batch_size=2, objective="lm",
                         prefetch_buffer_size=0)
    it = make_train_iterator(cfg, tok, shard_index=0, shard_count=1)
    for _ in range(3):
        batch = next(it)
        assert np.array_equal(batch["loss_mask"] > 0, batch["segment_ids"] > 0)  # every real token has loss
    assert batch["segment_ids"].max() > 1  # packed: several documents per row
    with pytest.raises(ValueError, match="objective"):
        PipelineConfig(objective="mlm")


# ------------------------------------------------------------------------------ the figures


def test_paper_figures_equal_a_hand_computation():
    langs = ("en", "zh", "sw", "yo")  # sw, yo: low-resource
    base = {"en": 0.50, "zh": 0.30, "sw": 0.10, "yo": 0.20}
    tuned = {"en": 0.60, "zh": 0.50, "sw": 0.40, "yo": 0.50}
    f = demo_report.paper_figures(base, tuned, langs)
    # macro base = (0.5 + 0.3 + 0.1 + 0.2) / 4 = 0.275; macro tuned = (0.6 + 0.5 + 0.4 + 0.5) / 4 = 0.5
    assert f["macro_base"] == pytest.approx(0.275) and f["macro_tuned"] == pytest.approx(0.5)
    assert f["relative_improvement"] == pytest.approx((0.5 - 0.275) / 0.275)  # 81.8 % higher
    # low-resource: base (0.1 + 0.2) / 2 = 0.15, tuned (0.4 + 0.5) / 2 = 0.45 -> 3x
    assert f["low_resource_fold_change"] == pytest.approx(3.0)
    assert f["high_resource_fold_change"] == pytest.approx(0.55 / 0.40)
    assert demo_report.paper_figures({"sw": 0.0}, {"sw": 0.2}, ("sw",))["low_resource_fold_change"] == float("inf")


def test_paired_bootstrap_brackets_the_point_and_is_degenerate_without_variance():
    langs = np.array(["en"] * 50 + ["sw"] * 50)
    base = np.r_[np.ones(25), np.zeros(25), np.ones(10), np.zeros(40)].astype(bool)
    tuned = np.r_[np.ones(35), np.zeros(15), np.ones(30), np.zeros(20)].astype(bool)
    ci = demo_report.paired_bootstrap(base, tuned, langs, ("en", "sw"), num_resamples=300)
    point = demo_report.paper_figures({"en": 0.5, "sw": 0.2}, {"en": 0.7, "sw": 0.6}, ("en", "sw"))
    for k in ("relative_improvement", "low_resource_fold_change"):
        assert ci[k][0] <= point[k] <= ci[k][1]
    same = demo_report.paired_bootstrap(np.ones(100, bool), np.ones(100, bool), langs, ("en", "sw"), num_resamples=50)
    assert same["relative_improvement"] == (0.0, 0.0)
    g = demo_report.seed_item_bootstrap([tuned, tuned], langs, {"low": ["sw"]}, num_resamples=200)
    assert g["low"][0] == pytest.approx(0.6) and g["low"][1] <= 0.6 <= g["low"][2]


def test_setting_difference_and_the_ablation_sentence_follow_the_data():
    langs = np.array(["en"] * 40 + ["sw"] * 40)
    ref = [np.r_[np.ones(20), np.zeros(20), np.ones(8), np.zeros(32)].astype(bool)] * 2  # en 0.5, sw 0.2
    better = [np.r_[np.ones(20), np.zeros(20), np.ones(32), np.zeros(8)].astype(bool)] * 3  # sw 0.8
    d = demo_report.setting_difference(ref, better, langs, ["sw"], num_resamples=300)
    assert d[0] == pytest.approx(0.6) and 0 < d[1] <= 0.6 <= d[2]
    assert demo_report.setting_difference(ref, ref, langs, ["en", "sw"], num_resamples=50) == (0.0, 0.0, 0.0)
    # seeds that disagree widen the interval past 0 even when the means differ a little
    noisy = [np.r_[np.ones(22), np.zeros(18), np.ones(4), np.zeros(36)].astype(bool),
             np.r_[np.ones(18), np.zeros(22), np.ones(16), np.zeros(24)].astype(bool)]
    lo, hi = demo_report.setting_difference(ref, noisy, langs, ["en", "sw"], num_resamples=300)[1:]
    assert lo < 0 < hi
    records = [type("R", (), {"language": str(lang)})() for lang in langs]
    data = demo_report.ablation_tables(records, ref[0], {"t1": ref, "t3": better, "noisy": noisy}, ("en", "sw"))
    assert "minus_reference" not in data["settings"]["t1"]
    assert data["settings"]["t3"]["minus_reference"]["low"][0] == pytest.approx(0.6)
    sentence = demo_report.ablation_summary(data)
    assert sentence.startswith("Against t1") and "t3 low-resource +0.600" in sentence
    assert "t3 low-resource (higher)" in sentence and "noisy low-resource" not in sentence.split("exclude 0:")[1]
    same = demo_report.ablation_tables(records, ref[0], {"a": ref, "b": ref}, ("en", "sw"))
    assert "every interval includes 0" in demo_report.ablation_summary(same)


# ------------------------------------------------------------------------------ end to end


def _env():
    env = one_device_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args, timeout=600):
    proc = subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_stage_pipeline_runs_end_to_end(tmp_path):
    base, tuned, out = tmp_path / "base", tmp_path / "globmed", tmp_path / "report"
    _run(["-m", "globmed_jax.train", "--config", str(REPO / "configs/demo_base.py"), f"--config.run_dir={base}",
          "--config.train.steps=4", "--config.checkpoint.every_steps=2", *TINY, *TINY_MODEL])
    rows = [json.loads(line) for line in (base / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    assert (base / "checkpoints").is_dir() and (base / "hf_export" / "tokenizer.json").exists()
    _run(["-m", "globmed_jax.train", "--config", str(REPO / "configs/demo_globmed.py"), f"--config.run_dir={tuned}",
          f"--config.model.checkpoint={base / 'hf_export'}", "--config.train.steps=3", *TINY])
    summary = json.loads((tuned / "summary.json").read_text())
    assert summary["final_step"] == 3
    # The fine-tune started from the base model: its tokenizer is the base model's.
    assert (tuned / "hf_export" / "tokenizer.json").read_text() == (base / "hf_export" / "tokenizer.json").read_text()
    proc = _run(["-m", "globmed_jax.training.demo_report", "compare", "--base", str(base / "hf_export"),
                 "--tuned", str(tuned / "hf_export"), "--out", str(out), "--items-per-language", "3",
                 "--max-new-tokens", "4"])
    report = (out / "report.md").read_text()
    assert "| loglik |" in report and "| generate |" in report and "relative improvement" in report
    assert all(f"| {lang} |" in report for lang in ("en", "am"))
    assert (out / "accuracy_base_vs_tuned.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "comparison.json").read_text())
    assert set(data["modes"]) == {"loglik", "generate"} and data["num_items"] == 36
    assert "report:" in proc.stdout
