"""BM25 keyword index per collection (bm25s + PyStemmer), cached on disk by revision.

We call bm25s directly instead of llama-index-retrievers-bm25 because that wrapper
stems every text with one language; news corpora mix languages, so each chunk is
stemmed with its own article's language and a query with every corpus language.
The truth stays in Chroma: the cache is rebuilt whenever the collection's revision
changes, so several processes sharing a Chroma server never see a stale index.
"""

from __future__ import annotations

import pickle
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.settings import Settings, get_settings

TOKEN = re.compile(r"\w+", re.UNICODE)
STEMMER_LANGS = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
    "pt": "portuguese", "ru": "russian", "sv": "swedish", "da": "danish", "nb": "norwegian", "no": "norwegian",
    "fi": "finnish", "hu": "hungarian", "ro": "romanian", "tr": "turkish",
}
STOPWORDS = set(["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "has", "have", "he", "her", "his", "i", "in", "is", "it", "its", "of", "on", "or", "our", "she", "that", "the", "their", "them", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "do", "does", "did", "not", "no", "how", "than", "then", "there", "der", "die", "das", "den", "dem", "des", "ein", "eine", "einer", "eines", "einem", "einen", "und", "oder", "aber", "ist", "sind", "war", "waren", "wird", "werden", "hat", "haben", "hatte", "ich", "du", "er", "sie", "es", "wir", "ihr", "mit", "von", "zu", "zur", "zum", "im", "in", "am", "an", "auf", "aus", "bei", "für", "um", "über", "unter", "nach", "vor", "wie", "was", "wer", "wo", "wann", "warum", "welche", "welcher", "welches", "nicht", "kein", "keine", "auch", "noch", "nur", "schon", "so", "sich", "dass", "als", "bis", "durch", "gegen", "ohne", "le", "la", "les", "un", "une", "des", "du", "de", "et", "ou", "est", "sont", "dans", "pour", "sur", "par", "avec", "qui", "que", "quoi", "el", "los", "las", "y", "en", "es", "por", "para", "con"])


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


def _cache_file(settings: Settings, name: str) -> Path:
    where = settings.chroma_host or "embedded"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{where}-{settings.chroma_port}") if settings.chroma_host else where
    return settings.data_dir / "keyword" / safe / f"{name}.pkl"


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
    key = f"{_cache_file(settings, name)}"
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.revision == revision:
            return cached
        path = Path(key)
        if path.exists():
            try:
                with path.open("rb") as fh:
                    loaded = pickle.load(fh)
                if isinstance(loaded, KeywordIndex) and loaded.revision == revision:
                    _cache[key] = loaded
                    return loaded
            except Exception:  # a torn or old cache file is just rebuilt
                pass
        index = build(store, name, revision)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)  # atomic: readers see the old or the new file, never half
        _cache[key] = index
        return index
