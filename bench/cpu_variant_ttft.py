"""Time to first token of newsrag's answers with each llama.cpp CPU build the LLM child can load
(rag/cpu_variants.py): the portable build against the fastest variant this CPU runs, alternating, on the
seed questions (bench/answer.py's `ttft`: one warm-up question, then each question with a cold
embedding cache).

    python -m bench.cpu_variant_ttft [--collection news] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from bench.answer import ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="news")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from rag.cpu_variants import child_env
    from rag.settings import reset_settings

    fastest = child_env("auto")[0]
    if fastest == "portable":
        raise SystemExit("this CPU runs no faster variant than the portable build (or none was compiled)")
    runs: dict[str, list[dict]] = {"portable": [], fastest: []}
    for _ in range(args.rounds):
        for variant in runs:
            os.environ["RAG_LLM_CPU_VARIANT"] = variant
            reset_settings()
            runs[variant].append(ttft("qwen2.5-1.5b", args.collection))
            print(variant, json.dumps(runs[variant][-1]), flush=True)
    summary = {v: {k: statistics.median(r[k] for r in rs) for k in ("ttft_p50", "total_p50", "tokens_per_s", "load_s")}
               for v, rs in runs.items()}
    print("| llama.cpp CPU build | first token p50 | answer p50 | generated tokens/s | model load |")
    print("|---|---|---|---|---|")
    for v, r in summary.items():
        print(f"| {v} | {r['ttft_p50']:.2f} s | {r['total_p50']:.2f} s | {r['tokens_per_s']:.1f} | {r['load_s']:.2f} s |")
    ratio = summary["portable"]["ttft_p50"] / summary[fastest]["ttft_p50"]
    print(f"\nfirst token, portable / {fastest}: {ratio:.2f} ({args.rounds} alternating rounds of "
          f"{int(runs['portable'][0]['questions'])} questions each)")


if __name__ == "__main__":
    main()
