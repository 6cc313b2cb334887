"""Small OpenAI-compatible clients on ``httpx``: ``ChatClient`` (``/chat/completions``) and
``CompletionsClient`` (``/completions``: generation from a prompt text, and the prompt's token
log-probabilities for log-likelihood scoring of served models), both on ``EndpointClient``,
which owns everything below.

* Prompt log-probabilities (``CompletionsClient.prompt_logprobs``) come in one of
  ``LOGPROB_FORMATS``, detected per server on the first request (or fixed by
  ``logprobs_format``): OpenAI legacy ``echo`` + ``logprobs`` (``choices[0].logprobs.{tokens,
  token_logprobs, text_offset}``) or vLLM's ``prompt_logprobs``; a server refusing both (HTTP
  400/404/422 or a reply without them) gives ``LogprobsUnavailableError``. A continuation's
  tokens are those from the token whose character offset is where the continuation starts
  (``continuation_logprob``); no token starting there (one spans the boundary) or tokens not
  spelling the continuation is ``ContinuationBoundaryError``. Offsets count characters, so a
  token holding the context's last character and only the first bytes of the continuation's
  first character cannot be seen; prompts here end in a newline or special token, where
  byte-level pre-tokenizers always split.

* The API key is read from the environment variable NAMED by ``APIConfig.api_key_env``; it is
  sent only in the ``Authorization`` header, only to ``base_url``'s origin, and never logged,
  cached, put in an exception or a repr. ``api_key_env=""`` sends no key (local servers).
* Redirects are never followed (a POST redirect would either resend the key elsewhere or drop
  the body): any 3xx fails at once with ``APIRedirectError``, which names the target when it is
  on the same origin (fix ``base_url``) and says it was refused when it is on another one.
* Anything quoted from a server (an error body, a header, a log line of ``httpx``/``httpcore``)
  goes through ``redact`` first: the exact key (and its JSON/URL-escaped forms) and any
  ``Bearer <token>`` become ``[REDACTED]``. A reply that echoes the key has it replaced too.
* ``timeout_s`` is a total deadline per HTTP attempt: connect, send, headers and every body read
  together (a server dripping one byte a second fails at the deadline with ``APITimeoutError``).
  A reply over ``max_response_bytes`` is aborted while streaming (``APIResponseTooLargeError``).
* A reply must be a JSON object with ``choices[0].message.content`` (chat) or
  ``choices[0].text`` (completions) a string, and well-formed ``logprobs`` when present or asked
  for; otherwise ``APIResponseError`` names the field, and nothing is cached.
* Retries with exponential backoff (``backoff_s * 2**attempt``, capped at ``max_backoff_s``, or
  the server's ``Retry-After`` when it sends one, capped the same way) on HTTP 429, 5xx,
  timeouts and connection errors; other 4xx, redirects and invalid replies fail at once.
* ``complete_many`` runs at most ``max_concurrency`` requests at a time (threads) over one shared
  ``httpx.Client`` (connections are reused).
* An append-only JSONL cache (``cache_path``) keyed by the SHA-256 of (model, messages or
  prompt, request parameters) holds only (key, model, reply text, or the prompt's parsed
  tokens / log-probs / offsets as JSON), written after every valid answer, so
  an interrupted run resumes without asking again; identical requests inside one call are sent once.
* Proxies from the environment are not used (``trust_env=False``): the deadline is enforced on
  the client's own sockets, and the key goes to no host but ``base_url``'s.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import re
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterable, Mapping, Sequence

import httpcore
import httpx

log = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, str]]

__all__ = ["APIConfig", "APIError", "APITimeoutError", "APIRedirectError", "APIResponseError",
           "APIResponseTooLargeError", "EndpointClient", "ChatClient", "CompletionsClient", "PromptLogprobs",
           "LogprobsUnavailableError", "ContinuationBoundaryError", "LOGPROB_FORMATS", "request_key",
           "completion_key", "continuation_logprob", "redact", "reply_text", "ENDPOINT_FIELDS"]

REDACTED = "[REDACTED]"
_ERROR_BODY_BYTES = 64 * 1024  # of a 4xx/5xx body: read only to quote its start
_QUOTE_CHARS = 300


class APIError(RuntimeError):
    """A request that failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class APITimeoutError(APIError):
    """No complete reply within the ``timeout_s`` deadline (on the last attempt)."""


