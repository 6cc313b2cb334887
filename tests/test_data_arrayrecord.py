"""The versioned TFDS ArrayRecord build on the training path: ArrayRecord tasks and mixtures,
two processes reading disjoint, complete shards by index, iterator state save / restore (also
with grain worker processes), and the mixture resolved from ``data.arrayrecord_dir``."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from globmed_jax.data import pipeline, tasks
from globmed_jax.models.tokenizer import build_qwen3_tokenizer
from globmed_jax.training import config as config_lib
from globmed_jax.training import data as train_data

REPO = pathlib.Path(__file__).resolve().parents[1]
# (source folder, language, train records); test: 3 per folder
LAYOUT = (("GlobMed_MedQA", "en", 23), ("GlobMed_MedQA", "sw", 11), ("GlobMed_PubMedQA", "en", 17),
          ("GlobMed_BioNLI", "zh", 9))


def _item(source: str, lang: str, i: int) -> dict:
    if source == "GlobMed_MedQA":
        return {"id": f"q{i}", "question": f"[{lang}] Which drug treats condition {i}?",
                "options": {"A": f"drug {i}", "B": "other", "C": "none", "D": "all"}, "answer_idx": "A",
                "explanation": f"Because {i}." if i % 2 else None}
    if source == "GlobMed_PubMedQA":
        return {"pubid": i, "question": f"Does X{i} help?", "context": ["a", f"b{i}"],
                "final_decision": ("yes", "no", "maybe")[i % 3]}
    return {"id": f"n{i}", "premise": f"P{i}", "hypothesis": f"H{i}", "label": "neutral"}


def write_release(root: pathlib.Path) -> pathlib.Path:
    for source, lang, n in LAYOUT:
        for split, rng in (("train", range(n)), ("test", range(1000, 1003))):
            path = root / source / lang / f"{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps([_item(source, lang, i) for i in rng]), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> pathlib.Path:
    from data_pipelines.build import build

    tmp = tmp_path_factory.mktemp("ar")
    out = tmp / "out"
    counts = build("globmed", write_release(tmp / "rel"), out, tfds=True, progress=False)
    assert counts.total_quarantined == 0
    return out


@pytest.fixture(scope="module")
def tok():
    return build_qwen3_tokenizer()


LANGS = ("en", "sw", "zh")


def test_source_matches_jsonl_and_counts_from_metadata(build_dir, monkeypatch):
    found = tasks.find_arrayrecord_datasets(build_dir / "tfds", LANGS)
    assert found == (("bionli", "zh", "nli"), ("medqa", "en", "mcqa"), ("medqa", "sw", "mcqa"),
                     ("pubmedqa", "en", "yes_no_maybe"))
    ar = {t.name: t for t in tasks.arrayrecord_tasks(build_dir, found)}  # the build output dir works too
    js = {t.name: t for t in tasks.jsonl_tasks(build_dir, found)}
    assert ar.keys() == js.keys()
    for name, task in ar.items():
        for split in ("train", "test"):
            want = {r.id: r for r in js[name].records(split)}
            got = {r.id: r for r in task.records(split)}
            assert got == want  # every field decodes back, None context / explanation included
        assert task.records("validation") == []
    # counts come from dataset_info.json, without reading a record
    monkeypatch.setattr(tasks, "example_to_record", lambda ex: pytest.fail("record read"))
    assert {n: t.num_examples("train") for n, t in ar.items()} == {
        "bionli_zh": 9, "medqa_en": 23, "medqa_sw": 11, "pubmedqa_en": 17}
    records = tasks.pipeline_records(ar["medqa_en"], "train")
    assert isinstance(records, tasks.ArrayRecordRecords) and len(records) == 23
    with pytest.raises(IndexError):
        records[23]


def test_mixture_from_config_weights_across_arrayrecord_tasks(build_dir):
    cfg = config_lib.default_config()
    cfg.model.init = "scratch"
    cfg.data.arrayrecord_dir = str(build_dir / "tfds")
    cfg.data.mixture = "globmed_ar_t2"
    cfg.data.temperature = 2.0
    cfg.data.languages = LANGS
    data = config_lib.typed_config(cfg).data
    assert data.arrayrecord_dir == str(build_dir / "tfds")
    mixture = train_data.resolve_mixture(data, seed=0)
    assert mixture.name == "globmed_ar_t2"
    assert all(isinstance(t.source, tasks.ArrayRecordSource) for t in mixture.tasks().values())
    n = {"bionli_zh": 9, "medqa_en": 23, "medqa_sw": 11, "pubmedqa_en": 17}
    total = sum(v ** 0.5 for v in n.values())
    assert mixture.shares() == pytest.approx({k: v ** 0.5 / total for k, v in n.items()})
    same = tasks.jsonl_mixture(build_dir, "j", 2.0, LANGS)
    assert mixture.shares() == pytest.approx(same.shares())


def test_draws_follow_the_mixture_shares(build_dir, tok):
    mixture = tasks.Mixture("m", tuple((t, w) for t, w in zip(
        tasks.arrayrecord_tasks(build_dir, tasks.find_arrayrecord_datasets(build_dir, LANGS)), (1.0, 6.0, 1.0, 2.0))))
    cfg = pipeline.PipelineConfig(mixture=mixture, seq_len=256, batch_size=1, languages=LANGS, prefetch_buffer_size=0)
    ds = pipeline.mixed_example_dataset(cfg, tok, shard_index=0, shard_count=1)
    it = iter(ds)
    names = mixture.task_names
    drawn = [names[int(next(it)["task_index"])] for _ in range(400)]
    freq = {n: drawn.count(n) / len(drawn) for n in names}
    assert freq == pytest.approx(mixture.shares(), abs=0.03)


SHARD_SCRIPT = textwrap.dedent("""
    import json, sys
    from globmed_jax.data import pipeline, tasks
    data_dir, index, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    read = []
    get = tasks.ArrayRecordRecords.__getitem__
    def spy(self, i):
        read.append([self.dataset_dir.split("/glob_med/")[1], self.split, int(i)])
        return get(self, i)
    tasks.ArrayRecordRecords.__getitem__ = spy
    out = {}
    found = tasks.find_arrayrecord_datasets(data_dir, ("en", "sw", "zh"))  # reads record 0 of each: the family
    read.clear()
    for task in tasks.arrayrecord_tasks(data_dir, found):
        ds = pipeline.task_records_dataset(task, "train", seed=3, num_epochs=1, shard_index=index, shard_count=count)
        out[task.name] = [r.id for r in ds]
    print(json.dumps({"ids": out, "read": read}))
