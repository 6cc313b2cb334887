"""Data benchmark at GlobMed scale: build throughput and input-pipeline throughput, one run.

    python scripts/data_bench.py --records 500000 --work /tmp/globmed_bench [--json out.json]

1. Writes a synthetic release in the GlobMed layout (``GlobMed_<Source>/<lang>/{train,test}.json``,
   10 sources x 15 languages, realistic field lengths: MCQA stems ~40-160 words with 4-5 options,
   PubMedQA contexts ~150-300 words, open-QA answers ~60-200 words, explanations on half the items).
2. ``data_pipelines.build`` -> normalized JSONL: wall time, records/s, CPU seconds, records/s per
   busy core (records / CPU seconds), peak RSS.
3. ``build_tfds`` -> the versioned ArrayRecord build, ``--build-workers`` processes (default: the
   CPUs): the same figures.
4. The training input pipeline over the ArrayRecord build (``tasks.arrayrecord_mixture``,
   ``pipeline.make_train_iterator``) at seq 2048 with the real Qwen3 tokenizer and 1 and 2 grain
   worker processes: packed (non-padding) tokens/s after the first batch (worker start-up is
   reported separately), and the 1 -> 2 worker scaling.
5. The plain way for comparison: ``datasets.load_dataset("json")`` + ``Dataset.map`` doing the same
   tokenisation (``pipeline.format_example``) + Python first-fit packing into 2048-token rows.

Every phase runs in its own child process, so its peak RSS (``ru_maxrss`` via ``os.wait4``) is its
own. Needs the ``data`` extra (tensorflow-datasets, array-record) and, for phase 5, ``bench``
(``datasets``). Timings on a shared machine are depressed: say so when quoting them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import random
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ("MedQA", "BioNLI", "HeadQA", "MedMCQA", "PubMedQA", "LiveQA", "MMLU-Pro", "MedExpQA", "ExpertQA-Med",
           "ExpertQA-Bio")
# relative sizes of the sources (MedMCQA and PubMedQA dominate the real release)
SOURCE_WEIGHT = {"MedQA": 12, "BioNLI": 8, "HeadQA": 7, "MedMCQA": 40, "PubMedQA": 20, "LiveQA": 1, "MMLU-Pro": 2,
                 "MedExpQA": 1, "ExpertQA-Med": 2, "ExpertQA-Bio": 1}
LANGUAGES = ("en", "zh", "es", "fr", "ar", "hi", "ja", "ko", "de", "pt", "ru", "sw", "yo", "zu", "am")
WORDS = ("patient", "presents", "with", "acute", "chronic", "pain", "fever", "history", "of", "the", "a", "treatment",
         "diagnosis", "most", "likely", "following", "which", "is", "blood", "pressure", "heart", "rate", "laboratory",
         "shows", "elevated", "decreased", "normal", "year-old", "man", "woman", "examination", "reveals", "left",
         "right", "lower", "upper", "abdominal", "renal", "hepatic", "cardiac", "pulmonary", "infection", "therapy",
         "mg", "dose", "daily", "symptoms", "weeks", "days", "after", "before", "surgery", "clinical", "trial",
         "study", "results", "significant", "risk", "factor", "associated", "increase", "cells", "protein", "gene",
         "expression", "receptor", "inhibitor", "drug", "effect", "mechanism", "action", "syndrome", "disease")


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def synth_item(source: str, i: int, rng: random.Random) -> dict:
    expl = _words(rng, 30, 120) if i % 2 else None
    if source in ("MedQA", "HeadQA", "MedMCQA", "MMLU-Pro", "MedExpQA"):
        n = 5 if source in ("MedExpQA", "HeadQA") else 4
        opts = {"ABCDE"[k]: _words(rng, 1, 8) for k in range(n)}
        return {"id": f"{i}", "question": _words(rng, 40, 160) + "?", "options": opts,
                "answer_idx": "ABCDE"[i % n], "explanation": expl}
    if source == "PubMedQA":
        return {"pubid": i, "question": _words(rng, 8, 20) + "?", "context": [_words(rng, 50, 100) for _ in range(3)],
                "final_decision": ("yes", "no", "maybe")[i % 3], "long_answer": _words(rng, 20, 60)}
    if source == "BioNLI":
        return {"id": f"{i}", "premise": _words(rng, 80, 200), "hypothesis": _words(rng, 10, 30),
                "label": ("entailment", "contradiction")[i % 2]}
    return {"id": f"{i}", "question": _words(rng, 10, 40) + "?", "answer": _words(rng, 60, 200)}


def write_release(root: pathlib.Path, records: int, seed: int = 0) -> dict:
    """``records`` items in all (about 90% train, 10% test), split over sources by SOURCE_WEIGHT
    and evenly over LANGUAGES; items are aligned across languages by id."""
    rng = random.Random(seed)
    total_w = sum(SOURCE_WEIGHT.values())
    written = 0
    t0 = time.perf_counter()
    for source in SOURCES:
        per_lang = max(2, records * SOURCE_WEIGHT[source] // total_w // len(LANGUAGES))
        n_test = max(1, per_lang // 10)
        for lang in LANGUAGES:
            for split, rng_ids in (("train", range(n_test, per_lang)), ("test", range(n_test))):
                path = root / f"GlobMed_{source}" / lang / f"{split}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("w", encoding="utf-8") as fh:  # JSON lines, written one item at a time
                    for i in rng_ids:
                        fh.write(json.dumps(synth_item(source, i, rng), ensure_ascii=False) + "\n")
                        written += 1
    size = sum(p.stat().st_size for p in root.rglob("*.json"))
    return {"records": written, "bytes": size, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- phases (children)


def phase_build(args) -> dict:
    from data_pipelines.build import build

    t0, c0 = time.perf_counter(), time.process_time()
    counts = build("globmed", args.release, args.out, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"records": counts.total_kept, "quarantined": counts.total_quarantined, "wall_s": wall, "cpu_s": cpu}


def phase_tfds(args) -> dict:
    import tensorflow_datasets as tfds

    from data_pipelines.tfds_builder import build_tfds

    tfds.disable_progress_bar()
    t0, c0 = time.perf_counter(), time.process_time()
    names = build_tfds(args.out, pathlib.Path(args.out) / "tfds", workers=args.workers)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    from globmed_jax.data import tasks

    n = sum(tasks.ArrayRecordSource(str(pathlib.Path(args.out) / "tfds"), *name.rsplit("-", 1)).num_examples(s)
            for name in names for s in ("train", "validation", "test"))
    # cpu_s: this process only; the workers' CPU is in the parent's child_cpu_s (os.wait4 counts
    # waited-for descendants)
    return {"records": n, "configs": len(names), "workers": args.workers, "wall_s": wall, "cpu_s": cpu}


def phase_pipeline(args) -> dict:
    import numpy as np

    from globmed_jax.data import pipeline, tasks
    from globmed_jax.models.tokenizer import build_qwen3_tokenizer

    tok = build_qwen3_tokenizer()
    mixture = tasks.arrayrecord_mixture(pathlib.Path(args.out) / "tfds", "bench", 1.0, LANGUAGES)
    cfg = pipeline.PipelineConfig(mixture=mixture, seq_len=args.seq_len, batch_size=args.batch_size,
                                  languages=LANGUAGES, worker_count=args.workers, prefetch_buffer_size=2)
    t0 = time.perf_counter()
    it = pipeline.make_train_iterator(cfg, tok, shard_index=0, shard_count=1)
    next(it)
    startup = time.perf_counter() - t0
    for _ in range(4 * args.workers):  # every worker started and past its first batch before timing
        next(it)
    workers_cpu0, main_cpu0 = _children_cpu_s(), time.process_time()
    tokens, padded, t1 = 0, 0, time.perf_counter()
    for _ in range(args.batches):
        b = next(it)
        tokens += int(np.count_nonzero(b["segment_ids"]))
        padded += b["segment_ids"].size
    wall = time.perf_counter() - t1
    main_cpu, workers_cpu = time.process_time() - main_cpu0, _children_cpu_s() - workers_cpu0
    return {"workers": args.workers, "startup_s": startup, "batches": args.batches, "packed_tokens": tokens,
            "fill": tokens / padded, "wall_s": wall, "tokens_per_s": tokens / wall,
            # CPU seconds spent while timing: the consumer (this process) and the grain workers;
            # tokens per CPU second is the per-core rate, whatever else loads the machine
            "main_cpu_s": main_cpu, "workers_cpu_s": workers_cpu,
            "tokens_per_cpu_s": tokens / max(main_cpu + workers_cpu, 1e-9)}


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's live descendants (the grain workers)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def phase_hf_datasets(args) -> dict:
    import datasets

    from globmed_jax.data import pipeline
    from globmed_jax.data.records_io import record_from_obj
    from globmed_jax.models.tokenizer import build_qwen3_tokenizer

    datasets.disable_progress_bars()
    tok = build_qwen3_tokenizer()
    files = sorted(str(p) for p in pathlib.Path(args.out).glob("*/*/train.jsonl"))
    t0 = time.perf_counter()
    ds = datasets.load_dataset("text", data_files=files, split="train", cache_dir=str(pathlib.Path(args.work) / "hf_cache"))
    ds = ds.shuffle(seed=0).select(range(min(len(ds), args.hf_examples)))
    load = time.perf_counter() - t0
    t1 = time.perf_counter()

    def fmt(row):
        ex = pipeline.format_example(record_from_obj(json.loads(row["text"])), tok, max_tokens=args.seq_len + 1)
        return {"ids": ex.ids.tolist(), "n_prompt": len(ex.prompt_ids)}

    c1 = time.process_time()
    ds = ds.map(fmt, remove_columns=ds.column_names)
    tokenize = time.perf_counter() - t1
    t2 = time.perf_counter()
    rows: list[int] = []  # first-fit packing of (len - 1) next-token examples into seq_len rows
    tokens = 0
    for ids in ds["ids"]:
        n = len(ids) - 1
        for r, used in enumerate(rows):
            if used + n <= args.seq_len:
                rows[r] += n
                break
        else:
            rows.append(n)
        tokens += n
        if len(rows) > args.batch_size * 4:  # emit full bins, as a streaming packer would
            rows = rows[-args.batch_size:]
    pack = time.perf_counter() - t2
    wall, cpu = tokenize + pack, time.process_time() - c1
    return {"examples": len(ds), "packed_tokens": tokens, "load_s": load, "map_s": tokenize, "pack_s": pack,
            "wall_s": wall, "tokens_per_s": tokens / wall, "cpu_s": cpu, "tokens_per_cpu_s": tokens / max(cpu, 1e-9),
            "note": "tokenisation single process (num_proc=1)"}


PHASES = {"build": phase_build, "tfds": phase_tfds, "pipeline": phase_pipeline, "hf_datasets": phase_hf_datasets}


def run_child(phase: str, args, **extra) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--work", str(args.work), "--seq-len", str(args.seq_len),
           "--batch-size", str(args.batch_size), "--batches", str(args.batches), "--hf-examples", str(args.hf_examples)]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"phase {phase} failed (status {status})")
    out = json.loads(stdout.strip().splitlines()[-1])
    out["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB; workers of the pipeline are grandchildren (not counted)
    out["child_cpu_s"] = usage.ru_utime + usage.ru_stime
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=500_000)
    p.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/globmed_bench"))
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=100, help="measured batches per pipeline run")
    p.add_argument("--hf-examples", type=int, default=4000, help="examples for the datasets.map comparison")
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)  # a child phase's workers
    p.add_argument("--build-workers", type=int, default=os.cpu_count() or 1,
                   help="processes of the ArrayRecord build (default: the number of CPUs)")
    p.add_argument("--skip", nargs="*", default=(), choices=tuple(PHASES) + ("release",))
    p.add_argument("--json", type=pathlib.Path)
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.release, args.out = args.work / "release", args.work / "out"
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return 0
    if "hf_datasets" not in args.skip and importlib.util.find_spec("datasets") is None:
        p.error("the datasets.map comparison needs the `bench` extra: pip install -e '.[bench]' "
                "(or --skip hf_datasets)")
    report: dict = {"records_requested": args.records, "cpus": os.cpu_count(), "seq_len": args.seq_len,
                    "build_workers": args.build_workers}
    if "release" not in args.skip:
        import shutil

        shutil.rmtree(args.work, ignore_errors=True)
        report["release"] = write_release(args.release, args.records)
        print("release", report["release"], flush=True)
    for phase in ("build", "tfds"):
        if phase not in args.skip:
            r = report[phase] = run_child(phase, args, **({"workers": args.build_workers} if phase == "tfds" else {}))
            r["records_per_s"] = r["records"] / r["wall_s"]
            # per busy core: records per CPU second of the phase's processes, worker processes and
            # imports included (child_cpu_s), so that a parallel build is not flattered
            r["records_per_s_per_core"] = r["records"] / max(r["child_cpu_s"], 1e-9)
            print(phase, r, flush=True)
    if "pipeline" not in args.skip:
        report["pipeline"] = [run_child("pipeline", args, workers=w) for w in (1, 2)]
        for r in report["pipeline"]:
            print("pipeline", r, flush=True)
        a, b = report["pipeline"]
        report["pipeline_scaling_1_to_2"] = b["tokens_per_s"] / a["tokens_per_s"]
    if "hf_datasets" not in args.skip:
        report["hf_datasets"] = run_child("hf_datasets", args)
        print("hf_datasets", report["hf_datasets"], flush=True)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
