"""Hostile resumes of the bench runner: whatever changed since the rows in out_dir were written
(model path, weights in place, tokenizer, answer format, seed, data, API server), a rerun stops
with an error naming the field, and ``recompute=True`` replaces exactly the stale cells with
fresh ones; damaged or foreign lines are warned about, their cells recomputed, every other line
kept byte for byte. A tiny random Qwen3 on two GlobMed-mini datasets x two languages (4 cells)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil

import pytest
from ml_collections import ConfigDict

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from globmed_jax.data import mini, prompts  # noqa: E402
from globmed_jax.data.records_io import record_path, write_records  # noqa: E402
from globmed_jax.evaluation import bench_config, fingerprint, report, runner  # noqa: E402
from globmed_jax.training.bpe import train_bpe_tokenizer  # noqa: E402
from openai_stub import StubServer  # noqa: E402

LANGS = ("en", "sw")
DATASETS = (mini.dataset_name("mcqa"), mini.dataset_name("yes_no_maybe"))
RECORDS = [r for r in mini.generate(mini.MiniConfig(), "test") if r.language in LANGS and r.dataset in DATASETS]
CELLS = sorted({(r.dataset, r.language) for r in RECORDS})


def _save_tiny(path: pathlib.Path, seed: int) -> pathlib.Path:
    train = [r for r in mini.generate(mini.MiniConfig(), "train") if r.dataset in DATASETS]
    tok = train_bpe_tokenizer([f"{r.question} {' '.join(r.options.values())}" for r in train[::5]], vocab_size=512)
    cfg = transformers.Qwen3Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                   max_position_embeddings=4096, tie_word_embeddings=False,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    hf = transformers.Qwen3ForCausalLM(cfg).eval().float()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.3 * torch.randn_like(p))
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    root = tmp_path_factory.mktemp("adv_ckpts")
    return _save_tiny(root / "a", 0), _save_tiny(root / "b", 1)


@pytest.fixture
def work(tmp_path, ckpts) -> dict[str, pathlib.Path]:
    """A private copy of checkpoint A and of the data (tests change them in place)."""
    shutil.copytree(ckpts[0], tmp_path / "ckpt")
    write_records(RECORDS, tmp_path / "data")
    return {"ckpt": tmp_path / "ckpt", "other_ckpt": ckpts[1], "data": tmp_path / "data", "out": tmp_path / "out"}


def _config(work: dict[str, pathlib.Path]):
    c = bench_config.default_config()
    c.out_dir, c.progress, c.report, c.batch_size, c.bootstrap_resamples = str(work["out"]), False, False, 8, 50
    c.data.update(source="jsonl", path=str(work["data"]), languages=LANGS, datasets=DATASETS, max_per_cell=3)
    c.models.tiny = bench_config.model_spec(str(work["ckpt"]), dtype="float32", param_dtype="float32",
                                          shard=False)  # one device: fewer, faster compilations
    return c


def _results(out: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (out / runner.RESULTS_NAME).read_text().splitlines()]


def _sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite_weights_in_place(dst: pathlib.Path, src: pathlib.Path) -> None:
    """Same path, same inode, same size, mtime put back: only the content (and ctime) change."""
    st = dst.stat()
    data = src.read_bytes()
    assert len(data) == st.st_size
    with dst.open("r+b") as fh:
        fh.write(data)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _flip_answers(data: pathlib.Path, dataset: str, language: str) -> list[str]:
    """Rewrites one data file with every answer changed; returns the new answers of the first 3
    records by source id (the ones a max_per_cell=3 cell scores)."""
    path = record_path(data, dataset, language, "test")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        keys = list(row["options"]) if row["options"] else ["yes", "no", "maybe"]
        row["answer"] = keys[(keys.index(row["answer"]) + 1) % len(keys)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return [r["answer"] for r in sorted(rows, key=lambda r: (r["source_id"], r["id"]))[:3]]


def _check_fresh(out: pathlib.Path, config) -> None:
    """Exactly one row per cell, each with the fingerprint this run computes, and predictions
    that are the cell's records under that digest; the report counts only those rows."""
    rows = _results(out)
    assert sorted((r["dataset"], r["language"]) for r in rows) == CELLS
    pools = {key: [] for key in CELLS}
    cells = runner.group_cells(runner.load_records(config.data, "test"), 3)
    wanted = runner._fingerprints(config, cells, pools, fingerprint.HashCache(None))
    for r in rows:
        assert r["fingerprint"] == wanted[("tiny", r["dataset"], r["language"])]
    preds = runner.read_predictions(out)["tiny"]
    raw = [json.loads(line) for line in (out / "predictions" / "tiny.jsonl").read_text().splitlines()]
    assert len(raw) == len(preds) == 3 * len(CELLS)  # no stale prediction left in the file
    digests = {(r["dataset"], r["language"]): r["fingerprint"]["digest"] for r in rows}
    assert all(p["fingerprint"] == digests[(p["dataset"], p["language"])] for p in raw)
    s = report.summarize(out)
    assert len(s.rows) == len(CELLS) and s.models == ["tiny"]


