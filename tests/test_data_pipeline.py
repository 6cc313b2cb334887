"""grain SFT pipeline: loss mask, truncation, packing invariants, mixing shares, determinism,
checkpointing, sharding and the batch contract."""

import collections
import dataclasses
import json
import subprocess
import sys

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from globmed_jax.data import mini, pipeline, prompts, tasks
from globmed_jax.data.languages import DEFAULT_LANGUAGES, low_resource
from globmed_jax.data.prompts import PromptConfig
from globmed_jax.data.schema import Record
from globmed_jax.models.tokenizer import build_qwen3_tokenizer

EOT = "<|im_end|>"
MINI = tasks.globmed_mini()


@pytest.fixture(scope="module")
def tok():
    return build_qwen3_tokenizer()


def _cfg(**kw):
    base = dict(seq_len=192, batch_size=4, prefetch_buffer_size=0)
    base.update(kw)
    return pipeline.PipelineConfig(**base)


def _batches(cfg, tok, n, **kw):
    it = pipeline.make_train_iterator(cfg, tok, shard_index=kw.pop("shard_index", 0),
                                      shard_count=kw.pop("shard_count", 1), **kw)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def _sample_records():
    data = mini.generate(split="test")
    by = collections.defaultdict(list)
    for r in data:
        by[(r.family, r.language)].append(r)
    return [by[(f, lang)][i] for f in mini.FAMILIES for lang in ("en", "zh", "ar", "am") for i in (0, 5)]


def test_prompt_format_per_family(tok):
    recs = {r.family: r for r in _sample_records() if r.language == "en"}
    mc = pipeline.render_prompt(recs["mcqa"], tok)
    assert mc.startswith("<|im_start|>user\n" + prompts.DEFAULT_INSTRUCTIONS["mcqa"])
    assert mc.endswith("<|im_end|>\n<|im_start|>assistant\n")
    for letter, text in recs["mcqa"].options.items():
        assert f"\n{letter}. {text}" in mc
    nli = prompts.user_message(recs["nli"])
    assert f"Premise: {recs['nli'].context}\nHypothesis: {recs['nli'].question}" in nli
    ynm = prompts.user_message(recs["yes_no_maybe"])
    assert f"Context: {recs['yes_no_maybe'].context}\nQuestion: {recs['yes_no_maybe'].question}" in ynm
    custom = PromptConfig(system_prompt="You are a doctor.", instructions=(("nli", "Label it."),),
                          labels=(("premise", "P"),))
    text = pipeline.render_prompt(recs["nli"], tok, custom)
    assert text.startswith("<|im_start|>system\nYou are a doctor.<|im_end|>\n<|im_start|>user\nLabel it.\n\nP: ")
    think = pipeline.render_prompt(recs["nli"], tok, PromptConfig(enable_thinking=False))
    assert think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert prompts.answer_choices(recs["mcqa"]) == ("A", "B", "C", "D")
    with pytest.raises(ValueError, match="not an option"):
        prompts.answer_target(dataclasses.replace(recs["mcqa"], answer="E"))
    with pytest.raises(ValueError, match="not in"):
        prompts.answer_target(dataclasses.replace(recs["nli"], answer="yes"))


def test_option_text_answer_format(tok):
    """mcqa_answer="option_text": the instruction asks for the option's text, the trained target
    is that text, the scored choices are the option texts, and the label stays the letter."""
    mc = next(r for r in _sample_records() if r.family == "mcqa" and r.language == "zh")
    nli = next(r for r in _sample_records() if r.family == "nli")
    fmt = PromptConfig(mcqa_answer="option_text")
    text = pipeline.render_prompt(mc, tok, fmt)
    assert prompts.DEFAULT_INSTRUCTIONS["mcqa_option_text"] in text
    assert prompts.DEFAULT_INSTRUCTIONS["mcqa"] not in text
    ex = pipeline.format_example(mc, tok, prompt_config=fmt)
    assert ex.target == mc.options[mc.answer] != mc.answer
    f = pipeline.example_features(ex, language_id=0)
    assert tok.decode(f["targets"][f["loss_mask"] == 1]) == mc.options[mc.answer] + EOT
    letters = prompts.choice_labels(mc)
    assert prompts.answer_choices(mc, fmt) == tuple(mc.options[l] for l in letters)
    assert letters[prompts.answer_choices(mc, fmt).index(ex.target)] == prompts.gold_label(mc) == mc.answer
    # Other families are unaffected.
    assert prompts.answer_target(nli, fmt) == prompts.answer_target(nli) == prompts.gold_label(nli)
    assert prompts.answer_choices(nli, fmt) == prompts.choice_labels(nli) == ("entailment", "neutral", "contradiction")
    with pytest.raises(ValueError, match="mcqa_answer"):
        PromptConfig(mcqa_answer="text")


