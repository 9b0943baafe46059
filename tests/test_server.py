"""Chroma server mode: the same ingest and ask behaviour against a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SEED_DIR, SEED_ID, use_settings
from rag.chroma_server import LocalChromaServer

pytestmark = pytest.mark.server
def wait_for_first_chunks(name: str, writer: subprocess.Popen, timeout: float = 300) -> None:
    """Return once `writer` has stored its first chunks in collection `name` (or has ended, or after `timeout`)."""
    from rag.store import Store

    store, deadline = Store(), time.monotonic() + timeout
    while time.monotonic() < deadline and writer.poll() is None and not store.chunk_count(name):
        time.sleep(0.2)


@pytest.fixture
def server(tmp_path):
    srv = LocalChromaServer(tmp_path / "chroma-server").start()
    saved = dict(os.environ)
    use_settings(tmp_path / "data", chroma_host="127.0.0.1", chroma_port=str(srv.port))
    yield srv
    srv.stop()
    os.environ.clear()
    os.environ.update(saved)
    use_settings(Path(saved.get("RAG_DATA_DIR", "data")))


def test_server_mode_ingest_incremental_and_ask(server, tmp_path):
    from ingest.pipeline import ingest
    from rag.answer import ask
    from rag.retrieval import retrieve
    from rag.store import Store

    folder = tmp_path / "articles"
    shutil.copytree(SEED_DIR, folder)
    first = ingest([folder], collection="srv")
    assert first.added == [SEED_ID] and first.chunks_written >= 3
    assert ingest([folder], collection="srv").unchanged == [SEED_ID]
    (folder / "extra.txt").write_text("Hafen wieder offen\n\nDer Hafen von Kiel ist seit Montag wieder offen.",
                                      encoding="utf-8")
    assert ingest([folder], collection="srv").added == ["extra.txt"]
    (folder / "extra.txt").unlink()
    assert ingest([folder], collection="srv", sync=True).deleted == ["extra.txt"]
    assert Store().article_count("srv") == 1
    assert retrieve("When will Putin visit North Korea?", collection="srv", k=1)[0].doc_id == SEED_ID
    ans = ask("Wie viele russische Delegationen besuchten Nordkorea?", collection="srv", llm="extractive")
    assert ans.answered and ans.citations[0].doc_id == SEED_ID and ans.citations[0].verified
    # the data lives in the server, not in the local data dir
    assert not (tmp_path / "data" / "chroma").exists()


@pytest.mark.slow
def test_server_stopped_mid_ingest_then_rerun_loses_nothing(server, tmp_path):
    from ingest.pipeline import ingest
    from rag.provision import demo_corpus
    from rag.store import Store

    lines = demo_corpus("small").read_text(encoding="utf-8").splitlines(keepends=True)
    subset = tmp_path / "subset.csv"
    subset.write_text("".join(lines[:25]), encoding="utf-8")  # the header and 24 articles (one per line)
    env = {**os.environ, "RAG_INGEST_BATCH_ARTICLES": "6"}
    cmd = [sys.executable, "-m", "rag.cli", "ingest", str(subset), "-c", "flaky"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_chunks("flaky", proc)
    server.stop()  # the server dies in the middle of the ingest: its first batch is written, three are not
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "Chroma server at 127.0.0.1" in err and "Traceback" not in err
    server.start()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    clean = ingest([subset], collection="clean")
    store = Store()
    assert store.article_count("flaky") == store.article_count("clean") == len(clean.added)
    assert store.chunk_count("flaky") == store.chunk_count("clean")


def test_questions_while_server_down_get_a_clear_error(server):
    from rag.chroma_client import forget_clients
    from rag.errors import StoreUnavailableError
    from rag.retrieval import retrieve

    server.stop()
    forget_clients()
    with pytest.raises(StoreUnavailableError, match="Chroma server at 127.0.0.1"):
        retrieve("Putin", collection="srv")


@pytest.mark.slow
def test_two_workers_one_killed_then_rerun_equals_clean_ingest(server, tmp_path):
    """Two shard processes against one server (as two machines would run them); one is SIGKILLed once the
    first vectors are written. `rag ingest --workers 2` then finishes, and the result equals a clean
    one-process ingest: same article ids, same chunk ids, same counts."""
    from ingest.pipeline import ingest
    from rag.provision import demo_corpus
    from rag.store import Store

    lines = demo_corpus("small").read_text(encoding="utf-8").splitlines(keepends=True)
    subset = tmp_path / "subset.csv"
    subset.write_text("".join(lines[:31]), encoding="utf-8")  # the header and 30 articles
    env = {**os.environ, "RAG_INGEST_BATCH_ARTICLES": "4"}  # several batches per shard: the kill lands mid-shard
    shards = [subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", str(subset), "-c", "sharded", "--shard",
                                f"{i}/2", "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for i in range(2)]
    wait_for_first_chunks("sharded", shards[0])
    shards[0].send_signal(signal.SIGKILL)  # mid-ingest: the first vectors are in, the manifest may not be
    assert shards[0].wait() == -signal.SIGKILL
    assert shards[1].wait(timeout=600) == 0
    store = Store()
    partial = store.article_count("sharded")
    done = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(subset), "-c", "sharded", "--workers", "2",
                           "--json"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    clean = ingest([subset], collection="clean")
    assert partial < len(clean.added)  # the kill really left work undone
    assert sorted(report["added"] + report["unchanged"] + report["updated"]) == sorted(clean.added)
    assert len(report["unchanged"]) == partial  # the survivor's articles were not written again
    by_doc = {name: {} for name in ("sharded", "clean")}
    for name, chunks in by_doc.items():
        for cid, _, meta in store.iter_chunks(name):
            chunks.setdefault(meta["doc_id"], set()).add(cid)
    assert by_doc["sharded"] == by_doc["clean"]
    assert store.chunk_count("sharded") == store.chunk_count("clean")
    assert store.article_count("sharded") == store.article_count("clean") == len(clean.added)


def test_workers_need_a_server_and_a_valid_shard(data_dir, seed_copy):
    """Two processes must not write one embedded store: a clear error, nothing written."""
    from ingest.pipeline import in_shard, parse_shard
    from rag.store import Store

    out = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(seed_copy), "-c", "solo", "--workers", "2"],
                         capture_output=True, text=True, timeout=300, env={**os.environ})
    assert out.returncode != 0 and "--workers needs a Chroma server" in out.stderr and "Traceback" not in out.stderr
    assert not Store().exists("solo")
    bad = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(seed_copy), "--shard", "2/2"],
                         capture_output=True, text=True, timeout=300, env={**os.environ})
    assert bad.returncode == 2 and "i/N" in bad.stderr
    assert parse_shard("1/3") == (1, 3)
    keys = [f"news-{i}" for i in range(300)]
    shares = [sum(in_shard(k, (i, 3)) for k in keys) for i in range(3)]
    assert sum(shares) == 300 and min(shares) > 60  # each key in exactly one shard, roughly even
