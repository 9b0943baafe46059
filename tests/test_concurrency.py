"""Concurrent use: questions during a re-ingest, two ingests at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import SEED_DIR, SEED_FILE, SEED_ID

QUESTIONS = ["Wie viele russische Delegationen besuchten Nordkorea?", "When will Putin visit North Korea?",
             "Welche Länder sind besorgt über die Zusammenarbeit?", "What did Jung Pak say about talks?"]


@pytest.mark.slow
def test_four_threads_ask_during_reingest_without_errors(data_dir, tmp_path):
    from ingest.pipeline import ingest
    from rag.answer import ask

    folder = tmp_path / "articles"
    shutil.copytree(SEED_DIR, folder)
    path = folder / SEED_ID
    original = SEED_FILE.read_text(encoding="utf-8")
    ingest([folder], collection="busy")
    stop = threading.Event()
    errors: list[str] = []
    answered = [0]
    versions = [0]

    def reingest() -> None:
        while not stop.is_set():
            versions[0] += 1
            path.write_text(original + f"\nNachtrag {versions[0]}: Die Gespräche gehen weiter.\n", encoding="utf-8")
            try:
                ingest([folder], collection="busy")
            except Exception as exc:  # noqa: BLE001 - counted, not hidden
                errors.append(f"ingest: {exc!r}")

    def asker(i: int) -> None:
        for j in range(50):
            q = QUESTIONS[(i + j) % len(QUESTIONS)]
            try:
                ans = ask(q, collection="busy", llm="extractive")
                if not ans.answered or not ans.citations or ans.citations[0].doc_id != SEED_ID:
                    errors.append(f"{q}: {ans.text[:80]}")
                    continue
                hashes = {c.chunk_id.split("-")[1] for c in ans.citations}
                if len(hashes) != 1:  # an article is either fully old or fully new
                    errors.append(f"mixed versions: {hashes}")
                answered[0] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{q}: {exc!r}")

    writer = threading.Thread(target=reingest)
    writer.start()
    workers = [threading.Thread(target=asker, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    writer.join()
    assert not errors, errors[:5]
    assert answered[0] == 200 and versions[0] >= 2
    print(f"answered {answered[0]} questions during {versions[0]} re-ingests, {len(errors)} errors")


@pytest.mark.slow
def test_two_ingests_at_once_neither_duplicate_nor_lose(data_dir, tmp_path):
    from ingest.pipeline import ingest
    from rag.provision import demo_corpus
    from rag.store import Store

    lines = demo_corpus("small").read_text(encoding="utf-8").splitlines(keepends=True)
    subset = tmp_path / "subset.csv"
    subset.write_text("".join(lines[:25]), encoding="utf-8")  # the header and 24 articles (one per line)
    cmd = [sys.executable, "-m", "rag.cli", "ingest", str(subset), str(SEED_DIR), "-c", "twice"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.1)
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
    clean = ingest([subset, SEED_DIR], collection="clean")
    store = Store()
    assert store.article_count("twice") == store.article_count("clean") == len(clean.added)
    assert store.chunk_count("twice") == store.chunk_count("clean")
