"""Hybrid retrieval: dense (exact from the keyword index's copy of the vectors, or Chroma's HNSW above
RAG_EXACT_SEARCH_MAX_CHUNKS; chunk and article vectors) + BM25, fused by a convex combination of normalised
scores, collapsed by story."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.embedding import SCORER_FIELD
from rag.settings import Settings, get_settings
from rag.types import Filters, Passage

if TYPE_CHECKING:
    from rag.keyword import ExactVectors, KeywordIndex
    from rag.store import Store


def hybrid_search(
    query: str,
    *,
    collection: str | None = None,
    filters: Filters | dict | None = None,
    candidates: int | None = None,
    query_lang: str = "",
    settings: Settings | None = None,
    timings: dict[str, float] | None = None,
    articles: int | None = None,
) -> list[Passage]:
    """The fused candidates (not collapsed), best first, each with its dense cosine: every candidate chunk of
    the best `articles` articles (of all, when None). Only those are read from Chroma: returning a chunk's text
    and metadata is most of what a candidate costs (~0.1 ms each; a question has ~150 candidates at 19k chunks)."""
    from rag.models import load_embedder
    from rag.store import Store

    settings = settings or get_settings()
    name = collection or settings.collection
    flt = Filters.of(filters)
    store = Store(settings)
    if not store.exists(name):
        from rag.errors import CollectionNotFoundError

        raise CollectionNotFoundError(f"no collection named {name!r}: ingest articles first (`rag ingest PATH -c {name}`)")
    n = candidates or settings.candidates
    if not query_lang:  # the fusion's language rules need it (retrieve() and answers pass it)
        from rag.lang import detect_language

        query_lang = detect_language(query, short=True, default="")
    t0 = time.perf_counter()
    index = warm_once(store, name, settings)
    embedder = load_embedder(settings)
    store.check_embedder(name, embedder.signature)
    qvec = embedder.embed_queries([query])[0]
    t1 = time.perf_counter()
    mask = flt.mask(index)
    exact = index.exact(settings)
    if exact is not None and exact.chunks.shape[1] != len(qvec):  # a collection from before it recorded its embedder
        raise store.dimension_mismatch(exact.chunks.shape[1], len(qvec))

    def fused_passages(exact: ExactVectors | None) -> list[Passage] | None:
        """None when the exact search named chunks that an ingest has deleted since the index was read."""
        nonlocal t2, t3
        if exact is not None:
            info, dense_ids, doc_cos = exact_candidates(exact, index, qvec, n, mask, settings.article_vectors)
        else:
            info, dense_ids, doc_cos = chroma_candidates(store, name, qvec, n, flt, settings.article_vectors)
        t2 = time.perf_counter()
        sparse = index.search(query, n, mask, query_lang=query_lang)
        bm25_scores = {index.ids[i]: score for i, score in sparse}
        rows = [i for i, _ in sparse]
        new_docs: list[str] = []
        if doc_cos:
            # Articles found only by their whole-article vector: their chunks become candidates too.
            have = {str(i["meta"].get("doc_id", "")) for i in info.values()} | {index.doc_ids[i] for i in rows}
            new_docs = [doc for doc in doc_cos if doc not in have]
        add_candidates(info, index, exact, [row for row in rows if index.ids[row] not in info], new_docs, qvec,
                       store, name)
        t3 = time.perf_counter()
        fused = fuse_scores(info, bm25_scores, query_lang, dense_ids, doc_cos, settings.article_weight)
        ranked = sorted(fused, key=lambda cid: -fused[cid])
        if articles is not None:
            best_docs: set[str] = set()
            for cid in ranked:
                best_docs.add(str(info[cid]["meta"].get("doc_id", "")))
                if len(best_docs) >= articles:
                    break
            ranked = [cid for cid in ranked if str(info[cid]["meta"].get("doc_id", "")) in best_docs]
        unread = [cid for cid in ranked if info[cid]["text"] is None]
        got = store.get_chunks(name, unread)
        if len(got) < len(unread):
            return None
        for cid, (text, meta) in got.items():
            info[cid]["text"], info[cid]["meta"] = text, meta
        passages = []
        for cid in ranked:
            meta = info[cid]["meta"]
            scorer_vector = meta.pop(SCORER_FIELD, "")  # not a field to show or to hand to llama-index
            passages.append(Passage(
                doc_id=str(meta.get("doc_id", "")), chunk_id=cid, text=info[cid]["text"], score=fused[cid],
                dense_score=info[cid]["dense"], bm25_score=bm25_scores.get(cid), metadata=meta,
                scorer_vector=scorer_vector if isinstance(scorer_vector, str) else "", rank=len(passages) + 1,
            ))
        return passages

    t2 = t3 = t1
    passages = fused_passages(exact)
    if passages is None:
        # An ingest is replacing articles (it moves the index to a new revision when it ends): Chroma is the
        # truth, and its own search sees the new chunks.
        passages = fused_passages(None) or []
    if timings is not None:
        timings.update(embed_query=t1 - t0, dense=t2 - t1, bm25=t3 - t2, read=time.perf_counter() - t3,
                       retrieve=time.perf_counter() - t0)
    return passages


def exact_candidates(exact: ExactVectors, index: KeywordIndex, qvec: np.ndarray, n: int, mask: np.ndarray | None,
                     article_vectors: bool) -> tuple[dict[str, dict[str, Any]], set[str], dict[str, float] | None]:
    """The n closest chunks by exact cosine from the index's copy of the vectors (rag.keyword.ExactVectors),
    and the n closest articles by their whole-article vectors; texts are read later, for the best only."""
    info = {index.ids[row]: unread_candidate(index, row, score) for row, score in exact.top_chunks(qvec, n, mask)}
    doc_cos = exact.top_articles(qvec, n, mask) if article_vectors else None
    return info, set(info), doc_cos


def unread_candidate(index: KeywordIndex, row: int, cos: float) -> dict[str, Any]:
    """A candidate known from the index alone: the fusion needs its article and language; its text and full
    metadata are read from Chroma only if its article is among the best."""
    return {"text": None, "meta": {"doc_id": index.doc_ids[row], "lang": index.langs[row]}, "dense": cos}


def add_candidates(info: dict[str, dict[str, Any]], index: KeywordIndex, exact: ExactVectors | None,
                   rows: list[int], new_docs: list[str], qvec: np.ndarray, store: Store, name: str) -> None:
    """Chunks that BM25 found (`rows` of the index) and the chunks of articles only an article vector found, with
    their dense cosine: from the index's vectors, or else read from Chroma with their vectors."""
    if exact is not None:
        rows = list(dict.fromkeys(rows + [row for doc in new_docs for row in index.rows_of_doc.get(doc, [])]))
        if rows:
            cos = np.asarray(exact.chunks[rows]) @ qvec.astype(np.float32)
            for row, score in zip(rows, cos, strict=True):
                info[index.ids[row]] = unread_candidate(index, row, float(score))
        return
    include = ["documents", "metadatas", "embeddings"]
    reads = [{"ids": [index.ids[row] for row in rows]}] if rows else []
    if new_docs:
        reads.append({"where": {"doc_id": {"$in": new_docs}}})
    for read in reads:
        got = store.chunks(name).get(**read, include=include)
        for cid, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"],
                                       strict=False):
            info.setdefault(cid, {"text": doc or "", "meta": dict(meta or {}),
                                  "dense": float(np.dot(np.asarray(emb), qvec))})