class APIRedirectError(APIError):
    """The server answered with a redirect; it is not followed (the key stays on its origin)."""


class APIResponseError(APIError):
    """A reply that is not a valid chat completion; ``field`` names what is wrong."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


class APIResponseTooLargeError(APIError):
    """A reply over ``max_response_bytes`` (aborted while streaming)."""


@dataclasses.dataclass(frozen=True)
class APIConfig:
    """``base_url`` up to and including the version prefix (``https://host/v1``); the client
    posts to ``<base_url>/chat/completions``. ``params`` are extra request fields (e.g.
    ``(("top_p", 1.0),)``), part of the cache key like temperature and max_tokens.
    ``timeout_s`` is the total deadline of one HTTP attempt (connect + send + all reads)."""

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
    max_response_bytes: int = 8 * 1024 * 1024

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


# ------------------------------------------------------------------------------ redaction

_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"'<>,;\\]+")
_secrets: tuple[str, ...] = ()  # every key a client has read: the log filter redacts them all
_secrets_lock = threading.Lock()


def _secret_forms(key: str) -> tuple[str, ...]:
    """The key as a server may echo it: raw, JSON-escaped, URL-encoded."""
    return tuple({key, json.dumps(key)[1:-1], urllib.parse.quote(key, safe="")})


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every one of ``secrets`` and every ``Bearer <token>`` replaced by [REDACTED]."""
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no half-redacted forms
        if secret:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(f"Bearer {REDACTED}", text)


def _quote(data: bytes | str, secrets: Iterable[str]) -> str:
    """The start of a server's bytes, safe to show: redacted BEFORE it is cut, so no cut can
    leave part of a key."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = redact(text, secrets)
    return repr(text[:_QUOTE_CHARS] + ("..." if len(text) > _QUOTE_CHARS else ""))


class _RedactingFilter(logging.Filter):
    """Redacts log records of httpx/httpcore (whose DEBUG traces print response headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, _secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTERED_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2",
                     "httpcore.proxy", __name__)
_FILTER = _RedactingFilter()


def _register_secret(key: str) -> None:
    global _secrets
    with _secrets_lock:
        _secrets = tuple(set(_secrets) | set(_secret_forms(key)))
        for name in _FILTERED_LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)


# ------------------------------------------------------------------------------- deadline

# The monotonic time by which the current thread's HTTP attempt must be done (None: no deadline).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("api_deadline", default=None)