# ------------------------------------------------------------------------ changed fingerprints


def _mut_model_path(c, work):
    c.models.tiny.path = str(work["other_ckpt"])
    return "model.path"


def _mut_weights(c, work):
    _rewrite_weights_in_place(work["ckpt"] / "model.safetensors", work["other_ckpt"] / "model.safetensors")
    return "model.files (model.safetensors"


def _mut_tokenizer(c, work):
    tpl = work["ckpt"] / "chat_template.jinja"
    tpl.write_text(tpl.read_text().replace("<|im_start|>", "<|im_start|> "))
    return "tokenizer.files (chat_template.jinja"


def _mut_mcqa_answer(c, work):
    c.mcqa_answer = "option_text"
    return "prompt.mcqa_answer: 'letter' -> 'option_text'"


def _mut_seed(c, work):
    c.seed = 7
    return "seed: 0 -> 7"


def _mut_data(c, work):
    _flip_answers(work["data"], DATASETS[0], "en")
    return "data.records"


MUTATIONS = {"model_path": _mut_model_path, "weights_in_place": _mut_weights, "tokenizer": _mut_tokenizer,
             "mcqa_answer": _mut_mcqa_answer, "seed": _mut_seed, "data_file": _mut_data}
# The cells each change makes stale: the data change touches one cell, the rest all four.
STALE = {name: CELLS for name in MUTATIONS} | {"data_file": [(DATASETS[0], "en")]}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_changed_fingerprint_stops_then_recompute_replaces_only_stale_cells(name, work):
    c = _config(work)
    assert len(runner.run(c)["done"]) == len(CELLS)
    results = work["out"] / runner.RESULTS_NAME
    before_bytes = results.read_bytes()
    before = {(r["dataset"], r["language"]): line for r, line in zip(_results(work["out"]), before_bytes.splitlines(True))}
    preds_before = (work["out"] / "predictions" / "tiny.jsonl").read_bytes()

    field = MUTATIONS[name](c, work)
    with pytest.raises(runner.FingerprintMismatchError) as err:
        runner.run(c)
    msg = str(err.value)
    assert field in msg and "recompute=True" in msg, msg
    assert sorted(k[1:] for k in err.value.stale) == sorted(STALE[name])
    assert all(any(d.startswith(field.split(" ")[0]) for d in diffs) for diffs in err.value.stale.values())
    # Nothing was written by the refused run.
    assert results.read_bytes() == before_bytes
    assert (work["out"] / "predictions" / "tiny.jsonl").read_bytes() == preds_before

    c.recompute = True
    summary = runner.run(c)
    assert sorted(cell[1:] for cell in summary["done"]) == sorted(STALE[name])
    _check_fresh(work["out"], c)
    after = {(r["dataset"], r["language"]): line for r, line in
             zip(_results(work["out"]), results.read_bytes().splitlines(True))}
    for cell in CELLS:  # cells that were not stale are kept byte for byte, the others replaced
        assert (after[cell] == before[cell]) == (cell not in STALE[name]), cell
    rejected = [json.loads(line) for line in (work["out"] / runner.REJECTED_NAME).read_text().splitlines()]
    assert sum(r["file"] == str(results) for r in rejected) == len(STALE[name])
    # Run again: everything done, nothing recomputed.
    c.recompute = False
    assert runner.run(c)["done"] == []


