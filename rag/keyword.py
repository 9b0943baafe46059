"""BM25 keyword index per collection (bm25s + PyStemmer), cached on disk by revision.

We call bm25s directly instead of llama-index-retrievers-bm25 because that wrapper
stems every text with one language; news corpora mix languages, so each chunk is
stemmed with its own article's language and a query with every corpus language.
The truth stays in Chroma: the cache is rebuilt whenever the collection's revision
changes, so several processes sharing a Chroma server never see a stale index.
The cache is bm25s's own format (numpy arrays, memory-mapped on load, and JSON) plus a JSON
file of ids and metadata: nothing is unpickled, so a shared data folder cannot run code.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from functools import lru_cache
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


@dataclass
class KeywordIndex:
    revision: str
    ids: list[str]
    date_ord: np.ndarray
    sources: list[str]
    langs: list[str]
    corpus_langs: list[str]
    model: Any  # bm25s.BM25 or None when empty

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
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


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
    meta = {"revision": index.revision, "ids": index.ids, "sources": index.sources, "langs": index.langs,
            "corpus_langs": index.corpus_langs, "empty": index.model is None}
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
        if meta.get("revision") != revision:
            return None
        model = None if meta["empty"] else bm25s.BM25.load(str(folder / "bm25"), mmap=True, load_corpus=False)
        date_ord = np.load(folder / "date_ord.npy", allow_pickle=False)
        return KeywordIndex(revision, list(meta["ids"]), date_ord, list(meta["sources"]), list(meta["langs"]),
                            list(meta["corpus_langs"]), model)
    except (OSError, ValueError, KeyError, TypeError):  # missing, torn or old cache: rebuilt
        return None


def build(store, name: str, revision: str) -> KeywordIndex:
    import bm25s

    ids: list[str] = []
    corpus: list[list[str]] = []
    date_ord: list[int] = []
    sources: list[str] = []
    langs: list[str] = []
    for cid, doc, meta in store.iter_chunks(name):
        lang = str(meta.get("lang", ""))
        ids.append(cid)
        corpus.append(tokenize(f"{meta.get('title', '')}\n{doc}", [lang]) or ["<empty>"])
        date_ord.append(int(meta.get("date_ord", 0) or 0))
        sources.append(str(meta.get("source", "")))
        langs.append(lang)
    model = None
    if corpus:
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
    corpus_langs = sorted({lang for lang in langs if lang in STEMMER_LANGS})
    return KeywordIndex(revision, ids, np.array(date_ord, dtype=np.int64), sources, langs, corpus_langs, model)


def get_index(store, name: str, settings: Settings | None = None) -> KeywordIndex:
    """The collection's keyword index at its current revision (memory, then disk, then rebuilt)."""
    settings = settings or get_settings()
    revision = store.revision(name)
    folder = _cache_dir(settings, name)
    key = str(folder)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.revision == revision:
            return cached
        index = load(folder, revision) if folder.exists() else None
        if index is None:
            index = build(store, name, revision)
            save(index, folder)
        _cache[key] = index
        return index
