"""How often the accepted answer reaches the prompt: for each answerable question of the answer benchmark,
newsrag's retrieval and evidence selection run as `ask()` runs them (no LLM), and the answer counts as in the
prompt when one of its accepted strings is in the selected sentences.

In stop 12's full run, 62 of the 70 questions with the answer in the prompt were answered right, and none of
the 21 without it: this replay is the fast proxy for evidence selection (seconds per setting, not the answer
bench's 17 minutes). It reports the same count per question kind, and the prompt's source tokens.

    python -m bench.evidence_recall [--budgets 200,240]
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench.answer_quality import COLLECTION, ensure_collection
from bench.answer_set import answer_corpus
from bench.common import read_jsonl, use_bench_settings


def replay(queries: list[dict], budget: int) -> dict:
    from rag.answer import gather_evidence
    from rag.lang import detect_language
    from rag.settings import get_settings, reset_settings
    from rag.types import Filters

    os.environ["RAG_EVIDENCE_TOKENS"] = str(budget)
    reset_settings()
    settings = get_settings()
    hits: dict[str, list[bool]] = {}
    tokens, missed = [], []
    for q in queries:
        lang = detect_language(q["query"], short=True, default="en")
        ev = gather_evidence(q["query"], q["query"], lang, COLLECTION, Filters(), settings, {})
        text = " ".join(src.sentences[i][2] for src in ev.sources for i in src.selected)
        found = any(a.lower() in text.lower() for a in q["answer"])
        hits.setdefault(q["kind"], []).append(found)
        tokens.append(sum(ev.embedder.count_tokens([text])))
        if not found:
            missed.append(q["id"])
    return {"budget": budget, "in_prompt": sum(sum(v) for v in hits.values()), "of": len(queries),
            "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(hits.items())},
            "tokens_mean": round(statistics.mean(tokens)), "missed": missed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="200")
    args = parser.parse_args()
    use_bench_settings()
    corpus, questions = answer_corpus()
    ensure_collection(corpus)
    queries = [q for q in read_jsonl(questions) if not q["unanswerable"]]
    for budget in (int(b) for b in args.budgets.split(",")):
        r = replay(queries, budget)
        print(f"budget {budget}: answer in the prompt {r['in_prompt']}/{r['of']}, source tokens mean "
              f"{r['tokens_mean']}, by kind {r['by_kind']}\n  missed: {' '.join(r['missed'])}", flush=True)


if __name__ == "__main__":
    main()