def test_loss_mask_covers_exactly_the_answer_tokens(tok):
    for r in _sample_records():
        ex = pipeline.format_example(r, tok)
        f = pipeline.example_features(ex, language_id=3)
        assert ex.target == prompts.answer_target(r)
        assert tok.decode(f["targets"][f["loss_mask"] == 1]) == ex.target + EOT
        # Everything before is the prompt: inputs start with it, and no prompt target is trained.
        n_prompt = len(ex.prompt_ids)
        assert tok.decode(f["inputs"][:n_prompt]) == ex.prompt
        assert f["loss_mask"][: n_prompt - 1].sum() == 0 and f["loss_mask"][n_prompt - 1 :].all()
        np.testing.assert_array_equal(f["inputs"][1:], f["targets"][:-1])
        assert (f["language_ids"] == 3).all() and f["inputs"].dtype == np.int32


def test_truncation_keeps_completion_trims_prompt_from_left(tok):
    r = _sample_records()[0]
    long = dataclasses.replace(r, question=r.question + " padding words" * 400)
    full = pipeline.format_example(long, tok)
    ex = pipeline.format_example(long, tok, max_tokens=64)
    assert ex.truncated and len(ex.ids) == 64
    assert ex.num_truncated == len(full.ids) - 64
    np.testing.assert_array_equal(ex.completion_ids, full.completion_ids)
    np.testing.assert_array_equal(ex.prompt_ids, full.prompt_ids[-len(ex.prompt_ids):])
    f = pipeline.example_features(ex, 0)
    assert tok.decode(f["targets"][f["loss_mask"] == 1]) == ex.target + EOT
    assert not pipeline.format_example(r, tok, max_tokens=512).truncated


def test_truncated_examples_are_counted_not_dropped(tok):
    base = MINI.task("globmed_mini_mcqa_en")
    long = [dataclasses.replace(r, question=r.question + " very long" * 300) for r in base.records("train")[:3]]
    task = tasks.Task("t_long_en", source=lambda split: long, language="en", family="mcqa")
    cfg = _cfg(mixture=tasks.single_task(task), seq_len=96, batch_size=2)
    stats = pipeline.TruncationStats()
    batches = _batches(cfg, tok, 3, stats=stats)
    # 3 batches x 2 rows of one example each; packing may have formatted one more in advance.
    assert set(stats.counts) == {"t_long_en"} and stats.total >= 6
    assert pipeline.scan_truncation(cfg, tok) == {"t_long_en": 3}
    for b in batches:
        pipeline.check_batch(b, 2, 96)
        for row in range(2):
            assert tok.decode(b["targets"][row][b["loss_mask"][row] == 1]) in {f"{x}{EOT}" for x in "ABCD"}


@pytest.fixture(scope="module")
def example_index(tok):
    """Token ids (as a tuple) -> language of every formatted train example of globmed_mini."""
    index = {}
    for r in mini.generate(split="train"):
        ex = pipeline.format_example(r, tok, max_tokens=193)
        index[tuple(ex.ids.tolist())] = r.language
    return index


def _segments(b, row):
    seg = b["segment_ids"][row]
    for s in range(1, seg.max() + 1):
        idx = np.nonzero(seg == s)[0]
        yield s, idx


