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

from bench.common import SEED_DIR, read_jsonl, use_bench_settings

QUESTIONS = [q for q in read_jsonl(Path(__file__).resolve().parent.parent / "tests" / "data" / "seed_qa.jsonl")
             if not q.get("unanswerable")]


def ttft(model_name: str, collection: str) -> dict[str, float]:
    from rag import llm as llm_mod
    from rag.answer import ask
    from rag.settings import get_settings, reset_settings

    os.environ["RAG_LLM_MODEL"] = model_name
    reset_settings()
    settings = get_settings()
    llm_mod._close_models()  # a fresh child with the model under test
    t = time.perf_counter()
    model = llm_mod.get_chat_model("local", settings)
    model.connect()  # the child process has loaded the model and answers
    load = time.perf_counter() - t
    firsts, totals, toks, rates = [], [], [], []
    from rag.models import load_embedder

    emb = load_embedder()
    # Warm-up with a question not in the set: the fixed prefix gets cached, as in a running app.
    # (Warming up with the first question itself would let it hit the whole cached prompt.)
    ask("What happened at the Winter Olympics?", collection=collection, llm="local")
    for q in QUESTIONS:
        emb.clear_cache()  # no vectors from earlier questions: the conservative case
        t0 = time.perf_counter()
        ans = ask(q["query"], collection=collection, llm="local")
        total = time.perf_counter() - t0
        ft = ans.timings.get("first_token", total)
        n_out = model.count_tokens(ans.text)
        firsts.append(ft)
        totals.append(total)
        toks.append(n_out)
        rates.append(n_out / max(total - ft, 1e-6))
    return {"load_s": load, "ttft_p50": statistics.median(firsts), "ttft_max": max(firsts),
            "total_p50": statistics.median(totals), "tokens_per_s": statistics.median(rates),
            "questions": float(len(QUESTIONS))}


def latency_queries(n: int = 40) -> list[str]:
    """Distinct questions nobody asked before (no cache helps): English news subtitles and German FAQ
    questions, 3:1."""
    from bench.datasets import debian_faq_de, news_articles

    news = [q["query"] for q in read_jsonl(news_articles()[1])]
    faq = [q["query"] for q in read_jsonl(debian_faq_de()[1])]
    n_faq = n // 4
    return news[: n - n_faq] + faq[:n_faq]


