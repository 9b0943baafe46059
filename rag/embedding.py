"""The embedder interface every embedder offers (`EmbedderBase`): the local model (`rag.models.Embedder`) and
an OpenAI-compatible embedding server (`rag.remote_embedder.RemoteEmbedder`) are used the same way by ingest,
retrieval and answering.

The shared part lives here: query/passage prompts, the small LRU cache of recurring texts and Matryoshka
truncation. A subclass sets the attributes and implements `count_tokens` and `_full_encode`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def truncate(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka truncation: the leading `dim` dimensions of each vector, re-normalised (a new array; the
    input is left as it was)."""
    import numpy as np

    kept = vectors[:, :dim]
    return kept / np.maximum(np.linalg.norm(kept, axis=1, keepdims=True), 1e-12)


# The chunk metadata field that holds the answer scorer's vector of a chunk, written at ingest (Chroma keeps one
# vector per record, and the chunk's is the retrieval embedder's). It comes back with the chunk from every
# query, so answering reads it instead of re-embedding the chunk before the first token.
SCORER_FIELD = "_scorer_vector"


def pack_vector(signature: str, vector: np.ndarray) -> str:
    """A vector as metadata text: the embedder's signature, "|", its float32 bytes in base64 (Chroma metadata
    holds strings and numbers, not arrays; float32 keeps the vector exactly as the model made it)."""
    import base64

    import numpy as np

    return f"{signature}|{base64.b64encode(np.asarray(vector, dtype='<f4').tobytes()).decode('ascii')}"


def unpack_vector(value: object, signature: str) -> np.ndarray | None:
    """The vector pack_vector wrote, or None when there is none or another embedder made it."""
    import base64

    import numpy as np

    if not isinstance(value, str) or not value.startswith(signature + "|"):
        return None
    return np.frombuffer(base64.b64decode(value[len(signature) + 1 :]), dtype="<f4")


class EmbedderBase:
    name: str  # the model (a folder, an id, or the remote model name)
    full_dim: int  # what the model outputs; dim may keep fewer (Matryoshka)
    dim: int
    precision: str
    # What a collection records about the vectors it holds: vectors of two models, dimensions, precisions or
    # providers must never be mixed in one collection (rag.store.Store.check_embedder).
    signature: str
    backend: str  # how the vectors are made, for `rag doctor`
    max_tokens: int  # chunks are sized to fit this window
    encode_tokens: int  # texts are cut here when embedded (benchmarks lower it)
    query_prefix: str
    passage_prefix: str

    def __init__(self) -> None:
        # Tokenizers keep mutable truncation/padding state: concurrent calls from threads (UI sessions, HTTP
        # requests, ingest) corrupt each other, so calls are serialised.
        self._lock = threading.Lock()
        # Questions and article sentences recur within a conversation (retrieval, evidence selection
        # and verification all embed them): a small LRU saves repeated model calls. ~12 MB at most.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = 8192
        self.query_prefix = self.passage_prefix = ""

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens the model reads for each text, with specials (no truncation)."""
        raise NotImplementedError

    def embed_passages(self, texts: list[str], batch_size: int = 32, cache: bool = False) -> np.ndarray:
        """Passage vectors; `cache=True` for short texts that recur (sentences), not for ingest chunks."""
        return self._encode([self.passage_prefix + t for t in texts], batch_size, cache)

    def embed_queries(self, texts: list[str], batch_size: int = 32, cache: bool = True) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts], batch_size, cache)

    def embed_texts(self, texts: list[str], batch_size: int = 32, cache: bool = False) -> np.ndarray:
        """Vectors of the texts as given, without a query or passage prompt (the /v1/embeddings route of
        `rag serve`: its clients add the prompts, as with any OpenAI-compatible embedding server)."""
        return self._encode(list(texts), batch_size, cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _encode(self, texts: list[str], batch_size: int, cache: bool = False) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            if not cache:
                return self._model_encode(texts, batch_size)
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                for text, vec in zip(missing, self._model_encode(missing, batch_size), strict=True):
                    self._cache[text] = vec
            out = np.stack([self._cache[t] for t in texts])
            for t in texts:
                self._cache.move_to_end(t)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return out

    def _model_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self._full_encode(texts, batch_size)
        return truncate(vectors, self.dim) if vectors.shape[1] > self.dim else vectors

    def _full_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Normalised full-dimension vectors of the texts (called with the lock held)."""
        raise NotImplementedError
