"""Padded batches (what newsrag's ingest does, `RAG_EMBED_BATCH_SIZE` 32) against one text per onnxruntime
run, for the packaged graphs, on the same real chunks, side by side in one run.

Reports per graph: encode throughput (chunks/s, rounds alternating between the ways), how far a batched
text's vector is from the same text embedded alone (dynamic int8 quantisation scales activations over the
whole batch tensor), and, for int8 graphs, how close each way's vectors are to the fp32 graph's.

    python -m bench.embed_batch [--chunks 200] [--rounds 2]

Needs a collection to take chunks from (default: the answer bench's, bench-answer-set); any will do.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from bench.common import use_bench_settings
from bench.datasets import CACHE

GRAPHS = (("embeddinggemma-300m", "int8"), ("embeddinggemma-300m", "fp32"),
          ("multilingual-e5-small", "int8"), ("multilingual-e5-small", "fp32"))
BATCHES = (1, 8, 32)  # a batch of one is one text per run: no padding and no batch mates


def way(batch_size: int) -> str:
    return "one" if batch_size == 1 else f"b{batch_size}"


def sample_texts(collection: str, n: int) -> list[str]:
    from rag.store import Store

    texts = [doc for _, doc, _, _ in Store().iter_chunk_rows(collection)]
    if not texts:
        raise SystemExit(f"no chunks in {collection!r}: ingest something first (e.g. python -m bench.answer_quality)")
    rng = np.random.default_rng(7)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def main(n: int = 200, rounds: int = 2, collection: str = "bench-answer-set") -> dict:
    from rag.models import load_embedder
    from rag.settings import Settings

    use_bench_settings()
    chunks = sample_texts(collection, n)
    results: dict[str, dict[str, float]] = {}
    kept: dict[tuple[str, str], dict[str, np.ndarray]] = {}  # each graph's vectors, per way
    for name, precision in GRAPHS:
        model = load_embedder(Settings(embed_model=name, embed_precision=precision))
        texts = [model.passage_prefix + t for t in chunks]
        # newsrag's own encoding (rag.models.Embedder): texts sorted by length, padded batches of the size given
        model._full_encode(texts[:4], 1)  # the first run sizes onnxruntime's buffers
        speed: dict[str, list[float]] = {way(b): [] for b in BATCHES}
        vectors: dict[str, np.ndarray] = {}
        for _ in range(rounds):
            for b in BATCHES:
                t = time.perf_counter()
                vectors[way(b)] = model._full_encode(texts, b)
                speed[way(b)].append(len(texts) / (time.perf_counter() - t))
        kept[(name, precision)] = vectors
        row = {f"chunks_per_s_{k}": float(np.median(v)) for k, v in speed.items()}
        for b in BATCHES[1:]:
            cos = np.sum(vectors[f"b{b}"] * vectors["one"], axis=1)
            row[f"b{b}_cos_to_one_min"], row[f"b{b}_cos_to_one_p50"] = float(cos.min()), float(np.median(cos))
        results[f"{name} {precision}"] = row
        print(name, precision, {k: round(v, 4) for k, v in row.items()}, flush=True)
    for name, precision in GRAPHS:
        if precision == "int8":
            ref = kept[(name, "fp32")]["one"]
            for label, vec in kept[(name, precision)].items():
                results[f"{name} int8"][f"{label}_cos_to_fp32_p50"] = float(np.median(np.sum(vec * ref, axis=1)))
    results["_chunks"] = {"n": float(len(chunks))}
    out = CACHE / "embed-batch.json"
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    return results


def table(results: dict) -> str:
    lines = ["| graph | one text per run, chunks/s | batches of 8 | batches of 32 | batched vs alone, cosine min (32) "
             "| int8 vs fp32, cosine p50: alone / batches of 32 |", "|---|---|---|---|---|---|"]
    for graph, r in results.items():
        if graph.startswith("_"):
            continue
        to_fp32 = (f"{r['one_cos_to_fp32_p50']:.4f} / {r['b32_cos_to_fp32_p50']:.4f}"
                   if "one_cos_to_fp32_p50" in r else "")
        lines.append(f"| {graph} | {r['chunks_per_s_one']:.1f} | {r['chunks_per_s_b8']:.1f} | "
                     f"{r['chunks_per_s_b32']:.1f} | {r['b32_cos_to_one_min']:.4f} | {to_fp32} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--collection", default="bench-answer-set")
    args = parser.parse_args()
    main(args.chunks, args.rounds, args.collection)
