"""Answer quality on the held-out answer benchmark (bench/data/answer_questions.jsonl over the corpus that
bench/answer_set.py builds), side by side in one run:

- newsrag with the local LLM (qwen2.5-1.5b in its child process),
- newsrag extractive (no LLM),
- the naive llama-index query engine (VectorStoreIndex with the e5 prefixes, default splitter, top-k and
  prompt) with the *same* local LLM, through rag.llamaindex.NewsragLLM. It shows no verified mark, so its
  "wrong but verified" is 0 by construction; "answered wrong" is the comparable figure.

    python -m bench.answer_quality [--limit N]

Writes bench/cache/answer-quality.json (every answer, judged, with each claim's checks) for the calibration
in bench/calibrate.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.answer_set import answer_corpus
from bench.common import BENCH_DATA, NaivePipeline, read_jsonl, use_bench_settings
from bench.datasets import CACHE

COLLECTION = "bench-answer-set"
OUT = CACHE / "answer-quality.json"
# How the naive engine's default prompt says it cannot answer (it has no refusal signal of its own).
NAIVE_REFUSALS = ("not mention", "not provide", "no information", "not specified", "not stated", "does not say",
                  "doesn't", "does not contain", "not contain", "cannot", "can't", "unable", "not available",
                  "no mention", "not include", "keine information", "nicht erwähnt", "nicht angegeben",
                  "keine angabe", "nicht bekannt", "nicht enthalten", "enthält keine", "nicht beantwortet", "keine")


def ensure_collection(corpus_path) -> None:
    from ingest.pipeline import ingest

    report = ingest([corpus_path], collection=COLLECTION, progress=True)
    print(report.summary(), flush=True)


def newsrag_rows(queries: list[dict], llm: str) -> dict:
    from rag.answer import ask
    from rag.evaluate import judge, summarize
    from rag.lang import detect_language
    from rag.settings import get_settings

    rows, totals, firsts = [], [], []
    for i, q in enumerate(queries):
        ans = ask(q["query"], collection=COLLECTION, llm=llm)
        totals.append(ans.timings.get("total", 0.0))
        if "first_token" in ans.timings:
            firsts.append(ans.timings["first_token"])
        lang = detect_language(ans.text.split("\n\n")[0], short=True, default="") if ans.answered else ""
        row = judge(q, ans.text, ans.answered, any(c.verified for c in ans.citations),
                    [c.doc_id for c in ans.citations], lang)
        row.update({"query": q["query"], "text": ans.text, "notice": ans.notice, "top_dense": ans.relevance,
                    # what the model wrote, before refusal replaced it: bench/calibrate.py replays other thresholds
                    "raw_correct": not q["unanswerable"] and any(
                        a.lower() in " ".join(c.text for c in ans.checks).lower() for a in q.get("answer") or []),
                    "checks": [c.model_dump() for c in ans.checks], "provider": ans.provider,
                    "timings": ans.timings, "latency": ans.timings.get("total", 0.0)})
        rows.append(row)
        print(f"[{llm} {i + 1}/{len(queries)}] {'OK ' if row['correct'] else '-- '}{q['query'][:60]!r} -> "
              f"{ans.text[:90]!r}", flush=True)
    s = get_settings()
    return {"rows": rows, "summary": summarize(rows, totals, firsts),
            "settings": {"min_relevance": s.min_relevance, "verify_threshold": s.verify_threshold,
                         "embedder": s.embed_model, "evidence_tokens": s.evidence_tokens, "verify_llm": s.verify_llm}}


def naive_rows(queries: list[dict], records: list[dict]) -> dict:
    from llama_index.core import Settings as LISettings

    from rag.evaluate import judge, summarize
    from rag.lang import detect_language
    from rag.llamaindex import NewsragLLM

    naive = NaivePipeline("naive-answer-set")
    naive.ingest(records)
    LISettings.llm = NewsragLLM(provider="local")
    engine = naive.index.as_query_engine(llm=LISettings.llm)
    rows, totals = [], []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        resp = engine.query(q["query"])
        totals.append(time.perf_counter() - t)
        text = str(resp).strip()
        answered = bool(text) and not any(p in text.lower() for p in NAIVE_REFUSALS)
        lang = detect_language(text, short=True, default="") if answered else ""
        row = judge(q, text, answered, False, [str(n.node.metadata.get("doc_id")) for n in resp.source_nodes], lang)
        row.update({"query": q["query"], "text": text, "latency": totals[-1]})
        rows.append(row)
        print(f"[naive {i + 1}/{len(queries)}] {'OK ' if row['correct'] else '-- '}{q['query'][:60]!r} -> "
              f"{text[:90]!r}", flush=True)
    return {"rows": rows, "summary": summarize(rows, totals, [])}


def by_kind(rows: list[dict]) -> dict[str, dict[str, float]]:
    kinds: dict[str, list[dict]] = {}
    for r in rows:
        kinds.setdefault(r["kind"], []).append(r)
    return {k: {"n": len(v), "correct_or_refused": sum((r["correct"] or (r["unanswerable"] and not r["answered"]))
                                                       for r in v) / len(v)} for k, v in sorted(kinds.items())}


COLUMNS = ("correct", "wrongly_refused", "unanswerable_refused", "wrong_but_verified", "answered_wrong",
           "citation_precision", "answer_language_ok", "latency_p50", "first_token_p50")


def table(results: dict) -> str:
    lines = ["| answerer (questions) | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for name, res in results.items():
        s = res["summary"]
        lines.append(f"| {name} ({len(res['rows'])}) | " + " | ".join(f"{s.get(c, 0):.2f}" for c in COLUMNS) + " |")
    kinds = sorted({k for res in results.values() for k in by_kind(res["rows"])})
    lines += ["", "Correct (answerable) or refused (unanswerable), by kind of question:", "",
              "| answerer | " + " | ".join(f"{k} (n={by_kind(next(iter(results.values()))['rows'])[k]['n']})"
                                         for k in kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for name, res in results.items():
        bk = by_kind(res["rows"])
        lines.append(f"| {name} | " + " | ".join(f"{bk[k]['correct_or_refused']:.2f}" for k in kinds) + " |")
    return "\n".join(lines)


def stratified(queries: list[dict], per_kind: int) -> list[dict]:
    """The first `per_kind` questions of each kind (a cheaper run that still covers every row)."""
    seen: dict[str, int] = {}
    out = []
    for q in queries:
        if seen.get(q["kind"], 0) < per_kind:
            seen[q["kind"]] = seen.get(q["kind"], 0) + 1
            out.append(q)
    return out


def on_common_questions(results: dict) -> dict:
    """Every answerer restricted to the questions all of them answered (when one ran on a sample)."""
    from rag.evaluate import summarize

    common = set.intersection(*({r["id"] for r in res["rows"]} for res in results.values()))
    out = {}
    for name, res in results.items():
        rows = [r for r in res["rows"] if r["id"] in common]
        firsts = [r["timings"]["first_token"] for r in rows if "first_token" in r.get("timings", {})]
        out[name] = {"rows": rows, "summary": summarize(rows, [r.get("latency", r.get("timings", {}).get("total", 0.0)) for r in rows], firsts)}
    return out


def main(limit: int | None = None, which: tuple[str, ...] = ("local", "extractive", "naive"),
         per_kind: int = 0, merge: bool = False, out: Path = OUT) -> dict:
    use_bench_settings()
    corpus_path, questions_path = answer_corpus()
    queries = read_jsonl(questions_path)[:limit]
    if per_kind:
        queries = stratified(queries, per_kind)
    records = read_jsonl(corpus_path)
    ensure_collection(corpus_path)
    # --merge adds answerers to the last run's file (e.g. the slow naive peer on a stratified sample);
    # their table rows then cover fewer questions, which the table says.
    results = json.loads(out.read_text(encoding="utf-8")) if merge and out.exists() else {}
    for name in which:
        if name == "naive":
            results["naive llama-index (same LLM)"] = naive_rows(queries, records)
        else:
            results[f"newsrag ({name})"] = newsrag_rows(queries, name)
        out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(table(results), flush=True)
    if len({len(res["rows"]) for res in results.values()}) > 1:
        print("\nOn the questions every answerer ran:\n" + table(on_common_questions(results)), flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=["local", "extractive", "naive"])
    parser.add_argument("--per-kind", type=int, default=0, help="only the first N questions of each kind")
    parser.add_argument("--merge", action="store_true", help="keep the other answerers of the last run")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT})")
    args = parser.parse_args()
    main(args.limit, tuple(args.only), args.per_kind, args.merge, args.out)
    print(f"wrote {args.out} (bench data in {BENCH_DATA})")
