"""Retrieval quality, side by side in one run, on every bench set: newsrag (hybrid) vs its peers.

Pipelines: newsrag (hybrid), the naive llama-index pipeline (e5 prefixes set), one dense vector per whole
article, BM25 alone (newsrag's keyword index) and newsrag dense only (its fused candidates by cosine).

    python -m bench.retrieval                      (all sets, after `make setup`)
    python -m bench.retrieval debian-ref-en2de ... (a subset)
    python -m bench.retrieval --embedders multilingual-e5-small,embeddinggemma-300m [SET ...]

With several embedders, newsrag (hybrid), newsrag dense only and whole-article dense run once per embedder
(rows named "... · EMBEDDER"), in the same run as the peers; the naive llama-index peer and BM25 run once.

Prints one table per set and writes the results to bench/cache/retrieval-results.json (a subset run
updates its sets there and keeps the others).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.answer_set import mixed_corpus
from bench.common import NaivePipeline, WholeArticleDense, read_jsonl, use_bench_settings
from bench.datasets import CACHE, debian_faq_de, debian_reference, news_articles
from rag.evaluate import retrieval_metrics

SETS: dict[str, Callable[[], tuple[Path, Path]]] = {
    "news-en": news_articles,
    "debian-faq-de": debian_faq_de,
    "debian-ref-en2de": partial(debian_reference, "en2de"),
    "debian-ref-de2en": partial(debian_reference, "de2en"),
    "debian-ref-mixed": partial(debian_reference, "mixed"),
    "news-mixed": mixed_corpus,
}
PIPELINES = ["newsrag (hybrid)", "naive llama-index (e5 prefixes)", "whole-article dense", "BM25 alone",
             "newsrag dense only"]
RESULTS_JSON = CACHE / "retrieval-results.json"
# The peers (naive llama-index, BM25 over newsrag's keyword index) run with e5-small, and its collections
# keep the names they had before other embedders were measured (re-runs find them ingested).
E5 = "multilingual-e5-small"


def use_embedder(spec: str) -> None:
    """`NAME` or `NAME:PRECISION` (e.g. embeddinggemma-300m:int8)."""
    from rag.settings import reset_settings

    name, _, precision = spec.partition(":")
    os.environ["RAG_EMBED_MODEL"] = name
    os.environ["RAG_EMBED_PRECISION"] = precision or "auto"
    reset_settings()


def collection_name(name: str, embedder: str) -> str:
    """The bench collection of a set embedded with one embedder: the e5 collections keep their old names (re-runs
    find them ingested), others get their own (bench.matryoshka and bench.query_translation read them too)."""
    return f"bench-{name}" if embedder == E5 else f"bench-{name}-{embedder.replace(':', '-')}"


def run_embedder(name: str, embedder: str, corpus_path: Path, queries: list[dict],
                 records: list[dict]) -> tuple[dict[str, list[list[str]]], dict[str, float]]:
    """newsrag (hybrid), newsrag dense only and whole-article dense with one embedder."""
    from ingest.pipeline import ingest
    from rag.retrieval import collapse, hybrid_search, retrieve

    use_embedder(embedder)
    collection = collection_name(name, embedder)
    ranked: dict[str, list[list[str]]] = {}
    from rag.store import Store

    # A collection from before article vectors existed is rebuilt once (an unchanged re-ingest adds none).
    store = Store()
    stale = store.exists(collection) and store.docs(collection, create=False) is None
    t = time.perf_counter()
    report = ingest([corpus_path], collection=collection, rebuild=stale)
    seconds = {"newsrag": time.perf_counter() - t, "chunks": float(report.chunks_written)}
    ranked["newsrag (hybrid)"] = [[p.doc_id for p in retrieve(q["query"], k=10, collection=collection)]
                                  for q in queries]
    dense_ranked = []
    for q in queries:
        ps = hybrid_search(q["query"], collection=collection)
        ps.sort(key=lambda p: -(p.dense_score or 0))
        dense_ranked.append([p.doc_id for p in collapse(ps, 10)])
    ranked["newsrag dense only"] = dense_ranked
    whole = WholeArticleDense()
    seconds["whole_article"] = whole.ingest(records)
    ranked["whole-article dense"] = [whole.retrieve(q["query"]) for q in queries]
    return ranked, seconds


def run(name: str, corpus_path: Path, queries_path: Path,
        embedders: list[str] | None = None) -> dict[str, dict[str, float]]:
    from rag import keyword
    from rag.lang import detect_language
    from rag.store import Store

    use_bench_settings()
    embedders = embedders or [E5]
    collection = f"bench-{name}"
    records = read_jsonl(corpus_path)
    queries = read_jsonl(queries_path)
    gold = [q["gold"] for q in queries]
    ranked: dict[str, list[list[str]]] = {}
    seconds: dict[str, float] = {}
    for embedder in embedders:
        own_ranked, own_seconds = run_embedder(name, embedder, corpus_path, queries, records)
        suffix = "" if len(embedders) == 1 else f" · {embedder}"
        ranked.update({pipe + suffix: r for pipe, r in own_ranked.items()})
        seconds.update({k + suffix: v for k, v in own_seconds.items()})
    use_embedder(E5)
    if E5 not in embedders:  # BM25 below reads the e5 collection's keyword index
        from ingest.pipeline import ingest

        ingest([corpus_path], collection=collection)

    naive = NaivePipeline(f"naive-{name}")
    seconds["naive"] = naive.ingest(records)
    ranked["naive llama-index (e5 prefixes)"] = [naive.retrieve(q["query"]) for q in queries]
    del naive

    store = Store()  # BM25 alone: newsrag's keyword index of the e5 collection (the same chunks' words)
    index = keyword.get_index(store, collection)
    bm25_ranked = []
    for q in queries:
        lang = detect_language(q["query"], short=True, default="")
        hits = index.search(q["query"], 60, query_lang=lang)
        # map chunk ids back to doc ids through Chroma metadata
        metas = store.get_chunks(collection, [index.ids[i] for i, _ in hits])
        docs: list[str] = []
        for i, _ in hits:
            d = str(metas[index.ids[i]][1]["doc_id"])
            if d not in docs:
                docs.append(d)
        bm25_ranked.append(docs[:10])
    ranked["BM25 alone"] = bm25_ranked

    order = [p for p in PIPELINES if p in ranked] + sorted(p for p in ranked if p not in PIPELINES)
    results: dict[str, dict[str, float]] = {pipe: retrieval_metrics(ranked[pipe], gold) for pipe in order}
    results["_ingest_seconds"] = {**seconds, "articles": float(len(records))}
    return results


def table(name: str, results: dict[str, dict[str, float]]) -> str:
    cols = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]
    lines = [f"### {name}", "", "| pipeline | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for pipe, m in results.items():
        if pipe.startswith("_"):
            continue
        lines.append(f"| {pipe} | " + " | ".join(f"{m.get(c, 0):.3f}" for c in cols) + " |")
    n = next(m for p, m in results.items() if not p.startswith("_")).get("queries", 0)
    info = results.get("_ingest_seconds", {})
    articles = f", {int(info['articles'])} articles" if "articles" in info else ""
    lines.append(f"\n{int(n)} queries{articles}.")
    return "\n".join(lines)


def main(names: list[str] | None = None, embedders: list[str] | None = None) -> dict:
    names = names or list(SETS)
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise SystemExit(f"unknown set(s) {', '.join(unknown)}; choose from: {', '.join(SETS)}")
    out = {}
    # run() switches the embedder through the environment; what runs after this (`make bench`'s answer part)
    # must find the one it was started with
    saved = {k: os.environ.get(k) for k in ("RAG_EMBED_MODEL", "RAG_EMBED_PRECISION")}
    try:
        for name in names:
            corpus, queries = SETS[name]()
            res = run(name, corpus, queries, embedders)
            key = name if not embedders or embedders == [E5] else f"{name} [{', '.join(embedders)}]"
            out[key] = res
            print(table(key, res), "\n", flush=True)
            save(key, res)  # after each set: a run stopped half-way keeps the sets it finished
    finally:
        from rag.settings import reset_settings

        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()
    print(f"results written to {RESULTS_JSON}")
    return out


def save(name: str, results: dict[str, dict[str, float]]) -> None:
    saved = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    saved[name] = results
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS_JSON.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2))
    tmp.replace(RESULTS_JSON)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", help=f"bench sets (default: all of {', '.join(SETS)})")
    parser.add_argument("--embedders", default=E5,
                        help="comma-separated RAG_EMBED_MODEL values, each optionally :int8 or :fp32")
    args = parser.parse_args()
    main(args.sets, args.embedders.split(","))