""")


def test_two_processes_read_disjoint_complete_shards_by_index(build_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", SHARD_SCRIPT, str(build_dir / "tfds"), str(i), "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    a, b = results
    for name, task in ((t.name, t) for t in tasks.arrayrecord_tasks(build_dir, tasks.find_arrayrecord_datasets(build_dir, LANGS))):
        want = {r.id for r in task.records("train")}
        ids_a, ids_b = a["ids"][name], b["ids"][name]
        assert not set(ids_a) & set(ids_b)  # disjoint
        assert set(ids_a) | set(ids_b) == want and len(ids_a) + len(ids_b) == len(want)  # complete
        assert abs(len(ids_a) - len(ids_b)) <= 1
    # each process read only its own records, each once: the indices read are disjoint across
    # processes and as many as the records it yielded
    read_a = {tuple(r) for r in a["read"]}
    read_b = {tuple(r) for r in b["read"]}
    assert len(read_a) == len(a["read"]) == sum(map(len, a["ids"].values()))
    assert len(read_b) == len(b["read"]) == sum(map(len, b["ids"].values()))
    assert not read_a & read_b


def _ar_config(build_dir, **kw) -> pipeline.PipelineConfig:
    mixture = tasks.arrayrecord_mixture(build_dir, "ar", 1.0, LANGS)
    base = dict(mixture=mixture, seq_len=256, batch_size=2, languages=LANGS, prefetch_buffer_size=2)
    base.update(kw)
    return pipeline.PipelineConfig(**base)


def _same(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        for k in pipeline.BATCH_KEYS:
            np.testing.assert_array_equal(x[k], y[k])


def test_iterator_state_restores_identical_batches(build_dir, tok):
    cfg = _ar_config(build_dir)
    it = pipeline.make_train_iterator(cfg, tok, shard_index=1, shard_count=2)
    for _ in range(5):
        batch = next(it)
    pipeline.check_batch(batch, 2, 256)
    state = it.get_state()
    json.dumps(state)
    want = [next(it) for _ in range(3)]
    it2 = pipeline.make_train_iterator(cfg, tok, shard_index=1, shard_count=2)
    next(it2)
    it2.set_state(state)
    _same(want, [next(it2) for _ in range(3)])
    other = pipeline.make_train_iterator(cfg, tok, shard_index=0, shard_count=2)
    assert not np.array_equal(next(other)["inputs"], _ar_first(cfg, tok)["inputs"])


def _ar_first(cfg, tok):
    return next(pipeline.make_train_iterator(cfg, tok, shard_index=1, shard_count=2))


WORKER_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from globmed_jax.data import pipeline, tasks
    from globmed_jax.models.tokenizer import build_qwen3_tokenizer

    def main():
        data_dir = sys.argv[1]
        tok = build_qwen3_tokenizer()
        mixture = tasks.arrayrecord_mixture(data_dir, "ar", 1.0, ("en", "sw", "zh"))
        def cfg(workers):
            return pipeline.PipelineConfig(mixture=mixture, seq_len=256, batch_size=2, languages=("en", "sw", "zh"),
                                           worker_count=workers, prefetch_buffer_size=0)
        it = pipeline.make_train_iterator(cfg(1), tok, shard_index=0, shard_count=1)
        for _ in range(4):
            next(it)
        state = it.get_state()
        want = [next(it) for _ in range(3)]
        it2 = pipeline.make_train_iterator(cfg(1), tok, shard_index=0, shard_count=1)
        it2.set_state(state)
        got = [next(it2) for _ in range(3)]
        same = all(np.array_equal(x[k], y[k]) for x, y in zip(want, got) for k in pipeline.BATCH_KEYS)
        print(json.dumps({"same_after_restore": same, "batches": len(got), "state_keys": sorted(state)}))

    if __name__ == "__main__":
        main()
""")