def retrieval_latency(collection: str, queries: list[str]) -> dict[str, float]:
    from rag.models import load_embedder
    from rag.retrieval import retrieve
    from rag.store import Store

    emb = load_embedder()
    retrieve("warm up", collection=collection)  # loads the keyword index once, as a running app has it
    times = []
    for q in queries:
        emb.clear_cache()
        t = time.perf_counter()
        retrieve(q, collection=collection)
        times.append(time.perf_counter() - t)
    times.sort()
    return {"chunks": float(Store().chunk_count(collection)), "p50_ms": 1000 * times[len(times) // 2],
            "p95_ms": 1000 * times[int(len(times) * 0.95) - 1]}


HEAD_TOKENS = 64


def growth_latency(targets: tuple[int, ...] = (1000, 5000, 20000)) -> dict:
    """Grow one collection from nothing with the full NewsArticles set and the Bundestag speeches
    (real texts through the real ingest pipeline) and measure retrieval latency when it passes each
    target size and at the end. To fit `make bench` into 40 minutes, chunks are embedded from their
    first HEAD_TOKENS tokens, by the retrieval embedder and the answer scorer (real vectors of real text,
    ~5x faster than full 512-token windows);
    the stored texts, BM25 index and metadata are complete, and latency does not depend on how much
    of a chunk its vector saw."""
    import resource

    from bench.datasets import growth_parts
    from ingest.pipeline import ingest
    from rag.models import load_embedder, load_scorer
    from rag.store import Store

    store, name = Store(), "bench-growth"
    if store.exists(name):
        store.delete_collection(name)
    emb = load_embedder()
    # the answer scorer's chunk vectors too (RAG_INGEST_SCORER_VECTORS): stored as a full answer needs them
    scorer = load_scorer()
    queries = latency_queries()
    rows, pending = [], list(targets)
    chunks, ingest_seconds = 0, 0.0
    parts = growth_parts()
    for i, part in enumerate(parts):
        emb.encode_tokens = scorer.encode_tokens = HEAD_TOKENS
        try:
            t = time.perf_counter()
            ingest([part], collection=name, progress=False)
            ingest_seconds += time.perf_counter() - t
        finally:
            emb.encode_tokens = emb.max_tokens
            scorer.encode_tokens = scorer.max_tokens
        chunks = store.chunk_count(name)
        last = i == len(parts) - 1
        if (pending and chunks >= pending[0]) or last:
            while pending and chunks >= pending[0]:
                pending.pop(0)
            rows.append(retrieval_latency(name, queries))
            print(f"grown to {chunks} chunks: p50 {rows[-1]['p50_ms']:.0f} ms, p95 {rows[-1]['p95_ms']:.0f} ms",
                  flush=True)
    articles = len(store.manifest(name))
    return {"rows": rows, "articles": articles, "chunks": chunks, "ingest_s": ingest_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cold_ask(collection: str, provider: str = "extractive") -> tuple[float, float]:
    """Seconds and peak memory (MB) of a new `rag ask` process."""
    # VmHWM, not ru_maxrss: Linux carries the parent's (this bench's) high-water mark into ru_maxrss
    # across fork+exec, VmHWM belongs to the new process image alone.
    code = (
        "import re, runpy, sys; sys.argv = ['rag', 'ask', {!r}, '-c', {!r}, '--llm', {!r}]\n"
        # atexit, not `finally`: `rag ask` ends its process without the interpreter's teardown (rag.cli._end_program)
        "import atexit\natexit.register(lambda: print('PEAK', re.search(r'VmHWM:\\s+(\\d+)', "
        "open('/proc/self/status').read()).group(1), file=sys.stderr))\n"
        "runpy.run_module('rag.cli', run_name='__main__')"
    ).format(QUESTIONS[1]["query"], collection, provider)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True)
    seconds = time.perf_counter() - t
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK ")]
    if proc.returncode != 0 or not peak:
        raise RuntimeError(f"rag ask failed: {proc.stderr[-500:]}")
    return seconds, int(peak[-1].split()[1]) / 1024


def answer_eval(collection: str) -> dict[str, dict]:
    """`rag eval --mode answer` on the seed QA set (8 answerable, 3 unanswerable), local LLM and extractive."""
    from rag.evaluate import run_eval

    path = Path(__file__).resolve().parent.parent / "tests" / "data" / "seed_qa.jsonl"
    return {llm: run_eval(path, collection=collection, mode="answer", llm=llm) for llm in ("local", "extractive")}


def main() -> dict:
    from ingest.pipeline import ingest
    from rag.store import Store

    use_bench_settings()
    out: dict = {}
    ingest([SEED_DIR], collection="bench-news-en")  # the seed beside the 600 English articles
    for name in ("qwen2.5-0.5b", "qwen2.5-1.5b"):
        out[name] = ttft(name, "bench-news-en")
        print(name, json.dumps({k: round(v, 2) for k, v in out[name].items()}), flush=True)
    out["answer_eval"] = answer_eval("bench-news-en")
    print(json.dumps(out["answer_eval"], indent=1), flush=True)
    queries = latency_queries()
    out["retrieval"] = [retrieval_latency(c, queries) for c in ("bench-debian-faq-de", "bench-news-en")
                        if Store().exists(c)]
    for row in out["retrieval"]:
        print(f"retrieval at {row['chunks']:.0f} chunks: p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms")
    out["growth"] = growth_latency()
    for provider in ("extractive", "local"):
        seconds, peak = cold_ask("bench-growth", provider)  # the biggest collection
        out[f"cold_ask_{provider}"] = {"seconds": seconds, "peak_rss_mb": peak}
        print(f"cold `rag ask --llm {provider}` (new process): {seconds:.1f}s, peak RSS {peak:.0f} MB", flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
