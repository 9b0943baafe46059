"""BM25 keyword index per collection (bm25s + PyStemmer), with an exact vector sidecar, cached on disk by revision.

We call bm25s directly instead of llama-index-retrievers-bm25 because that wrapper
stems every text with one language; news corpora mix languages, so each chunk is
stemmed with its own article's language and a query with every corpus language.
The truth stays in Chroma: the cache is rebuilt whenever the collection's revision
changes, so several processes sharing a Chroma server never see a stale index.
The cache is bm25s's own format (numpy arrays, memory-mapped on load, and JSON) plus a JSON
file of ids and metadata: nothing is unpickled, so a shared data folder cannot run code.

Beside it, for collections up to RAG_EXACT_SEARCH_MAX_CHUNKS, every chunk's and article's vector as one
memory-mapped float32 matrix each (ExactVectors). Dense retrieval then scores every chunk exactly (one matrix
product, ~2.5 ms at 19k chunks) instead of querying Chroma's HNSW index, and needs no Chroma fetch for the
vectors and metadata of candidates it only scores. Ours rather than Chroma's query because it is measurably
better here (bench/RESULTS.md, stop 29): HNSW (ef_search 100) found 0.921 of the exact top 40 at 19k chunks,
and returning candidates from Chroma was a third of retrieval's time.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.lang import STEMMER_LANGS
from rag.settings import Settings, get_settings
from rag.text import STOPWORDS

TOKEN = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=32)
def _stemmer(lang: str):
    import Stemmer

    name = STEMMER_LANGS.get(lang)
    return Stemmer.Stemmer(name) if name else None


def tokenize(text: str, langs: list[str]) -> list[str]:
    """Lowercased words without stopwords, stemmed with each given language's stemmer."""
    words = [w for w in TOKEN.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]
    out: list[str] = []
    seen: set[str] = set()
    stemmers = [s for s in (_stemmer(lang) for lang in langs) if s] or [None]
    for stemmer in stemmers:
        stems = stemmer.stemWords(words) if stemmer else words
        out.extend(stems)
        if len(stemmers) > 1:
            seen.update(stems)
    if len(stemmers) > 1:  # query side: a bag of the variants, each once
        return sorted(seen)
    return out


