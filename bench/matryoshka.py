"""Does Matryoshka truncation of EmbeddingGemma lose retrieval quality? Dense-only, from the stored vectors.

Reads the EmbeddingGemma int8 bench collections that `python -m bench.retrieval --embedders ...,
embeddinggemma-300m:int8` built (chunk vectors and, where the collection has them, article vectors),
cuts every vector to its first 768 (all), 512, 256 or 128 dimensions and re-normalises it, as
`RAG_EMBED_DIM` would, and ranks articles for the set's questions by:
  - best chunk (an article's best chunk cosine),
  - article vector (one vector per article),
  - fused (newsrag's dense score: RAG_ARTICLE_WEIGHT x article + the rest x best chunk).
Questions are embedded once at full size and cut the same way. Dense only: BM25 and fusion do not depend on
the dimension, and re-ingesting every set per dimension would take hours on 2 cores.

    python -m bench.matryoshka [SET ...]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.common import read_jsonl, use_bench_settings
from bench.datasets import CACHE
from bench.retrieval import SETS, collection_name, use_embedder
from rag.embedding import truncate as cut
from rag.evaluate import retrieval_metrics

EMBEDDER = "embeddinggemma-300m:int8"
DIMENSIONS = (768, 512, 256, 128)
RESULTS_JSON = CACHE / "matryoshka-results.json"


def run(name: str, article_weight: float) -> dict[str, dict[str, float]]:
    from rag.models import load_embedder
    from rag.store import Store

    collection = collection_name(name, EMBEDDER)
    _, queries_path = SETS[name]()
    queries = read_jsonl(queries_path)
    store = Store()
    got = store.chunks(collection, create=False).get(include=["embeddings", "metadatas"])
    chunk_vecs = np.asarray(got["embeddings"], dtype=np.float32)
    chunk_docs = [str(m["doc_id"]) for m in got["metadatas"]]
    docs_col = store.docs(collection, create=False)
    art = docs_col.get(include=["embeddings"]) if docs_col is not None else None
    doc_ids = sorted(set(chunk_docs) | set(art["ids"] if art else []))
    column = {d: i for i, d in enumerate(doc_ids)}
    chunk_col = np.array([column[d] for d in chunk_docs])
    query_vecs = load_embedder().embed_queries([q["query"] for q in queries])
    gold = [q["gold"] for q in queries]

    results: dict[str, dict[str, float]] = {}
    for dim in DIMENSIONS:
        q = cut(query_vecs, dim)
        sims = q @ cut(chunk_vecs, dim).T
        best = np.full((len(q), len(doc_ids)), -1.0, dtype=np.float32)
        np.maximum.at(best.T, chunk_col, sims.T)  # each article's best chunk
        scores = {"best chunk": best}
        if art:
            article = np.full_like(best, -1.0)
            article[:, [column[d] for d in art["ids"]]] = q @ cut(np.asarray(art["embeddings"], np.float32), dim).T
            scores["article vector"] = article
            scores[f"fused ({article_weight:g} article)"] = article_weight * article + (1 - article_weight) * best
        for label, s in scores.items():
            ranked = [[doc_ids[i] for i in np.argsort(-row, kind="stable")[:10]] for row in s]
            results[f"{label} @{dim}"] = retrieval_metrics(ranked, gold)
    return results


def main(names: list[str]) -> None:
    from rag.settings import get_settings

    use_bench_settings()
    use_embedder(EMBEDDER)
    weight = get_settings().article_weight
    saved = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    for name in names:
        res = run(name, weight)
        print(f"### {name}\n\n| dense ranking @ dimensions | R@1 | R@5 | R@10 | MRR@10 |\n|---|---|---|---|---|")
        for label, m in res.items():
            print(f"| {label} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} | {m['mrr@10']:.3f} |")
        print(flush=True)
        saved[name] = res
        RESULTS_JSON.write_text(json.dumps(saved, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["news-en", "debian-faq-de", "debian-ref-en2de",
                                                    "debian-ref-de2en"])
    main(parser.parse_args().sets)
