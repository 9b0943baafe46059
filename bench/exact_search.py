"""Exact dense search from the keyword index's copy of the vectors against Chroma's HNSW index (issue 12's
latency), side by side in one run on one collection:

- `retrieve()` latency over the 40 latency questions (bench.answer.latency_queries), in alternating rounds,
  with the phases of hybrid_search (embedding the question, dense search, BM25 and the other candidates,
  reading the best articles' chunks);
- hit@1 / hit@5 of the gold article for the answer bench's answerable questions
  (bench/data/answer_questions.jsonl), and how many of all 117 questions get the same top 10 either way.

    RAG_DATA_DIR=bench/cache/data python -m bench.exact_search -c bench-growth
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.common import read_jsonl

QUESTIONS = Path(__file__).resolve().parent / "data" / "answer_questions.jsonl"
MODES = {"exact (keyword index's vectors)": 100_000, "Chroma HNSW": 0}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * len(values))) - 1))]


def main(collection: str, rounds: int) -> dict:
    from bench.answer import latency_queries
    from rag.models import load_embedder
    from rag.retrieval import hybrid_search, retrieve
    from rag.settings import Settings

    settings = {mode: Settings(exact_search_max_chunks=limit) for mode, limit in MODES.items()}
    emb = load_embedder(settings[next(iter(MODES))])
    queries = latency_queries()
    for s in settings.values():
        retrieve("warm up", collection=collection, settings=s)  # each mode's index read once, as an app has it
    times: dict[str, list[float]] = {m: [] for m in MODES}
    phases: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    for r in range(rounds):
        order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
        for mode in order:
            for q in queries:
                emb.clear_cache()
                t = time.perf_counter()
                retrieve(q, collection=collection, settings=settings[mode])
                times[mode].append(time.perf_counter() - t)
                emb.clear_cache()
                timings: dict[str, float] = {}
                hybrid_search(q, collection=collection, settings=settings[mode], timings=timings, articles=30)
                for key, value in timings.items():
                    phases[mode].setdefault(key, []).append(value)
    questions = read_jsonl(QUESTIONS)
    found: dict[str, list[list[str]]] = {m: [] for m in MODES}
    for q in questions:
        for mode in MODES:
            found[mode].append([p.doc_id for p in retrieve(q["query"], collection=collection, settings=settings[mode])])
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
    a, b = found.values()
    result["same_top10"] = sum(x == y for x, y in zip(a, b, strict=True))
    result["questions"] = len(questions)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--collection", default="bench-growth")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(main(args.collection, args.rounds), indent=1))
