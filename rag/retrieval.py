"""Hybrid retrieval: dense (Chroma, e5 `query: `) + BM25, fused by reciprocal rank, collapsed by story."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from rag.settings import Settings, get_settings
from rag.types import Passage


class Filters(BaseModel):
    since: str | None = None  # inclusive, ISO date (or anything parse_date reads)
    until: str | None = None
    sources: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, value: Filters | dict | None) -> Filters:
        if value is None:
            return cls()
        return value if isinstance(value, Filters) else cls(**value)

    def bounds(self) -> tuple[int, int]:
        from ingest.meta import date_ordinal, parse_date

        lo = date_ordinal(parse_date(self.since)) if self.since else 0
        hi = date_ordinal(parse_date(self.until)) if self.until else 0
        return lo, hi

    def is_empty(self) -> bool:
        return not (self.since or self.until or self.sources or self.languages)

    def where(self) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        lo, hi = self.bounds()
        if lo:
            clauses.append({"date_ord": {"$gte": lo}})
        if hi:
            clauses.append({"date_ord": {"$lte": hi}})
        if self.since or self.until:
            clauses.append({"date_ord": {"$gt": 0}})
        if self.sources:
            clauses.append({"source": {"$in": list(self.sources)}})
        if self.languages:
            clauses.append({"lang": {"$in": [lang.lower() for lang in self.languages]}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def mask(self, index) -> np.ndarray | None:  # index: keyword.KeywordIndex
        if self.is_empty():
            return None
        mask = np.ones(len(index.ids), dtype=bool)
        lo, hi = self.bounds()
        if self.since or self.until:
            mask &= index.date_ord > 0
        if lo:
            mask &= index.date_ord >= lo
        if hi:
            mask &= index.date_ord <= hi
        if self.sources:
            wanted = set(self.sources)
            mask &= np.array([s in wanted for s in index.sources], dtype=bool)
        if self.languages:
            wanted = {lang.lower() for lang in self.languages}
            mask &= np.array([lang in wanted for lang in index.langs], dtype=bool)
        return mask

    def merged(self, other: Filters) -> Filters:
        return Filters(
            since=max(filter(None, [self.since, other.since]), default=None),
            until=min(filter(None, [self.until, other.until]), default=None),
            sources=self.sources or other.sources,
            languages=self.languages or other.languages,
        )


def hybrid_search(
    query: str,
    *,
    collection: str | None = None,
    filters: Filters | dict | None = None,
    candidates: int | None = None,
    query_lang: str = "",
    settings: Settings | None = None,
    timings: dict[str, float] | None = None,
) -> list[Passage]:
    """All fused candidates (not collapsed), best first, each with its dense cosine."""
    from rag import keyword
    from rag.models import load_embedder
    from rag.store import Store

    settings = settings or get_settings()
    name = collection or settings.collection
    flt = Filters.of(filters)
    store = Store(settings)
    if not store.exists(name):
        from rag.errors import NewsragError

        raise NewsragError(f"no collection named {name!r}: ingest articles first (`rag ingest PATH -c {name}`)")
    n = candidates or settings.candidates
    t0 = time.perf_counter()
    qvec = load_embedder(settings).embed_queries([query])[0]
    t1 = time.perf_counter()
    dense = store.query(name, qvec.tolist(), n, flt.where())
    t2 = time.perf_counter()
    index = keyword.get_index(store, name, settings)
    sparse = index.search(query, n, flt.mask(index), query_lang=query_lang)
    t3 = time.perf_counter()

    info: dict[str, dict[str, Any]] = {}
    for cid, doc, meta, cos in dense:
        info[cid] = {"text": doc, "meta": meta, "dense": cos}
    bm25_scores = {index.ids[i]: score for i, score in sparse}
    missing = [cid for cid in bm25_scores if cid not in info]
    if missing:
        got = store.chunks(name).get(ids=missing, include=["documents", "metadatas", "embeddings"])
        for cid, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=False):
            info[cid] = {"text": doc or "", "meta": dict(meta or {}), "dense": float(np.dot(np.asarray(emb), qvec))}
    fused = fuse_scores(info, bm25_scores, query_lang, {cid for cid, _, _, _ in dense})
    passages = [
        Passage(
            doc_id=str(info[cid]["meta"].get("doc_id", "")), chunk_id=cid, text=info[cid]["text"],
            score=score, dense_score=info[cid]["dense"], bm25_score=bm25_scores.get(cid),
            metadata=info[cid]["meta"],
        )
        for cid, score in fused.items()
    ]
    passages.sort(key=lambda p: -p.score)
    for rank, p in enumerate(passages, start=1):
        p.rank = rank
    if timings is not None:
        timings.update(embed_query=t1 - t0, dense=t2 - t1, bm25=t3 - t2, retrieve=time.perf_counter() - t0)
    return passages


DENSE_WEIGHT = 0.6


def fuse_scores(info: dict[str, dict[str, Any]], bm25: dict[str, float], query_lang: str,
                dense_ids: set[str] | None = None) -> dict[str, float]:
    """Article-level convex fusion of min-max normalised dense cosine and BM25 score.

    Measured in bench/retrieval.py (bench/RESULTS.md): on both the English news set and the German
    Debian FAQ this beats reciprocal rank fusion (which lost to the naive pipeline on the FAQ).
    Each article takes its best chunk per signal; its chunks are then ordered by their own score.
    BM25 is blind across languages (an English question shares no words with a German article),
    so for an article in another language than the question the keyword signal is imputed from
    its dense signal instead of counting as absent.
    """
    if not info:
        return {}
    cos = {cid: max(0.0, float(i["dense"])) for cid, i in info.items()}
    # normalised over the dense candidates; chunks only BM25 found fall below them and clip to 0
    ref = [cos[c] for c in (dense_ids or cos) if c in cos] or list(cos.values())
    lo, hi = min(ref), max(ref)
    dn = {cid: min(1.0, max(0.0, (c - lo) / (hi - lo))) if hi > lo else 1.0 for cid, c in cos.items()}
    top = max(bm25.values(), default=0.0)
    bn = {cid: (bm25.get(cid, 0.0) / top if top > 0 else 0.0) for cid in info}
    for cid, i in info.items():
        lang = i["meta"].get("lang")
        if query_lang and lang and lang != query_lang:
            bn[cid] = max(bn[cid], dn[cid])
    doc_of = {cid: str(i["meta"].get("doc_id", cid)) for cid, i in info.items()}
    doc_dense: dict[str, float] = {}
    doc_bm25: dict[str, float] = {}
    for cid, doc in doc_of.items():
        doc_dense[doc] = max(doc_dense.get(doc, 0.0), dn[cid])
        doc_bm25[doc] = max(doc_bm25.get(doc, 0.0), bn[cid])
    return {
        cid: DENSE_WEIGHT * doc_dense[doc] + (1 - DENSE_WEIGHT) * doc_bm25[doc]
        + 0.01 * (DENSE_WEIGHT * dn[cid] + (1 - DENSE_WEIGHT) * bn[cid])
        for cid, doc in doc_of.items()
    }


def collapse(passages: list[Passage], k: int, per_story: int = 1) -> list[Passage]:
    """Several chunks of one article, and wire copies of one story, become one source."""
    out: list[Passage] = []
    taken: dict[str, int] = {}
    lead: dict[str, Passage] = {}
    version: dict[str, object] = {}
    for p in passages:
        # While an article is being re-ingested, its old and new chunks coexist for a moment;
        # only chunks of the version of its best passage are used, so an answer never mixes them.
        if version.setdefault(p.doc_id, p.metadata.get("content_hash")) != p.metadata.get("content_hash"):
            continue
        story = str(p.metadata.get("group_id") or p.doc_id)
        if story in lead and lead[story].doc_id != p.doc_id:
            also = lead[story].metadata.setdefault("also_in", [])
            label = str(p.metadata.get("source") or p.doc_id)
            if isinstance(also, list) and label not in also and label != lead[story].metadata.get("source"):
                also.append(label)
            continue
        if taken.get(story, 0) >= per_story:
            continue
        taken[story] = taken.get(story, 0) + 1
        lead.setdefault(story, p)
        out.append(p)
        if len(taken) >= k and taken.get(story, 0) >= per_story and len(out) >= k * per_story:
            break
    for rank, p in enumerate(out, start=1):
        p.rank = rank
    return out


def retrieve(
    question: str,
    *,
    k: int = 10,
    collection: str | None = None,
    filters: Filters | dict | None = None,
    settings: Settings | None = None,
) -> list[Passage]:
    """The k best sources for a question: one passage per article/story, best first."""
    from ingest.meta import detect_language

    lang = detect_language(question, short=True, default="")
    passages = hybrid_search(question, collection=collection, filters=filters, settings=settings, query_lang=lang)
    return collapse(passages, k)
