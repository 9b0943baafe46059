"""Exact dense search from the keyword index's copy of the vectors against Chroma's HNSW index (issue 12's
latency), side by side in one run on one collection:

- `retrieve()` latency over the 40 latency questions (bench.answer.latency_queries), in alternating rounds,
  with the phases of hybrid_search (embedding the question, dense search, BM25 and the other candidates,
  reading the best articles' chunks);
- hit@1 / hit@5 of the gold article for the answer bench's answerable questions
  (bench/data/answer_questions.jsonl), and how many of all 117 questions get the same top 10 either way;
- with --evidence, on the answer bench's own collection: how many of the 117 questions get the same evidence
  for the prompt (sources, their passages and selected sentences, the relevance verdict) either way. The
  local LLM decodes greedily, so the same evidence means the same answer.

    RAG_DATA_DIR=bench/cache/data python -m bench.exact_search -c bench-growth [--evidence]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.common import read_jsonl

QUESTIONS = Path(__file__).resolve().parent / "data" / "answer_questions.jsonl"
# mode -> (RAG_EXACT_SEARCH_MAX_CHUNKS, whether only the best articles' chunks are read from Chroma). The last
# is stop 28's retrieval: HNSW, and every candidate read with its text, metadata and vector.
MODES = {"exact, best articles read": (100_000, True), "Chroma HNSW, best articles read": (0, True),
         "Chroma HNSW, every candidate read (stop 28)": (0, False)}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * len(values))) - 1))]


def main(collection: str, rounds: int) -> dict:
    from bench.answer import latency_queries
    from rag.lang import detect_language
    from rag.models import load_embedder
    from rag.retrieval import collapse, hybrid_search, retrieve
    from rag.settings import Settings

    settings = {mode: Settings(exact_search_max_chunks=limit) for mode, (limit, _) in MODES.items()}

    def retrieve_in(mode: str, q: str) -> list:
        if MODES[mode][1]:
            return retrieve(q, collection=collection, settings=settings[mode])
        lang = detect_language(q, short=True, default="")  # retrieve() before this stop
        return collapse(hybrid_search(q, collection=collection, settings=settings[mode], query_lang=lang), 10)

    emb = load_embedder(settings[next(iter(MODES))])
    queries = latency_queries()
    for mode in MODES:
        retrieve_in(mode, "warm up")  # each mode's index read once, as an app has it
    times: dict[str, list[float]] = {m: [] for m in MODES}
    phases: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    for r in range(rounds):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        for mode in order:
            for q in queries:
                emb.clear_cache()
                t = time.perf_counter()
                retrieve_in(mode, q)
                times[mode].append(time.perf_counter() - t)
                emb.clear_cache()
                timings: dict[str, float] = {}
                hybrid_search(q, collection=collection, settings=settings[mode], timings=timings,
                              articles=30 if MODES[mode][1] else None)
                for key, value in timings.items():
                    phases[mode].setdefault(key, []).append(value)
    questions = read_jsonl(QUESTIONS)
    found: dict[str, list[list[str]]] = {m: [] for m in MODES}
    for q in questions:
        for mode in MODES:
            found[mode].append([p.doc_id for p in retrieve_in(mode, q["query"])])
    result: dict = {"collection": collection, "rounds": rounds, "modes": {}}
    answerable = [i for i, q in enumerate(questions) if not q["unanswerable"]]
    for mode in MODES:
        hit1 = sum(found[mode][i][:1] and found[mode][i][0] in questions[i]["gold"] for i in answerable)
        hit5 = sum(bool(set(found[mode][i][:5]) & set(questions[i]["gold"])) for i in answerable)
        result["modes"][mode] = {
            "p50_ms": 1000 * statistics.median(times[mode]), "p95_ms": 1000 * percentile(times[mode], 0.95),
            "phases_p50_ms": {k: 1000 * statistics.median(v) for k, v in phases[mode].items()},
            "phases_p95_ms": {k: 1000 * percentile(v, 0.95) for k, v in phases[mode].items()},
            "hit@1": hit1 / len(answerable), "hit@5": hit5 / len(answerable), "answerable": len(answerable),
        }
    a, b, c = found.values()
    result["same_top10_exact_vs_hnsw"] = sum(x == y for x, y in zip(a, b, strict=True))
    result["same_top10_hnsw_read_best_vs_all"] = sum(x == y for x, y in zip(b, c, strict=True))
    result["questions"] = len(questions)
    return result


def same_evidence() -> dict:
    """The answer bench's questions on its collection: the evidence an answer gets, in both modes."""
    from bench.answer_quality import COLLECTION, answer_corpus, ensure_collection
    from bench.common import use_bench_settings
    from rag.answer import gather_evidence
    from rag.lang import detect_language
    from rag.settings import Settings
    from rag.types import Filters

    use_bench_settings()
    ensure_collection(answer_corpus()[0])
    modes = list(MODES)[:2]
    settings = {mode: Settings(exact_search_max_chunks=MODES[mode][0]) for mode in modes}
    same, differ = 0, []
    for q in read_jsonl(QUESTIONS):
        lang = detect_language(q["query"], short=True, default="en")
        seen = []
        for mode in modes:
            ev = gather_evidence(q["query"], q["query"], lang, COLLECTION, Filters(), settings[mode], {})
            seen.append((ev.relevant, [(src.lead.doc_id, [p.chunk_id for p in src.passages],
                                        [src.sentences[i] for i in src.selected]) for src in ev.sources]))
        if seen[0] == seen[1]:
            same += 1
        else:
            differ.append(q["id"])
    return {"collection": COLLECTION, "modes": modes, "same_evidence": same, "differ": differ}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--collection", default="bench-growth")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--evidence", action="store_true", help="only the evidence comparison (answer bench set)")
    args = parser.parse_args()
    print(json.dumps(same_evidence() if args.evidence else main(args.collection, args.rounds), indent=1))
