"""Embedding on a server (RAG_EMBED_PROVIDER=openai): `RemoteEmbedder` POSTs batches to an OpenAI-compatible
`/v1/embeddings` route (Text Embeddings Inference, Infinity, vLLM, Ollama, llama.cpp server, or another
machine's `rag serve`) and is used exactly like the local `rag.models.Embedder`.

- Prompts: a packaged embedder's name (RAG_EMBED_API_MODEL, or the model name the server reports, also as
  `org/name`) gets that model's query/passage prompts (e5: `query: ` / `passage: `); else RAG_EMBED_QUERY_PREFIX
  / RAG_EMBED_PASSAGE_PREFIX (set, they win).
- Tokens (chunk sizing, and cutting texts to the window before they are sent, since some servers refuse a
  longer input): the packaged model's own tokenizer when it is provisioned here, else `approx_tokens`, an
  over-estimate so that chunks stay inside the server's window.
- Failures: connection errors, timeouts, HTTP 429 and 5xx are retried with exponential backoff; what is left
  becomes one `EmbedderUnavailableError` line naming the URL and the cause (never the API key).
- The signature (`openai:<model>:<dim>:remote`) differs from every local one, so a collection never mixes
  local and remote vectors (rag.store.Store.check_embedder).
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rag.embedding import EmbedderBase
from rag.errors import EmbedderUnavailableError, NewsragError
from rag.settings import Settings

if TYPE_CHECKING:
    import httpx
    import numpy as np

BACKOFF = 0.5  # seconds before the first retry; doubled each time
MAX_WAIT = 30.0  # the longest wait between tries, whatever a Retry-After header asks
PROBE = "newsrag"  # embedded once when the embedder is made: the server's dimension and model name


def display_url(url: str) -> str:
    """The URL without user:password or query string (they may carry credentials), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def approx_tokens(text: str) -> int:
    """An over-estimate of the tokens a subword tokenizer makes of `text`: a token per 3 characters (BPE,
    WordPiece and SentencePiece vocabularies average 3.5-4.5 characters per token on English and German news),
    a token per character of CJK and other wide scripts, plus 2 special tokens."""
    wide = sum(1 for ch in text if ord(ch) >= 0x2E80)
    return math.ceil((len(text) - wide) / 3) + wide + 2


def approx_cut(text: str, tokens: int) -> str:
    """The longest head of `text` whose approx_tokens fit `tokens`."""
    if approx_tokens(text) <= tokens:
        return text
    budget = (tokens - 2) * 3  # in thirds of a token
    for i, ch in enumerate(text):
        budget -= 3 if ord(ch) >= 0x2E80 else 1
        if budget < 0:
            return text[:i]
    return text


