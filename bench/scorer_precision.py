"""The answer scorer's two graphs (multilingual-e5-small fp32 and int8) on the scales the answer thresholds
read: each answerable question of the answer benchmark against its gold article (first 1,200 characters, as a
passage) and against that article's first 12 sentences (as evidence and citation checks score them).

Reports how far the int8 cosines sit from fp32's, how many decisions at the thresholds (RAG_MIN_RELEVANCE,
RAG_EXTRACTIVE_MIN_SCORE, RAG_VERIFY_THRESHOLD) flip, and the time each graph took for the same texts.
The answers themselves: `RAG_SCORER_PRECISION=fp32|int8 python -m bench.answer_quality --only local`.

Then what storing the scorer's chunk vectors at ingest (RAG_INGEST_SCORER_VECTORS) costs: the retrieval
embedder's pass and the scorer's pass over the same SAMPLE chunks of the answer-set collection, timed one
after the other as ingest runs them.

    python -m bench.scorer_precision
"""

from __future__ import annotations

import json
import time

import numpy as np

from bench.answer_set import answer_corpus
from bench.common import BENCH_DATA, read_jsonl

SENTENCES_PER_ARTICLE = 12
THRESHOLDS = (0.80, 0.82, 0.84)


def cosines(embedder, pairs: list[tuple[str, str]], sentences: list[tuple[str, list[str]]]):
    started = time.perf_counter()
    q = embedder.embed_queries([question for question, _ in pairs], cache=False)
    passages = embedder.embed_passages([text for _, text in pairs], cache=False)
    per_sentence = [embedder.embed_passages(ss, cache=False) @ q[i] for i, (_, ss) in enumerate(sentences)]
    return np.sum(q * passages, axis=1), np.concatenate(per_sentence), time.perf_counter() - started


def main() -> None:
    from rag.models import Embedder, embedder_dir
    from rag.settings import SCORER_EMBEDDER, get_settings
    from rag.text import split_sentences

    corpus_path, questions_path = answer_corpus()
    articles = {r["id"]: r for r in read_jsonl(corpus_path)}
    questions = [q for q in read_jsonl(questions_path) if q["gold"]]
    pairs, sentences = [], []
    for q in questions:
        text = articles[q["gold"][0]]["text"]
        pairs.append((q["query"], text[:1200]))
        spans = split_sentences(text[:3000])[:SENTENCES_PER_ARTICLE]
        sentences.append((q["query"], [text[s:e] for s, e in spans]))
    folder = str(embedder_dir(get_settings(), SCORER_EMBEDDER))
    fp32_passage, fp32_sentence, fp32_time = cosines(Embedder(folder, threads=2, precision="fp32"), pairs, sentences)
    int8_passage, int8_sentence, int8_time = cosines(Embedder(folder, threads=2, precision="int8"), pairs, sentences)
    print(f"{len(pairs)} questions, {len(fp32_sentence)} sentences; fp32 {fp32_time:.1f} s, int8 {int8_time:.1f} s "
          f"({fp32_time / int8_time:.2f}x)")
    print("| pairs | fp32 mean | int8 mean | mean diff | abs diff p50 / p95 / max | correlation | "
          + " | ".join(f"flips at {t}" for t in THRESHOLDS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(THRESHOLDS))
    rows = {}
    for name, a, b in (("question-passage", fp32_passage, int8_passage),
                       ("question-sentence", fp32_sentence, int8_sentence)):
        diff = b - a
        flips = [int(((a >= t) != (b >= t)).sum()) for t in THRESHOLDS]
        rows[name] = {"n": len(a), "mean_diff": float(diff.mean()), "abs_p95": float(np.percentile(abs(diff), 95)),
                      "flips": flips}
        print(f"| {name} ({len(a)}) | {a.mean():.4f} | {b.mean():.4f} | {diff.mean():+.4f} | "
              f"{np.median(abs(diff)):.4f} / {np.percentile(abs(diff), 95):.4f} / {abs(diff).max():.4f} | "
              f"{np.corrcoef(a, b)[0, 1]:.4f} | " + " | ".join(str(f) for f in flips) + " |")
    cost = ingest_cost()
    out = BENCH_DATA.parent / "scorer-precision.json"
    out.write_text(json.dumps({"fp32_s": fp32_time, "int8_s": int8_time, **rows, "ingest": cost}, indent=1))


def ingest_cost(sample: int = 300) -> dict[str, float]:
    from bench.answer_quality import COLLECTION
    from bench.common import use_bench_settings
    from ingest.chunk import chunk_embed_text
    from rag.models import load_embedder, load_scorer
    from rag.store import Store
    from rag.text import embed_header, scorer_text

    use_bench_settings()
    chunks = []
    for _, doc, meta in Store().iter_chunks(COLLECTION):
        chunks.append((str(meta.get("title", "")), str(meta.get("date", "")), doc))
        if len(chunks) == sample:
            break
    embedder, scorer = load_embedder(), load_scorer()
    started = time.perf_counter()
    embedder.embed_passages([chunk_embed_text(embed_header(t, d), doc) for t, d, doc in chunks])
    retrieval_s = time.perf_counter() - started
    started = time.perf_counter()
    scorer.embed_passages([scorer_text(t, d, doc) for t, d, doc in chunks])
    scorer_s = time.perf_counter() - started
    print(f"ingest, {len(chunks)} chunks: {embedder.signature} {retrieval_s:.1f} s "
          f"({len(chunks) / retrieval_s:.1f} chunks/s), {scorer.signature} {scorer_s:.1f} s "
          f"({len(chunks) / scorer_s:.1f} chunks/s): +{scorer_s / retrieval_s:.0%} embedding time")
    return {"chunks": len(chunks), "retrieval_s": retrieval_s, "scorer_s": scorer_s}


if __name__ == "__main__":
    main()