def chroma_candidates(store: Store, name: str, qvec: np.ndarray, n: int, flt: Filters,
                      article_vectors: bool) -> tuple[dict[str, dict[str, Any]], set[str], dict[str, float] | None]:
    """The same from Chroma's HNSW indexes (collections above RAG_EXACT_SEARCH_MAX_CHUNKS)."""
    dense = store.query(name, qvec.tolist(), n, flt.where())
    info = {cid: {"text": doc, "meta": meta, "dense": cos} for cid, doc, meta, cos in dense}
    doc_cos = store.query_docs(name, qvec.tolist(), n, flt.where()) if article_vectors else None
    return info, set(info), doc_cos


_warmed: set[tuple[str, str]] = set()


def warm_once(store: Store, name: str, settings: Settings) -> KeywordIndex:
    """The collection's keyword index (rag.keyword.get_index). On a process's first question to a collection it
    also reads the dense vectors before the question waits for the embedder: in a new process the embedders
    are still loading then (rag.answer.gather_evidence loads them in threads), so this reading overlaps with
    them instead of following them. The index's exact vectors are paged in; without them, Chroma's HNSW indexes
    are read."""
    from rag import keyword

    key = (f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(settings.chroma_dir), name)
    index = keyword.get_index(store, name, settings)
    if key not in _warmed:
        exact = index.exact(settings)
        if exact is not None:
            exact.page_in()
        else:
            store.warm(name)
        _warmed.add(key)
    return index


DENSE_WEIGHT = 0.6
# When BM25 finds a standout article (keyword_standout), the fusion trusts it more. In a collection that mixes
# languages, dense retrieval ranked articles on the question's topic above the one article that names its
# people and places: for "Wann traf Lawrow Choe Son-hui?" 6 English Korea articles came before the German seed
# in the 1,370-article news-mixed bench set (24 in the ~19k-chunk one), which BM25 scored 2.9 times the next
# article. Measured on every bench/retrieval.py set and on the ~19k-chunk collection (RESULTS.md, stop 25).
BM25_STANDOUT = 2.5
STANDOUT_DENSE_WEIGHT = 0.3