def _bounded(timeout: float | None, exc: type[Exception]) -> float | None:
    """``timeout`` clamped to what is left of the deadline; ``exc`` when nothing is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc("deadline exceeded")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read/write waits at most until the deadline: httpcore's
    per-operation timeouts alone let a server that drips bytes hold a request forever."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _bounded(timeout, httpcore.ConnectTimeout),
                                         local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(
            path, _bounded(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(connections: int) -> httpx.HTTPTransport:
    """httpx's transport over a pool on ``_DeadlineBackend``. httpx has no public hook for the
    network backend, so the pool it built is replaced by an equivalent one (httpx < 1 pinned;
    tests/test_api_adversarial.py fails if this stops taking effect)."""
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(  # noqa: SLF001 - see above
        ssl_context=httpx.create_ssl_context(), max_connections=None,
        max_keepalive_connections=connections, keepalive_expiry=5.0,
        network_backend=_DeadlineBackend())
    return transport


# -------------------------------------------------------------------------- validation

def _fail(field: str, problem: str, payload: bytes, secrets: Iterable[str]) -> APIResponseError:
    return APIResponseError(f"invalid reply: {field} {problem}; body starts {_quote(payload, secrets)}", field)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _logprob_problem(items: Any, where: str) -> tuple[str, str] | None:
    """(field, problem) of the first malformed entry of a ``logprobs.content`` list, else None."""
    if not isinstance(items, list):
        return where, f"must be a list, got {type(items).__name__}"
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            return at, f"must be an object, got {type(item).__name__}"
        if not isinstance(item.get("token"), str):
            return f"{at}.token", f"must be a string, got {type(item.get('token')).__name__}"
        lp = item.get("logprob")
        if not _is_number(lp) or math.isnan(lp):
            return f"{at}.logprob", f"must be a number, got {lp!r:.40}"
        if "top_logprobs" in item and item["top_logprobs"] is not None:
            problem = _logprob_problem(item["top_logprobs"], f"{at}.top_logprobs")
            if problem:
                return problem
    return None


def reply_text(payload: bytes, secrets: Iterable[str] = ()) -> str:
    """The assistant text of a chat-completion body, or ``APIResponseError`` naming the bad field."""
    choice = _first_choice(payload, secrets)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _fail("choices[0].message", f"must be an object, got {type(message).__name__}", payload, secrets)
    content = message.get("content")
    if not isinstance(content, str):
        got = "missing" if "content" not in message else type(content).__name__
        raise _fail("choices[0].message.content",
                    f"must be a string, got {got} (finish_reason={choice.get('finish_reason')!r:.40})",
                    payload, secrets)
    logprobs = choice.get("logprobs")
    if logprobs is not None:
        if not isinstance(logprobs, dict):
            raise _fail("choices[0].logprobs", f"must be an object, got {type(logprobs).__name__}",
                        payload, secrets)
        if logprobs.get("content") is not None:
            problem = _logprob_problem(logprobs["content"], "choices[0].logprobs.content")
            if problem:
                raise _fail(*problem, payload, secrets)
    return content


# ----------------------------------------------------------------------------- client

class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, *, detail: str = "",
                 timeout: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.detail = detail
        self.timeout = timeout


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, streamed; (bytes, whether there was more)."""
    buf = bytearray()
    for chunk in response.iter_bytes():
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[:limit]), True
    return bytes(buf), False