def test_packing_invariants(tok, example_index):
    cfg = _cfg()
    n_segments = 0
    for b in _batches(cfg, tok, 6):
        pipeline.check_batch(b, cfg.batch_size, cfg.seq_len)
        for row in range(cfg.batch_size):
            seg = b["segment_ids"][row]
            used = seg > 0
            # Segments are contiguous blocks 1, 2, ..; padding (segment 0) only at the end.
            n_used = used.sum()
            assert used[:n_used].all() and not used[n_used:].any()
            assert (np.diff(seg[:n_used]) >= 0).all() and (np.diff(seg[:n_used]) <= 1).all() and seg[0] == 1
            pad = ~used
            assert (b["loss_mask"][row][pad] == 0).all() and (b["language_ids"][row][pad] == -1).all()
            assert (b["positions"][row][pad] == 0).all()
            for _, idx in _segments(b, row):
                n_segments += 1
                assert (b["positions"][row][idx] == np.arange(len(idx))).all()
                inputs, targets = b["inputs"][row][idx], b["targets"][row][idx]
                # Each segment is exactly one whole example (no tokens of another one mixed in).
                ids = tuple(np.concatenate([inputs, targets[-1:]]).tolist())
                assert ids in example_index
                lang = DEFAULT_LANGUAGES.index(example_index[ids])
                assert (b["language_ids"][row][idx] == lang).all()
                mask = b["loss_mask"][row][idx]
                assert mask[-1] == 1 and tok.decode(targets[mask == 1]).endswith(EOT)
    assert n_segments > 6 * cfg.batch_size  # packing actually packed several examples per row


def test_padding_mode_one_example_per_row(tok, example_index):
    cfg = _cfg(packing=False, batch_size=3)
    for b in _batches(cfg, tok, 3):
        pipeline.check_batch(b, 3, cfg.seq_len)
        for row in range(3):
            assert set(np.unique(b["segment_ids"][row])) <= {0, 1}
            idx = np.nonzero(b["segment_ids"][row] == 1)[0]
            assert (b["positions"][row][idx] == np.arange(len(idx))).all()
            ids = tuple(np.concatenate([b["inputs"][row][idx], b["targets"][row][idx][-1:]]).tolist())
            assert ids in example_index
            pad = b["segment_ids"][row] == 0
            assert (b["loss_mask"][row][pad] == 0).all() and (b["language_ids"][row][pad] == -1).all()


def _draw_task_shares(cfg, tok, n):
    it = iter(pipeline.mixed_example_dataset(cfg, tok, shard_index=0, shard_count=1))
    names = cfg.mixture.task_names
    counts = collections.Counter(names[int(next(it)["task_index"])] for _ in range(n))
    return {k: v / n for k, v in counts.items()}


@pytest.mark.parametrize("name", ["globmed_mini", "globmed_mini_t5"])
def test_mixture_shares_converge_to_rates(tok, name):
    mixture = tasks.named_mixture(name)
    cfg = _cfg(mixture=mixture)
    n = 3000
    empirical = _draw_task_shares(cfg, tok, n)
    expected = mixture.shares()
    for task_name, share in expected.items():
        assert empirical.get(task_name, 0.0) == pytest.approx(share, abs=0.01), task_name
    low = set(low_resource(DEFAULT_LANGUAGES))
    emp_low = sum(v for k, v in empirical.items() if mixture.task(k).language in low)
    exp_low = sum(v for k, v in mixture.language_shares().items() if k in low)
    assert emp_low == pytest.approx(exp_low, abs=0.01)


def test_deterministic_for_seed(tok):
    a, b = _batches(_cfg(), tok, 3), _batches(_cfg(), tok, 3)
    c = _batches(_cfg(seed=1), tok, 3)
    for x, y in zip(a, b):
        for k in pipeline.BATCH_KEYS:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["inputs"], z["inputs"]) for x, z in zip(a, c))


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for x, y in zip(batches_a, batches_b):
        for k in pipeline.BATCH_KEYS:
            np.testing.assert_array_equal(x[k], y[k])


