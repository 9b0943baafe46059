"""`make bench`: every benchmark in one run, written to bench/RESULTS.md and bench/latency.png."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":")[1].strip()
    except OSError:
        pass
    import os

    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem} RAM, Python {platform.python_version()}"


def latency_plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["chunks"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["chunks"] for r in rows], [r["p50_ms"] for r in rows], "o-", label="p50")
    ax.plot([r["chunks"] for r in rows], [r["p95_ms"] for r in rows], "s--", label="p95")
    ax.set_xlabel("chunks in the collection")
    ax.set_ylabel("retrieval latency (ms)")
    ax.set_title("newsrag hybrid retrieval latency vs corpus size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(reuse: bool = False) -> None:
    """All benchmarks; with reuse=True the retrieval and ingest parts come from the last full run
    (bench/cache/results.json) and only the answer part is measured again."""
    from bench import answer, ingest, retrieval

    started = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cached = HERE / "cache" / "results.json"
    if reuse and cached.exists():
        old = json.loads(cached.read_text())
        ret, ing = old["retrieval"], old["ingest"]
        from bench.common import use_bench_settings

        use_bench_settings()
    else:
        ret = retrieval.main()
        ing = ingest.main()
    ans = answer.main()
    latency_plot(ans["retrieval"] + ans["growth"]["rows"], HERE / "latency.png")
    lines = [
        "# newsrag benchmark record",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, commit {commit}",
        f"- machine: {machine()}",
        "- commands: `make bench` (= `python -m bench.run`; parts: `python -m bench.retrieval`, "
        "`python -m bench.ingest`, `python -m bench.answer`)",
        f"- wall time: {(time.perf_counter() - started) / 60:.1f} min"
        + (" (answer part only; retrieval and ingestion tables from the previous full run)" if reuse else ""),
        "",
        "## Retrieval quality (article level), side by side in one run",
        "",
        "Naive = `VectorStoreIndex.from_documents` on Chroma with the default splitter and the same embedder "
        "(through llama-index, with the e5 prefixes), dense top-k. News: 600 NewsArticles, the `subtitle` as query "
        "(removed from the text). FAQ: Debian's German FAQ, section question as query, body as gold.",
        "",
    ]
    for name, res in ret.items():
        lines.append(retrieval.table(name, res))
        lines.append("")
    lines += [
        "## Ingestion (same articles, one run)",
        "",
        "| measure | value |", "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in ing.items()],
        "",
        "## Answering (local LLM, seed questions; retrieval latency)",
        "",
        "TTFT is measured from the call to `ask()` (retrieval and evidence selection included) to the first "
        "streamed token, on the 600-article English collection plus the seed; the model runs in newsrag's child "
        "process (rag/llm_process.py), so TTFT includes the local HTTP hop; load s = time until the child answers.",
        "",
        "| model | load s | TTFT p50 s | TTFT max s | total p50 s | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for model in ("qwen2.5-0.5b", "qwen2.5-1.5b"):
        m = ans[model]
        lines.append(f"| {model} | {m['load_s']:.1f} | {m['ttft_p50']:.2f} | {m['ttft_max']:.2f} | "
                     f"{m['total_p50']:.2f} | {m['tokens_per_s']:.1f} |")
    lines += ["", "### Answer quality (`rag eval --mode answer`, tests/data/seed_qa.jsonl on the same collection)", "",
              "8 German/English questions about the seed (accepted answer strings) and 3 the corpus cannot answer; "
              "600 English news articles around it, many about North Korea.", "",
              "| answerer | correct | unanswerable refused | wrong but verified | citation precision "
              "| latency p50 s | first token p50 s |", "|---|---|---|---|---|---|---|"]
    for llm, res in ans["answer_eval"].items():
        a = res["answer"]
        lines.append(f"| {llm} | {a['correct']:.2f} | {a['unanswerable_refused']:.2f} | "
                     f"{a['wrong_but_verified']:.2f} | {a['citation_precision']:.2f} | {a['latency_p50']:.2f} | "
                     f"{a['first_token_p50']:.2f} |")
    growth = ans["growth"]
    lines += ["", "### Retrieval latency vs corpus size", "",
              "Embed the question + Chroma query + BM25 + fusion + collapse (`retrieve()`), 40 distinct questions "
              "per size (30 English news subtitles, 10 German FAQ questions; vector cache cleared before each). "
              f"The first two rows are the real FAQ and news collections. The others are one collection grown "
              f"from nothing through the real ingest pipeline with the full NewsArticles set and the 1,000 "
              f"Bundestag speeches ({growth['articles']:,} articles, {growth['chunks']:,} chunks, "
              f"{growth['ingest_s'] / 60:.1f} min), measured when it passed 1k, 5k and 20k chunks and at the end. "
              f"To fit `make bench` into 40 minutes those chunks are embedded from their first "
              f"{answer.HEAD_TOKENS} tokens (real e5 vectors of the real texts); stored texts, BM25 and "
              "metadata are complete.", "",
              "| chunks | collection | retrieval p50 ms | p95 ms |", "|---|---|---|---|"]
    for label, r in [("real", r) for r in ans["retrieval"]] + [("grown", r) for r in growth["rows"]]:
        lines.append(f"| {r['chunks']:,.0f} | {label} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |")
    lines += ["", "### Start-up and memory", "",
              "| measure | value |", "|---|---|",
              *[f"| cold `rag ask --llm {p}` (new process, {growth['chunks']:,}-chunk collection) | "
                f"{ans[f'cold_ask_{p}']['seconds']:.1f} s, "
                f"peak RSS {ans[f'cold_ask_{p}']['peak_rss_mb']:,.0f} MB |" for p in ("extractive", "local")],
              f"| peak RSS of the whole bench process (both LLMs, naive pipeline, the growth ingest) | "
              f"{growth['peak_rss_mb']:,.0f} MB |",
              "", "![latency](latency.png)", ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    (HERE / "cache" / "results.json").write_text(json.dumps({"retrieval": ret, "ingest": ing, "answer": ans},
                                                            indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    main(reuse="--reuse" in sys.argv)
