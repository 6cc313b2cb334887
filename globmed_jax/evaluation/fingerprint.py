"""Fingerprints of bench cells: everything that determines a results row, hashed.

A fingerprint is a flat mapping of readable fields (``"model.path"``, ``"prompt.mcqa_answer"``,
``"data.records"``, ...) and the SHA-256 ``digest`` of their canonical JSON. The runner stores
both in every results row (predictions rows carry the digest) and refuses to resume a cell whose
stored fields differ from the current ones, naming the fields (``diff``).

File hashing: model weights and tokenizer files are hashed IN FULL (SHA-256). A partial hash
(safetensors header + sizes + first/last MiB) is not enough: a LoRA merge or a fine-tune of a
few layers rewrites tensors in the middle of the file while the header, the size and the
embedding / norm tensors at both ends stay identical. Full hashing costs about one extra read
of the weights (loading reads them anyway), and a digest cache (``HashCache``, a JSON file in the
run's out_dir) makes reruns cheap: an entry is reused only while the file's device, inode, size,
mtime_ns AND ctime_ns are unchanged. ctime cannot be set from user space (``touch``, ``cp -p``
and ``os.utime`` only set mtime), so any in-place rewrite invalidates the entry; entries for
files changed within ``RACY_S`` seconds of hashing are not stored, since a second write inside
the same timestamp tick would keep all five numbers (the "racy git" problem).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import time
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

RACY_S = 2.0
_CHUNK = 1 << 22
# Files that AutoTokenizer reads; every other file of a checkpoint directory counts as the model.
TOKENIZER_NAMES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
                             "chat_template.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model"})


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest_of(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(fields).encode("utf-8")).hexdigest()


def sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class HashCache:
    """``{absolute path: (stat key, sha256)}`` persisted as JSON; a damaged file is ignored."""

    def __init__(self, path: pathlib.Path | None):
        self.path, self.entries, self.dirty = path, {}, False
        if path is not None and path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                log.warning("%s: unreadable hash cache, ignored (files are hashed again)", path)

    def sha256(self, file: pathlib.Path) -> str:
        file = file.resolve()
        st = file.stat()
        entry = self.entries.get(str(file))
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(st) and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
        started = time.time()
        value = sha256_file(file)
        after = file.stat()
        if _stat_key(after) == _stat_key(st) and max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < started - RACY_S:
            self.entries[str(file)] = {"stat": _stat_key(st), "sha256": value}
            self.dirty = True
        return value

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(canonical(self.entries), encoding="utf-8")
        os.replace(tmp, self.path)
        self.dirty = False


def checkpoint_files(path: pathlib.Path, cache: HashCache) -> tuple[dict[str, str], dict[str, str]]:
    """``(model files, tokenizer files)`` of a checkpoint directory, each ``{name: "sha256:<hex>
    size:<bytes>"}`` (regular files at the top level, which is all ``from_pretrained`` and
    ``load_tokenizer`` read)."""
    model, tok = {}, {}
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        entry = f"sha256:{cache.sha256(f)} size:{f.stat().st_size}"
        (tok if f.name in TOKENIZER_NAMES else model)[f.name] = entry
    return model, tok


def records_digest(records: Iterable[Any]) -> str:
    """SHA-256 of the records' canonical JSON, in order: a changed question, option, answer or
    id anywhere in the cell changes it."""
    h = hashlib.sha256()
    for r in records:
        h.update(canonical(r.to_json()).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def make(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form: ``{"digest": ..., "fields": {...}}``."""
    fields = json.loads(canonical(fields))  # exactly what reading the row back gives
    return {"digest": digest_of(fields), "fields": fields}


def _short(value: Any) -> str:
    text = canonical(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 90 else text[:87] + "..."


def _describe(key: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):  # per file: name the files that differ
        parts = [f"{name}: {_short(old.get(name, '<absent>'))} -> {_short(new.get(name, '<absent>'))}"
                 for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
        return f"{key} ({'; '.join(parts)})"
    return f"{key}: {_short(old)} -> {_short(new)}"


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["field: old -> new", ...]`` for every field whose value differs (absent on one side
    shows as ``'<absent>'``)."""
    return [_describe(k, old.get(k, "<absent>"), new.get(k, "<absent>"))
            for k in sorted(set(old) | set(new)) if old.get(k, "<absent>") != new.get(k, "<absent>")]