def top(scores: np.ndarray, n: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The n best (row, score) pairs, best first; rows outside `mask` never count."""
    if mask is not None:
        rows = np.flatnonzero(mask)
        scores = scores[rows]
    else:
        rows = None
    n = min(n, len(scores))
    if n <= 0:
        return []
    best = np.argpartition(-scores, n - 1)[:n]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(rows[i]) if rows is not None else int(i), float(scores[i])) for i in best]


@dataclass
class ExactVectors:
    """Every chunk's and article's vector as stored in Chroma, for exact cosine search in memory."""

    chunks: np.ndarray  # (chunks, dim) float32 unit rows; row i is KeywordIndex.ids[i]
    article_ids: list[str]  # the articles with a whole-article vector (NAME__docs)
    articles: np.ndarray  # (articles, dim) float32 unit rows
    chunk_article: np.ndarray  # int32: each chunk's row in `articles`, -1 when its article has no vector

    def page_in(self) -> None:
        """Read the memory-mapped vectors now (a new process's first question would wait for the pages)."""
        _ = float(np.asarray(self.chunks).sum()) + float(np.asarray(self.articles).sum())

    def top_chunks(self, qvec: np.ndarray, n: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The n chunks closest to the question: (row, cosine), best first."""
        return top(self.chunks @ qvec.astype(np.float32), n, mask)

    def top_articles(self, qvec: np.ndarray, n: int, chunk_mask: np.ndarray | None = None) -> dict[str, float] | None:
        """article id -> cosine of its whole-article vector, the n best (None when there are none). An article
        passes the filters when its chunks do (they carry its metadata)."""
        if not self.article_ids:
            return None
        mask = None
        if chunk_mask is not None:
            mask = np.zeros(len(self.article_ids), dtype=bool)
            rows = self.chunk_article[chunk_mask]
            mask[rows[rows >= 0]] = True
        cos = self.articles @ qvec.astype(np.float32)
        return {self.article_ids[i]: score for i, score in top(cos, n, mask)}


def vectors_wanted(chunks: int, limit: int) -> bool:
    """Whether a collection of this many chunks keeps the exact vectors (RAG_EXACT_SEARCH_MAX_CHUNKS)."""
    return 0 < chunks <= limit


def unit_rows(vectors: Any) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    if rows.ndim != 2:
        return rows.reshape(0, 0)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


@dataclass
class KeywordIndex:
    revision: str
    ids: list[str]
    date_ord: np.ndarray
    sources: list[str]
    langs: list[str]
    corpus_langs: list[str]
    model: Any  # bm25s.BM25 or None when empty
    doc_ids: list[str] = field(default_factory=list)  # each chunk's article
    vectors: ExactVectors | None = None  # None above RAG_EXACT_SEARCH_MAX_CHUNKS: Chroma's HNSW searches

    def exact(self, settings: Settings) -> ExactVectors | None:
        """The vectors to search exactly under these settings (an index built under a higher limit keeps them)."""
        return self.vectors if len(self.ids) <= settings.exact_search_max_chunks else None

    @cached_property
    def rows_of_doc(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for row, doc in enumerate(self.doc_ids):
            out.setdefault(doc, []).append(row)
        return out

    def search(self, query: str, n: int, mask: np.ndarray | None = None,
               query_lang: str = "") -> list[tuple[int, float]]:
        if self.model is None or not self.ids:
            return []
        langs = sorted(set(self.corpus_langs) | ({query_lang} if query_lang else set())) or ["en"]
        tokens = [t for t in tokenize(query, langs) if t in self.model.vocab_dict]
        if not tokens:
            return []
        scores = self.model.get_scores(tokens)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        return [(i, score) for i, score in top(scores, n) if score > 0]


FORMAT = 2  # 2: each chunk's article and the exact vectors
_cache: dict[str, KeywordIndex] = {}
_lock = threading.Lock()


def _cache_dir(settings: Settings, name: str) -> Path:
    where = settings.chroma_host or "embedded"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{where}-{settings.chroma_port}") if settings.chroma_host else where
    return settings.data_dir / "keyword" / safe / name


def save(index: KeywordIndex, folder: Path) -> None:
    """Write the index to `folder` atomically: readers see the old folder or the new one, never half."""
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    if index.model is not None:
        index.model.save(str(tmp / "bm25"))
    np.save(tmp / "date_ord.npy", index.date_ord)
    vectors = index.vectors
    if vectors is not None:
        np.save(tmp / "chunk_vectors.npy", vectors.chunks)
        np.save(tmp / "article_vectors.npy", vectors.articles)
        np.save(tmp / "chunk_article.npy", vectors.chunk_article)
    meta = {"format": FORMAT, "revision": index.revision, "ids": index.ids, "sources": index.sources,
            "langs": index.langs, "corpus_langs": index.corpus_langs, "empty": index.model is None,
            "doc_ids": index.doc_ids, "article_ids": vectors.article_ids if vectors is not None else None}
    (tmp / "index.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    except OSError:  # another process swapped in its copy at the same moment: keep that one
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def load(folder: Path, revision: str) -> KeywordIndex | None:
    """The saved index if it is at `revision`, else None (no pickle: JSON and memory-mapped numpy)."""
    import bm25s

    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        if meta.get("revision") != revision or meta.get("format") != FORMAT:
            return None
        model = None if meta["empty"] else bm25s.BM25.load(str(folder / "bm25"), mmap=True, load_corpus=False)
        date_ord = np.load(folder / "date_ord.npy", allow_pickle=False)
        vectors = None
        if meta["article_ids"] is not None:
            vectors = ExactVectors(np.load(folder / "chunk_vectors.npy", mmap_mode="r", allow_pickle=False),
                                   list(meta["article_ids"]),
                                   np.load(folder / "article_vectors.npy", mmap_mode="r", allow_pickle=False),
                                   np.load(folder / "chunk_article.npy", allow_pickle=False))
            chunks, articles = vectors.chunks, vectors.articles
            if (chunks.dtype != np.float32 or articles.dtype != np.float32
                    or chunks.ndim != 2 or chunks.shape[0] != len(meta["ids"]) or articles.ndim != 2 or articles.shape != (len(vectors.article_ids), chunks.shape[1])
                    or vectors.chunk_article.shape != (len(meta["ids"]),)
                    or (vectors.chunk_article.size and vectors.chunk_article.max() >= len(vectors.article_ids))):
                return None  # written by something else, or torn: rebuilt
        return KeywordIndex(revision, list(meta["ids"]), date_ord, list(meta["sources"]), list(meta["langs"]),
                            list(meta["corpus_langs"]), model, list(meta["doc_ids"]), vectors)
    except (OSError, ValueError, KeyError, TypeError):  # missing, torn or old cache: rebuilt
        return None


def build(store, name: str, revision: str, max_vectors: int = 0) -> KeywordIndex:
    """The index of the collection's chunks; with their vectors when it has at most `max_vectors` chunks."""
    import bm25s

    with_vectors = vectors_wanted(store.chunk_count(name), max_vectors)
    ids: list[str] = []
    doc_ids: list[str] = []
    embeddings: list[Any] = []
    corpus: list[list[str]] = []
    date_ord: list[int] = []
    sources: list[str] = []
    langs: list[str] = []
    for cid, doc, meta, emb in store.iter_chunk_rows(name, vectors=with_vectors):
        lang = str(meta.get("lang", ""))
        ids.append(cid)
        doc_ids.append(str(meta.get("doc_id", "")))
        if with_vectors:
            embeddings.append(emb)
        corpus.append(tokenize(f"{meta.get('title', '')}\n{doc}", [lang]) or ["<empty>"])
        date_ord.append(int(meta.get("date_ord", 0) or 0))
        sources.append(str(meta.get("source", "")))
        langs.append(lang)
    model = None
    if corpus:
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
    corpus_langs = sorted({lang for lang in langs if lang in STEMMER_LANGS})
    vectors = None
    if with_vectors and vectors_wanted(len(ids), max_vectors):
        article_ids, article_vectors = store.article_vectors(name)
        row_of = {doc: row for row, doc in enumerate(article_ids)}
        chunk_vectors = unit_rows(embeddings)
        vectors = ExactVectors(chunk_vectors, article_ids,
                               unit_rows(article_vectors).reshape(-1, chunk_vectors.shape[1]),
                               np.array([row_of.get(d, -1) for d in doc_ids], dtype=np.int32))
    return KeywordIndex(revision, ids, np.array(date_ord, dtype=np.int64), sources, langs, corpus_langs, model,
                        doc_ids, vectors)


def get_index(store, name: str, settings: Settings | None = None) -> KeywordIndex:
    """The collection's keyword index at its current revision (memory, then disk, then rebuilt)."""
    settings = settings or get_settings()
    revision = store.revision(name)
    folder = _cache_dir(settings, name)
    key = str(folder)
    limit = settings.exact_search_max_chunks

    def current(index: KeywordIndex | None) -> bool:  # at this revision, with vectors when they are wanted
        return (index is not None and index.revision == revision
                and (index.vectors is not None or not vectors_wanted(len(index.ids), limit)))

    with _lock:
        cached = _cache.get(key)
        if current(cached):
            return cached
        index = load(folder, revision) if folder.exists() else None
        if not current(index):
            index = build(store, name, revision, limit)
            save(index, folder)
        _cache[key] = index
        return index
