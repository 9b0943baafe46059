"""Answer speed and retrieval latency: TTFT, prompt tokens, tokens/s for both packaged LLMs, retrieval p50/p95
at growing corpus sizes, cold `rag ask` start.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import read_jsonl, use_bench_settings

QUESTIONS = [q for q in read_jsonl(Path(__file__).resolve().parent.parent / "tests" / "data" / "seed_qa.jsonl")
             if not q.get("unanswerable")]


def ttft(model_name: str, collection: str) -> dict[str, float]:
    from rag import llm as llm_mod
    from rag.answer import ask
    from rag.settings import get_settings, reset_settings

    os.environ["RAG_LLM_MODEL"] = model_name
    reset_settings()
    settings = get_settings()
    llm_mod._models.clear()
    t = time.perf_counter()
    model = llm_mod.get_chat_model("local", settings)
    load = time.perf_counter() - t
    firsts, totals, toks, prompt_tokens, rates = [], [], [], [], []
    ask(QUESTIONS[0]["query"], collection=collection, llm="local")  # warm: the fixed prefix gets cached
    for q in QUESTIONS:
        t0 = time.perf_counter()
        ans = ask(q["query"], collection=collection, llm="local")
        total = time.perf_counter() - t0
        ft = ans.timings.get("first_token", total)
        n_out = model.count_tokens(ans.text)
        firsts.append(ft)
        totals.append(total)
        toks.append(n_out)
        rates.append(n_out / max(total - ft, 1e-6))
        prompt_tokens.append(model.llama.n_tokens if hasattr(model.llama, "n_tokens") else 0)
    return {"load_s": load, "ttft_p50": statistics.median(firsts), "ttft_max": max(firsts),
            "total_p50": statistics.median(totals), "tokens_per_s": statistics.median(rates),
            "context_tokens_p50": statistics.median(prompt_tokens), "questions": float(len(QUESTIONS))}


def retrieval_latency(collection: str, n: int = 40) -> dict[str, float]:
    from rag.retrieve import retrieve
    from rag.store import Store

    qs = [q["query"] for q in QUESTIONS] * (n // len(QUESTIONS) + 1)
    retrieve(qs[0], collection=collection)
    times = []
    for q in qs[:n]:
        t = time.perf_counter()
        retrieve(q, collection=collection)
        times.append(time.perf_counter() - t)
    times.sort()
    return {"chunks": float(Store().chunk_count(collection)), "p50_ms": 1000 * times[len(times) // 2],
            "p95_ms": 1000 * times[int(len(times) * 0.95) - 1]}


def grown_collection(source: str, size: int) -> str:
    """A collection of `size` chunks for latency only: the source's real chunks (texts, vectors, metadata)
    repeated, each copy a distinct article with its vector slightly perturbed. Embedding 20k fresh chunks
    would take ~30 min on 2 cores; latency depends on the index size, not on the texts being new."""
    import numpy as np

    from rag.store import Store

    store = Store()
    name = f"bench-latency-{size}"
    if store.exists(name) and store.chunk_count(name) == size:
        return name
    if store.exists(name):
        store.delete_collection(name)
    got = store.chunks(source).get(include=["documents", "metadatas", "embeddings"])
    ids, docs, metas, vecs = got["ids"], got["documents"], got["metadatas"], np.asarray(got["embeddings"])
    rng = np.random.default_rng(0)
    out_ids, out_docs, out_metas, out_vecs = [], [], [], []
    for i in range(size):
        j, copy = i % len(ids), i // len(ids)
        meta = dict(metas[j])
        meta["doc_id"] = f"{meta['doc_id']}#copy{copy}"
        v = vecs[j] + (rng.normal(0, 0.01, vecs.shape[1]) if copy else 0)
        out_ids.append(f"{ids[j]}-c{copy}")
        out_docs.append(docs[j])
        out_metas.append(meta)
        out_vecs.append((v / np.linalg.norm(v)).tolist())
    store.upsert_chunks(name, out_ids, out_vecs, out_docs, out_metas)
    store.put_articles(name, {m["doc_id"]: {"title": m.get("title", ""), "complete": True} for m in out_metas})
    store.bump_revision(name)
    return name


def cold_ask(collection: str) -> float:
    env = {**os.environ, "RAG_LLM_PROVIDER": "extractive"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTIONS[0]["query"], "-c", collection], env=env,
                   capture_output=True, check=True)
    return time.perf_counter() - t


def main() -> dict:
    from ingest.pipeline import ingest
    from rag.store import Store
    from tests.conftest import SEED_DIR

    use_bench_settings()
    out: dict = {}
    ingest([SEED_DIR], collection="bench-news-en")  # the seed beside the 600 English articles
    for name in ("qwen2.5-0.5b", "qwen2.5-1.5b"):
        out[name] = ttft(name, "bench-news-en")
        print(name, json.dumps({k: round(v, 2) for k, v in out[name].items()}), flush=True)
    out["retrieval"] = [retrieval_latency(c) for c in ("bench-debian-faq-de", "bench-news-en")
                        if Store().exists(c)]
    out["retrieval"] += [retrieval_latency(grown_collection("bench-news-en", n)) for n in (1000, 5000, 20000)]
    for row in out["retrieval"]:
        print(f"retrieval at {row['chunks']:.0f} chunks: p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms")
    out["cold_ask_s"] = cold_ask("bench-news-en")
    print(f"cold `rag ask` (extractive, new process): {out['cold_ask_s']:.1f}s")
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
