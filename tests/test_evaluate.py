"""`rag eval` metrics on a fixture where the right numbers are known by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import SEED_ID
from rag.evaluate import format_table, percentile, retrieval_metrics


def test_retrieval_metrics_by_hand():
    ranked = [["a", "b", "c"], ["x", "y", "g"], ["n1", "n2"]]
    gold = [["a"], ["g"], ["zzz"]]
    m = retrieval_metrics(ranked, gold)
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@5"] == pytest.approx(2 / 3)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    # nDCG: query 1 -> 1, query 2 -> 1/log2(4) = 0.5, query 3 -> 0
    assert m["ndcg@10"] == pytest.approx((1 + 0.5) / 3)
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([1, 2, 3, 4], 95) == 4
    table = format_table({"retrieval": m}, {"retrieval": {**m, "recall@1": 0.0}})
    assert "+0.3333" in table


def test_rag_eval_cli_on_the_seed(corpus, tmp_path):
    q = tmp_path / "q.jsonl"
    q.write_text("\n".join(json.dumps(x) for x in [
        {"query": "Wann wird Putin Nordkorea besuchen?", "gold": [SEED_ID]},
        {"query": "When will Putin visit North Korea?", "gold": [SEED_ID]},
    ]), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "rag.cli", "eval", str(q), "-c", "news", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["retrieval"]["recall@1"] == 1.0 and res["retrieval"]["mrr@10"] == 1.0


def test_answer_judging_by_hand():
    from rag.evaluate import judge, summarize

    q_ok = {"query": "Wie viele?", "answer": ["vier"], "gold": ["a"], "lang": "de"}
    q_none = {"query": "Wer?", "unanswerable": True, "lang": "en"}
    rows = [
        judge(q_ok, "Es waren vier Delegationen [1].\n\nQuellen vom 2024-01-16.", True, True, ["a"], "de"),
        judge(q_ok, "Es waren fünf [1].", True, True, ["b"], "en"),  # wrong, verified, wrong language
        judge(q_ok, "Die Artikel beantworten das nicht.", False, False, [], ""),
        judge(q_none, "The articles do not answer this.", False, False, [], ""),
        judge(q_none, "Sony sold 5 million [1].", True, True, ["c"], "en"),
    ]
    s = summarize(rows, [1.0, 2.0, 3.0], [0.5])
    assert s["correct"] == pytest.approx(1 / 3) and s["wrongly_refused"] == pytest.approx(1 / 3)
    assert s["unanswerable_refused"] == 0.5 and s["wrong_but_verified"] == pytest.approx(2 / 5)
    assert s["citation_precision"] == 0.5 and s["answer_language_ok"] == pytest.approx(2 / 3)