def _check_env_name(env_name: str) -> None:
    """``api_key_env`` is a variable NAME; a key pasted there must not be echoed in the error."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", env_name):
        raise APIError("api_key_env must be the NAME of an environment variable holding the key "
                       "(letters, digits, '_'); the value given is not one and is not shown")


class EndpointClient:
    """What every endpoint shares: the key from the environment, one ``httpx.Client`` over the
    deadline transport, retries, the JSONL reply cache and ``stats`` (``requests`` = HTTP
    attempts, ``retries``, ``cache_hits``). Subclasses name their ``endpoint`` (the path under
    ``base_url``) and build requests; ``close()`` (or ``with``) closes the connections."""

    endpoint = ""

    def __init__(self, config: APIConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._sleep = sleep
        api_key = self._read_key(config.api_key_env)
        self._secrets = _secret_forms(api_key) if api_key else ()
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        self.stats = {"requests": 0, "retries": 0, "cache_hits": 0}
        self._url = config.base_url.rstrip("/") + "/" + self.endpoint
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"  # held by the httpx client only
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(config.timeout_s),
                                  follow_redirects=False, trust_env=False,
                                  transport=_transport(max(1, config.max_concurrency)))
        self._cache_path = pathlib.Path(config.cache_path) if config.cache_path else None
        if self._cache_path is not None:
            self._load_cache()

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}(model={self.config.model!r}, base_url={self.config.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "EndpointClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @staticmethod
    def _read_key(env_name: str) -> str | None:
        if not env_name:
            return None
        _check_env_name(env_name)
        value = os.environ.get(env_name)
        if not value:
            raise APIError(f"environment variable {env_name} (the API key) is not set")
        _register_secret(value)
        return value

    # ---------------------------------------------------------------------------- cache

    def _load_cache(self) -> None:
        path = self._cache_path
        if not path.exists():
            return
        skipped = 0
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                    if not isinstance(entry["response"], str):
                        skipped += 1  # e.g. a number cached by an older client: asked again
                        continue
                    self._cache[entry["key"]] = entry["response"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted write: that request is redone
        log.info("API cache %s: %d responses", path, len(self._cache))
        if skipped:
            log.warning("API cache %s: ignored %d entries whose reply is not text", path, skipped)

    def _store(self, key: str, response: str) -> None:
        with self._lock:
            self._cache[key] = response
            if self._cache_path is not None:
                self._cache_path.parent.mkdir(parents=True, exist_ok=True)
                entry = {"key": key, "model": self.config.model, "response": response}
                with self._cache_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def cached(self, key: str) -> str | None:
        with self._lock:
            return self._cache.get(key)

    # ------------------------------------------------------------------------- requests

    def _params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        params = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        params.update(dict(self.config.params))
        params.update(overrides)
        return params

    def _post(self, body: bytes, parse: Callable[[bytes, Iterable[str]], str]) -> str:
        """One HTTP attempt within the ``timeout_s`` deadline: the parsed reply, or an exception."""
        with self._lock:
            self.stats["requests"] += 1
        token = _deadline.set(time.monotonic() + self.config.timeout_s)
        try:
            with self._http.stream("POST", self._url, content=body) as response:
                return self._reply(response, parse)
        except httpx.TimeoutException:
            raise _Retryable(f"no complete reply within the {self.config.timeout_s}s deadline",
                             timeout=True) from None
        except httpx.UnsupportedProtocol as err:
            raise APIError(f"base_url {self.config.base_url!r}: {redact(str(err), self._secrets)}") from None
        except httpx.TransportError as err:
            raise _Retryable(f"connection error: {type(err).__name__}: "
                             f"{redact(str(err), self._secrets)[:_QUOTE_CHARS]}") from None
        except httpx.DecodingError as err:
            raise APIResponseError(f"invalid reply: body could not be decoded ({type(err).__name__})",
                                   "body") from None
        finally:
            _deadline.reset(token)

    def _reply(self, response: httpx.Response, parse: Callable[[bytes, Iterable[str]], str]) -> str:
        status = response.status_code
        if 300 <= status < 400:
            raise self._redirect_error(response)
        if status >= 400:
            data, _ = _read_capped(response, _ERROR_BODY_BYTES)
            detail = _quote(data, self._secrets)
            if status == 429 or status >= 500:
                raise _Retryable(f"HTTP {status}", _retry_after(response.headers.get("Retry-After")),
                                 detail=detail)
            raise APIError(f"HTTP {status} from {self._url}: {detail}", status)
        limit = self.config.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        over = declared.isdigit() and int(declared) > limit  # refused before reading any of it
        if not over:
            data, over = _read_capped(response, limit)
        if over:
            raise APIResponseTooLargeError(
                f"reply from {self._url} is over max_response_bytes={self.config.max_response_bytes}", status)
        return self._scrub(parse(data, self._secrets))

    def _redirect_error(self, response: httpx.Response) -> APIRedirectError:
        location = redact(response.headers.get("Location", ""), self._secrets)
        status = response.status_code
        if not location:
            return APIRedirectError(f"HTTP {status} from {self._url} without a Location; redirects are "
                                    "not followed", status)
        target = response.url.join(location).copy_with(query=None, fragment=None)
        if _origin(target) != _origin(response.url):
            return APIRedirectError(
                f"HTTP {status} redirect from {self._url} to another origin "
                f"({target.scheme}://{target.host}:{_origin(target)[2]}) refused: the API key is only "
                "sent to base_url's origin", status)
        return APIRedirectError(f"HTTP {status} redirect from {self._url} to {target} not followed: "
                                f"set base_url so that <base_url>/{self.endpoint} is the endpoint", status)

    def _scrub(self, text: str) -> str:
        """A reply that echoes the key (a hostile or buggy server) is neither returned nor cached with it."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _ask(self, key: str, request: Mapping[str, Any],
             parse: Callable[[bytes, Iterable[str]], str]) -> str:
        """The parsed reply to ``request`` (the JSON body), from the cache under ``key`` when
        asked before; retried on 429 / 5xx / timeouts / connection errors; cached when valid."""
        with self._lock:
            if key in self._cache:
                self.stats["cache_hits"] += 1
                return self._cache[key]
        body = json.dumps(dict(request), ensure_ascii=False).encode("utf-8")
        for attempt in range(self.config.max_retries + 1):
            try:
                text = self._post(body, parse)
                break
            except _Retryable as err:
                if attempt == self.config.max_retries:
                    raise self._exhausted(err, attempt + 1) from None
                delay = min(self.config.max_backoff_s,
                            err.retry_after if err.retry_after is not None else self.config.backoff_s * 2 ** attempt)
                log.warning("%s: %s; retry %d/%d in %.2fs", self.config.model, err, attempt + 1,
                            self.config.max_retries, delay)
                with self._lock:
                    self.stats["retries"] += 1
                self._sleep(delay)
        self._store(key, text)
        return text

    def _exhausted(self, err: _Retryable, attempts: int) -> APIError:
        message = f"{err} after {attempts} attempts ({self.config.model})"
        if err.detail:
            message += f": {err.detail}"
        return (APITimeoutError if err.timeout else APIError)(message)

    def _many(self, items: Sequence[Any], keys: Sequence[str], ask: Callable[[Any], Any], *,
              progress: bool = False) -> list[Any]:
        """``ask(item)`` for every item, in order, ``max_concurrency`` at a time; items with the
        same key are asked once. The first failure is raised after the running requests finish
        (their answers stay cached)."""
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        results: dict[str, Any] = {}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(first), desc=f"api:{self.config.model}", unit="req")
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.config.max_concurrency)) as pool:
            futures = {pool.submit(ask, items[i]): k for k, i in first.items()}
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


