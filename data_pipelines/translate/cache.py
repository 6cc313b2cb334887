"""Resumable translation cache: one SQLite file in the output directory.

``translations`` rows are keyed by (dataset, source id, field, language, translator,
direction) -- ``direction`` is ``forward`` (source -> language) or ``back`` (language -> source,
for the back-translation QC). Every row also keeps the exact text that was sent; a lookup only
hits when that text is unchanged (a new glossary or an edited source is translated again), and
a text already translated for another record (same language pair and translator) is reused.
Rows are committed after every translator batch, so a run that is stopped (Ctrl-C, a crash, a
pre-empted machine) loses at most the batch in flight and the next run continues there.

``fields`` keeps, per output record and field, the source text, translation, back-translation
and chrF (what ``--export-review`` shows); ``reviews`` holds expert revisions imported with
``--apply-review``, so a later translation run re-applies them instead of overwriting them.

SQLite rather than JSONL on purpose: ``load_records(output_dir)`` reads every ``*.jsonl`` below
the output directory as records.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import time
from typing import Any, Iterable, Mapping, NamedTuple

CACHE_NAME = "translate_cache.sqlite"
FORWARD, BACK = "forward", "back"


class Key(NamedTuple):
    dataset: str
    source_id: str
    field: str
    language: str
    translator: str
    direction: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS translations (
  dataset TEXT NOT NULL, source_id TEXT NOT NULL, field TEXT NOT NULL, language TEXT NOT NULL,
  translator TEXT NOT NULL, direction TEXT NOT NULL,
  input TEXT NOT NULL, output TEXT NOT NULL, source_language TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (dataset, source_id, field, language, translator, direction)
);
CREATE INDEX IF NOT EXISTS translations_by_text
  ON translations (language, translator, direction, source_language, input);
CREATE TABLE IF NOT EXISTS fields (
  record_id TEXT NOT NULL, field TEXT NOT NULL, dataset TEXT NOT NULL, language TEXT NOT NULL,
  split TEXT NOT NULL, source_text TEXT NOT NULL, translation TEXT NOT NULL, back_translation TEXT,
  chrf REAL, translated INTEGER NOT NULL,
  PRIMARY KEY (record_id, field)
);
CREATE TABLE IF NOT EXISTS reviews (
  record_id TEXT NOT NULL, field TEXT NOT NULL, revised TEXT NOT NULL, scores TEXT NOT NULL,
  review_file TEXT NOT NULL, created REAL NOT NULL,
  PRIMARY KEY (record_id, field)
);
"""


class TranslationCache:
    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path))
        self._db.executescript(_SCHEMA)
        self._db.commit()

    @classmethod
    def in_dir(cls, output_dir: str | pathlib.Path) -> "TranslationCache":
        return cls(pathlib.Path(output_dir) / CACHE_NAME)

    # ------------------------------------------------------------------------- translations

    def get(self, key: Key, text: str, source_language: str) -> str | None:
        """The cached output for ``key`` made from exactly ``text``; else any output for the
        same text, language pair, translator and direction (another record's)."""
        row = self._db.execute(
            "SELECT input, output FROM translations WHERE dataset=? AND source_id=? AND field=? "
            "AND language=? AND translator=? AND direction=?", tuple(key)).fetchone()
        if row is not None and row[0] == text:
            return row[1]
        row = self._db.execute(
            "SELECT output FROM translations WHERE language=? AND translator=? AND direction=? "
            "AND source_language=? AND input=? LIMIT 1",
            (key.language, key.translator, key.direction, source_language, text)).fetchone()
        return None if row is None else row[0]

    def put_many(self, items: Iterable[tuple[Key, str, str]], source_language: str) -> None:
        """``(key, input text, output)`` rows, committed together (one translator batch)."""
        now = time.time()
        self._db.executemany("INSERT OR REPLACE INTO translations VALUES (?,?,?,?,?,?,?,?,?,?)",
                             [(*k, text, out, source_language, now) for k, text, out in items])
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]

    # ------------------------------------------------------------------------------- fields

    def put_fields(self, rows: Iterable[tuple]) -> None:
        """``(record_id, field, dataset, language, split, source_text, translation,
        back_translation, chrf, translated)`` rows."""
        self._db.executemany("INSERT OR REPLACE INTO fields VALUES (?,?,?,?,?,?,?,?,?,?)", list(rows))
        self._db.commit()

    def fields(self) -> dict[tuple[str, str], dict[str, Any]]:
        """``{(record_id, field): {"source_text", "translation", "back_translation", "chrf", "translated"}}``."""
        out = {}
        for rid, field, _, _, _, src, tr, back, score, translated in self._db.execute("SELECT * FROM fields"):
            out[(rid, field)] = {"source_text": src, "translation": tr, "back_translation": back, "chrf": score,
                                 "translated": bool(translated)}
        return out

    # ------------------------------------------------------------------------------ reviews

    def put_reviews(self, rows: Iterable[tuple[str, str, str, Mapping[str, Any], str]]) -> None:
        """``(record_id, field, revised text or "", scores, review file)`` rows."""
        now = time.time()
        self._db.executemany("INSERT OR REPLACE INTO reviews VALUES (?,?,?,?,?,?)",
                             [(rid, f, rev, json.dumps(dict(sc)), file, now) for rid, f, rev, sc, file in rows])
        self._db.commit()

    def reviews(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{record_id: {field: {"revised": str, "scores": {...}, "file": str}}}``."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for rid, field, revised, scores, file, _ in self._db.execute("SELECT * FROM reviews"):
            out.setdefault(rid, {})[field] = {"revised": revised, "scores": json.loads(scores), "file": file}
        return out

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TranslationCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
