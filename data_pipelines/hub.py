"""Build inputs on the Hugging Face Hub: ``hf://org/name[@revision]`` dataset repositories.

The public GlobMed release is one dataset repository per source (``ruiyang-medinfo/GlobMed_MedQA``,
...), each holding ``<lang>/train.json`` and ``<lang>/test.json``. ``--input`` accepts

- ``hf://org/name`` or ``hf://org/name@revision`` (several, space- or comma-separated);
- ``hf://globmed``: the whole collection (``COLLECTION``, the 10 sources of the paper).

Each id resolves through ``huggingface_hub.snapshot_download(repo_type="dataset")`` limited to the
``<lang>/*.json[l]`` files, so ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1`` and an already
filled cache are honoured by ``huggingface_hub`` itself (imported lazily: it reads the environment
at import). A token for private repositories comes from ``HF_TOKEN``, read by ``huggingface_hub``,
never by this module. The importer is told the source by the repository name (``GlobMed_MedQA``),
because a snapshot folder is named by its commit, not by the source.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Iterable, Sequence

SCHEME = "hf://"
COLLECTION_ORG = "ruiyang-medinfo"
COLLECTION_SOURCES = ("MedQA", "BioNLI", "HeadQA", "MedMCQA", "PubMedQA", "LiveQA", "MMLU-Pro", "MedExpQA",
                      "ExpertQA-Med", "ExpertQA-Bio")
COLLECTION = tuple(f"{COLLECTION_ORG}/GlobMed_{s}" for s in COLLECTION_SOURCES)
# short names for the whole collection
COLLECTION_NAMES = ("globmed", f"{COLLECTION_ORG}/globmed")
# Only the per-language data files; never scripts, parquet conversions or anything else.
RELEASE_FILES = ("*/*.json", "*/*.jsonl")

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})"
                     r"(?:@(?P<revision>[A-Za-z0-9][A-Za-z0-9_./-]{0,127}))?$")


class HubInputError(ValueError):
    """An ``hf://`` input that is malformed or could not be resolved (missing, gated, offline)."""


@dataclasses.dataclass(frozen=True)
class HubSource:
    """One dataset repository and where its snapshot lies locally."""

    repo_id: str
    revision: str | None
    path: pathlib.Path  # the snapshot directory (``.../snapshots/<commit>``)

    @property
    def name(self) -> str:
        """The source folder name the importer expects, e.g. ``GlobMed_MedQA``."""
        return self.repo_id.split("/", 1)[1]

    @property
    def commit(self) -> str:
        return self.path.name


def is_hub_input(value: object) -> bool:
    if isinstance(value, (list, tuple)):
        return bool(value) and all(is_hub_input(v) for v in value)
    return isinstance(value, str) and all(p.strip().startswith(SCHEME) for p in value.split(",") if p.strip())


def parse_hub_inputs(values: str | Iterable[str]) -> list[tuple[str, str | None]]:
    """``(repo_id, revision)`` for every id in ``values`` (strings of comma-separated ``hf://``
    ids; ``hf://globmed`` expands to ``COLLECTION``), in order, without repeats."""
    if isinstance(values, str):
        values = [values]
    out: list[tuple[str, str | None]] = []
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            if not part.startswith(SCHEME):
                raise HubInputError(f"{part!r}: mix of hub ids and local paths; give hf://org/name for every input")
            body = part[len(SCHEME):].strip("/")
            if body.lower() in COLLECTION_NAMES:
                ids = [(r, None) for r in COLLECTION]
            else:
                m = _HUB_ID.match(body)
                if m is None or ".." in body:
                    raise HubInputError(f"{part!r} is not hf://org/name[@revision] (or hf://globmed for the whole "
                                        "collection)")
                ids = [(m["repo"], m["revision"])]
            out.extend(i for i in ids if i not in out)
    if not out:
        raise HubInputError("no hub id given")
    return out


def download(repo_id: str, revision: str | None = None) -> HubSource:
    """The local snapshot of one dataset repository (downloaded, or from the cache offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    where = repo_id + (f"@{revision}" if revision else "")
    try:
        path = snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=list(RELEASE_FILES))
    except GatedRepoError:
        raise HubInputError(f"{where} is a gated dataset: accept its terms on huggingface.co, set HF_TOKEN "
                            "(or run `hf auth login`) and retry") from None
    except RepositoryNotFoundError:
        raise HubInputError(f"{where}: no such dataset repository on the Hub (or it is private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise HubInputError(f"{where}: the dataset has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        raise HubInputError(
            f"{where} is not in the local Hugging Face cache ({cache_dir()}) and downloading is off "
            f"(HF_HUB_OFFLINE=1 or no network): run `hf download --repo-type dataset {repo_id}` where the Hub "
            "is reachable, or pass a local directory") from None
    return HubSource(repo_id, revision, pathlib.Path(path))


def resolve(values: str | Sequence[str]) -> list[HubSource]:
    """Every ``hf://`` id of ``values`` as a local snapshot."""
    return [download(repo, rev) for repo, rev in parse_hub_inputs(values)]


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
