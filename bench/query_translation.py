"""Issue 12's suggestion, measured: translate a cross-lingual question into the corpus's language with the
local LLM, retrieve with the original and with the translation, and merge the two ranked lists.

For each question of a Debian Reference direction (EmbeddingGemma int8 collection, as bench.retrieval names
it), four rankings side by side in one run: the original question (what newsrag ships), the translation
alone, both merged per chunk by the higher fused score, and both merged by reciprocal rank (k=60). The
translations are made once with the packaged qwen2.5-1.5b (greedy) and kept in
bench/cache/translations-<set>.json; the translation time is reported by the run that makes them (a re-run
from the kept file has none to report).

    python -m bench.query_translation debian-ref-en2de debian-ref-de2en

bench/RESULTS.md stop 26: the merge moved R@1 by one question of 250 either way; not shipped.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time

from bench.common import read_jsonl, use_bench_settings
from bench.datasets import CACHE, debian_reference
from bench.retrieval import collection_name, use_embedder

EMBEDDER = "embeddinggemma-300m:int8"
TARGET = {"en2de": ("German", "de"), "de2en": ("English", "en")}
RRF_K = 60


def translations(queries: list[dict], name: str, target: str) -> tuple[dict[str, str], list[float]]:
    """Each query's translation, from the cache file or from the local LLM; the seconds of the new ones."""
    from rag.llm import get_chat_model

    path = CACHE / f"translations-{name}.json"
    done: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    model, seconds = None, []
    for q in queries:
        if q["query"] in done:
            continue
        model = model or get_chat_model("local")
        messages = [{"role": "system", "content": "You translate search queries. Reply with the translation only."},
                    {"role": "user", "content": f"Translate into {target}:\n{q['query']}"}]
        t = time.perf_counter()
        text = "".join(model.stream(messages, 48, 0.0, threading.Event())).strip()
        seconds.append(time.perf_counter() - t)
        done[q["query"]] = (text.splitlines() or [""])[0].strip().strip('"')
        path.write_text(json.dumps(done, ensure_ascii=False, indent=0), encoding="utf-8")
    return done, seconds


def run(name: str) -> dict:
    from ingest.pipeline import ingest
    from rag.evaluate import retrieval_metrics
    from rag.lang import detect_language
    from rag.retrieval import collapse, hybrid_search

    direction = name.rsplit("-", 1)[-1]
    target, target_lang = TARGET[direction]
    corpus, queries_path = debian_reference(direction)
    queries = read_jsonl(queries_path)
    use_embedder(EMBEDDER)
    collection = collection_name(name, EMBEDDER)
    ingest([corpus], collection=collection, progress=True)
    translated, seconds = translations(queries, name, target)
    ranked: dict[str, list[list[str]]] = {"original (shipped)": [], "translation only": [], "merged, max score": [],
                                          "merged, RRF": []}
    for q in queries:
        original = hybrid_search(q["query"], collection=collection,
                                 query_lang=detect_language(q["query"], short=True, default=""))
        other = hybrid_search(translated[q["query"]], collection=collection, query_lang=target_lang)
        ranked["original (shipped)"].append([p.doc_id for p in collapse(original, 10)])
        ranked["translation only"].append([p.doc_id for p in collapse(other, 10)])
        best = {}
        for p in original + other:
            if p.chunk_id not in best or p.score > best[p.chunk_id].score:
                best[p.chunk_id] = p
        ranked["merged, max score"].append([p.doc_id for p in collapse(sorted(best.values(), key=lambda p: -p.score), 10)])
        rrf: dict[str, float] = {}
        for found in (collapse(original, 50), collapse(other, 50)):
            for rank, p in enumerate(found):
                rrf[p.doc_id] = rrf.get(p.doc_id, 0.0) + 1.0 / (RRF_K + rank)
        ranked["merged, RRF"].append(sorted(rrf, key=lambda d: -rrf[d])[:10])
    gold = [q["gold"] for q in queries]
    out: dict = {pipe: retrieval_metrics(r, gold) for pipe, r in ranked.items()}
    if seconds:
        out["translation_s"] = {"p50": statistics.median(seconds), "max": max(seconds), "n": len(seconds)}
    return out


def main(names: list[str]) -> dict:
    use_bench_settings()
    results = {}
    for name in names:
        results[name] = run(name)
        print(f"\n{name} (R@1 / R@5 / R@10 / MRR@10)", flush=True)
        for pipe, m in results[name].items():
            if pipe != "translation_s":
                print(f"| {pipe} | {m['recall@1']:.3f} / {m['recall@5']:.3f} / {m['recall@10']:.3f} / "
                      f"{m['mrr@10']:.3f} |", flush=True)
        if "translation_s" in results[name]:
            print(f"translation: {json.dumps(results[name]['translation_s'])}", flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:] or ["debian-ref-en2de", "debian-ref-de2en"])