@pytest.mark.slow  # starts grain worker processes (spawned: each imports JAX and the tokenizer)
def test_iterator_state_restores_with_worker_processes(build_dir, tmp_path):
    script = tmp_path / "workers.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, str(script), str(build_dir / "tfds")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["same_after_restore"] is True and out["batches"] == 3


def test_arrayrecord_records_pickle_without_open_files(build_dir):
    import pickle

    task = tasks.arrayrecord_tasks(build_dir, (("medqa", "en", "mcqa"),))[0]
    records = tasks.pipeline_records(task, "train")
    first = records[0]  # opens the files
    copy = pickle.loads(pickle.dumps(records))
    assert copy._source is None and copy[0] == first and len(copy) == 23


def test_proto_decode_equals_tfds_decode_and_names_bad_records(build_dir):
    for dataset, lang, family in tasks.find_arrayrecord_datasets(build_dir / "tfds", LANGS):
        records = tasks.ArrayRecordSource(str(build_dir / "tfds"), dataset, lang).random_access("train")
        records._open()
        assert records._raw is not None  # our feature set: the direct proto path
        for i in range(len(records)):
            assert records[i] == tasks.example_to_record(records._source[i])  # tfds's generic decoder
    from tensorflow_datasets.proto import tf_example_pb2

    ex = tf_example_pb2.Example.FromString(records._raw[0])
    ex.features.feature["question"].bytes_list.value.append(b"second")
    with pytest.raises(ValueError, match=r"rec 7: feature 'question' has 2 values"):
        tasks.serialized_to_record(ex.SerializeToString(), "rec 7")
    ex = tf_example_pb2.Example.FromString(records._raw[0])
    del ex.features.feature["meta_json"]
    with pytest.raises(ValueError, match=r"rec 7: no feature 'meta_json'"):
        tasks.serialized_to_record(ex.SerializeToString(), "rec 7")


def test_parallel_build_writes_the_same_records(build_dir, tmp_path):
    """Two worker processes (one (dataset, language) each at a time) write the records of the
    single-process build, in the same stored order, and return the config names in the same order.
    (Bytes are not compared: a tf.Example's feature map is serialized in an order that can differ
    between processes, for the single-process build too.)"""
    from data_pipelines.tfds_builder import build_tfds, discover

    names = build_tfds(build_dir, tmp_path / "tfds", workers=2)
    assert names == [f"{d}-{lang}" for d, lang in discover(build_dir)] and len(names) == len(LAYOUT)
    found = tasks.find_arrayrecord_datasets(build_dir / "tfds", LANGS)
    serial = tasks.arrayrecord_tasks(build_dir / "tfds", found)
    parallel = tasks.arrayrecord_tasks(tmp_path / "tfds", found)
    for a, b in zip(serial, parallel, strict=True):
        for split in ("train", "validation", "test"):
            assert a.records(split) == b.records(split), (a.name, split)
    assert sum(len(t.records("train")) for t in parallel) == sum(n for _, _, n in LAYOUT)


def test_parallel_build_error_names_the_config(build_dir, tmp_path):
    from data_pipelines.tfds_builder import build_tfds

    with pytest.raises(FileNotFoundError) as info:
        build_tfds(build_dir, tmp_path / "tfds", pairs=[("medqa", "en"), ("medqa", "xx")], workers=2)
    assert "medqa-xx" in "".join(getattr(info.value, "__notes__", []))


def test_builders_do_not_warn_about_their_own_configs(tmp_path, caplog):
    """TFDS's per-config "custom data configuration" notice (150 per full build) is dropped, and
    only that one: other absl warnings still reach the log."""
    import logging

    from data_pipelines.tfds_builder import make_builder

    with caplog.at_level(logging.INFO):
        make_builder(tmp_path, tmp_path, "medqa", "en")
        logging.getLogger("absl").warning("Using custom data configuration elsewhere")
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("Using custom data configuration: GlobMedConfig(") for m in messages)
    assert "Using custom data configuration elsewhere" in messages
