"""`rag serve`: the HTTP API over the real store and embedder (FastAPI TestClient, no mocks)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from conftest import SEED_DIR, SEED_ID
from rag.api import create_app
from rag.errors import NewsragError


def test_http_api_ingest_retrieve_ask_collections(data_dir):
    client = TestClient(create_app())
    r = client.post("/ingest", json={"paths": [str(SEED_DIR)], "collection": "api"})
    assert r.status_code == 200 and r.json()["added"] == [SEED_ID]
    assert any(c["name"] == "api" for c in client.get("/collections").json())
    hits = client.get("/retrieve", params={"q": "When will Putin visit North Korea?", "collection": "api"}).json()
    assert hits[0]["doc_id"] == SEED_ID
    ans = client.post("/ask", json={"question": "Wie viele russische Delegationen besuchten Nordkorea?",
                                    "collection": "api", "llm": "extractive"}).json()
    assert ans["answered"] and ans["citations"][0]["doc_id"] == SEED_ID
    with client.stream("POST", "/ask", json={"question": "Wie viele Delegationen besuchten Nordkorea?",
                                             "collection": "api", "llm": "extractive", "stream": True}) as resp:
        body = "".join(resp.iter_text())
    assert "event: token" in body and "event: answer" in body
    final = json.loads(body.split("event: answer\ndata: ")[1].split("\n\n")[0])
    assert final["answered"]
    assert client.post("/ask", json={"question": "x?", "collection": "nope"}).status_code == 404
    assert client.post("/ask", json={"question": " ", "collection": "api"}).status_code == 422
    assert client.get("/healthz").json() == {"status": "ok", "chroma": "ok"}
    assert "/ask" in client.get("/openapi.json").json()["paths"]


def test_non_loopback_needs_a_token(data_dir, monkeypatch):
    from rag.settings import reset_settings

    with pytest.raises(NewsragError, match="RAG_API_TOKEN"):
        create_app(bind_host="0.0.0.0")
    monkeypatch.setenv("RAG_API_TOKEN", "s3cret")
    reset_settings()
    client = TestClient(create_app(bind_host="0.0.0.0"))
    assert client.get("/collections").status_code == 401
    assert client.get("/collections", headers={"Authorization": "Bearer s3cre"}).status_code == 401
    assert client.get("/collections", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200  # health needs no token and tells no secrets


def test_cli_ask_is_answered_by_a_running_rag_serve(corpus, tmp_path):
    """`rag serve` records where it listens; `rag ask` in a new process finds it and streams the answer from
    it (no models loaded), `--in-process` answers locally, errors come back as one line, and a record left by
    a server that is gone is ignored. Real processes throughout."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    from helpers import free_port, wait_http

    data = tmp_path / "data"  # a copy: the server's record must not reach other tests' data folder
    shutil.copytree(corpus, data, ignore=shutil.ignore_patterns("keyword", "locks", "run"))
    env = {**os.environ, "RAG_DATA_DIR": str(data)}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = data / "run" / "serve.json"
    question = "Wie viele russische Delegationen besuchten Nordkorea?"

    def rag_ask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rag.cli", "ask", *args], env=env, capture_output=True,
                              text=True, timeout=300)

    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 120)
        assert json.loads(record.read_text()) == {"url": f"http://127.0.0.1:{port}", "pid": server.pid}
        via = rag_ask(question, "-c", "news", "--llm", "extractive", "--json")
        assert via.returncode == 0, via.stderr
        assert f"answered by rag serve at http://127.0.0.1:{port}" in via.stderr
        remote = json.loads(via.stdout)
        assert remote["answered"] and remote["citations"][0]["doc_id"] == SEED_ID
        here = rag_ask(question, "-c", "news", "--llm", "extractive", "--json", "--in-process")
        assert here.returncode == 0 and "answered by rag serve" not in here.stderr, here.stderr
        local = json.loads(here.stdout)
        assert [c["doc_id"] for c in local["citations"]] == [c["doc_id"] for c in remote["citations"]]
        assert local["text"] == remote["text"]
        streamed = rag_ask(question, "-c", "news", "--llm", "extractive")
        assert streamed.returncode == 0 and "— final answer —" in streamed.stdout and "[1] ✓" in streamed.stdout
        missing = rag_ask(question, "-c", "no-such-collection", "--llm", "extractive")
        assert missing.returncode != 0 and "no-such-collection" in missing.stderr
        assert "Traceback" not in missing.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert not record.exists()  # withdrawn at shutdown
    # A record left by a server that was killed (its pid is gone): ignored, the question is answered here.
    record.write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": server.pid}))
    after = rag_ask(question, "-c", "news", "--llm", "extractive", "--json")
    assert after.returncode == 0 and "answered by rag serve" not in after.stderr, after.stderr
    assert json.loads(after.stdout)["answered"]