class ChatClient(EndpointClient):
    """Thread-safe client of ``<base_url>/chat/completions``."""

    endpoint = "chat/completions"

    def complete(self, messages: Messages, **params: Any) -> str:
        """The assistant reply to ``messages`` (from the cache when asked before)."""
        params = self._params(params)
        request = {"model": self.config.model, "messages": [dict(m) for m in messages], **params}
        return self._ask(request_key(self.config.model, messages, params), request, reply_text)

    def complete_many(self, conversations: Sequence[Messages], *, progress: bool = False,
                      **params: Any) -> list[str]:
        """Replies to every conversation, in order, ``max_concurrency`` requests at a time.
        The first failure is raised after the running requests finish (their answers stay
        cached)."""
        keys = [request_key(self.config.model, m, self._params(params)) for m in conversations]
        return self._many(conversations, keys, lambda m: self.complete(m, **params), progress=progress)


# ------------------------------------------------------------------------- completions

# How a server returns a prompt's log-probabilities: "echo" is the OpenAI legacy format
# (``echo=true`` + ``logprobs`` on /v1/completions: choices[0].logprobs.{tokens, token_logprobs,
# text_offset}; vLLM, SGLang, OpenAI's legacy models); "prompt_logprobs" is vLLM's extension
# (choices[0].prompt_logprobs, one {token_id: {logprob, decoded_token}} per prompt token).
LOGPROB_FORMATS = ("echo", "prompt_logprobs")


class LogprobsUnavailableError(APIError):
    """The server answered no prompt log-probabilities in any known format (``tried``: format -> reason)."""

    def __init__(self, message: str, tried: Mapping[str, str]):
        super().__init__(message)
        self.tried = dict(tried)


class ContinuationBoundaryError(APIError):
    """A continuation whose first character is not the first character of one of the server's
    tokens (a token spans the context/continuation boundary): its log-probability is not the
    sum of whole tokens, so it is refused rather than approximated."""


