"""`rag eval`: retrieval and answer quality on a JSONL file of queries.

A query line: {"query": ..., "gold": [doc_id, ...], "answer": [accepted strings], "unanswerable": bool}.
Retrieval metrics are at article level: recall@1/5/10, MRR@10, nDCG@10.
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


def answer_metrics(queries: list[dict[str, Any]], collection: str | None, llm: str | None) -> dict[str, float]:
    from rag.answer import ask
    from rag.verify import split_claims

    contains = answerable = 0
    refused_right = unanswerable = 0
    cited = supported = sentences = with_support = 0
    totals, firsts = [], []
    for q in queries:
        ans = ask(q["query"], collection=collection, llm=llm)
        totals.append(ans.timings.get("total", 0.0))
        if "first_token" in ans.timings:
            firsts.append(ans.timings["first_token"])
        if q.get("unanswerable"):
            unanswerable += 1
            refused_right += int(not ans.answered)
            continue
        if q.get("answer"):
            answerable += 1
            contains += int(ans.answered and any(a.lower() in ans.text.lower() for a in q["answer"]))
        cited += len(ans.citations)
        supported += sum(c.verified for c in ans.citations)
        claims = split_claims(ans.text.split("\n\n")[0], {c.n for c in ans.citations})
        sentences += len(claims)
        with_support += sum(1 for c in claims if c.cited)
    return {
        "answer_contains": contains / answerable if answerable else 0.0,
        "refusal_accuracy": refused_right / unanswerable if unanswerable else 0.0,
        "citation_precision": supported / cited if cited else 0.0,
        "citation_recall": with_support / sentences if sentences else 0.0,
        "latency_p50": percentile(totals, 50), "latency_p95": percentile(totals, 95),
        "first_token_p50": percentile(firsts, 50), "first_token_p95": percentile(firsts, 95),
    }


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