def test_recomputed_rows_hold_the_new_values(work):
    """Fresh rows, not just fresh fingerprints: the rows after weights, data and tokenizer
    changes equal a clean run of the changed setup into an empty out_dir (seconds aside)."""
    c = _config(work)
    runner.run(c)
    _mut_weights(c, work)
    new_answers = _flip_answers(work["data"], DATASETS[0], "en")
    c.recompute = True
    runner.run(c)
    clean = _config(work)
    clean.out_dir = str(work["out"].parent / "clean")
    runner.run(clean)
    strip = lambda rows: sorted((json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True)
                                 for r in rows))
    assert strip(_results(work["out"])) == strip(_results(pathlib.Path(clean.out_dir)))
    row = next(r for r in _results(work["out"]) if (r["dataset"], r["language"]) == (DATASETS[0], "en"))
    assert row["fingerprint"]["fields"]["model.files"]["model.safetensors"].startswith(
        "sha256:" + _sha(work["other_ckpt"] / "model.safetensors"))
    golds = [p["gold"] for p in runner.read_predictions(work["out"])["tiny"]
             if (p["dataset"], p["language"]) == (DATASETS[0], "en")]
    assert golds == new_answers  # the recomputed cell read the rewritten answers


def test_hash_cache_never_hides_an_in_place_rewrite(work, monkeypatch):
    """With the digest cache allowed for fresh files, an unchanged file is not hashed again, and
    a rewrite that keeps path, inode, size and mtime is still seen (its ctime moved)."""
    monkeypatch.setattr(fingerprint, "RACY_S", -3600.0)
    hashed = []
    real = fingerprint.sha256_file
    monkeypatch.setattr(fingerprint, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    c = _config(work)
    runner.run(c)
    assert "model.safetensors" in hashed
    hashed.clear()
    assert runner.run(c)["done"] == []
    assert hashed == []  # every file answered from the cache
    _rewrite_weights_in_place(work["ckpt"] / "model.safetensors", work["other_ckpt"] / "model.safetensors")
    with pytest.raises(runner.FingerprintMismatchError, match=r"model\.files \(model\.safetensors"):
        runner.run(c)
    assert hashed == ["model.safetensors"]


def test_api_base_url_change_is_stale_and_never_answered_from_the_old_cache(work):
    by_message = {prompts.user_message(r): r for r in RECORDS}

    def responder(right: bool):
        def reply(body):
            r = by_message[body["messages"][-1]["content"]]
            choices = list(r.options) if r.options else ["yes", "no", "maybe"]
            return "Answer: " + (r.answer if right else next(x for x in choices if x != r.answer))
        return reply

    with StubServer(responder(True)) as good, StubServer(responder(False)) as bad:
        c = _config(work)
        c.models = ConfigDict()
        c.models.api = bench_config.model_spec("api:m-1", base_url=good.base_url, backoff_s=0.01)
        runner.run(c)
        assert all(r["accuracy"] == 1.0 for r in _results(work["out"]))
        c.models.api.base_url = bad.base_url
        with pytest.raises(runner.FingerprintMismatchError, match=r"model\.base_url: '.*' -> '.*'"):
            runner.run(c)
        c.recompute = True
        assert len(runner.run(c)["done"]) == len(CELLS)
        assert bad.num_requests == 3 * len(CELLS)
        assert all(r["accuracy"] == 0.0 for r in _results(work["out"]))
        assert all(r["fingerprint"]["fields"]["model.base_url"] == bad.base_url for r in _results(work["out"]))
        assert "api_key" not in json.dumps(_results(work["out"])[0]["fingerprint"]["fields"])


def test_rows_without_fingerprint_are_not_trusted(work):
    c = _config(work)
    runner.run(c)
    results = work["out"] / runner.RESULTS_NAME
    legacy = [{k: v for k, v in r.items() if k != "fingerprint"} for r in _results(work["out"])]
    results.write_text("".join(json.dumps(r) + "\n" for r in legacy))
    with pytest.raises(runner.FingerprintMismatchError, match="before rows had fingerprints"):
        runner.run(c)
    c.recompute = True
    assert len(runner.run(c)["done"]) == len(CELLS)
    _check_fresh(work["out"], c)


# --------------------------------------------------------------------- damaged / foreign lines


def _lines(path: pathlib.Path) -> list[bytes]:
    return path.read_bytes().splitlines(True)


def _cell(line: bytes) -> tuple[str, str]:
    row = json.loads(line)
    return row["dataset"], row["language"]


def test_truncated_last_results_line_recomputes_that_cell_only(work, caplog):
    c = _config(work)
    runner.run(c)
    results = work["out"] / runner.RESULTS_NAME
    lines = _lines(results)
    results.write_bytes(b"".join(lines[:-1]) + lines[-1][:-40])
    with caplog.at_level(logging.WARNING, logger=runner.__name__):
        summary = runner.run(c)
    assert f"{results}: line {len(lines)}: half-written" in caplog.text
    assert [cell[1:] for cell in summary["done"]] == [_cell(lines[-1])]
    new = _lines(results)
    assert new[:-1] == lines[:-1] and new[-1].endswith(b"\n") and _cell(new[-1]) == _cell(lines[-1])
    _check_fresh(work["out"], c)


def test_foreign_results_lines_are_warned_dropped_and_their_cell_recomputed(work, caplog):
    c = _config(work)
    runner.run(c)
    results = work["out"] / runner.RESULTS_NAME
    lines = _lines(results)
    ghost = json.loads(lines[0]) | {"model": "ghost", "accuracy": 1.0}
    planted = [lines[0], b"[1, 2, 3]\n", *lines[2:], b"not json at all\n", (json.dumps(ghost) + "\n").encode(),
               b'{"model": "tiny", "dataset": 5}\n']
    results.write_bytes(b"".join(planted))  # line 2 (a real cell's row) replaced by a JSON list
    with caplog.at_level(logging.WARNING, logger=runner.__name__):
        summary = runner.run(c)
    for number, what in ((2, "JSON list"), (len(lines) + 1, "not JSON"), (len(lines) + 2, "not in this run"),
                         (len(lines) + 3, "missing or mistyped")):
        assert f"{results}: line {number}: " in caplog.text and what in caplog.text, (number, what)
    assert [cell[1:] for cell in summary["done"]] == [_cell(lines[1])]
    new = _lines(results)
    assert new[:-1] == [lines[0], *lines[2:]]  # the neighbours, byte for byte and in order
    assert _cell(new[-1]) == _cell(lines[1])
    _check_fresh(work["out"], c)
    assert "ghost" not in report.leaderboard_markdown(report.summarize(work["out"]))
    rejected = (work["out"] / runner.REJECTED_NAME).read_text()
    assert "ghost" in rejected and "not json at all" in rejected


def test_damaged_predictions_recompute_the_cell_they_belong_to(work, caplog):
    c = _config(work)
    runner.run(c)
    results = work["out"] / runner.RESULTS_NAME
    preds = work["out"] / "predictions" / "tiny.jsonl"
    res_lines, pred_lines = _lines(results), _lines(preds)
    last_cell = _cell(pred_lines[-1])
    # A truncated last prediction and a foreign line (JSON of another shape) in the middle.
    planted = [*pred_lines[:2], b'{"hello": "world"}\n', *pred_lines[2:-1], pred_lines[-1][:-30]]
    preds.write_bytes(b"".join(planted))
    with caplog.at_level(logging.WARNING, logger=runner.__name__):
        summary = runner.run(c)
    assert f"{preds}: line 3: not a row of this file" in caplog.text
    assert f"{preds}: line {len(planted)}: half-written" in caplog.text
    assert "are incomplete" in caplog.text
    assert [cell[1:] for cell in summary["done"]] == [last_cell]
    kept = [l for l in res_lines if _cell(l) != last_cell]
    assert _lines(results)[:-1] == kept and _cell(_lines(results)[-1]) == last_cell
    other_preds = [l for l in pred_lines if _cell(l) != last_cell]
    assert _lines(preds)[:len(other_preds)] == other_preds  # other cells' predictions byte for byte
    _check_fresh(work["out"], c)


def test_results_path_that_is_a_directory_is_a_clear_error(work):
    c = _config(work)
    (work["out"] / runner.RESULTS_NAME).mkdir(parents=True)
    with pytest.raises(runner.ResultsFileError, match="not a regular file"):
        runner.run(c)