@dataclasses.dataclass(frozen=True)
class PromptLogprobs:
    """A prompt's tokens as the server split them: ``tokens`` [T] their text, ``logprobs`` [T]
    log p(token | the tokens before it) (None for the first, which has no context) and
    ``offsets`` [T] the character offset of each token's start in the prompt."""

    tokens: tuple[str, ...]
    logprobs: tuple[float | None, ...]
    offsets: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps({"tokens": self.tokens, "logprobs": self.logprobs, "offsets": self.offsets},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "PromptLogprobs":
        data = json.loads(text)
        return cls(tuple(data["tokens"]), tuple(data["logprobs"]), tuple(data["offsets"]))


def completion_key(model: str, prompt: str, params: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of (model, prompt, params): a completions cache key."""
    blob = json.dumps({"model": model, "prompt": prompt, "params": dict(params)},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _first_choice(payload: bytes, secrets: Iterable[str]) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise _fail("body", "is not JSON", payload, secrets) from None
    if not isinstance(data, dict):
        raise _fail("body", f"must be a JSON object, got {type(data).__name__}", payload, secrets)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _fail("choices", "must be a non-empty list" + ("" if "choices" in data else " (missing)"),
                    payload, secrets)
    if not isinstance(choices[0], dict):
        raise _fail("choices[0]", f"must be an object, got {type(choices[0]).__name__}", payload, secrets)
    return choices[0]


def completion_text(payload: bytes, secrets: Iterable[str] = ()) -> str:
    """``choices[0].text`` of a completions body, or ``APIResponseError`` naming the bad field."""
    choice = _first_choice(payload, secrets)
    text = choice.get("text")
    if not isinstance(text, str):
        got = "missing" if "text" not in choice else type(text).__name__
        raise _fail("choices[0].text", f"must be a string, got {got}", payload, secrets)
    return text


def echo_logprobs(prompt: str, payload: bytes, secrets: Iterable[str] = ()) -> PromptLogprobs:
    """The prompt's tokens from an ``echo`` reply (OpenAI legacy ``logprobs`` object); tokens at
    or after ``len(prompt)`` (the generated one) are dropped."""
    choice = _first_choice(payload, secrets)
    lp = choice.get("logprobs")
    if not isinstance(lp, dict):
        raise _fail("choices[0].logprobs", f"must be an object, got {type(lp).__name__} "
                    "(the server does not return echo log-probabilities)", payload, secrets)
    fields = {}
    for name in ("tokens", "token_logprobs", "text_offset"):
        value = lp.get(name)
        if not isinstance(value, list):
            raise _fail(f"choices[0].logprobs.{name}", f"must be a list, got {type(value).__name__}",
                        payload, secrets)
        fields[name] = value
    n = len(fields["tokens"])
    if len(fields["token_logprobs"]) != n or len(fields["text_offset"]) != n:
        raise _fail("choices[0].logprobs", f"tokens/token_logprobs/text_offset lengths differ "
                    f"({n}/{len(fields['token_logprobs'])}/{len(fields['text_offset'])})", payload, secrets)
    tokens, logprobs, offsets = [], [], []
    for i, (tok, val, off) in enumerate(zip(fields["tokens"], fields["token_logprobs"], fields["text_offset"])):
        if not isinstance(off, int) or isinstance(off, bool) or off < (offsets[-1] if offsets else 0):
            raise _fail(f"choices[0].logprobs.text_offset[{i}]", f"must be a non-decreasing integer, got {off!r:.40}",
                        payload, secrets)
        if off >= len(prompt):
            break  # generated, not part of the prompt
        if not isinstance(tok, str):
            raise _fail(f"choices[0].logprobs.tokens[{i}]", f"must be a string, got {type(tok).__name__}",
                        payload, secrets)
        if not (val is None or (_is_number(val) and not math.isnan(val))):
            raise _fail(f"choices[0].logprobs.token_logprobs[{i}]", f"must be a number or null, got {val!r:.40}",
                        payload, secrets)
        tokens.append(tok)
        logprobs.append(None if val is None else float(val))
        offsets.append(off)
    if not tokens or offsets[0] != 0:
        raise _fail("choices[0].logprobs.text_offset", "must start at 0 and cover the prompt (echo ignored?)",
                    payload, secrets)
    return PromptLogprobs(tuple(tokens), tuple(logprobs), tuple(offsets))


def vllm_prompt_logprobs(prompt: str, payload: bytes, secrets: Iterable[str] = ()) -> PromptLogprobs:
    """The prompt's tokens from vLLM's ``prompt_logprobs`` (asked with ``prompt_logprobs=0``: one
    entry per token, the prompt token itself). It has no offsets: they are the prompt's length
    minus the decoded tokens from each one to the end, which must be exactly the prompt's end
    (the first token, whose entry is null, is the rest)."""
    choice = _first_choice(payload, secrets)
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list) or not entries:
        raise _fail("choices[0].prompt_logprobs", f"must be a non-empty list, got {type(entries).__name__} "
                    "(the server does not support vLLM's prompt_logprobs)", payload, secrets)
    if entries[0] is not None:
        raise _fail("choices[0].prompt_logprobs[0]", "must be null (the first token has no context)",
                    payload, secrets)
    texts: list[str] = []
    logprobs: list[float | None] = [None]
    for i, entry in enumerate(entries[1:], 1):
        at = f"choices[0].prompt_logprobs[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise _fail(at, "must be an object with exactly one token (asked with prompt_logprobs=0), got "
                        f"{type(entry).__name__} of {len(entry) if isinstance(entry, dict) else 0}", payload, secrets)
        (info,) = entry.values()
        if not isinstance(info, dict) or not isinstance(info.get("decoded_token"), str):
            raise _fail(f"{at}.decoded_token", "must be a string", payload, secrets)
        val = info.get("logprob")
        if not _is_number(val) or math.isnan(val):
            raise _fail(f"{at}.logprob", f"must be a number, got {val!r:.40}", payload, secrets)
        texts.append(info["decoded_token"])
        logprobs.append(float(val))
    suffix = "".join(texts)
    if not prompt.endswith(suffix) or len(suffix) >= len(prompt):
        raise _fail("choices[0].prompt_logprobs", "decoded tokens do not spell the end of the prompt, so "
                    "their offsets cannot be located", payload, secrets)
    offsets, end = [], len(prompt)
    for t in reversed(texts):
        end -= len(t)
        offsets.append(end)
    offsets = [0, *reversed(offsets)]
    tokens = [prompt[:len(prompt) - len(suffix)], *texts]
    return PromptLogprobs(tuple(tokens), tuple(logprobs), tuple(offsets))


def continuation_logprob(prompt: str, start: int, lp: PromptLogprobs, where: str = "") -> tuple[float, int]:
    """(summed log-prob, token count) of ``prompt[start:]`` given ``prompt[:start]``: the tokens
    from the one whose offset is ``start`` to the end. ``ContinuationBoundaryError`` when no
    token starts at ``start`` (one spans the boundary) or the tokens do not spell the
    continuation; ``where`` names the item in the message."""
    where = f"{where}: " if where else ""
    if not 0 < start < len(prompt):
        raise ValueError(f"{where}continuation start {start} outside the prompt (1..{len(prompt) - 1})")
    try:
        k = lp.offsets.index(start)
    except ValueError:
        i = max(j for j, off in enumerate(lp.offsets) if off < start)
        raise ContinuationBoundaryError(
            f"{where}the continuation starts at character {start}, inside the server's token "
            f"{lp.tokens[i]!r} at {lp.offsets[i]}: the context and the continuation share a token, "
            "so no sum of whole-token log-probabilities is the continuation's") from None
    if "".join(lp.tokens[k:]) != prompt[start:]:
        raise ContinuationBoundaryError(
            f"{where}the server's tokens from offset {start} spell {''.join(lp.tokens[k:])[:80]!r}, not the "
            f"continuation {prompt[start:][:80]!r}: its offsets do not match the prompt's characters")
    values = lp.logprobs[k:]
    if any(v is None for v in values):
        raise ContinuationBoundaryError(f"{where}a continuation token has no log-probability (first token?)")
    return float(sum(values)), len(values)  # type: ignore[arg-type]


class CompletionsClient(EndpointClient):
    """Thread-safe client of ``<base_url>/completions`` (vLLM, SGLang, llama.cpp server, TGI):
    generation from a prompt text, and the prompt's token log-probabilities in the format the
    server supports (``logprobs_format``: "auto" detects it on the first request, trying
    ``LOGPROB_FORMATS`` in order; ``detected`` holds the answer)."""

    endpoint = "completions"

    def __init__(self, config: APIConfig, *, logprobs_format: str = "auto",
                 sleep: Callable[[float], None] = time.sleep):
        if logprobs_format not in ("auto", *LOGPROB_FORMATS):
            raise ValueError(f"logprobs_format must be 'auto' or one of {LOGPROB_FORMATS}, got {logprobs_format!r}")
        super().__init__(config, sleep=sleep)
        self.logprobs_format = logprobs_format
        self.detected: str | None = None if logprobs_format == "auto" else logprobs_format

    def complete(self, prompt: str, **params: Any) -> str:
        """The completion of ``prompt`` (from the cache when asked before)."""
        params = self._params(params)
        request = {"model": self.config.model, "prompt": prompt, **params}
        return self._ask(completion_key(self.config.model, prompt, params), request, completion_text)

    def complete_many(self, prompts: Sequence[str], *, progress: bool = False, **params: Any) -> list[str]:
        keys = [completion_key(self.config.model, p, self._params(params)) for p in prompts]
        return self._many(prompts, keys, lambda p: self.complete(p, **params), progress=progress)

    def _logprob_params(self, fmt: str) -> dict[str, Any]:
        # One generated token: the most servers accept (max_tokens=0 is vLLM-only); it is dropped.
        fields = {"echo": True, "logprobs": 1} if fmt == "echo" else {"prompt_logprobs": 0}
        return {**self._params({"temperature": 0.0, "max_tokens": 1}), **fields}

    def _logprobs_as(self, text: str, fmt: str) -> PromptLogprobs:
        params = self._logprob_params(fmt)
        parse = echo_logprobs if fmt == "echo" else vllm_prompt_logprobs
        reply = self._ask(completion_key(self.config.model, text, params),
                          {"model": self.config.model, "prompt": text, **params},
                          lambda payload, secrets: parse(text, payload, secrets).to_json())
        return PromptLogprobs.from_json(reply)

    def prompt_logprobs(self, text: str) -> PromptLogprobs:
        """The server's log-probabilities of ``text``'s tokens (its tokenizer's split)."""
        fmt = self.detected or self.detect(text)
        return self._logprobs_as(text, fmt)

    def prompt_logprobs_many(self, texts: Sequence[str], *, progress: bool = False) -> list[PromptLogprobs]:
        """``prompt_logprobs`` of every text, in order, ``max_concurrency`` at a time (the
        format is detected first, on ``texts[0]``)."""
        if not texts:
            return []
        fmt = self.detected or self.detect(texts[0])
        keys = [completion_key(self.config.model, t, self._logprob_params(fmt)) for t in texts]
        return self._many(texts, keys, lambda t: self._logprobs_as(t, fmt), progress=progress)

    def detect(self, probe: str) -> str:
        """The first of ``LOGPROB_FORMATS`` the server answers ``probe`` in (a cached answer
        counts); ``LogprobsUnavailableError`` naming what each one said when none works."""
        with self._lock:
            if self.detected:
                return self.detected
        for fmt in LOGPROB_FORMATS:  # answered before (a resumed run): no probe
            if self.cached(completion_key(self.config.model, probe, self._logprob_params(fmt))) is not None:
                with self._lock:
                    self.detected = fmt
                return fmt
        tried: dict[str, str] = {}
        for fmt in LOGPROB_FORMATS:
            try:
                self._logprobs_as(probe, fmt)
            except APIResponseError as err:
                tried[fmt] = f"invalid reply ({err.field})"
                continue
            except APIError as err:
                if err.status not in (400, 404, 422):  # the server refusing the field; anything else is real
                    raise
                tried[fmt] = f"HTTP {err.status}"
                continue
            with self._lock:
                self.detected = fmt
            log.info("%s: prompt log-probabilities in the %r format", self.config.model, fmt)
            return fmt
        raise LogprobsUnavailableError(
            f"{self.config.model} at {self.config.base_url} returns no prompt log-probabilities ("
            + "; ".join(f"{k}: {v}" for k, v in tried.items())
            + "): log-likelihood scoring is unavailable; score it with mode='generate'", tried)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