class RemoteEmbedder(EmbedderBase):
    """An OpenAI-compatible embedding server behind the embedder interface (rag.embedding.EmbedderBase)."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, backoff: float = BACKOFF) -> None:
        import httpx

        super().__init__()
        if not settings.embed_base_url:
            raise NewsragError("RAG_EMBED_PROVIDER=openai needs RAG_EMBED_BASE_URL (e.g. http://host:8080/v1)")
        self.url = settings.embed_base_url.rstrip("/") + "/embeddings"
        self.where = display_url(self.url)
        self.retries = settings.embed_retries
        self.timeout = settings.embed_timeout
        self._sleep = sleep  # tests pass a recorder instead of waiting
        self._backoff = backoff
        self._api_model = settings.embed_api_model
        self._key = settings.embed_api_key  # a SecretStr: kept only to scrub it from messages
        key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=settings.embed_timeout, headers=headers, transport=transport)
        self.tokenizer: Any = None
        self.precision = "remote"
        self.backend = f"remote {self.where}"
        self.max_tokens = self.encode_tokens = settings.embed_max_tokens or 512
        self.full_dim = self.dim = 0  # until the probe below says
        # One short request up front: the dimension goes into the signature that check_embedder compares before
        # anything is written, and a server that is down fails here, before an ingest starts.
        try:
            probe, reported = self._request([PROBE])
        except NewsragError:
            self._client.close()
            raise
        self.full_dim = int(probe.shape[1])
        self.dim = min(settings.embed_dim, self.full_dim) if settings.embed_dim else self.full_dim
        self.name = self._api_model or reported
        if not self.name:
            raise EmbedderUnavailableError(f"the embedding server at {self.where} names no model: set RAG_EMBED_API_MODEL")
        self.signature = f"openai:{self.name}:{self.dim}:remote"
        self._know_model(settings)

    def _know_model(self, settings: Settings) -> None:
        """Prompts, tokenizer and window of the model when newsrag knows it (a packaged embedder)."""
        from rag.models import PACKAGED_EMBEDDERS, embedder_dir, embedder_status, model_prompts

        key = self.name.rsplit("/", 1)[-1].lower()
        spec = PACKAGED_EMBEDDERS.get(key)
        query, passage = model_prompts(Path(self.name), self.name)  # e5 models by name
        if spec is not None:
            folder = embedder_dir(settings, key)
            if embedder_status(settings, key) == "ready":
                from rag.tokenizer import load_tokenizer

                query, passage = model_prompts(folder, key)
                self.tokenizer = load_tokenizer(folder)
                st_config = json.loads((folder / "sentence_bert_config.json").read_text())
                window = int(st_config.get("max_seq_length") or 512)
                self.max_tokens = self.encode_tokens = min(window, self.max_tokens)
            elif any(spec.prompts):
                query, passage = spec.prompts
        self.query_prefix = settings.embed_query_prefix or query
        self.passage_prefix = settings.embed_passage_prefix or passage

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ tokens
    def count_tokens(self, texts: list[str]) -> list[int]:
        if self.tokenizer is None:
            return [approx_tokens(t) for t in texts]
        with self._lock:
            enc = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def _cut(self, texts: list[str]) -> list[str]:
        """Texts cut to encode_tokens, as the local embedder cuts them (called with the lock held)."""
        if self.tokenizer is None:
            return [approx_cut(t, self.encode_tokens) for t in texts]
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.encode_tokens,
                             return_offsets_mapping=True)
        out = []
        for text, offsets in zip(texts, enc["offset_mapping"], strict=True):
            end = max((stop for _, stop in offsets), default=len(text))
            out.append(text[:end] if text[end:].strip() else text)
        return out

    # ------------------------------------------------------------------ vectors
    def _full_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import numpy as np

        texts = self._cut(texts)
        parts = [self._request(texts[i : i + batch_size])[0] for i in range(0, len(texts), max(1, batch_size))]
        return np.concatenate(parts)

    def _fail(self, cause: str) -> EmbedderUnavailableError:
        message = f"the embedding server at {self.where} {cause}"
        if self._key and self._key.get_secret_value():
            message = message.replace(self._key.get_secret_value(), "***")
        return EmbedderUnavailableError(" ".join(message.split()))  # one line, whatever the server sent

    def _request(self, batch: list[str]) -> tuple[np.ndarray, str]:
        """Normalised vectors of one batch and the model name the server reports, retrying what may pass."""
        import httpx

        payload: dict[str, Any] = {"input": batch}
        if self._api_model:
            payload["model"] = self._api_model
        delay, cause, hint = self._backoff, "", ""
        for attempt in range(self.retries + 1):
            wait = 0.0
            try:
                resp = self._client.post(self.url, json=payload)
            except httpx.TimeoutException:
                cause, hint = f"did not answer within {self.timeout:g} s", "raise RAG_EMBED_TIMEOUT or lower RAG_EMBED_BATCH_SIZE"
            except httpx.TransportError as exc:
                cause, hint = f"cannot be reached ({type(exc).__name__}: {exc})", "is it running? Check RAG_EMBED_BASE_URL"
            else:
                if resp.status_code == 200:
                    return self._parse(resp, len(batch))
                cause, hint = f"answered HTTP {resp.status_code} ({resp.text[:200]!r})", "see the server's log"
                if resp.status_code in (401, 403):
                    raise self._fail(f"refused the API key (HTTP {resp.status_code}): check RAG_EMBED_API_KEY")
                if resp.status_code != 429 and resp.status_code < 500:  # the same request fails the same way
                    raise self._fail(f"{cause}: check RAG_EMBED_BASE_URL (it ends in /v1) and RAG_EMBED_API_MODEL")
                wait = _retry_after(resp)
            if attempt < self.retries:
                self._sleep(min(max(delay, wait), MAX_WAIT))
                delay *= 2
        tries = f" after {self.retries + 1} tries" if self.retries else ""
        raise self._fail(f"{cause}{tries}: {hint}")

    def _parse(self, resp: httpx.Response, n: int) -> tuple[np.ndarray, str]:
        import numpy as np

        try:
            body = resp.json()
            items = body["data"]
            if not isinstance(items, list) or len(items) != n:
                raise ValueError(f"{len(items) if isinstance(items, list) else 'no'} vectors for {n} texts")
            if all(isinstance(it.get("index"), int) for it in items):
                items = sorted(items, key=lambda it: it["index"])
            rows = [_vector(it["embedding"]) for it in items]
            if len({len(r) for r in rows}) != 1 or (self.full_dim and len(rows[0]) != self.full_dim):
                raise ValueError(f"vectors of {sorted({len(r) for r in rows})} dimensions, expected {self.full_dim}")
            vectors = np.stack(rows).astype(np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if not np.isfinite(vectors).all() or not (norms > 0).all():
                raise ValueError("empty, NaN or infinite vectors")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._fail(f"answered something that is not an embeddings response ({exc})") from exc
        # Cosine scores assume unit vectors; not every server normalises (Ollama, some vLLM models).
        return vectors / norms, str(body.get("model") or "")


def _vector(value: Any) -> np.ndarray:
    """One embedding: a list of floats, or base64 little-endian float32 (what OpenAI's SDK asks for)."""
    import numpy as np

    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4")
    vec = np.asarray(value, dtype=np.float32)
    if vec.ndim != 1 or not vec.size:
        raise ValueError(f"an embedding of shape {vec.shape}")
    return vec


def _retry_after(resp: httpx.Response) -> float:
    try:
        return float(resp.headers.get("retry-after", 0))
    except ValueError:  # an HTTP date: the doubling backoff decides
        return 0.0


_remote: dict[tuple, RemoteEmbedder] = {}
_remote_lock = threading.Lock()


def load_remote_embedder(settings: Settings) -> RemoteEmbedder:
    """The process-wide remote embedder for these settings (one probe request the first time; a server
    that is down raises, and the next call tries again)."""
    key = (settings.embed_base_url, settings.embed_api_model, settings.embed_dim, settings.embed_max_tokens,
           settings.embed_query_prefix, settings.embed_passage_prefix, settings.embed_timeout, settings.embed_retries,
           str(settings.model_dir), hash(settings.embed_api_key.get_secret_value() if settings.embed_api_key else ""))
    with _remote_lock:
        if key not in _remote:
            _remote[key] = RemoteEmbedder(settings)
        return _remote[key]
