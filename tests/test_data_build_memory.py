"""The build streams: its peak host memory does not grow with the release size.

A release of N records and one of 4N (the same files, 4x as many of them: a real release grows by
languages and sources, each file stays small) are built under tracemalloc, all into ONE output
cell (``--language en``), so the train file the dev split ranks and rewrites and the JSONL read
back grow 4x too; the peak traced memory of the build (import -> validate -> dev split -> JSONL)
and of reading its JSONL back line by line is about the same for both. An input file is parsed
per record (a malformed record is one quarantine entry, the rest of the file is kept), so the peak
follows neither the release nor, for JSON lines, the largest input file. The negative control
loads the JSONL whole the same way and shows the measurement sees a whole-load (its peak grows
~4x). Python allocations only (tracemalloc); RSS at GlobMed scale is in scripts/data_bench.py.

A GlobMed file in JSON lines is read one line at a time, so one file 4x as long does not raise
the peak either; a JSON array's text is still read whole (its elements are parsed one by one).
"""

from __future__ import annotations

import gc
import json
import pathlib
import tracemalloc
from typing import Callable

from data_pipelines.build import build
from data_pipelines.importers import ImportOptions
from globmed_jax.data.records_io import iter_records, load_records

PER_FILE = 50  # records per input file (long ones: the per-file parse, not the per-record index, sets the peak)
LANGUAGES = ("en", "zh", "es", "fr", "ar", "hi", "ja", "ko", "de", "pt", "ru", "sw", "yo", "zu", "am", "it")


def _item(lang: str, i: int) -> dict:
    return {"id": f"{lang}{i}", "question": f"{lang} question {i}: " + "which finding is most likely? " * 100,
            "options": {k: f"option {k} {i} " * 3 for k in "ABCD"}, "answer_idx": "ABCD"[i % 4],
            "explanation": "because " * 200}


def _release(root: pathlib.Path, n_files: int) -> pathlib.Path:
    """``n_files`` train files of PER_FILE MCQA items (distinct ids; one folder per language, up to 16)."""
    for lang in LANGUAGES[:n_files]:
        items = [_item(lang, i) for i in range(PER_FILE)]
        path = root / "GlobMed_MedQA" / lang / "train.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return root


def _peak(fn: Callable[[], object]) -> int:
    """Peak traced bytes while ``fn`` runs, above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _build_and_read(root: pathlib.Path, out: pathlib.Path) -> None:
    counts = build("globmed", root, out, ImportOptions(language="en"), progress=False)  # one output cell
    n = sum(1 for _ in iter_records(out))  # the JSONL read back line by line
    assert n == counts.total_kept


def test_build_peak_memory_flat_in_release_size(tmp_path):
    small = _release(tmp_path / "small", 4)  # N = 200 records
    large = _release(tmp_path / "large", 16)  # 4N = 800 records
    _build_and_read(small, tmp_path / "warm")  # imports, caches and lazy tables allocated once, not measured
    peak_n = _peak(lambda: _build_and_read(small, tmp_path / "out_n"))
    peak_4n = _peak(lambda: _build_and_read(large, tmp_path / "out_4n"))
    train = tmp_path / "out_4n" / "medqa" / "en"
    assert sum(1 for _ in iter_records(train)) == 16 * PER_FILE  # one cell: train + the dev carved from it
    assert sum(1 for _ in iter_records(train / "validation.jsonl")) == 40  # 5 % of 800
    # Streamed: 4x the records costs well under 1.5x the peak (the per-record validator index,
    # ~120 B/record, is what still grows).
    assert peak_4n < 1.5 * peak_n, (peak_n, peak_4n)

    # Negative control: the same measurement of a whole-load grows with the records.
    load_n = _peak(lambda: load_records(tmp_path / "out_n"))
    load_4n = _peak(lambda: load_records(tmp_path / "out_4n"))
    assert load_4n > 3 * load_n, (load_n, load_4n)
    assert load_4n > 1.5 * peak_4n, (load_4n, peak_4n)  # and the build's peak stays below a whole-load


def _one_file_release(root: pathlib.Path, n: int, *, lines: bool) -> pathlib.Path:
    """One train file of ``n`` items, as JSON lines or as one JSON array."""
    items = [_item("en", i) for i in range(n)]
    path = root / "GlobMed_MedQA" / "en" / "train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(json.dumps(x) for x in items) + "\n" if lines else json.dumps(items)
    path.write_text(text, encoding="utf-8")
    return root


def test_one_json_lines_file_four_times_as_long_is_streamed(tmp_path):
    small = _one_file_release(tmp_path / "small", 200, lines=True)
    large = _one_file_release(tmp_path / "large", 800, lines=True)
    _build_and_read(small, tmp_path / "warm")
    peak_n = _peak(lambda: _build_and_read(small, tmp_path / "out_n"))
    peak_4n = _peak(lambda: _build_and_read(large, tmp_path / "out_4n"))
    assert sum(1 for _ in iter_records(tmp_path / "out_4n")) == 800  # train + dev: nothing lost
    assert peak_4n < 1.5 * peak_n, (peak_n, peak_4n)
    # Control: the same items as one JSON array are read as one text, so that peak grows with the file.
    arr_n = _peak(lambda: _build_and_read(_one_file_release(tmp_path / "an", 200, lines=False), tmp_path / "o_an"))
    arr_4n = _peak(lambda: _build_and_read(_one_file_release(tmp_path / "a4n", 800, lines=False), tmp_path / "o_a4n"))
    assert arr_4n > 2 * arr_n and arr_4n > 2 * peak_4n, (arr_n, arr_4n, peak_4n)


def test_streamed_jsonl_reader_keeps_its_errors_and_line_splitting(tmp_path):
    """Read line by line, the normalized reader still tolerates a BOM, splits on \\n only (not
    inside a string at U+2028) and names file, line and byte offset of bad UTF-8."""
    import pytest

    from globmed_jax.data.records_io import NormalizedDataError, write_records
    from globmed_jax.data.schema import Record

    recs = [Record(id=f"m:{i}@en", source_id=f"m:{i}", dataset="m", language="en", split="test", family="open_qa",
                   question=f"q{i}\u2028still q{i}", answer="a") for i in range(3)]
    path = write_records(recs, tmp_path)[("m", "en", "test")]
    data = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + data)
    assert list(iter_records(path)) == recs
    lines = data.split(b"\n")
    lines[2] = lines[2].replace(b"q2", b"q\xff2", 1)
    path.write_bytes(b"\n".join(lines))
    at = len(lines[0]) + len(lines[1]) + 2 + lines[2].index(b"\xff")
    with pytest.raises(NormalizedDataError, match=rf"{path.name}:3: invalid UTF-8 at byte {at}:"):
        list(iter_records(path))