def fuse_scores(info: dict[str, dict[str, Any]], bm25: dict[str, float], query_lang: str,
                dense_ids: set[str] | None = None, doc_cos: dict[str, float] | None = None,
                article_weight: float = 0.5) -> dict[str, float]:
    """Article-level convex fusion of min-max normalised dense cosine and BM25 score.

    Measured in bench/retrieval.py (bench/RESULTS.md): on both the English news set and the German
    Debian FAQ this beats reciprocal rank fusion (which lost to the naive pipeline on the FAQ).
    Each article takes its best chunk per signal; its chunks are then ordered by their own score.
    BM25 is blind across languages (an English question shares no words with a German article),
    so for an article in another language than the question the keyword signal is imputed from
    its dense signal instead of counting as absent; except when BM25 found a standout article
    (keyword_standout): then the keyword signal did tell the articles apart, so it weighs more and
    articles it cannot read get no imputed credit.
    With article vectors (`doc_cos`, one per whole article), an article's dense signal is a mix of its
    best chunk and its article vector, each min-max normalised over its own candidates.
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
    doc_of = {cid: str(i["meta"].get("doc_id", cid)) for cid, i in info.items()}
    lang_of = {doc_of[cid]: str(i["meta"].get("lang") or "") for cid, i in info.items()}
    standout = keyword_standout(bm25, doc_of, lang_of, query_lang)
    dense_weight = STANDOUT_DENSE_WEIGHT if standout else DENSE_WEIGHT
    if not standout:
        for cid, i in info.items():
            lang = i["meta"].get("lang")
            if query_lang and lang and lang != query_lang:
                bn[cid] = max(bn[cid], dn[cid])
    doc_dense: dict[str, float] = {}
    doc_bm25: dict[str, float] = {}
    for cid, doc in doc_of.items():
        doc_dense[doc] = max(doc_dense.get(doc, 0.0), dn[cid])
        doc_bm25[doc] = max(doc_bm25.get(doc, 0.0), bn[cid])
    if doc_cos:
        lo_a, hi_a = min(doc_cos.values()), max(doc_cos.values())
        doc_lang = {doc_of[cid]: info[cid]["meta"].get("lang") for cid in info}
        langs = {lang for lang in doc_lang.values() if lang}
        # A whole-article vector leans harder towards the question's language than a chunk does (an English
        # question found English 2017 articles above the German seed). When the candidates mix the
        # question's language with others, an article in another language may be lifted by its vector,
        # never sunk below its best chunk; among articles of one language the bias cancels out.
        mixed = bool(query_lang) and query_lang in langs and len(langs) > 1
        for doc in doc_dense:
            a = doc_cos.get(doc)
            an = 0.0 if a is None else ((a - lo_a) / (hi_a - lo_a) if hi_a > lo_a else 1.0)
            if mixed and doc_lang.get(doc) and doc_lang[doc] != query_lang:
                an = max(an, doc_dense[doc])
            doc_dense[doc] = (1 - article_weight) * doc_dense[doc] + article_weight * an
    return {
        cid: dense_weight * doc_dense[doc] + (1 - dense_weight) * doc_bm25[doc]
        + 0.01 * (dense_weight * dn[cid] + (1 - dense_weight) * bn[cid])
        for cid, doc in doc_of.items()
    }


def keyword_standout(bm25: dict[str, float], doc_of: dict[str, str], lang_of: dict[str, str] | None = None,
                     query_lang: str = "") -> bool:
    """Whether BM25's best article scores at least BM25_STANDOUT times the next one: the question's rare words
    (a name, a place, a term) occur together in that article and hardly anywhere else. Only an article in the
    question's language counts (`lang_of`: doc -> language): across languages BM25 matches only the few words
    that are spelt alike, and trusting such a match cost the English->German Debian set 2 of 250 questions."""
    best: dict[str, float] = {}
    for cid, score in bm25.items():
        doc = doc_of.get(cid, cid)
        best[doc] = max(best.get(doc, 0.0), score)
    ranked = sorted(best, key=lambda d: -best[d])
    if not ranked or best[ranked[0]] <= 0:
        return False
    lang = (lang_of or {}).get(ranked[0], "")
    if query_lang and lang and lang != query_lang:
        return False
    second = best[ranked[1]] if len(ranked) > 1 else 0.0
    return best[ranked[0]] >= BM25_STANDOUT * second


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
    from rag.lang import detect_language

    lang = detect_language(question, short=True, default="")
    # Only the best articles' chunks are read from Chroma (hybrid_search); wire copies of one story collapse
    # into one source, so read three articles per source, and all when that still leaves fewer than k.
    passages = hybrid_search(question, collection=collection, filters=filters, settings=settings, query_lang=lang,
                             articles=3 * k)
    found = collapse(passages, k)
    if len(found) < k and len({p.doc_id for p in passages}) >= 3 * k:
        found = collapse(hybrid_search(question, collection=collection, filters=filters, settings=settings,
                                       query_lang=lang), k)
    return found
