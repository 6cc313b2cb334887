"""A small OpenAI-compatible chat-completions client (stdlib only: ``urllib``).

* The API key is read from the environment variable NAMED by ``APIConfig.api_key_env``; it is
  sent only in the ``Authorization`` header and never logged, cached, put in an exception or a
  repr. ``api_key_env=""`` sends no key (local servers).
* Retries with exponential backoff (``backoff_s * 2**attempt``, capped at ``max_backoff_s``, or
  the server's ``Retry-After`` when it sends one, capped the same way) on HTTP 429, 5xx,
  timeouts and connection errors; other 4xx fail at once with ``APIError``.
* ``complete_many`` runs at most ``max_concurrency`` requests at a time (threads).
* An append-only JSONL cache (``cache_path``) keyed by the SHA-256 of (model, messages,
  request parameters) is written after every answer, so an interrupted run resumes without
  asking again; identical requests inside one call are sent once.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import pathlib
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Mapping, Sequence

log = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, str]]

__all__ = ["APIConfig", "APIError", "ChatClient", "request_key", "ENDPOINT_FIELDS"]


class APIError(RuntimeError):
    """A request that failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class APIConfig:
    """``base_url`` up to and including the version prefix (``https://host/v1``); the client
    posts to ``<base_url>/chat/completions``. ``params`` are extra request fields (e.g.
    ``(("top_p", 1.0),)``), part of the cache key like temperature and max_tokens."""

    base_url: str
    model: str
    api_key_env: str = ""
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_concurrency: int = 8
    temperature: float = 0.0
    max_tokens: int = 256
    params: tuple[tuple[str, Any], ...] = ()
    cache_path: str = ""

    @classmethod
    def from_mapping(cls, fields: Mapping[str, Any], **overrides: Any) -> "APIConfig":
        """The ``APIConfig`` of the entries of ``fields`` (e.g. a bench ``model_spec``) that are
        APIConfig fields, others ignored, then ``overrides``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in dict(fields).items() if k in names}, **overrides})


# The endpoint settings a user sets per model / judge / translator (bench configs expose these
# keys with APIConfig's defaults; the rest is chosen by the caller).
ENDPOINT_FIELDS = ("base_url", "api_key_env", "max_concurrency", "timeout_s", "max_retries", "backoff_s")


def endpoint_defaults(**overrides: Any) -> dict[str, Any]:
    """``{name: APIConfig default}`` of ``ENDPOINT_FIELDS`` (``base_url`` ""), updated by ``overrides``."""
    defaults = {f.name: f.default for f in dataclasses.fields(APIConfig) if f.name in ENDPOINT_FIELDS}
    return {**defaults, "base_url": "", **overrides}


def request_key(model: str, messages: Messages, params: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of (model, messages, params): the cache key."""
    blob = json.dumps({"model": model, "messages": [dict(m) for m in messages], "params": dict(params)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class ChatClient:
    """Thread-safe client. ``stats`` counts ``requests`` (HTTP attempts), ``retries`` and
    ``cache_hits``."""

    def __init__(self, config: APIConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._sleep = sleep
        self._api_key = self._read_key(config.api_key_env)
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        self.stats = {"requests": 0, "retries": 0, "cache_hits": 0}
        self._cache_path = pathlib.Path(config.cache_path) if config.cache_path else None
        if self._cache_path is not None:
            self._load_cache()

    def __repr__(self) -> str:  # never shows the key
        return f"ChatClient(model={self.config.model!r}, base_url={self.config.base_url!r})"

    @staticmethod
    def _read_key(env_name: str) -> str | None:
        if not env_name:
            return None
        value = os.environ.get(env_name)
        if not value:
            raise APIError(f"environment variable {env_name} (the API key) is not set")
        return value

    # ---------------------------------------------------------------------------- cache

    def _load_cache(self) -> None:
        path = self._cache_path
        if not path.exists():
            return
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                    self._cache[entry["key"]] = entry["response"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted write: that request is redone
        log.info("API cache %s: %d responses", path, len(self._cache))

    def _store(self, key: str, response: str) -> None:
        with self._lock:
            self._cache[key] = response
            if self._cache_path is not None:
                self._cache_path.parent.mkdir(parents=True, exist_ok=True)
                entry = {"key": key, "model": self.config.model, "response": response}
                with self._cache_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------------- requests

    def _params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        params = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        params.update(dict(self.config.params))
        params.update(overrides)
        return params

    def _post(self, body: bytes) -> str:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with self._lock:
            self.stats["requests"] += 1
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as err:
            status = err.code
            detail = err.read()[:300].decode("utf-8", "replace")
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}", _retry_after(err.headers.get("Retry-After"))) from None
            raise APIError(f"HTTP {status} from {url}: {detail}", status) from None
        except (TimeoutError, socket.timeout) as err:
            raise _Retryable(f"timeout after {self.config.timeout_s}s") from err
        except urllib.error.URLError as err:
            raise _Retryable(f"connection error: {err.reason}") from None
        except (ConnectionError, http.client.HTTPException) as err:
            raise _Retryable(f"connection error: {type(err).__name__}") from None
        try:
            data = json.loads(payload)
            return data["choices"][0]["message"]["content"] or ""
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
            raise APIError(f"malformed response from {url}: {payload[:200]!r}") from err

    def complete(self, messages: Messages, **params: Any) -> str:
        """The assistant reply to ``messages`` (from the cache when asked before)."""
        params = self._params(params)
        key = request_key(self.config.model, messages, params)
        with self._lock:
            if key in self._cache:
                self.stats["cache_hits"] += 1
                return self._cache[key]
        body = json.dumps({"model": self.config.model, "messages": [dict(m) for m in messages], **params},
                          ensure_ascii=False).encode("utf-8")
        for attempt in range(self.config.max_retries + 1):
            try:
                text = self._post(body)
                break
            except _Retryable as err:
                if attempt == self.config.max_retries:
                    raise APIError(f"{err} after {attempt + 1} attempts ({self.config.model})") from None
                delay = min(self.config.max_backoff_s,
                            err.retry_after if err.retry_after is not None else self.config.backoff_s * 2 ** attempt)
                log.warning("%s: %s; retry %d/%d in %.2fs", self.config.model, err, attempt + 1,
                            self.config.max_retries, delay)
                with self._lock:
                    self.stats["retries"] += 1
                self._sleep(delay)
        self._store(key, text)
        return text

    def complete_many(self, conversations: Sequence[Messages], *, progress: bool = False,
                      **params: Any) -> list[str]:
        """Replies to every conversation, in order, ``max_concurrency`` requests at a time.
        The first failure is raised after the running requests finish (their answers stay
        cached)."""
        keys = [request_key(self.config.model, m, self._params(params)) for m in conversations]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        results: dict[str, str] = {}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(first), desc=f"api:{self.config.model}", unit="req")
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.config.max_concurrency)) as pool:
            futures = {pool.submit(self.complete, conversations[i], **params): k for k, i in first.items()}
            error: BaseException | None = None
            for fut in concurrent.futures.as_completed(futures):
                try:
                    results[futures[fut]] = fut.result()
                except BaseException as err:  # noqa: BLE001 - re-raised below
                    error = error or err
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        if error is not None:
            raise error
        return [results[k] for k in keys]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