def test_iterator_state_restores_identical_batches(tok):
    cfg = _cfg(prefetch_buffer_size=2)  # with the prefetch thread, as in training
    it = pipeline.make_train_iterator(cfg, tok, shard_index=0, shard_count=1)
    for _ in range(4):
        next(it)
    state = it.get_state()
    json.dumps(state)  # the orbax handler stores it as JSON
    want = [next(it) for _ in range(3)]
    it2 = pipeline.make_train_iterator(cfg, tok, shard_index=0, shard_count=1)
    next(it2)  # a different position, overwritten by set_state
    it2.set_state(state)
    _assert_same(want, [next(it2) for _ in range(3)])
    it.close()
    it2.close()


def test_orbax_grain_checkpoint_round_trip(tok, tmp_path):
    cfg = _cfg(prefetch_buffer_size=2)
    it = pipeline.make_train_iterator(cfg, tok, shard_index=0, shard_count=1)
    for _ in range(3):
        next(it)
    mngr = ocp.CheckpointManager(tmp_path / "ckpt")
    mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
    want = [next(it) for _ in range(2)]
    it2 = pipeline.make_train_iterator(cfg, tok, shard_index=0, shard_count=1)
    mngr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it2)))
    _assert_same(want, [next(it2) for _ in range(2)])
    mngr.close()
    it.close()
    it2.close()


def test_process_shards_disjoint_and_complete():
    task = MINI.task("globmed_mini_nli_sw")
    records = task.records("train")
    n, count = len(records), 3
    seen = []
    for index in range(count):
        ds = pipeline.task_records_dataset(task, "train", seed=5, shard_index=index, shard_count=count)
        # This shard's part of the first epoch: global positions index, index + count, .. < n.
        k = len(range(index, n, count))
        seen.append([ds[i].id for i in range(k)])
    ids = [i for shard in seen for i in shard]
    assert len(ids) == len(set(ids)) == n  # disjoint, and together the whole epoch
    assert set(ids) == {r.id for r in records}
    assert seen[0] != sorted(seen[0])  # shuffled
    # The next epoch is reshuffled but again complete across shards.
    epoch2 = [pipeline.task_records_dataset(task, "train", seed=5, shard_index=j, shard_count=count)
              for j in range(count)]
    second = [epoch2[p % count][p // count].id for p in range(n, 2 * n)]
    assert set(second) == set(ids) and second != [seen[p % count][p // count] for p in range(n)]


def test_shards_give_different_batches(tok):
    a = _batches(_cfg(), tok, 2, shard_index=0, shard_count=2)
    b = _batches(_cfg(), tok, 2, shard_index=1, shard_count=2)
    assert not np.array_equal(a[0]["inputs"], b[0]["inputs"])
    with pytest.raises(ValueError, match="shard_index"):
        pipeline.task_records_dataset(MINI.task("globmed_mini_nli_sw"), "train", seed=0, shard_index=2, shard_count=2)


def test_language_ids_follow_config_languages(tok):
    two = tasks.Mixture.of("t_two", [MINI.task("globmed_mini_mcqa_en"), MINI.task("globmed_mini_mcqa_sw")], 1.0)
    cfg = _cfg(mixture=two, languages=("sw", "en"))
    batches = _batches(cfg, tok, 4)
    counts = pipeline.language_token_counts(batches, 2)
    assert counts[0] > 0 and counts[1] > 0
    assert set(np.unique(np.concatenate([b["language_ids"].ravel() for b in batches]))) <= {-1, 0, 1}
    with pytest.raises(ValueError, match="not in config.languages"):
        pipeline.make_train_dataset(_cfg(mixture=two, languages=("en",)), tok, shard_index=0, shard_count=1)


def test_training_path_does_not_import_seqio():
    code = ("import sys, globmed_jax.data.pipeline, globmed_jax.data.tasks, globmed_jax.data.mini; "
            "bad = [m for m in ('seqio', 'tensorflow') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_open_qa_target_is_the_free_text(tok):
    r = Record(id="x", source_id="x", dataset="d", language="en", split="train", family="open_qa",
               question="What is the first-line drug for anaphylaxis?", answer="Epinephrine.")
    ex = pipeline.format_example(r, tok)
    f = pipeline.example_features(ex, 0)
    assert tok.decode(f["targets"][f["loss_mask"] == 1]) == "Epinephrine." + EOT
