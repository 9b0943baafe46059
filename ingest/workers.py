"""`rag ingest --workers N`: N ingest processes on this machine, each writing its shard of the articles into
one Chroma server (ingest.pipeline.ingest with `shard=(i, N)`). The same split runs across machines when
each starts `rag ingest PATHS --shard i/N` against the server itself.

No lock or queue of our own: shards own disjoint articles, and the manifest in Chroma records what is done.
A worker that dies leaves its shard half-written; the same command again finishes it (the pipeline's
kill-safety holds per shard). The keyword (BM25) index is built once, after the last worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag.errors import NewsragError, exit_status
from rag.settings import Settings, get_settings
from rag.types import IngestReport


def ingest_with_workers(paths: list[Path | str], *, collection: str | None = None, workers: int = 2,
                        sync: bool = False, progress: bool = False, settings: Settings | None = None) -> IngestReport:
    """Ingest with `workers` processes into the Chroma server (RAG_CHROMA_HOST); the merged report."""
    from rag import keyword
    from rag.store import Store, check_name

    settings = settings or get_settings()
    name = check_name(collection or settings.collection)
    if workers < 1:
        raise NewsragError(f"--workers must be 1 or more, not {workers}")
    if workers > 1 and not settings.chroma_host:
        raise NewsragError("--workers needs a Chroma server (set RAG_CHROMA_HOST; README \"Parallel ingest\"): "
                           "the embedded store takes one writing process at a time")
    started = time.perf_counter()
    reports = Path(tempfile.mkdtemp(prefix="newsrag-workers-"))
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "rag.cli", "ingest", *map(str, paths), "-c", name, "--shard", f"{i}/{workers}",
               "--report-file", str(reports / f"{i}.json")]
        if sync:
            cmd.append("--sync")
        if not progress:
            cmd.append("--quiet")
        # stdout (each worker's summary) is dropped: the merged report below says it once. stderr keeps the
        # progress bars and any error line, which names the worker's cause.
        env = dict(os.environ)
        # The embedder uses RAG_LLM_THREADS threads (default: every core); N workers share the cores instead of
        # each taking all of them.
        env.setdefault("RAG_LLM_THREADS", str(max(1, (os.cpu_count() or 2) // workers)))
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env))
    codes = [p.wait() for p in procs]
    merged = IngestReport(collection=name)
    missing = []
    for i, code in enumerate(codes):
        path = reports / f"{i}.json"
        if not path.exists():  # killed, or stopped by an error before it finished
            missing.append(f"worker {i + 1}/{workers} ({exit_status(code)})")
            continue
        part = IngestReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
        for field in ("added", "updated", "unchanged", "deleted"):
            getattr(merged, field).extend(getattr(part, field))
        merged.chunks_written += part.chunks_written
        for field in ("failed", "skipped"):  # every worker reads every file, so each reports the same failures
            seen = {(f.path, f.error) for f in getattr(merged, field)}
            getattr(merged, field).extend(f for f in getattr(part, field) if (f.path, f.error) not in seen)
    for path in reports.iterdir():
        path.unlink()
    reports.rmdir()
    if missing:
        raise NewsragError(f"ingest into {name!r} did not finish: {', '.join(missing)} stopped. What the workers "
                           "wrote is kept; run the same command again to finish the rest")
    for field in ("added", "updated", "unchanged", "deleted"):
        getattr(merged, field).sort()
    keyword.get_index(Store(settings), name, settings)  # once, after the last worker
    merged.seconds = time.perf_counter() - started
    return merged

