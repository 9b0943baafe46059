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
