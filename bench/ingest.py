"""Ingestion speed, side by side in one run on the same articles.

Prints: newsrag ingest throughput / raw SentenceTransformer.encode throughput of the same chunk texts
(goal >= 0.9), newsrag / naive llama-index pipeline, and re-ingest of an unchanged corpus / first ingest.
"""

from __future__ import annotations

import json
import time

from bench.common import NaivePipeline, read_jsonl, use_bench_settings
from bench.datasets import news_articles


def main(n_articles: int = 150) -> dict[str, float]:
    from ingest.pipeline import ingest
    from rag.models import load_embedder
    from rag.store import Store

    use_bench_settings()
    corpus, _ = news_articles()
    records = read_jsonl(corpus)[:n_articles]
    subset = corpus.parent / f"ingest-bench-{n_articles}.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    store = Store()
    name = "bench-ingest"
    if store.exists(name):
        store.delete_collection(name)
    emb = load_embedder()
    emb.embed_passages(["warm up"])

    t = time.perf_counter()
    first = ingest([subset], collection=name)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    again = ingest([subset], collection=name)
    t_again = time.perf_counter() - t
    assert again.chunks_written == 0 and len(again.unchanged) == len(first.added)

    texts = [meta_doc for _, meta_doc in _embed_texts(store, name)]
    t = time.perf_counter()
    emb.model.encode([emb.passage_prefix + x for x in texts], batch_size=32, normalize_embeddings=True)
    t_raw = time.perf_counter() - t

    naive = NaivePipeline("naive-ingest")
    t_naive = naive.ingest(records)

    result = {
        "articles": float(len(records)), "chunks": float(first.chunks_written),
        "newsrag_seconds": t_first, "raw_encode_seconds": t_raw, "naive_seconds": t_naive,
        "reingest_seconds": t_again,
        "newsrag_chunks_per_s": first.chunks_written / t_first,
        "raw_encode_chunks_per_s": len(texts) / t_raw,
        "ratio_newsrag_vs_raw_encode": (first.chunks_written / t_first) / (len(texts) / t_raw),
        "ratio_newsrag_vs_naive_time": t_naive / t_first,
        "ratio_reingest_speedup": t_first / t_again,
    }
    print(f"newsrag ingest: {len(records)} articles, {first.chunks_written} chunks in {t_first:.1f}s "
          f"({result['newsrag_chunks_per_s']:.1f} chunks/s)")
    print(f"raw SentenceTransformer.encode of the same {len(texts)} chunk texts: {t_raw:.1f}s "
          f"({result['raw_encode_chunks_per_s']:.1f} chunks/s)")
    print(f"naive llama-index VectorStoreIndex.from_documents: {t_naive:.1f}s")
    print(f"re-ingest unchanged: {t_again:.2f}s")
    print(f"ratio newsrag/raw encode throughput: {result['ratio_newsrag_vs_raw_encode']:.2f} (goal >= 0.9)")
    print(f"ratio naive time / newsrag time: {result['ratio_newsrag_vs_naive_time']:.2f}")
    print(f"re-ingest speed-up (first / unchanged): {result['ratio_reingest_speedup']:.0f}x (goal >= 50x)")
    return result


def _embed_texts(store, name: str):
    """The exact texts newsrag embedded: title + date header + chunk (rebuilt from stored metadata)."""
    for _, doc, meta in store.iter_chunks(name):
        header = "\n".join(x for x in (str(meta.get("title", ""))[:300], str(meta.get("date", ""))[:10]) if x)
        yield meta, f"{header}\n{doc}" if header else doc


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
