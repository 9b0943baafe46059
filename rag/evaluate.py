"""`rag eval`: retrieval and answer quality on a JSONL file of queries.

A query line: {"query": ..., "gold": [doc_id, ...], "answer": [accepted strings], "unanswerable": bool,
"lang": "en"|"de", "kind": ...}. Retrieval metrics are at article level: recall@1/5/10, MRR@10, nDCG@10.
Answer metrics: correct (answerable questions whose answer contains an accepted string), wrongly refused,
unanswerable refused, wrong but verified (answered, not correct, yet with a ✓ citation), citation precision
(citations pointing at a gold article), answer language = question language, latency.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


def load_queries(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                from rag.errors import NewsragError

                raise NewsragError(f"{path}:{i}: invalid JSON ({exc.msg})") from exc
    return rows


def retrieval_metrics(ranked: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Article-level metrics over queries that have gold documents."""
    pairs = [(r, set(g)) for r, g in zip(ranked, gold, strict=True) if g]
    if not pairs:
        return {}
    out: dict[str, float] = {}
    for k in (1, 5, 10):
        out[f"recall@{k}"] = sum(len(set(r[:k]) & g) / len(g) for r, g in pairs) / len(pairs)
    mrr = 0.0
    ndcg = 0.0
    for r, g in pairs:
        for i, d in enumerate(r[:10]):
            if d in g:
                mrr += 1 / (i + 1)
                break
        dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(r[:10]) if d in g)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(len(g), 10)))
        ndcg += dcg / ideal
    out["mrr@10"] = mrr / len(pairs)
    out["ndcg@10"] = ndcg / len(pairs)
    out["queries"] = float(len(pairs))
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    idx = min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))
    return s[idx]


def run_eval(path: Path, *, collection: str | None = None, mode: str = "retrieve", llm: str | None = None,
             k: int = 10) -> dict[str, Any]:
    from rag.retrieval import retrieve

    queries = load_queries(path)
    ranked, gold, latencies = [], [], []
    for q in queries:
        t = time.perf_counter()
        hits = retrieve(q["query"], k=k, collection=collection)
        latencies.append(time.perf_counter() - t)
        ranked.append([h.doc_id for h in hits])
        gold.append(list(q.get("gold") or []))
    result: dict[str, Any] = {"mode": mode, "queries": len(queries), "retrieval": retrieval_metrics(ranked, gold),
                              "retrieve_p50": percentile(latencies, 50), "retrieve_p95": percentile(latencies, 95)}
    if mode == "answer":
        result["answer"] = answer_metrics(queries, collection, llm)
    return result


def judge(q: dict[str, Any], text: str, answered: bool, verified: bool, cited_docs: list[str],
          language: str) -> dict[str, Any]:
    """One answer against its question: correct (contains an accepted string), refused, wrong but carrying a
    ✓ verified citation, citations pointing at a gold article, answer language."""
    body = text.split("\n\n")[0].lower()
    unanswerable = bool(q.get("unanswerable"))
    correct = answered and not unanswerable and any(a.lower() in body for a in q.get("answer") or [])
    gold = set(q.get("gold") or [])
    return {
        "id": q.get("id", q["query"][:40]), "kind": q.get("kind", "unanswerable" if unanswerable else "fact"),
        "unanswerable": unanswerable, "answered": answered, "correct": correct,
        "wrong_but_verified": answered and not correct and verified,
        "cited": len(cited_docs), "cited_gold": sum(d in gold for d in cited_docs),
        "language_ok": (language == q.get("lang")) if q.get("lang") and answered else None,
    }


def summarize(rows: list[dict[str, Any]], latencies: list[float], firsts: list[float]) -> dict[str, float]:
    answerable = [r for r in rows if not r["unanswerable"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    cited = sum(r["cited"] for r in rows if r["answered"])
    lang = [r["language_ok"] for r in rows if r["language_ok"] is not None]

    def share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    return {
        "correct": share(sum(r["correct"] for r in answerable), len(answerable)),
        "wrongly_refused": share(sum(not r["answered"] for r in answerable), len(answerable)),
        "unanswerable_refused": share(sum(not r["answered"] for r in unanswerable), len(unanswerable)),
        "wrong_but_verified": share(sum(r["wrong_but_verified"] for r in rows), len(rows)),
        "answered_wrong": share(sum(r["answered"] and not r["correct"] for r in rows), len(rows)),
        "citation_precision": share(sum(r["cited_gold"] for r in rows if r["answered"] and not r["unanswerable"]),
                                    sum(r["cited"] for r in rows if r["answered"] and not r["unanswerable"])),
        "cited_answers": float(cited),
        "answer_language_ok": share(sum(lang), len(lang)),
        "latency_p50": percentile(latencies, 50), "latency_p95": percentile(latencies, 95),
        "first_token_p50": percentile(firsts, 50), "first_token_p95": percentile(firsts, 95),
    }


def answer_rows(queries: list[dict[str, Any]], collection: str | None, llm: str | None,
                progress: bool = False) -> tuple[list[dict[str, Any]], list[float], list[float]]:
    """newsrag's answer to every query, judged; with the answers and their claims' checks for calibration."""
    from tqdm import tqdm

    from rag.answer import ask
    from rag.lang import detect_language

    rows, totals, firsts = [], [], []
    for q in tqdm(queries, desc=f"answer ({llm or 'default'})", disable=not progress):
        ans = ask(q["query"], collection=collection, llm=llm)
        totals.append(ans.timings.get("total", 0.0))
        if "first_token" in ans.timings:
            firsts.append(ans.timings["first_token"])
        body = ans.text.split("\n\n")[0]
        lang = detect_language(body, short=True, default="") if ans.answered else ""
        row = judge(q, ans.text, ans.answered, any(c.verified for c in ans.citations),
                    [c.doc_id for c in ans.citations], lang)
        row.update({"text": ans.text, "notice": ans.notice, "unsupported": ans.unsupported,
                    "top_relevance": max((c.score for c in ans.sources), default=None)})
        rows.append(row)
    return rows, totals, firsts


def answer_metrics(queries: list[dict[str, Any]], collection: str | None, llm: str | None) -> dict[str, float]:
    rows, totals, firsts = answer_rows(queries, collection, llm)
    return summarize(rows, totals, firsts)


def _flatten(result: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update({k: float(v) for k, v in value.items()})
        elif isinstance(value, (int, float)) and key != "queries":
            flat[key] = float(value)
    return flat


def format_table(result: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    flat = _flatten(result)
    base = _flatten(baseline) if baseline else {}
    lines = [f"{'metric':<22}{'value':>10}" + (f"{'baseline':>10}{'diff':>10}" if base else "")]
    for key, value in flat.items():
        line = f"{key:<22}{value:>10.4f}"
        if base and key in base:
            line += f"{base[key]:>10.4f}{value - base[key]:>+10.4f}"
        lines.append(line)
    return "\n".join(lines)
