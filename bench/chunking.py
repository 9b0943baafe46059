"""Chunk size and overlap, chosen by measurement: retrieval quality per setting on both bench sets.

    python -m bench.chunking   (re-ingests each set once per setting into its own collection)
"""

from __future__ import annotations

import json
import os

from bench.common import read_jsonl, use_bench_settings
from bench.datasets import debian_faq_de, news_articles
from rag.evaluate import retrieval_metrics

SETTINGS = [(120, 1), (220, 0), (220, 1), (350, 0), (350, 1), (480, 0)]


def main(n_news: int = 200) -> dict:
    from ingest.pipeline import ingest
    from rag.retrieval import retrieve
    from rag.settings import reset_settings

    use_bench_settings()
    news_corpus, news_queries = news_articles()
    records = read_jsonl(news_corpus)[:n_news]
    keep = {r["id"] for r in records}
    subset = news_corpus.parent / f"chunking-{n_news}.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    sets = {
        "news-en": (subset, [q for q in read_jsonl(news_queries) if q["gold"][0] in keep]),
        "debian-faq-de": (debian_faq_de()[0], read_jsonl(debian_faq_de()[1])),
    }
    out: dict = {}
    for tokens, overlap in SETTINGS:
        os.environ["RAG_CHUNK_TOKENS"], os.environ["RAG_CHUNK_OVERLAP"] = str(tokens), str(overlap)
        reset_settings()
        for name, (corpus, queries) in sets.items():
            coll = f"chunk-{name}-{tokens}-{overlap}"
            report = ingest([corpus], collection=coll)
            ranked = [[p.doc_id for p in retrieve(q["query"], k=10, collection=coll)] for q in queries]
            m = retrieval_metrics(ranked, [q["gold"] for q in queries])
            m["chunks"] = float(report.chunks_written or 0)
            out[f"{name} {tokens}/{overlap}"] = m
            print(f"{name:14} tokens={tokens:<4} overlap={overlap} R@1 {m['recall@1']:.3f} "
                  f"MRR {m['mrr@10']:.3f} nDCG {m['ndcg@10']:.3f} chunks {m['chunks']:.0f}", flush=True)
    return out


if __name__ == "__main__":
    main()
