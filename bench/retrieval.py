"""Retrieval quality, side by side in one run: newsrag vs the naive llama-index pipeline vs BM25 alone.

    python -m bench.retrieval   (after `make setup`)
"""

from __future__ import annotations

import json
import time

from bench.common import NaivePipeline, read_jsonl, use_bench_settings
from bench.datasets import debian_faq_de, news_articles
from rag.evaluate import retrieval_metrics


def run(name: str, corpus_path, queries_path, plain_rrf: bool = True) -> dict[str, dict[str, float]]:
    from ingest.meta import detect_language
    from ingest.pipeline import ingest
    from rag import keyword
    from rag.retrieve import collapse, hybrid_search, retrieve
    from rag.store import Store

    use_bench_settings()
    records = read_jsonl(corpus_path)
    queries = read_jsonl(queries_path)
    gold = [q["gold"] for q in queries]
    t = time.perf_counter()
    report = ingest([corpus_path], collection=f"bench-{name}")
    newsrag_ingest = time.perf_counter() - t
    results: dict[str, dict[str, float]] = {}

    ranked = [[p.doc_id for p in retrieve(q["query"], k=10, collection=f"bench-{name}")] for q in queries]
    results["newsrag (hybrid)"] = retrieval_metrics(ranked, gold)

    store = Store()
    index = keyword.get_index(store, f"bench-{name}")
    bm25_ranked = []
    for q in queries:
        lang = detect_language(q["query"], short=True, default="")
        hits = index.search(q["query"], 60, query_lang=lang)
        # map chunk ids back to doc ids through Chroma metadata
        metas = store.get_chunks(f"bench-{name}", [index.ids[i] for i, _ in hits])
        docs: list[str] = []
        for i, _ in hits:
            d = str(metas[index.ids[i]][1]["doc_id"])
            if d not in docs:
                docs.append(d)
        bm25_ranked.append(docs[:10])
    results["BM25 alone"] = retrieval_metrics(bm25_ranked, gold)

    dense_ranked = []
    for q in queries:
        ps = hybrid_search(q["query"], collection=f"bench-{name}")
        ps.sort(key=lambda p: -(p.dense_score or 0))
        dense_ranked.append([p.doc_id for p in collapse(ps, 10)])
    results["newsrag dense only"] = retrieval_metrics(dense_ranked, gold)

    naive = NaivePipeline(f"naive-{name}")
    naive_ingest = naive.ingest(records)
    naive_ranked = [naive.retrieve(q["query"]) for q in queries]
    results["naive llama-index"] = retrieval_metrics(naive_ranked, gold)
    results["_ingest_seconds"] = {"newsrag": newsrag_ingest, "naive": naive_ingest,
                                  "articles": float(len(records)), "chunks": float(report.chunks_written)}
    return results


def table(name: str, results: dict[str, dict[str, float]]) -> str:
    cols = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"]
    lines = [f"### {name}", "", "| pipeline | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for pipe, m in results.items():
        if pipe.startswith("_"):
            continue
        lines.append(f"| {pipe} | " + " | ".join(f"{m.get(c, 0):.3f}" for c in cols) + " |")
    n = results["newsrag (hybrid)"].get("queries", 0)
    lines.append(f"\n{int(n)} queries.")
    return "\n".join(lines)


def main() -> dict:
    out = {}
    for name, build in (("news-en", news_articles), ("debian-faq-de", debian_faq_de)):
        corpus, queries = build()
        res = run(name, corpus, queries)
        out[name] = res
        print(table(name, res), flush=True)
    return out


if __name__ == "__main__":
    results = main()
    print(json.dumps(results, indent=2))
