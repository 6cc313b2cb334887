"""The input pipeline's fast paths give exactly what the plain grain / tokenizer calls give:
``pipeline.encode`` vs ``tokenizer.encode``, ``pipeline.mix_datasets`` vs ``grain.IterDataset.mix``
(elements, checkpoint state, resume), and whole packed batches vs a reference pipeline built
from stock grain pieces and the HF tokenizer's ``encode``."""

from __future__ import annotations

import grain
import numpy as np
import pytest
from grain._src.python.dataset.transformations import mix as grain_mix

from globmed_jax.data import pipeline, prompts, tasks
from globmed_jax.models.tokenizer import build_qwen3_tokenizer, pad_id

EOT = "<|im_end|>"


@pytest.fixture(scope="module")
def tok():
    return build_qwen3_tokenizer()


def test_encode_matches_tokenizer_encode(tok):
    texts = ["", " ", "Which drug treats fever?", "¿Qué fármaco trata la fiebre?", "发烧用什么药？",
             "ما هو الدواء؟", "የትኛው መድሃኒት", "Nào ni ọ̀nà", "x<|im_end|>y <|im_start|>user\n", "\n\n  tabs\t\tend  ",
             "é vs é (NFC)"]
    for text in texts:
        assert pipeline.encode(tok, text) == tok.encode(text, add_special_tokens=False), text
    tok.backend_tokenizer.enable_truncation(3)  # not the plain state: falls back to the wrapper
    try:
        assert pipeline.encode(tok, texts[2]) == tok.encode(texts[2], add_special_tokens=False)
    finally:
        tok.backend_tokenizer.no_truncation()


def test_mix_selection_matches_grain():
    rng = np.random.default_rng(0)
    for n in (2, 7, 150):
        props = tuple(grain_mix._float_to_int_proportions(list(rng.uniform(0.01, 3.0, n))))
        for start, count in ((0, 3000), (10**9 + 17, 200)):
            want = [grain_mix._dataset_and_key_of_next_element(k, props)[0] for k in range(start, start + count)]
            assert pipeline.mix_selection(start, count, props).tolist() == want


def _parents(sizes):
    return [grain.MapDataset.range(100 * i, 100 * i + n).shuffle(seed=i).to_iter_dataset() for i, n in enumerate(sizes)]


def test_mix_same_elements_state_and_resume_as_grain():
    sizes, weights = (40, 9, 25, 3), (0.5, 0.1, 0.3, 0.05)
    ref = iter(grain.IterDataset.mix(_parents(sizes), weights))
    ours = iter(pipeline.mix_datasets(_parents(sizes), weights))
    states = []
    for step in range(30):
        assert next(ours) == next(ref), step
        states.append(ours.get_state())
        assert states[-1] == ref.get_state(), step
    # resume from a state taken mid-stream, into a fresh iterator and into one already advanced
    for it in (iter(pipeline.mix_datasets(_parents(sizes), weights)), ours):
        it.set_state(states[11])
        ref.set_state(states[11])
        for step in range(12, 200):
            try:
                want = next(ref)
            except StopIteration:  # a finite parent ran out: ours stops at the same draw
                with pytest.raises(StopIteration):
                    next(it)
                break
            assert next(it) == want
            assert it.get_state() == ref.get_state()
        else:
            pytest.fail("the mixed stream of finite parents never ended")


def _reference_features(record, tok, task_index, language_id, max_tokens):
    """Straight from the HF tokenizer's ``encode``; the truncation rule of ``format_example``."""
    prompt_ids = tok.encode(pipeline.render_prompt(record, tok), add_special_tokens=False)
    completion_ids = tok.encode(prompts.answer_target(record), add_special_tokens=False) + [
        tok.convert_tokens_to_ids(EOT)]
    if len(prompt_ids) + len(completion_ids) > max_tokens:
        completion_ids = completion_ids[: max_tokens - 1]
        prompt_ids = prompt_ids[len(prompt_ids) - (max_tokens - len(completion_ids)):]
    ids = np.asarray(prompt_ids + completion_ids, np.int32)
    return {"inputs": ids[:-1], "targets": ids[1:],
            "loss_mask": (np.arange(1, len(ids)) >= len(prompt_ids)).astype(np.float32),
            "language_ids": np.full(len(ids) - 1, language_id, np.int32), "task_index": np.int32(task_index)}


def _reference_batches(cfg, tok, n):
    """The pipeline as stock grain ops: per task shuffle -> repeat -> shard -> format, then
    ``IterDataset.mix``, grain's first-fit packer, batch."""
    names = tuple(cfg.mixture.tasks())
    parents, weights = [], []
    for name, share in cfg.mixture.shares().items():
        task = cfg.mixture.tasks()[name]
        ds = grain.MapDataset.source(task.records(cfg.split)).shuffle(seed=pipeline.task_seed(cfg.seed, name))
        ds = ds.repeat(None)[0::1].map(
            lambda r, i=names.index(name), lang=cfg.languages.index(task.language):
            _reference_features(r, tok, i, lang, cfg.seq_len + 1))
        parents.append(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
        weights.append(share)
    t, pad = cfg.seq_len, pad_id(tok)
    ds = grain.experimental.FirstFitPackIterDataset(
        grain.IterDataset.mix(parents, weights), length_struct={k: t for k in pipeline._PACKED_KEYS},
        num_packing_bins=cfg.batch_size, seed=cfg.seed, shuffle_bins=True,
        padding_struct={"inputs": pad, "targets": pad, "loss_mask": 0, "language_ids": -1})
    it = iter(ds.batch(cfg.batch_size))
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 3])
def test_packed_batches_equal_the_reference_pipeline(tok, seed):
    cfg = pipeline.PipelineConfig(mixture=tasks.globmed_mini(), seq_len=160, batch_size=4, seed=seed,
                                  prefetch_buffer_size=0)
    it = pipeline.make_train_iterator(cfg, tok, shard_index=0, shard_count=1)
    got = [next(it) for _ in range(6)]
    want = _reference_batches(cfg, tok, 6)
    for b, (x, y) in enumerate(zip(got, want)):
        for ours, theirs in (("inputs", "inputs"), ("targets", "targets"), ("loss_mask", "loss_mask"),
                             ("segment_ids", "inputs_segment_ids"), ("positions", "inputs_positions"),
                             ("language_ids", "language_ids")):
            np.testing.assert_array_equal(x[ours], y[theirs], err_msg=f"batch {b} {ours}")
    assert any(np.count_nonzero(x["segment_ids"] == 2) for x in got)  # really packed: rows hold several
