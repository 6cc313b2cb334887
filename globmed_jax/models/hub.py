"""Checkpoint locations: a local directory or a Hugging Face Hub id (``org/name[@revision]``).

A hub id resolves through ``huggingface_hub.snapshot_download`` limited to the files a checkpoint
needs here (config, safetensors weights and index, tokenizer and chat template files; never
pickled ``*.bin`` / ``*.pt`` weights or remote code). ``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE=1`` and an already-filled cache are honoured by ``huggingface_hub`` itself; a
token, when needed for gated repos, comes from ``HF_TOKEN`` (read by ``huggingface_hub``, never by
this module, so it cannot reach a log or an error message here).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Config, weights (safetensors only), tokenizer and chat template; nothing executable or pickled.
CHECKPOINT_FILES = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
)

# org/name, as the Hub spells repository ids, with an optional @revision (branch, tag or commit).
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})"
                     r"(?:@(?P<revision>[A-Za-z0-9][A-Za-z0-9_./-]{0,127}))?$")


class HubResolutionError(FileNotFoundError):
    """A hub id that could not be resolved to a local snapshot (missing, gated, offline)."""


def parse_hub_id(text: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``text`` is a hub id, else None."""
    match = _HUB_ID.match(text)
    if match is None or ".." in text:
        return None
    return match["repo"], match["revision"]


def resolve_checkpoint(location: str | os.PathLike) -> Path:
    """The local directory of a checkpoint: ``location`` itself when it exists on disk, else the
    snapshot of the hub id it names (downloaded, or found in the cache when offline).

    A string that is neither an existing path nor a hub id is returned as a path, so the caller's
    own "does not exist" error names it."""
    path = Path(location)
    if path.exists() or isinstance(location, os.PathLike):
        return path
    parsed = parse_hub_id(str(location))
    if parsed is None:
        return path
    repo_id, revision = parsed
    return _snapshot(repo_id, revision)


def _snapshot(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f"@{revision}" if revision else "") + " (no local directory of that name either)"
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(CHECKPOINT_FILES)))
    except GatedRepoError:
        raise HubResolutionError(
            f"{where} is a gated repository: accept its license on huggingface.co, then set HF_TOKEN "
            f"(or run `hf auth login`) and retry") from None
    except RepositoryNotFoundError:
        raise HubResolutionError(
            f"{where}: no such model repository on the Hub (or it is private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise HubResolutionError(f"{where}: the repository has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        raise HubResolutionError(
            f"{where} is not in the local Hugging Face cache ({_cache_dir()}) and downloading is off "
            f"(HF_HUB_OFFLINE=1 or no network): download it where the Hub is reachable, e.g. "
            f"`hf download {repo_id}`, or pass a local directory") from None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
