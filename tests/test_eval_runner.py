"""Scoring against Hugging Face PyTorch, prompts, and the benchmark runner end to end (a tiny
random local checkpoint and a scripted API model on a local server, GlobMed-mini slices)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from globmed_jax.data import mini, prompts  # noqa: E402
from globmed_jax.data.languages import get_language  # noqa: E402
from globmed_jax.data.prompts import PromptConfig, answer_choices, answer_target  # noqa: E402
from globmed_jax.evaluation import bench_config, extract, heldout_metrics, metrics, prompting, report, runner, scoring  # noqa: E402
from globmed_jax.decode import Decoder  # noqa: E402
from globmed_jax.models import from_pretrained, load_tokenizer  # noqa: E402
from globmed_jax.models.tokenizer import pad_id  # noqa: E402
from hf_utils import save_tiny_bench_checkpoint  # noqa: E402
from openai_stub import StubServer  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
LANGS = ("en", "zh", "sw", "am")
CLOSED = ("mcqa", "yes_no_maybe", "nli")  # the closed-form families (open_qa has its own test)
TEST = [r for r in mini.generate(mini.MiniConfig(), "test") if r.family in CLOSED]
TRAIN = [r for r in mini.generate(mini.MiniConfig(), "train") if r.family in CLOSED]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> tuple[pathlib.Path, object]:
    """A random fp32 Qwen3 (vocab 512) saved with a 512-token BPE tokenizer and chat template."""
    return save_tiny_bench_checkpoint(tmp_path_factory.mktemp("tiny_qwen3"), TRAIN)


@pytest.fixture(scope="module")
def tiny_model(tiny_ckpt):
    path, _ = tiny_ckpt
    model, _ = from_pretrained(path, dtype="float32", param_dtype="float32")
    tok = load_tokenizer(path)
    return Decoder(model, pad_id=pad_id(tok)), tok


def _pick(records, per_cell: int, langs=LANGS):
    out, seen = [], {}
    for r in records:
        k = (r.dataset, r.language)
        if r.language in langs and seen.get(k, 0) < per_cell:
            seen[k] = seen.get(k, 0) + 1
            out.append(r)
    return out


def _torch_choice_logprobs(hf, tok, record, fmt: PromptConfig = PromptConfig()) -> np.ndarray:
    """Independent reference: the chat template applied here, one torch forward per choice."""
    text = tok.apply_chat_template(prompts.build_messages(record, fmt), tokenize=False, add_generation_prompt=True)
    p = tok.encode(text, add_special_tokens=False)
    out = []
    for choice in answer_choices(record, fmt):
        c = tok.encode(choice, add_special_tokens=False)
        with torch.no_grad():
            logp = torch.log_softmax(hf(torch.tensor([p + c])).logits[0].double(), dim=-1)
        out.append(sum(logp[len(p) - 1 + k, c[k]].item() for k in range(len(c))))
    return np.array(out)


def test_loglik_matches_torch(tiny_ckpt, tiny_model):
    _, hf = tiny_ckpt
    decoder, tok = tiny_model
    records = _pick(TEST, 2)
    # Both scoring paths must be exercised: single-token choices (one prefill per record via
    # Decoder.score_next) and multi-token ones (a forward per choice).
    n_tokens = {r.family: max(len(tok.encode(c, add_special_tokens=False)) for c in answer_choices(r)) for r in records}
    assert n_tokens["mcqa"] == 1 and n_tokens["nli"] > 1, n_tokens

    ours = scoring.choice_logprobs(decoder, tok, records, batch_size=8)
    preds = scoring.predict(decoder, tok, records, mode="loglik", batch_size=8)
    margins = []
    for r, s, p in zip(records, ours, preds):
        ref = _torch_choice_logprobs(hf, tok, r)
        np.testing.assert_allclose(s, ref, atol=2e-4, rtol=1e-5)
        assert p.record_id == r.id and not p.parse_failed and p.text is None
        top2 = np.sort(ref)[-2:]
        if top2[1] - top2[0] > 1e-3:  # a tie within float noise may flip either way
            assert p.predicted == answer_choices(r)[int(np.argmax(ref))]
            margins.append(True)
    assert len(margins) >= len(records) - 2


def test_option_text_scoring_matches_torch_and_predicts_letters(tiny_ckpt, tiny_model):
    """mcqa_answer="option_text": each option's TEXT is scored after the option-text prompt,
    and the prediction is the letter of the best one."""
    _, hf = tiny_ckpt
    decoder, tok = tiny_model
    fmt = PromptConfig(mcqa_answer="option_text")
    records = [r for r in _pick(TEST, 2) if r.family == "mcqa"]
    assert records and any(len(tok.encode(c, add_special_tokens=False)) > 1
                           for r in records for c in answer_choices(r, fmt))
    ours = scoring.choice_logprobs(decoder, tok, records, prompt_config=fmt, batch_size=8)
    preds = scoring.predict(decoder, tok, records, mode="loglik", prompt_config=fmt, batch_size=8)
    for r, s, p in zip(records, ours, preds):
        ref = _torch_choice_logprobs(hf, tok, r, fmt)
        np.testing.assert_allclose(s, ref, atol=2e-4, rtol=1e-5)
        assert p.predicted == prompts.choice_labels(r)[int(np.argmax(s))] and p.predicted in r.options
        assert scoring.is_correct(r, p) == (p.predicted == r.answer)


def test_generate_mode_parses_its_own_text(tiny_model):
    decoder, tok = tiny_model
    records = _pick(TEST, 1, langs=("en", "sw"))
    preds = scoring.predict(decoder, tok, records, mode="generate", max_new_tokens=6, batch_size=8)
    for r, p in zip(records, preds):
        assert isinstance(p.text, str)
        assert p.predicted == extract.parse_answer(p.text, r)
        assert p.parse_failed == (p.predicted is None)
    m = heldout_metrics.evaluate_records(decoder, tok, records, mode="generate", max_new_tokens=6, batch_size=8)
    expected = np.mean([scoring.is_correct(r, p) for r, p in zip(records, preds)])
    assert m.accuracy == pytest.approx(expected)
    assert m.parse_failure_rate == pytest.approx(np.mean([p.parse_failed for p in preds]))
    assert {"en", "sw"} <= set(m.by_language)


def test_few_shot_and_native_instruction_prompts(tiny_model):
    _, tok = tiny_model
    item = next(r for r in TEST if r.language == "sw" and r.family == "yes_no_maybe")
    shots = prompting.select_shots(item, TRAIN, 2, seed=0)
    assert len(shots) == 2
    assert all(s.family == item.family and s.language == "sw" and s.dataset == item.dataset for s in shots)
    assert all(s.source_id != item.source_id for s in shots)
    cfg = prompting.config_for(item, PromptConfig(), "native")
    msgs = prompts.build_messages(item, cfg, shots)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == answer_target(shots[0])
    assert msgs[-1]["content"].startswith(prompting.INSTRUCTIONS["sw"]["yes_no_maybe"])
    assert "Swali:" in msgs[-1]["content"]
    # Zero-shot English prompts are exactly the training prompts.
    ids = scoring.prompt_ids(tok, [item])[0]
    text = tok.apply_chat_template(prompts.build_messages(item), tokenize=False, add_generation_prompt=True)
    assert ids == tok.encode(text, add_special_tokens=False)
    # The same through scoring.prompt_ids (what predict feeds the model): shots as earlier turns.
    text = tok.decode(scoring.prompt_ids(tok, [item], few_shot=TRAIN, num_shots=2, instruction_language="native")[0])
    assert text.count("<|im_start|>user") == 3 and text.count("<|im_start|>assistant") == 3
    assert shots[0].question in text and shots[1].question in text and item.question in text
    assert text.endswith("<|im_start|>assistant\n")
    # Every language translates every instruction, the option-text one included; with that
    # format the native k-shot prompt uses it and the shots answer with option texts.
    for lang, table in prompting.INSTRUCTIONS.items():
        assert set(table) == set(prompts.DEFAULT_INSTRUCTIONS), lang
    mc = next(r for r in TEST if r.language == "sw" and r.family == "mcqa")
    fmt = prompting.config_for(mc, PromptConfig(mcqa_answer="option_text"), "native")
    assert fmt.mcqa_answer == "option_text"
    msgs = prompts.build_messages(mc, fmt, prompting.select_shots(mc, TRAIN, 1, seed=0))
    assert msgs[-1]["content"].startswith(prompting.INSTRUCTIONS["sw"]["mcqa_option_text"])
    shot = prompting.select_shots(mc, TRAIN, 1, seed=0)[0]
    assert msgs[1]["content"] == shot.options[shot.answer]
    # Explicit instructions of the caller win over the table.
    own = PromptConfig(instructions=(("yes_no_maybe", "Custom."),))
    assert prompting.config_for(item, own, "native").instruction("yes_no_maybe") == "Custom."


# ------------------------------------------------------------------------------ end to end

_MCQA_STYLE = {"en": "Answer: {}", "zh": "答案：{}", "sw": "Jibu ni {}", "am": "መልሱ {} ነው"}
_YNM_WORDS = {"en": ("Yes", "No", "Maybe"), "zh": ("是", "否", "可能"), "sw": ("Ndiyo", "Hapana", "Labda"),
              "am": ("አዎ", "አይ", "ምናልባት")}


def _scripted_reply(r) -> tuple[str, bool | None]:
    """A localized reply for ``r`` and whether it is right (None: unparseable). Deterministic;
    right 80% of the time in high-resource languages and 40% in low-resource ones."""
    k = zlib.crc32(r.id.encode()) % 10
    if k == 9:
        return "I am not able to answer that.", None
    gold = answer_target(r)
    right = k < (4 if get_language(r.language).low_resource else 8)
    answer = gold if right else next(c for c in answer_choices(r) if c != gold)
    if r.family == "mcqa":
        if r.language == "en" and k % 2:  # naming the option text instead of its letter
            text = f"The first-line choice is {r.options[answer]}."
        else:
            text = _MCQA_STYLE[r.language].format(answer)
    elif r.family == "yes_no_maybe":
        text = _YNM_WORDS[r.language][("yes", "no", "maybe").index(answer)]
    else:
        text = answer.capitalize() + "."
    return text, right


def _bench_config(out_dir, ckpt, base_url):
    c = bench_config.default_config()
    c.out_dir = str(out_dir)
    c.progress = False
    c.batch_size = 8
    c.bootstrap_resamples = 200
    c.data.languages = LANGS
    c.data.max_per_cell = 5
    c.data.datasets = tuple(mini.dataset_name(f) for f in CLOSED)
    c.models.tiny = bench_config.model_spec(str(ckpt), dtype="float32", param_dtype="float32")
    c.models.scripted = bench_config.model_spec("api:scripted-1", base_url=base_url, max_concurrency=4,
                                                backoff_s=0.01)
    return c


def test_runner_end_to_end_resume_and_report(tiny_ckpt, tmp_path, monkeypatch):
    ckpt, _ = tiny_ckpt
    records = [r for r in TEST if r.language in LANGS]
    by_message = {prompts.user_message(r): r for r in records}

    def responder(body):
        return _scripted_reply(by_message[body["messages"][-1]["content"]])[0]

    calls, mesh_sizes = {"predict": 0, "load": 0}, []
    real_predict, real_load = scoring.predict, runner.LocalModel.load

    def counting_predict(*a, **kw):
        calls["predict"] += 1
        return real_predict(*a, **kw)

    def counting_load(self):
        calls["load"] += 1
        real_load(self)
        mesh = self._decoder.model.shard.mesh  # several devices: the runner shards the weights
        mesh_sizes.append(None if mesh is None else mesh.devices.size)

    monkeypatch.setattr(scoring, "predict", counting_predict)
    monkeypatch.setattr(runner.LocalModel, "load", counting_load)
    out = tmp_path / "bench"
    with StubServer(responder) as server:
        server.fail_next(2, 429)  # the runner's client retries through these
        config = _bench_config(out, ckpt, server.base_url)
        summary = runner.run(config)
        n_cells = 3 * len(LANGS)
        assert len(summary["done"]) == 2 * n_cells and not summary["skipped"]
        assert calls == {"predict": n_cells, "load": 1}
        assert mesh_sizes == [__import__("jax").device_count()] and mesh_sizes[0] > 1
        requests_after_first = server.num_requests
        assert requests_after_first == n_cells * 5 + 2

        rows = runner.read_results(out)
        assert len(rows) == 2 * n_cells
        preds = runner.read_predictions(out)
        assert set(preds) == {"tiny", "scripted"}
        for row in rows:
            assert set(row) >= {"model", "dataset", "language", "family", "n", "accuracy", "ci_low", "ci_high",
                                "parse_failure_rate", "seconds", "setting"}
            assert row["n"] == 5
            assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
            cell = [p for p in preds[row["model"]] if (p["dataset"], p["language"]) == (row["dataset"], row["language"])]
            assert len(cell) == 5
            assert row["accuracy"] == pytest.approx(np.mean([p["correct"] for p in cell]))
            assert row["parse_failure_rate"] == pytest.approx(np.mean([p["parse_failed"] for p in cell]))
            if row["model"] == "tiny":
                assert row["parse_failure_rate"] == 0.0  # loglik never parses
            else:  # the scripted replies were parsed back to exactly what they meant
                recs = runner.group_cells(records, 5)[(row["dataset"], row["language"])]
                truth = [_scripted_reply(r)[1] for r in recs]
                assert row["accuracy"] == pytest.approx(np.mean([t is True for t in truth]))
                assert row["parse_failure_rate"] == pytest.approx(np.mean([t is None for t in truth]))

        # Rerun: everything is done, no model is loaded, no request is sent.
        summary = runner.run(config)
        assert not summary["done"] and len(summary["skipped"]) == 2 * n_cells and not summary["loaded"]
        assert calls == {"predict": n_cells, "load": 1}
        assert server.num_requests == requests_after_first

        # Drop one local and one API row: exactly those cells are redone (the API one from cache).
        results = out / runner.RESULTS_NAME
        lines = results.read_text().splitlines()
        drop = [i for i, line in enumerate(lines) if json.loads(line)["language"] == "sw"
                and json.loads(line)["dataset"] == "globmed_mini_nli"]
        assert len(drop) == 2
        results.write_text("".join(line + "\n" for i, line in enumerate(lines) if i not in drop))
        summary = runner.run(config)
        assert sorted(summary["done"]) == [("scripted", "globmed_mini_nli", "sw"), ("tiny", "globmed_mini_nli", "sw")]
        assert calls == {"predict": n_cells + 1, "load": 2}
        assert server.num_requests == requests_after_first  # answered from the API cache
        assert len(runner.read_results(out)) == 2 * n_cells

        # Another setting into the same out_dir is refused.
        config.num_shots = 1
        with pytest.raises(runner.SettingMismatchError):
            runner.run(config)

    paths = report.write_report(out)
    md = paths["leaderboard"].read_text()
    print(md)
    assert "| tiny |" in md and "| scripted |" in md and "sw*" in md and "am*" in md
    summary = report.summarize(out)
    for m in ("tiny", "scripted"):
        assert summary.gap[m] == pytest.approx(
            np.mean([summary.by_language[m][l] for l in ("en", "zh")])
            - np.mean([summary.by_language[m][l] for l in ("sw", "am")]))
        assert 0.0 <= summary.consistency[m] <= 1.0
    import matplotlib.image

    for key in ("heatmap", "gap"):
        data = paths[key].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(paths[key])
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_missing_checkpoint_error_names_dir_and_command(tmp_path):
    c = bench_config.default_config()
    c.out_dir = str(tmp_path)
    c.data.languages = ("en",)
    c.models.ghost = bench_config.model_spec(str(tmp_path / "nope"), setup="python -m make.it --out nope")
    with pytest.raises(runner.MissingCheckpointError, match=r"nope does not exist.*python -m make\.it --out nope"):
        runner.run(c)


def test_cli_reports_missing_demo_checkpoints(tmp_path):
    """The entry point on configs/bench_demo.py: a clear error and exit code 2, before any work."""
    missing = tmp_path / "no_such_model"
    proc = subprocess.run(
        [sys.executable, "-m", "globmed_jax.evaluate", f"--config={REPO / 'configs/bench_demo.py'}",
         f"--config.out_dir={tmp_path / 'out'}", f"--config.models.smollm2_135m.path={missing}",
         f"--config.models.demo.path={missing}"],
        capture_output=True, text=True, cwd=REPO, timeout=120, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{missing} does not exist" in proc.stderr
    assert "python -m globmed_jax.train --config configs/demo.py" in proc.stderr


def test_runner_jsonl_open_qa_with_judge(tmp_path):
    """Normalized JSONL data with an open-QA dataset; an API model answers and an API judge grades
    (both on the local server). Open-QA rows carry chrF, ROUGE-L and the judge's mean score."""
    from globmed_jax.data.records_io import write_records
    from globmed_jax.data.schema import Record

    closed = [r for r in _pick(TEST, 3, langs=("en", "sw")) if r.family == "mcqa"]
    answers = {"en": ["Epinephrine.", "Naloxone.", "Metformin."], "sw": ["Adrenalini.", "Naloksoni.", "Metformini."]}
    open_qa = [Record(id=f"oqa/{lang}/{i}", source_id=f"oqa/{i}", dataset="toy_open_qa", language=lang,
                      split="test", family="open_qa", question=f"Q{i} ({lang})?", answer=answers[lang][i])
               for lang in ("en", "sw") for i in range(3)]
    write_records(closed + open_qa, tmp_path / "data")
    by_message = {prompts.user_message(r): r for r in closed + open_qa}
    budgets: dict[str, set] = {"mcqa": set(), "open_qa": set()}

    def responder(body):
        text = body["messages"][-1]["content"]
        if "Score from 1 to 5" in text:  # the judge: 5 when the reference is in the candidate
            ref = text.split("Reference answer: ")[1].split("\n")[0]
            return "5" if ref.rstrip(".") in text.split("Candidate answer: ")[1] else "Score: 2"
        r = by_message[text]
        budgets[r.family].add(body["max_tokens"])
        if r.family == "open_qa":  # right on item 0, wrong otherwise
            return r.answer if r.source_id.endswith("0") else "Rest and fluids."
        return f"Answer: {r.answer}"

    with StubServer(responder) as server:
        c = bench_config.default_config()
        c.out_dir = str(tmp_path / "out")
        c.progress = False
        c.data.source, c.data.path, c.data.languages = "jsonl", str(tmp_path / "data"), ("en", "sw")
        c.models.scripted = bench_config.model_spec("api:scripted-1", base_url=server.base_url)
        c.judge.update(enabled=True, model="judge-1", base_url=server.base_url)
        summary = runner.run(c)
        assert len(summary["done"]) == 4
    rows = {(r["dataset"], r["language"]): r for r in runner.read_results(c.out_dir)}
    mc = rows[(closed[0].dataset, "en")]
    assert mc["accuracy"] == 1.0 and mc["family"] == "mcqa" and mc["n"] == 3
    for lang in ("en", "sw"):
        row = rows[("toy_open_qa", lang)]
        assert row["accuracy"] is None and row["family"] == "open_qa"
        assert row["judge_score"] == pytest.approx((5 + 2 + 2) / 3)
        assert 0.0 < row["rouge_l"] < 100.0 and 0.0 < row["chrf"] < 100.0
        said = [answers[lang][0], "Rest and fluids.", "Rest and fluids."]
        assert row["chrf"] == pytest.approx(metrics.chrf(said, answers[lang]))
        assert row["rouge_l"] == pytest.approx(metrics.rouge_l(said, answers[lang]))
    assert budgets == {"mcqa": {c.max_new_tokens}, "open_qa": {c.open_qa_max_new_tokens}}
    md = report.write_report(c.out_dir)["leaderboard"].read_text()
    assert "## Open QA" in md and "| scripted | toy_open_qa | sw | 3 |" in md


def test_report_reads_rows_written_before_the_family_rename():
    assert report.row_family({"family": "nli"}) == "nli"
    assert report.row_family({"task": "open_qa"}) == "open_qa"  # results.jsonl of 0.1
    with pytest.raises(KeyError):
        report.row_family({"model": "m"})
