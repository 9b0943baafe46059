"""Parallel ingest against a Chroma server: `rag ingest --workers 2` vs one process, same articles, one run.

Starts `chroma run` on 127.0.0.1, ingests the first N NewsArticles records into two fresh collections (one
process; two workers), checks that both hold the same articles and chunks, and prints the wall-time ratio.
Both are whole CLI commands (process start and model load included), as a user runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import read_jsonl, use_bench_settings
from bench.datasets import news_articles


def main(n_articles: int = 60) -> dict[str, float]:
    from rag.chroma_server import LocalChromaServer

    use_bench_settings()
    corpus, _ = news_articles()
    records = read_jsonl(corpus)[:n_articles]
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    subset = tmp / "articles.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    server = LocalChromaServer(tmp / "chroma").start()
    env = {**os.environ, "RAG_CHROMA_HOST": "127.0.0.1", "RAG_CHROMA_PORT": str(server.port),
           "RAG_DATA_DIR": str(tmp / "data")}
    try:
        seconds, reports = {}, {}
        for label, extra in (("one process", []), ("2 workers", ["--workers", "2"])):
            name = "one" if not extra else "two"
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(subset), "-c", name, "--json", *extra],
                                 env=env, capture_output=True, text=True, timeout=3600)
            seconds[label] = time.perf_counter() - t
            if out.returncode != 0:
                raise SystemExit(f"{label}: {out.stderr[-500:]}")
            reports[label] = json.loads(out.stdout)
            print(f"{label}: {len(reports[label]['added'])} articles in {seconds[label]:.1f}s", flush=True)
        assert sorted(reports["one process"]["added"]) == sorted(reports["2 workers"]["added"])
        counts = subprocess.run([sys.executable, "-m", "rag.cli", "collections", "--json"], env=env,
                                capture_output=True, text=True, timeout=300)
        rows = {r["name"]: r for r in json.loads(counts.stdout)}
        assert rows["one"]["chunks"] == rows["two"]["chunks"] and rows["one"]["articles"] == rows["two"]["articles"]
    finally:
        server.stop()
    result = {"articles": float(len(records)), "chunks": float(rows["one"]["chunks"]), "cores": float(os.cpu_count() or 0),
              "one_process_s": seconds["one process"], "two_workers_s": seconds["2 workers"],
              "ratio_two_workers_vs_one": seconds["one process"] / seconds["2 workers"]}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
